#!/bin/sh
# The one install recipe of the image, run by both containers/Containerfile (OCI) and containers/gcnn_spin.def
# (Apptainer), so the two formats hold the same environment:
#   install.sh deps LOCK   a virtual environment GCNN_SPIN_HOME/venv with exactly LOCK (--no-deps, nothing resolved)
#   install.sh package     the project (copied to GCNN_SPIN_HOME) into it, escnn's caches warmed, the tree cleaned
# pip reads its index from the environment (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS): PyPI by default.
set -eu
home=${GCNN_SPIN_HOME:-/opt/gcnn_spin}
venv=$home/venv
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
case ${1:-} in
    deps)
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --no-deps -r "$2"
        ;;
    package)
        "$venv/bin/python" -m pip install --no-deps --no-build-isolation "$home"
        rm -rf "$home/build" "$home"/*.egg-info
        # escnn caches its kernel bases on disk inside site-packages, which is read-only in the finished image:
        # build every registered model once so the cache is complete before the image is sealed.
        "$venv/bin/python" -c "import gcnn_spin.models as m; [m.build(n, image_size=65) for n in m.names()]"
        find "$home" -name __pycache__ -prune -exec rm -rf {} +
        ;;
    *)
        echo "usage: install.sh deps LOCK | install.sh package" >&2
        exit 2
        ;;
esac
