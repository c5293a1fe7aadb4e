#!/usr/bin/env bash
# ktlsctl wait-ready, the chart's shell-free postStart hook, against a real
# sidecar's admin endpoint (--admin 127.0.0.1:0, the port read from its log):
#  1. usage: unknown flag, missing value, bad durations, port 0, no port:
#     exit 2 with the reason; --help exit 0 and names every flag;
#  2. nothing listening: exit 1 within --timeout, naming the connect error;
#  3. a sidecar without an identity: /ready is 503, so exit 1, quoting the
#     sidecar's reason;
#  4. a wait-ready started before the identity is still waiting when the
#     identity is pushed, and then exits 0 (200);
#  5. a draining sidecar (SIGTERM, still listening for --drain-delay):
#     exit 1 "503 not ready: draining";
#  6. a server that accepts and never answers, one that answers something
#     that is not HTTP, one with a 4-digit status: exit 1, each saying so;
#     a bare "HTTP/1.1 200" with nothing else is ready.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo

# --- 1. usage
"$KS_CTL" wait-ready --help >"$T/help" || ks_fail "wait-ready --help did not exit 0"
for f in --admin --timeout --interval 'Exit status'; do
	grep -q -- "$f" "$T/help" || ks_fail "wait-ready --help does not mention $f"
done
# (Through a file: grep -q would close the pipe early, and under pipefail
# ktlsctl's SIGPIPE would fail the check.)
"$KS_CTL" --help >"$T/ctl-help" || ks_fail "ktlsctl --help did not exit 0"
grep -q 'wait-ready \[--admin HOST:PORT\]' "$T/ctl-help" || ks_fail "ktlsctl --help does not list wait-ready"
ks_expect_exit 2 "wait-ready: unknown argument '--bogus'" "$KS_CTL" wait-ready --bogus
ks_expect_exit 2 "wait-ready: --timeout needs a value" "$KS_CTL" wait-ready --timeout
ks_expect_exit 2 "--timeout 'soon': expected a duration" "$KS_CTL" wait-ready --timeout soon
ks_expect_exit 2 "--timeout '0': expected a duration" "$KS_CTL" wait-ready --timeout 0
ks_expect_exit 2 "--interval '0': expected a duration" "$KS_CTL" wait-ready --interval 0
ks_expect_exit 2 "--admin '127.0.0.1:0': expected HOST:PORT with a port from 1" \
	"$KS_CTL" wait-ready --admin 127.0.0.1:0
ks_expect_exit 2 "--admin '127.0.0.1': expected HOST:PORT" "$KS_CTL" wait-ready --admin 127.0.0.1
ks_expect_exit 2 "Try 'ktlsctl wait-ready --help'" "$KS_CTL" wait-ready extra
ks_pass "usage: 8 bad invocations exit 2 with the reason; --help names every flag"

# --- 2. nothing listening
ks_closed_port
ks_expect_exit 1 "not ready after 1s \([0-9]+ tries\): 127.0.0.1:$KS_CLOSED_PORT: Connection refused" \
	"$KS_CTL" wait-ready --admin "127.0.0.1:$KS_CLOSED_PORT" --timeout 1s --interval 200ms
ks_pass "nothing listening: exit 1, 'Connection refused'"

# --- 3. a sidecar without an identity: 503
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --admin 127.0.0.1:0 \
	--drain-delay 3s --drain-timeout 5s
B_PID=$KS_SIDECAR_PID B_SOCK=$KS_CTL_SOCKET
B_ADMIN=$(ks_admin_port "$T/b.log")
[[ -n $B_ADMIN ]] || ks_fail "no event=admin line with the port in b.log"
ks_expect_exit 1 "not ready after 1s \([0-9]+ tries\): 503 not ready: no identity yet" \
	"$KS_CTL" wait-ready --admin "127.0.0.1:$B_ADMIN" --timeout 1s --interval 100ms
ks_pass "no identity: exit 1, '503 not ready: no identity yet'"

# --- 4. waiting, then the identity arrives
ks_bg "$T/wait.log" "$KS_CTL" wait-ready --admin "localhost:$B_ADMIN" --timeout 30s --interval 100ms \
	>/dev/null
W_PID=$KS_BG_PID
# Some tries are answered 503 (step 3 showed it) before the identity is pushed.
sleep 0.5
ks_alive "$W_PID" "wait-ready exited before the identity was pushed: $(cat "$T/wait.log")"
"$KS_CTL" --socket "$B_SOCK" push-identity --cert "$T/ca/server.crt" --key "$T/ca/server.key" \
	--bundle "$T/ca/bundle.crt" >"$T/push.out" 2>&1 || { cat "$T/push.out"; ks_fail "push-identity failed"; }
rc=0
timeout 15 tail --pid="$W_PID" -f /dev/null || ks_fail "wait-ready did not exit after the identity arrived"
wait "$W_PID" || rc=$?
[[ $rc == 0 ]] || ks_fail "wait-ready exited $rc after the identity arrived: $(cat "$T/wait.log")"
ks_assert_grep "$T/wait.log" '^ready after [0-9.]+s \([0-9]+ tries\): 200 ' "wait-ready's success line"
ks_pass "waiting: still polling while /ready is 503, exit 0 once the identity arrives ($(cat "$T/wait.log"))"

# --- 5. draining: still listening, 503 draining
kill -TERM "$B_PID"
ks_wait_log "$T/b.log" 'event=draining' 5
ks_expect_exit 1 "not ready after 500ms \([0-9]+ tries\): 503 not ready: draining" \
	"$KS_CTL" wait-ready --admin "127.0.0.1:$B_ADMIN" --timeout 500ms --interval 100ms
ks_pass "draining: exit 1, '503 not ready: draining'"

# --- 6. servers that do not answer /ready as HTTP
cat >"$T/silent.py" <<'EOF'
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)  # the kernel completes the handshakes; nobody ever answers
print("listening on %d" % s.getsockname()[1], flush=True)
time.sleep(3600)
EOF
ks_py_server "$T/silent.log" "$T/silent.py"
ks_expect_exit 1 "not ready after 1s \(1 try\): GET /ready: no complete answer after 0 bytes" \
	"$KS_CTL" wait-ready --admin "127.0.0.1:$KS_PY_PORT" --timeout 1s
cat >"$T/answer.py" <<'EOF'
import socket, sys
answer = sys.argv[1].encode().decode("unicode_escape").encode("latin-1")
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print("listening on %d" % s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(answer)
    c.close()
EOF
# answer ANSWER: a server that answers every request with ANSWER.
answer() { ks_py_server "$T/answer.$RANDOM.log" "$T/answer.py" "$1"; }
answer 'SSH-2.0-OpenSSH_9.2\r\n'
ks_expect_exit 1 "not ready after 300ms \([0-9]+ tr[a-z]+\): GET /ready: not an HTTP answer: 'SSH-2.0-OpenSSH_9.2'" \
	"$KS_CTL" wait-ready --admin "127.0.0.1:$KS_PY_PORT" --timeout 300ms --interval 100ms
answer 'HTTP/1.1 2000 OK\r\n\r\n'
ks_expect_exit 1 "GET /ready: not an HTTP answer: 'HTTP/1.1 2000 OK'" \
	"$KS_CTL" wait-ready --admin "127.0.0.1:$KS_PY_PORT" --timeout 300ms --interval 100ms
# The shortest 200 there is: no reason phrase, no headers, no body.
answer 'HTTP/1.1 200\r\n\r\n'
"$KS_CTL" wait-ready --admin "127.0.0.1:$KS_PY_PORT" --timeout 5s >"$T/min.out" 2>&1 ||
	{ cat "$T/min.out"; ks_fail "wait-ready refused a bare 'HTTP/1.1 200'"; }
ks_pass "a silent server, a non-HTTP one and a 4-digit status: exit 1, each named; a bare 'HTTP/1.1 200': exit 0"
