#!/usr/bin/env bash
# The kTLS figures that do not depend on CPU speed, measured where kTLS
# exists (inside the VM of tests/ktls/vm.sh) for the kernel and the userspace
# record layer side by side:
#   - payload bytes through the sidecar's own memory per MiB forwarded (its
#     userspace_bytes counter);
#   - syscalls per MiB forwarded (strace -c -f on sidecar A, epoll backend).
# Memory per idle connection is tests/bench/vm-idle-mem.sh: it needs fresh
# processes (here the heap has grown in the transfer before) and the
# kernel's share, and 1,000 connections at once need B's
# --max-handshakes-per-source raised (256 by default: B refused the rest,
# and the RSS delta was divided by 1,000 all the same).
# Run it with:  tests/ktls/vm.sh run 6.12 -- tests/bench/vm-figures.sh
# Timings taken in the VM are meaningless (TCG emulation): none are reported.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
MIB=${VMF_MIB:-16}
ks_echo_server "$T/echo.log" echo

printf '| record layer | userspace B per MiB | syscalls per MiB (A) |\n|---|---|---|\n' >"$T/table"
for mode in auto off; do
	ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --io epoll --ktls "$mode" --log-level info
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
	awk -v rl="$rl" -v ub="$ub" -v calls="$calls" -v mib="$MIB" 'BEGIN {
		printf "| %s | %d | %d |\n", rl, ub / (2 * mib), calls / (2 * mib) }' >>"$T/table"
	kill "$KS_A_PID" "$KS_B_PID"; wait "$KS_A_PID" "$KS_B_PID" || true
	mv "$T/a.log" "$T/a.$mode.log"; mv "$T/b.log" "$T/b.$mode.log"
done
echo "kernel $(uname -r); $MIB MiB each way"
cat "$T/table"
