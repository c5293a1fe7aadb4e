#!/usr/bin/env bash
# Many idle connections as an unprivileged uid (README, "Descriptors"):
# KS_SCALE_CONNS (1,500) connections held open through a sidecar pair, both
# sidecars running as uid 65534 with the pipe sysctls at their defaults.
# Root only raises the descriptor limit before dropping to that uid.
#
# 1,500 is past the pipe cliff: fs.pipe-user-pages-soft (16,384 pages per
# uid) buys 1,024 full-size pipes, and with a pipe per direction held for a
# connection's lifetime both sidecars together crossed it at ~256
# connections. Now a pipe is held only while bytes are in flight: idle, each
# connection holds its two sockets and no pipe. Every connection is echoed
# through (each byte checked) before and after, 0 errors; the descriptors
# and pipes each sidecar holds are counted while the connections are idle.
# In the kTLS VM (make test-ktls) every connection is on the kernel record
# layer; here, on the userspace one.
#
# tests/bench/vm-scale.sh runs the same path with 10,000 connections.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

# Under the sanitizers (make asan), 600: still past the cliff, at a third
# of the cost in the TCG VM.
default_conns=1500
[[ ${KS_SANITIZED:-0} == 1 ]] && default_conns=600
CONNS=${KS_SCALE_CONNS:-$default_conns}
LOADGEN=${KS_CONNRATE:-$(dirname "$KS_BIN")/bench/ks_connrate}
[[ -x $LOADGEN ]] || ks_fail "no load generator at $LOADGEN (run make)"
kernel=no
ks_kernel_tls && kernel=yes

PY=$(command -v python3) || ks_skip "no python3 to size the pipes"
T=$(ks_tmpdir)
ks_pki "$T"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
ks_unprivileged "$T" # uid 65534 reads the identity (test keys) and nothing else

ks_bg "$T/echo.log" "$LOADGEN" echo --listen 127.0.0.1:0 >/dev/null
ks_wait_log "$T/echo.log" '^listening on [0-9]+' || ks_fail "the echo server is not listening"
echo_port=$(sed -n 's/^listening on \([0-9]*\).*/\1/p' "$T/echo.log")
# Generous timeouts: under TCG (and ASan) a worker with a hundred handshakes
# queued can take seconds to send the next ClientHello, and B's default
# 3 s first-byte timeout would cut it. Timeouts have their own tests.
KS_BIN="$T/unprivileged" ks_pair "$T" "$echo_port" --control-socket none --handshake-timeout 600s \
	--first-byte-timeout 600s --max-handshakes 256
[[ $(awk '/^Uid:/ {print $2}' "/proc/$KS_A_PID/status") != 0 ]] || ks_fail "sidecar A runs as root"

mkfifo "$T/cmd"
"$LOADGEN" hold --connect "127.0.0.1:$KS_A_PORT" --conns "$CONNS" --pending 100 --timeout 1200 \
	<"$T/cmd" >"$T/hold.out" 2>&1 &
lg=$!
exec 9>"$T/cmd" # closed at exit: EOF makes the load generator quit
for _ in $(seq 2400); do
	grep -q '^ready' "$T/hold.out" && break
	kill -0 "$lg" 2>/dev/null || break
	sleep 0.5
done
grep -q "^ready established=$CONNS errors=0 " "$T/hold.out" || {
	cat "$T/hold.out"
	grep -hE 'event=(handshake_rejected|conn_shed|conn_refused|log_suppressed|accept_failed|pipe_unavailable)' \
		"$T/a.log" "$T/b.log" | tail -8
	ks_fail "not all $CONNS connections were established and echoed"
}

# Idle now: what does each sidecar hold? (tests/tools/held.py: descriptors,
# pipe ends, and the pipe pages charged to the uid's budget)
held() { "$PY" "$KS_ROOT/tests/tools/held.py" "$1"; }
sleep 1 # the last echoes' pipes go back when their pumps next stop
a_held=$(held "$KS_A_PID") || ks_fail "could not count what sidecar A holds"
b_held=$(held "$KS_B_PID") || ks_fail "could not count what sidecar B holds"
read -r a_fds a_pipes a_pages <<<"$a_held"
read -r b_fds b_pipes b_pages <<<"$b_held"
echo "$CONNS idle connections ($(grep -c 'record_layer=kernel' "$T/a.log" || true) on kTLS): A holds $a_fds descriptors ($a_pipes pipe ends, $a_pages pipe pages), B $b_fds ($b_pipes, $b_pages pages); fs.pipe-user-pages-soft=$(cat /proc/sys/fs/pipe-user-pages-soft)"
echo "per idle connection: A $(awk -v f="$a_fds" -v n="$CONNS" 'BEGIN {printf "%.2f", f / n}') descriptors, B $(awk -v f="$b_fds" -v n="$CONNS" 'BEGIN {printf "%.2f", f / n}')"
# Two sockets per connection, the fixed part (listeners, loops, stdio), and
# at most KS_PIPE_CACHE (16) empty pipes per worker in the cache.
workers=$(sed -n 's/.*event=ready .*workers=\([0-9]*\).*/\1/p' "$T/a.log")
max_pipe_ends=$((2 * 16 * workers))
for s in "A $a_fds $a_pipes" "B $b_fds $b_pipes"; do
	read -r who fds pipes <<<"$s"
	((pipes <= max_pipe_ends)) || ks_fail "sidecar $who holds $pipes pipe ends with $CONNS idle connections"
	((fds <= 2 * CONNS + 64 + max_pipe_ends)) || ks_fail "sidecar $who holds $fds descriptors for $CONNS idle connections"
done
if [[ $kernel == yes ]]; then
	n=$(grep -c 'event=conn_open .*record_layer=kernel' "$T/a.log" || true)
	((n == CONNS)) || ks_fail "$n of $CONNS connections on the kernel record layer"
fi

# Every connection moves bytes again (pipes are taken and given back).
echo "trickle 3 500" >&9
for _ in $(seq 1200); do grep -q '^trickle' "$T/hold.out" && break; sleep 0.5; done
echo quit >&9
exec 9>&-
wait "$lg" || true
cat "$T/hold.out"
grep -q "^trickle established=$CONNS errors=0 " "$T/hold.out" ||
	ks_fail "errors while $CONNS connections trickled"
ks_assert_not_grep "$T/a.log" 'event=pipe_unavailable' "sidecar A ran out of pipes"
ks_assert_not_grep "$T/b.log" 'event=pipe_unavailable' "sidecar B ran out of pipes"
ks_alive "$KS_A_PID" "sidecar A died"
ks_alive "$KS_B_PID" "sidecar B died"
ks_pass "$CONNS idle connections as uid 65534 (kTLS: $kernel): A $a_fds descriptors / $a_pipes pipe ends / $a_pages pipe pages, B $b_fds / $b_pipes / $b_pages; every echo checked, 0 errors"
