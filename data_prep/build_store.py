"""Build one Zarr cutout store from a rows parquet and an image folder: see gcnn_spin.cluster.build_store.

    python data_prep/build_store.py --rows data/catalogue.parquet --split train --images raw \\
        --out data/stores/train.zarr --workers 8
"""

import functools

from gcnn_spin.cluster.build_store import main

if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(functools.partial(main, prog="python data_prep/build_store.py"))
