#!/usr/bin/env bash
# SIGTERM drains: the sidecar stops accepting at once, lets an open stream
# finish, and exits 0 when it has; with a short --drain-timeout it closes
# what is left at the deadline. SIGINT, or a second SIGTERM, stops at once.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo

refused() { # PORT: true if a TCP connect is refused
	! timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# 1. a 12 MiB stream at 4 MiB/s (~3 s) survives SIGTERM with the default 5 s drain.
ks_pair "$T" "$KS_ECHO_PORT" --workers 2
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 12M --rate 4M --half-close \
	--timeout 60 >"$T/c1.out" 2>&1 &
c1=$!
ks_wait_log "$T/b.log" 'event=conn_open' 10
sleep 0.5
kill -TERM "$KS_B_PID"
ks_wait_log "$T/b.log" 'event=draining' 5
refused "$KS_B_PORT" || ks_fail "B still accepts new connections while draining"
wait "$c1" || { cat "$T/c1.out"; ks_fail "the stream did not survive the drain"; }
wait "$KS_B_PID" || ks_fail "B exited $? after draining, want 0"
ks_assert_grep "$T/b.log" 'event=drained' "no drained line"
ks_assert_grep "$T/b.log" 'event=conn_close .*reason=done' "the stream did not end cleanly on B"
ks_pass "SIGTERM: new connections refused, the open stream finished, exit 0"
kill "$KS_A_PID"; wait "$KS_A_PID" || true
mv "$T/a.log" "$T/a1.log"; mv "$T/b.log" "$T/b1.log"

# 2. --drain-timeout 1s cuts a 60 s stream at the deadline.
ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --drain-timeout 1s
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 60M --rate 1M --half-close \
	--timeout 60 >"$T/c2.out" 2>&1 &
c2=$!
ks_wait_log "$T/b.log" 'event=conn_open' 10
start=$(date +%s%N)
kill -TERM "$KS_B_PID"
wait "$KS_B_PID" || ks_fail "B exited $? after the drain deadline, want 0"
ms=$((($(date +%s%N) - start) / 1000000))
ks_assert_grep "$T/b.log" 'event=conn_close .*reason=shutdown' "the stream was not closed at the deadline"
! wait "$c2" || ks_fail "the client believed a cut stream was complete"
ks_pass "--drain-timeout 1s: the stream was cut at the deadline (B exited after $ms ms)"
mv "$T/a.log" "$T/a2.log"; mv "$T/b.log" "$T/b2.log"
kill "$KS_A_PID"; wait "$KS_A_PID" || true

# 3. a second SIGTERM ends the drain at once.
ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --drain-timeout 60s
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 60M --rate 1M --half-close \
	--timeout 60 >"$T/c3.out" 2>&1 &
ks_wait_log "$T/b.log" 'event=conn_open' 10
kill -TERM "$KS_B_PID"
ks_wait_log "$T/b.log" 'event=draining' 5
kill -TERM "$KS_B_PID"
timeout 10 tail --pid="$KS_B_PID" -f /dev/null || ks_fail "B ignored the second SIGTERM"
ks_assert_grep "$T/b.log" 'event=drain_aborted' "no drain_aborted line"
ks_pass "second SIGTERM stops at once"
