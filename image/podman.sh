#!/usr/bin/env bash
# Runs podman or buildah against the project's own container storage:
#
#   image/podman.sh BUILD_DIR podman|buildah ARGS...
#
# The storage (images, layers, containers) and podman's run-time state live
# in BUILD_DIR/containers, so nothing lands in the host's /var/lib/containers
# or /run/containers, the image that `make image` built is found there by
# the tests, and `make clean` removes it all. The settings are the
# project's tests/podman/containers.conf (runc, cgroupfs, ulimits within
# the hard limits, never pull).
#
# Overlay where the build folder's filesystem can hold it (ext4, xfs), vfs
# elsewhere (KS_STORAGE_DRIVER=vfs forces it): vfs copies every layer in
# full, which is slower but works on any filesystem.
set -euo pipefail

if (($# < 2)); then
	echo "usage: $0 BUILD_DIR podman|buildah ARGS..." >&2
	exit 2
fi
build=$1 tool=$2
shift 2
case $tool in podman | buildah) ;; *)
	echo "$0: '$tool' is neither podman nor buildah" >&2
	exit 2
	;;
esac
command -v "$tool" >/dev/null || { echo "$0: $tool is missing (make deps installs it)" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$build/containers"
dir=$(cd "$build/containers" && pwd)

driver=${KS_STORAGE_DRIVER:-}
if [[ -z $driver ]]; then
	case $(stat -f -c %T "$dir") in
	ext2/ext3 | xfs) driver=overlay ;;
	*) driver=vfs ;;
	esac
fi
# The storage.conf is rewritten only when it changes: the driver of an
# existing storage cannot change under it (podman refuses to start).
conf=$dir/storage.conf
cat >"$conf.tmp" <<EOF
# Written by image/podman.sh: the project's container storage.
[storage]
driver = "$driver"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF
if cmp -s "$conf.tmp" "$conf"; then
	rm -f "$conf.tmp"
else
	mv "$conf.tmp" "$conf"
fi

export CONTAINERS_CONF=$here/tests/podman/containers.conf
export CONTAINERS_STORAGE_CONF=$conf
# podman's own state (events, container state, the "rebooted?" marker);
# buildah has no such flag.
[[ $tool == podman ]] && set -- --tmpdir "$dir/tmp" "$@"
exec "$tool" "$@"
