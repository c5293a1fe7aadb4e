#!/usr/bin/env bash
# The drain (README, "Stopping: drain order, signals and native sidecars").
# 1. The drain order under SIGTERM, on a sidecar S with an inbound and an
#    outbound route (2 workers): not ready at once; during --drain-delay a
#    new inbound connection is still served; after it
#    (event=drain_inbound_closed) new inbound connections are refused, while
#    new outbound ones are still served and the connections held open in
#    both directions keep working; a further SIGTERM is logged and changes
#    nothing; the app's next connection within --drain-quiet of its last is
#    still served; then S leaves, exit 0.
# 2. ktlsctl drain, then SIGTERM (the kubelet's, after a preStop hook): the
#    drain goes on, the open stream completes (SHA-256 checked by ks-stream)
#    after the ignored SIGTERM, exit 0.
# 3. --drain-timeout 1s cuts a 60 s stream at the deadline.
# 4. SIGINT during a drain stops at once.
# 5. --drain-delay longer than --drain-timeout: a start-up error, exit 2.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
server=(--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt")
client=(--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt")

refused() { # PORT: true if a TCP connect is refused
	! timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}
roundtrip() { # FD: one line there and back through a held connection to the echo server
	local got
	printf 'ping %s\n' "$1" >&"$1"
	read -r -t 10 got <&"$1" && [[ $got == "ping $1" ]]
}

# 1. The drain order. B serves S's outbound route; C is a client of S's
# inbound one. All end at the echo server.
ks_sidecar "$T/b1.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${server[@]}"
b1_pid=$KS_SIDECAR_PID b_port=${KS_PORTS[0]}
ks_sidecar "$T/s1.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--outbound "127.0.0.1:0=127.0.0.1:$b_port,id=$KS_SERVER_ID" "${client[@]}" \
	--workers 2 --drain-delay 3s --drain-quiet 4s --drain-timeout 60s
s_pid=$KS_SIDECAR_PID s_in=${KS_PORTS[0]} s_out=${KS_PORTS[1]} s_ctl=$KS_CTL_SOCKET
ks_sidecar "$T/c1.log" --outbound "127.0.0.1:0=127.0.0.1:$s_in,id=$KS_CLIENT_ID" "${server[@]}"
c1_pid=$KS_SIDECAR_PID c_port=${KS_PORTS[0]}
# Held by this shell, opened after the last background process started (a
# child would inherit them and keep them open): 3 is the app's outbound
# connection, 4 an inbound one.
exec 3<>"/dev/tcp/127.0.0.1/$s_out" 4<>"/dev/tcp/127.0.0.1/$c_port"
roundtrip 3 && roundtrip 4 || ks_fail "the held connections do not work before the drain"
kill -TERM "$s_pid"
ks_wait_log "$T/s1.log" 'event=draining source=SIGTERM timeout_ms=60000 delay_ms=3000 quiet_ms=4000' 5
"$KS_CTL" --socket "$s_ctl" ready >"$T/ready.out" && ks_fail "ktlsctl ready passed during the drain"
grep -q 'not ready: draining' "$T/ready.out" || ks_fail "ktlsctl ready: $(cat "$T/ready.out")"
# Refused after the delay, so a stream that completes was accepted in it.
"$KS_STREAM" client --connect "127.0.0.1:$c_port" --bytes 256K --seed 1 --half-close \
	--timeout 30 >"$T/in1.out" 2>&1 || { cat "$T/in1.out"; ks_fail "a new inbound connection failed during the drain delay"; }
ks_wait_log "$T/s1.log" 'event=drain_inbound_closed' 10
refused "$s_in" || ks_fail "S still accepts inbound connections after the drain delay"
"$KS_STREAM" client --connect "127.0.0.1:$s_out" --bytes 256K --seed 2 --half-close \
	--timeout 30 >"$T/out1.out" 2>&1 || { cat "$T/out1.out"; ks_fail "a new outbound connection failed after the drain delay"; }
roundtrip 3 || ks_fail "the held outbound connection broke in the drain"
roundtrip 4 || ks_fail "the held inbound connection broke in the drain"
kill -TERM "$s_pid"
ks_wait_log "$T/s1.log" 'event=drain_signal_ignored signal=SIGTERM source=SIGTERM' 5
roundtrip 3 && roundtrip 4 || ks_fail "a second SIGTERM cut the held connections"
ks_assert_not_grep "$T/s1.log" 'event=(stopping|drained|drain_aborted)' "a second SIGTERM ended the drain"
exec 3>&- 4>&-
# Once S holds no connection (the two streams and the two held ones have
# closed), the app's next one, within --drain-quiet of its last: still served.
for _ in $(seq 200); do (($(ks_count "$T/s1.log" 'event=conn_close') >= 4)) && break; sleep 0.05; done
(($(ks_count "$T/s1.log" 'event=conn_close') == 4)) || ks_fail "S: $(ks_count "$T/s1.log" 'event=conn_close') connections closed, want 4"
"$KS_STREAM" client --connect "127.0.0.1:$s_out" --bytes 64K --seed 3 --half-close \
	--timeout 30 >"$T/out2.out" 2>&1 || { cat "$T/out2.out"; ks_fail "S stopped serving outbound before --drain-quiet had passed"; }
timeout 15 tail --pid="$s_pid" -f /dev/null || ks_fail "S did not leave once the app had closed its connections"
wait "$s_pid" || ks_fail "S exited $? after draining, want 0"
ks_assert_grep "$T/s1.log" 'event=drained' "no drained line"
ks_assert_not_grep "$T/s1.log" 'reason=shutdown' "S closed a connection at the end instead of letting it finish"
ks_pass "SIGTERM: not ready at once, inbound served for --drain-delay then refused, outbound served throughout and within --drain-quiet, a second SIGTERM ignored, exit 0 once the app was done"
kill "$b1_pid" "$c1_pid"
wait "$b1_pid" "$c1_pid" || true

# 2. ktlsctl drain, then SIGTERM: the drain goes on.
ks_sidecar "$T/b2.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${server[@]}" \
	--workers 2 --drain-delay 2s --drain-quiet 1s
b_pid=$KS_SIDECAR_PID b_port=${KS_PORTS[0]} b_ctl=$KS_CTL_SOCKET
ks_sidecar "$T/a2.log" --outbound "127.0.0.1:0=127.0.0.1:$b_port,id=$KS_SERVER_ID" "${client[@]}"
a_port=${KS_PORTS[0]}
# 8 MiB at 2 MiB/s: open for 4 s at least.
"$KS_STREAM" client --connect "127.0.0.1:$a_port" --bytes 8M --rate 2M --half-close \
	--timeout 60 >"$T/c2.out" 2>&1 &
c2=$!
ks_wait_log "$T/b2.log" 'event=conn_open' 10
"$KS_CTL" --socket "$b_ctl" drain --timeout 30s >"$T/drain.out" || ks_fail "ktlsctl drain exited $?"
ks_wait_log "$T/b2.log" 'event=draining source=control timeout_ms=30000 delay_ms=2000' 5
kill -TERM "$b_pid"
ks_wait_log "$T/b2.log" 'event=drain_signal_ignored signal=SIGTERM source=control' 5
wait "$c2" || { cat "$T/c2.out"; ks_fail "the open stream did not survive a SIGTERM after ktlsctl drain"; }
grep -q 'status=ok' "$T/c2.out" || ks_fail "ks-stream: $(cat "$T/c2.out")"
wait "$b_pid" || ks_fail "B exited $? after the drain, want 0"
ks_assert_grep "$T/b2.log" 'event=drained' "no drained line"
# The stream was still open when the SIGTERM came: its end is logged after.
ignored=$(grep -n 'event=drain_signal_ignored' "$T/b2.log" | head -1 | cut -d: -f1)
closed=$(grep -n 'event=conn_close .*reason=done' "$T/b2.log" | tail -1 | cut -d: -f1)
[[ -n $closed ]] && ((closed > ignored)) ||
	ks_fail "the stream's end (line ${closed:-none}) is not after the ignored SIGTERM (line $ignored)"
ks_pass "ktlsctl drain then SIGTERM: SIGTERM logged and ignored, the open stream completed (SHA-256), exit 0"
kill "$KS_SIDECAR_PID"
wait "$KS_SIDECAR_PID" || true

# 3. --drain-timeout 1s cuts a 60 s stream at the deadline.
ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --drain-timeout 1s
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 60M --rate 1M --half-close \
	--timeout 60 >"$T/c3.out" 2>&1 &
c3=$!
ks_wait_log "$T/b.log" 'event=conn_open' 10
start=$(date +%s%N)
kill -TERM "$KS_B_PID"
wait "$KS_B_PID" || ks_fail "B exited $? after the drain deadline, want 0"
ms=$((($(date +%s%N) - start) / 1000000))
ks_assert_grep "$T/b.log" 'event=conn_close .*reason=shutdown' "the stream was not closed at the deadline"
! wait "$c3" || ks_fail "the client believed a cut stream was complete"
ks_pass "--drain-timeout 1s: the stream was cut at the deadline (B exited after $ms ms)"
mv "$T/a.log" "$T/a3.log"; mv "$T/b.log" "$T/b3.log"
kill "$KS_A_PID"; wait "$KS_A_PID" || true

# 4. SIGINT during a drain stops at once.
ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --drain-timeout 60s
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 60M --rate 1M --half-close \
	--timeout 60 >"$T/c4.out" 2>&1 &
ks_wait_log "$T/b.log" 'event=conn_open' 10
kill -TERM "$KS_B_PID"
ks_wait_log "$T/b.log" 'event=draining' 5
kill -INT "$KS_B_PID"
timeout 10 tail --pid="$KS_B_PID" -f /dev/null || ks_fail "B ignored SIGINT during the drain"
wait "$KS_B_PID" || ks_fail "B exited $? after SIGINT, want 0"
ks_assert_grep "$T/b.log" 'event=drain_aborted signal=SIGINT' "no drain_aborted line"
ks_pass "SIGINT during a drain stops at once"

# 5. The delay counts inside the timeout: a longer one is refused.
ks_expect_exit 2 '^ktls-sidecar: --drain-delay \(3000 ms\) is longer than --drain-timeout \(2000 ms\): the delay counts inside the timeout' \
	"$KS_BIN" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${server[@]}" --drain-timeout 2s --drain-delay 3s
ks_pass "--drain-delay longer than --drain-timeout: exit 2, with the reason"
