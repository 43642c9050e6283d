"""The crop side ``S`` a model sees on a store: one rule for training, prediction, evaluation and the rotation study.

The data config names the stores' size once (``[data] image_size``; every store records it in its attributes).
A store built for ``S`` serves centre crops of ``S - MAX_SHRINK .. S`` px at the same pixel scale. A model is
exactly rot90/mirror-equivariant only at some sizes (:meth:`ModelSpec.is_exact_size`: ResNets at ``32k + 1``,
LeNets at multiples of 4), so it trains at the largest exact size the store serves: 161 px stores give ResNets
161 and LeNets 160, 65 px stores 65 and 64. A trained model records that size (``model_options["image_size"]``)
and is fed exactly it afterwards. A trained model also records the image field it saw (``image_field``, from its
train store: ``data.field``); a store of another field is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: How much smaller than the store's ``S`` a crop may be (the loader refuses anything else).
MAX_SHRINK = 4


def store_image_size(store: Any) -> int:
    """``S`` of an opened store, of its attributes, or a plain number."""
    if isinstance(store, int):
        return store
    attrs = store if isinstance(store, Mapping) else store.attrs
    return int(attrs["image_size"])


def store_field(store: Any) -> str | None:
    """The image field of an opened store or of its attributes (``None`` for a plain number)."""
    if isinstance(store, int):
        return None
    attrs = store if isinstance(store, Mapping) else store.attrs
    return str(attrs.get("field", "inscribed"))


def check_field(model, store) -> None:
    """Refuse a ``store`` whose image field differs from the one the trained ``model`` records (if it records one)."""
    trained, served = getattr(model, "image_field", None), store_field(store)
    if trained and served and trained != served:
        where = getattr(store, "path", None)
        raise ValueError(f"{getattr(model, 'model_name', 'the model')} was trained on {trained} images, but "
                         f"{getattr(where, 'name', 'the store')} holds {served} images: build it with "
                         f"data.field = \"{trained}\"")


def served_sizes(store_size: int) -> range:
    """Crop sides a store built for ``store_size`` serves, largest first."""
    return range(store_size, store_size - MAX_SHRINK - 1, -1)


def exact_crop(spec, store_size: int) -> int:
    """The largest size the store serves at which ``spec`` is exact; the store's size when there is none."""
    return next((s for s in served_sizes(store_size) if spec.is_exact_size(s)), store_size)


def trained_crop(module) -> int | None:
    """The crop a built or exported model was made for (``model.model_options``), if it records one."""
    size = (getattr(module, "model_options", None) or {}).get("image_size")
    return int(size) if size else None


def crop_for(model, store) -> int:
    """The crop side for ``model`` on ``store``.

    ``model``: a registry name or :class:`~gcnn_spin.models.specs.ModelSpec` (a run about to train), or a built or
    exported module (a trained run: the crop it records, which the store must serve, in the field it records).
    ``store``: an opened store, its attributes, or its image size.
    """
    size = store_image_size(store)
    if not isinstance(model, str) and not hasattr(model, "is_exact_size"):  # a module
        check_field(model, store)
        trained = trained_crop(model)
        if trained is not None:
            if trained not in served_sizes(size):
                raise ValueError(f"{getattr(model, 'model_name', 'the model')} was trained on {trained} px crops; "
                                 f"a store built for {size} px serves {size - MAX_SHRINK}..{size} px")
            return trained
        model = getattr(model, "model_name", None)
        if model is None:
            return size
    if isinstance(model, str):
        from .models import spec

        model = spec(model)
    return exact_crop(model, size)
