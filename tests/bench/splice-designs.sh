#!/usr/bin/env bash
# Issue 4's design comparison for the kTLS forwarding path: io_uring splice
# versus readiness + splice(2). Runs build/bench/splice_designs (make builds
# it) for both designs interleaved (A B A B ...), ROUNDS times, then prints
# medians.
# Plain TCP on loopback: the kernel's TLS work is identical for both designs
# and cannot be timed on these machines (see README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/build/bench
[[ -x $out/splice_designs ]] || { echo "splice-designs.sh: $out/splice_designs missing: run make first" >&2; exit 1; }
ROUNDS=${ROUNDS:-5}
BYTES=${BYTES:-$((4 << 30))}
IDLE=${IDLE:-1000}
: >"$out/splice_designs.txt"
for r in $(seq "$ROUNDS"); do
	for d in uring direct; do
		"$out/splice_designs" bulk "$d" --bytes "$BYTES" | tee -a "$out/splice_designs.txt"
	done
done
for d in uring direct; do
	"$out/splice_designs" idle "$d" --idle "$IDLE" | tee -a "$out/splice_designs.txt"
done
echo
echo "medians over $ROUNDS rounds, $BYTES bytes per run:"
# median KEY DESIGN: median of KEY over the bulk runs of DESIGN
median() {
	grep "design=$2 bytes=" "$out/splice_designs.txt" | sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | sort -n |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for d in uring direct; do
	printf '  %-6s %6s Gbit/s  %7s us CPU/MiB relay thread  %7s us CPU/MiB process\n' "$d" \
		"$(median gbit_s "$d")" "$(median relay_cpu_us_per_mib "$d")" "$(median process_cpu_us_per_mib "$d")"
done
grep 'idle_connections' "$out/splice_designs.txt" | sed 's/^/  /'
