#!/usr/bin/env bash
# Base image for sites without an image registry: Debian bookworm from Debian's packages (debootstrap) with
# Debian's Python 3.11, imported into podman as TAG. Does nothing when TAG exists already (--force rebuilds).
# Usage: containers/make_base.sh [--force] [TAG]   (default TAG localhost/gcnn_spin-base:bookworm)
# Needs root (or fakeroot), debootstrap and podman; MIRROR overrides the Debian mirror.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
force=0
if [[ ${1:-} == --force ]]; then force=1; shift; fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
tag=${1:-localhost/gcnn_spin-base:bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
podman=("$here/podman.sh")
if [[ $force == 0 ]] && "${podman[@]}" image exists "$tag"; then
    echo "base image $tag exists"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "make_base.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
root=$(mktemp -d "${TMPDIR:-/tmp}/gcnn_spin-base.XXXXXX")
trap 'rm -rf "$root"' EXIT
# python3-venv brings ensurepip, with which the install script makes the image's virtual environment.
debootstrap --variant=minbase bookworm "$root" "$mirror"
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    python3.11 python3.11-venv ca-certificates
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc "$root"/usr/share/man
ln -sf python3.11 "$root/usr/bin/python3"
# Debian's Python is 3.11.2; a few pure-Python pins of the lock declare Requires-Python >= 3.11.5 (soupsieve,
# used only by astroquery's HTML parsing). The lock is installed exactly and --no-deps, so pip may ignore it here.
tar --numeric-owner -C "$root" -c . | "${podman[@]}" import --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_IGNORE_REQUIRES_PYTHON=1' --change 'CMD ["/bin/bash"]' - "$tag"
echo "base image $tag imported"
