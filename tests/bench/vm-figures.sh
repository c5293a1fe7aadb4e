#!/usr/bin/env bash
# The kTLS figures that do not depend on CPU speed, measured where kTLS
# exists (inside the VM of tests/ktls/vm.sh) for the kernel and the userspace
# record layer side by side:
#   - payload bytes through the sidecar's own memory per MiB forwarded (its
#     userspace_bytes counter);
#   - syscalls per MiB forwarded (strace -c -f on sidecar A, epoll backend);
#   - RSS per idle established connection (1,000 connections through a pair).
# Run it with:  tests/ktls/vm.sh run 6.12 -- tests/bench/vm-figures.sh
# Timings taken in the VM are meaningless (TCG emulation): none are reported.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
MIB=${VMF_MIB:-16}
IDLE=${VMF_IDLE:-1000}
ulimit -n 65536 2>/dev/null || true
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
ks_echo_server "$T/echo.log" echo

printf '| record layer | userspace B per MiB | syscalls per MiB (A) | RSS per idle conn A / B (KiB) |\n|---|---|---|---|\n' >"$T/table"
for mode in auto off; do
	ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --io epoll --ktls "$mode" --log-level info --max-connections $((IDLE + 100))
	rl=$(grep -q 'aes128gcm=yes' "$T/a.log" && [[ $mode == auto ]] && echo kernel || echo userspace)
	# syscalls per MiB: strace -c over a MIB-up, MIB-back transfer
	strace -c -f -o "$T/strace.$mode" -p "$KS_A_PID" &
	st=$!
	sleep 1
	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "${MIB}M" --half-close --timeout 900 >/dev/null
	ks_wait_log "$T/a.log" 'event=conn_close' 30
	kill -INT "$st"; wait "$st" || true
	calls=$(awk '$NF == "total" {print $(NF-2)}' "$T/strace.$mode")
	ub=$(grep 'event=conn_close' "$T/a.log" | head -1 | sed -n 's/.*userspace_bytes=\([0-9]*\).*/\1/p')
	# RSS per idle connection
	a0=$(rss "$KS_A_PID") b0=$(rss "$KS_B_PID")
	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --conns "$IDLE" --bytes 1 --hold-ms 40000 \
		--timeout 600 >"$T/idle.$mode" 2>&1 &
	cl=$!
	for _ in $(seq 600); do
		[[ $(ks_count "$T/b.log" 'event=conn_open') -ge $((IDLE + 1)) ]] && break
		sleep 0.1
	done
	# Steady state: the sidecar hands the handshake burst's heap back to the
	# kernel once the burst is over, within two 1 s ticks (worker.c maybe_trim).
	sleep 4
	a1=$(rss "$KS_A_PID") b1=$(rss "$KS_B_PID")
	wait "$cl" || true
	awk -v rl="$rl" -v ub="$ub" -v calls="$calls" -v mib="$MIB" -v n="$IDLE" \
		-v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" 'BEGIN {
		printf "| %s | %d | %d | %.1f / %.1f |\n", rl, ub / (2 * mib), calls / (2 * mib),
			(a1 - a0) / n, (b1 - b0) / n }' >>"$T/table"
	kill "$KS_A_PID" "$KS_B_PID"; wait "$KS_A_PID" "$KS_B_PID" || true
	mv "$T/a.log" "$T/a.$mode.log"; mv "$T/b.log" "$T/b.$mode.log"
done
echo "kernel $(uname -r); $MIB MiB each way; $IDLE idle connections"
cat "$T/table"
