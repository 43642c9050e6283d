#!/usr/bin/env bash
# Build the OCI image with podman (through containers/podman.sh), as `make image` does.
# Usage: containers/build_image.sh [--lock FILE] [--base IMAGE|debian] [--tag TAG]
#   --lock  the lock to install (default requirements.lock; requirements-cu12.lock for CUDA 12 drivers)
#   --base  the base image (default docker.io/library/python:3.11-slim-bookworm, pulled; where no registry
#           answers, or with --base debian, the base is made from Debian's packages by containers/make_base.sh)
#   --tag   the image name (default localhost/gcnn_spin:cuda13)
# The host's pip settings (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CERT or `pip config`) reach the
# build; local folders and the CA file among them are bound read-only at the same path, so a site's wheel mirror
# or TLS proxy works as on the host.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
podman=("$here/podman.sh")
lock=requirements.lock
base=""
tag=localhost/gcnn_spin:cuda13
default_base=docker.io/library/python:3.11-slim-bookworm
local_base=localhost/gcnn_spin-base:bookworm
while [[ $# -gt 0 ]]; do
    case $1 in
        --lock) lock=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build_image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
cd "$here/.."
[[ -f $lock ]] || { echo "build_image.sh: no lock file $lock" >&2; exit 2; }

if [[ $base == debian ]]; then
    "$here/make_base.sh" "$local_base"
    base=$local_base
elif [[ -z $base ]]; then
    base=$default_base
    if ! "${podman[@]}" image exists "$base" && ! timeout 300 "${podman[@]}" pull -q "$base" >/dev/null 2>&1; then
        echo "no image registry answers for $base: making the base from Debian's packages" >&2
        "$here/make_base.sh" "$local_base"
        base=$local_base
    fi
fi

# pip's index settings: the environment first, then `pip config` (global, user or site file).
pip_setting() {
    local key=$1 var="PIP_$(tr 'a-z-' 'A-Z_' <<<"$1")"
    if [[ -n ${!var:-} ]]; then
        printf '%s' "${!var}"
    elif command -v python3 >/dev/null; then
        python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z]*\.$key='\(.*\)'$/\1/p" | tail -n 1
    fi
}
build_args=()
volumes=()
for key in index-url extra-index-url find-links cert; do
    value=$(pip_setting "$key")
    [[ -n $value ]] || continue
    build_args+=(--build-arg "PIP_$(tr 'a-z-' 'A-Z_' <<<"$key")=$value")
    for location in $value; do
        dir=${location#file://}
        if [[ $key == cert && -f $dir ]]; then volumes+=(--volume "$dir:$dir:ro"); fi
        [[ $dir == /* && -d $dir ]] || continue
        # A PEP 503 "simple" folder links to its files beside it (../../files/...): bind its parent.
        [[ $(basename "$dir") == simple ]] && dir=$(dirname "$dir")
        volumes+=(--volume "$dir:$dir:ro")
    done
done

echo "building $tag from $base with $lock"
start=$(date +%s)
"${podman[@]}" build -f containers/Containerfile --build-arg "BASE=$base" --build-arg "LOCK=$lock" \
    "${build_args[@]}" "${volumes[@]}" -t "$tag" .
echo "built $tag in $(( $(date +%s) - start )) s; size $("${podman[@]}" image inspect --format '{{.Size}}' "$tag") bytes"
