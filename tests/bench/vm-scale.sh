#!/usr/bin/env bash
# The scale row of the benchmark (10,000 concurrent connections, each
# trickling data, zero errors) where the descriptor limit allows it: inside
# the VM of tests/ktls/vm.sh. On the build machines the hard RLIMIT_NOFILE
# is 20,000 and cannot be raised (no CAP_SYS_RESOURCE), and sidecar A alone
# needs two descriptors per connection.
#
# The sidecars run as uid 65534, as in a pod: root raises the descriptor
# limit and drops to that uid; the pipe sysctls stay at their defaults
# (fs.pipe-user-pages-soft: 1,024 full-size pipes per uid). The table gives
# the descriptors, pipe ends and pipe pages each sidecar holds while the
# connections are idle (t_ktls_scale runs the same path with 1,500 in make test).
#
# Both record layers are run: kernel (kTLS + splice) and userspace (--ktls off).
# Counts only: TCG emulation makes every timing meaningless, and the
# handshakes themselves are slow here (set the timeout generously).
#
# Run it with:
#   KS_VM_MEM=4096 tests/ktls/vm.sh run 6.12 -- tests/bench/vm-scale.sh
# Environment: VMS_CONNS (10000), VMS_TRICKLE_SECS (10), VMS_MODES ("auto off").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/sidecar.sh"

CONNS=${VMS_CONNS:-10000}
TRICKLE=${VMS_TRICKLE_SECS:-10}
LOADGEN=${KS_CONNRATE:-$KS_ROOT/build/bench/ks_connrate}
[[ -x $LOADGEN ]] || ks_fail "no load generator at $LOADGEN (run make)"
ulimit -n 200000 || ks_fail "cannot raise RLIMIT_NOFILE to 200000"

T=$(ks_tmpdir)
ks_pki "$T"
ks_unprivileged "$T"
# held PID -> "descriptors/pipe-ends/pipe-pages" (tests/tools/held.py)
held() { /usr/bin/python3 "$KS_ROOT/tests/tools/held.py" "$1" | tr ' ' /; }
# Port 0: the echo server binds a port of its own and prints it.
ks_bg "$T/echo.log" "$LOADGEN" echo --listen 127.0.0.1:0 >/dev/null
ks_wait_log "$T/echo.log" '^listening on [0-9]+' || ks_fail "the echo server is not listening"
echo_port=$(sed -n 's/^listening on \([0-9]*\).*/\1/p' "$T/echo.log")

printf '| record layer | connections | established | errors | echoes while trickling | idle: A descriptors / pipe ends / pipe pages | idle: B descriptors / pipe ends / pipe pages | sidecar A / B alive |\n|---|---|---|---|---|---|---|---|\n' >"$T/table"
for mode in ${VMS_MODES:-auto off}; do
	KS_BIN="$T/unprivileged" ks_pair "$T" "$echo_port" --workers 1 --ktls "$mode" \
		--max-connections $((CONNS + 100)) --handshake-timeout 600s --first-byte-timeout 600s \
		--control-socket none
	rl=$([[ $mode == auto ]] && grep -q 'aes128gcm=yes' "$T/a.log" && echo kernel || echo userspace)
	mkfifo "$T/cmd.$mode"
	"$LOADGEN" hold --connect "127.0.0.1:$KS_A_PORT" --conns "$CONNS" --pending 200 --timeout 3600 \
		<"$T/cmd.$mode" >"$T/hold.$mode" 2>&1 &
	lg=$!
	exec 9>"$T/cmd.$mode"
	for _ in $(seq 7200); do
		grep -q '^ready' "$T/hold.$mode" && break
		kill -0 "$lg" 2>/dev/null || break
		sleep 0.5
	done
	grep '^ready' "$T/hold.$mode" || { cat "$T/hold.$mode"; ks_fail "$rl: the load generator never got ready"; }
	sleep 1
	a_held=$(held "$KS_A_PID") b_held=$(held "$KS_B_PID")
	echo "trickle $TRICKLE 1000" >&9
	for _ in $(seq $((TRICKLE * 20 + 1200))); do
		grep -q '^trickle' "$T/hold.$mode" && break
		sleep 0.5
	done
	echo quit >&9
	exec 9>&-
	wait "$lg" || true
	cat "$T/hold.$mode"
	alive=$(kill -0 "$KS_A_PID" 2>/dev/null && echo yes || echo no)/$(kill -0 "$KS_B_PID" 2>/dev/null && echo yes || echo no)
	awk -v rl="$rl" -v n="$CONNS" -v alive="$alive" -v ah="$a_held" -v bh="$b_held" '
		function kv(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "?" }
		/^ready/ { est = kv("established"); err = kv("errors") }
		/^trickle/ { terr = kv("errors"); ech = kv("echoes") }
		END { e = (terr != "?" && terr > err) ? terr : err; printf "| %s | %d | %s | %s | %s | %s | %s | %s |\n", rl, n, est, e, ech, ah, bh, alive }' \
		"$T/hold.$mode" >>"$T/table"
	kill "$KS_A_PID" "$KS_B_PID" 2>/dev/null || true
	wait "$KS_A_PID" "$KS_B_PID" 2>/dev/null || true
	mv "$T/a.log" "$T/a.$mode.log"
	mv "$T/b.log" "$T/b.$mode.log"
done
echo "kernel $(uname -r); $CONNS connections; trickle ${TRICKLE}s, 16 bytes per connection per second"
cat "$T/table"
