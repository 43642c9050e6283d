#!/usr/bin/env bash
# podman with this project's host settings (containers/containers.conf); every podman call of the Makefile,
# the CI and the cluster profile `podman` goes through here, so the host's quirks live in one place.
# GCNN_SPIN_CONTAINERS_CONF=/path/to/other.conf replaces them; an empty value keeps the host's own.
set -euo pipefail
conf=${GCNN_SPIN_CONTAINERS_CONF-"$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf"}
if [[ -n $conf ]]; then
    export CONTAINERS_CONF=$conf
fi
exec podman "$@"
