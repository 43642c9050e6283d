#!/usr/bin/env bash
# `make image-test`: the built image as a cluster runs it. Root filesystem read-only (as a SIF is), no network,
# only a scratch folder bound (HOME, TMPDIR and every cache point into it or to a tmpfs): the escnn equivariance
# check, then a tiny end to end run through the image's own commands: synthetic survey -> stores -> train one
# model one epoch -> survey inference of part 0 -> collect. Fails unless the report and the predictions exist.
# Usage: containers/image_test.sh [IMAGE] [WORK]   (default localhost/gcnn_spin:cuda13, a fresh temporary folder)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
image=${1:-localhost/gcnn_spin:cuda13}
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/gcnn_spin-image-test.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)
model=resnet18
tiny=(--config demo --set data.image_size=33 --set data.chunk_images=16 --set data.shard_images=64
      --set train.batch_size=25 --set train.epochs=1 --set train.num_threads=1 --set "train.model_options={base_width=4}")
in_image() {
    echo "+ gcnn-spin $*" >&2
    "$here/podman.sh" run --rm --read-only --network none --volume "$work:$work" --workdir "$work" \
        --env HOME="$work/home" --env TMPDIR=/tmp --env XDG_CACHE_HOME="$work/home/.cache" \
        --env MPLCONFIGDIR="$work/home/.matplotlib" --env TORCH_HOME="$work/home/.torch" "$image" "$@"
}
start=$(date +%s)
mkdir -p "$work/home"
in_image python /opt/gcnn_spin/containers/escnn_check.py
in_image make-synthetic --out "$work/raw" --n-gz1 300 --n-survey 100 --seed 1 --quiet >/dev/null
in_image build-dataset --gz1 "$work/raw/GalaxyZoo1_DR_table2.csv" --desi-index "$work/raw/desi_index.parquet" --images "$work/raw" \
    --sdss-photometry "$work/raw/sdss_photometry.csv" --out "$work/data" --quiet "${tiny[@]}" >/dev/null
in_image train --model "$model" --seed 0 --data "$work/data" --out "$work/runs/$model/seed0" "${tiny[@]}" >/dev/null
in_image infer run --store "$work/data/stores/survey.zarr" --runs "$work/runs" --out "$work/predictions" \
    --cluster local --task-id 0 --quiet
in_image collect --runs "$work/runs" --predictions "$work/predictions" --data "$work/data" --out "$work/results" \
    --truth "$work/raw/truth.parquet" --allow-partial --no-figures --quiet
for expected in "$work/results/report.md" "$work/predictions/$model/seed0/part-00000.parquet"; do
    [[ -s $expected ]] || { echo "image-test: $expected is missing" >&2; exit 1; }
done
echo "image-test passed in $(( $(date +%s) - start )) s (read-only image, no network): $work/results/report.md"
