#!/usr/bin/env bash
# Benchmark harness entry point (issue 3): `make bench` calls it with KS_BIN
# and KS_STREAM set; it also runs directly from the repository root after
# `make` (which builds the C load tools into build/bench/ with everything
# else, so a break shows in make test). Installs missing peers (apt, as
# root), then runs bench.py.  See tests/bench/README.md.
#
# Environment: BENCH_QUICK=1, BENCH_PEERS="ktls-uring haproxy ...",
# BENCH_WORKLOADS="bulk connrate ...", BENCH_ROUNDS, BENCH_WORKERS, and the
# others listed in README.md; BENCH_BUILD (default build/bench) is where the
# load tools are and the results go, e.g. build/hb/bench after
# `make BUILD=build/hb`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export KS_BIN=${KS_BIN:-$ROOT/build/ktls-sidecar}
export KS_STREAM=${KS_STREAM:-$ROOT/build/tests/ks-stream}
# BENCH_BUILD: where make put the load tools (make BUILD=build/X: build/X/bench);
# the results are written there too.
export BENCH_BUILD=${BENCH_BUILD:-$ROOT/build/bench}

PKGS=(stunnel4 haproxy nginx libnginx-mod-stream socat iperf3 strace openssl iproute2 python3)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "run.sh: missing packages: ${missing[*]} (install them as root)" >&2
		exit 1
	fi
	echo "run.sh: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts the packaged nginx/haproxy services on install; the harness
# runs its own instances on its own ports and leaves those alone.

for b in "$KS_BIN" "$KS_STREAM"; do
	[[ -x $b ]] || { echo "run.sh: $b missing: run make first" >&2; exit 1; }
done

for src in "$HERE"/*.c; do
	out=$BENCH_BUILD/$(basename "$src" .c)
	[[ -x $out && ! $src -nt $out ]] || { echo "run.sh: $out missing or stale: run make first" >&2; exit 1; }
done

export BENCH_ARGV0="${BENCH_ARGV0:-tests/bench/run.sh}"
exec python3 "$HERE/bench.py" "$@"
