#!/usr/bin/env bash
# The control API against the real binaries: ktlsctl status matches the
# identity and bundle on disk and the traffic that went through; the socket
# is 0600 in a 0700 directory; a uid that is not allowed, an oversized frame
# and garbage bytes get their error answers while forwarding goes on; a
# stale socket is replaced and a live one is not taken over; ktlsctl's own
# errors have their exit codes; ktlsctl drain drains like SIGTERM.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo

# raw CODE: sends one framed payload (hex) on the control socket with a
# python client and prints the answer's code (a Response field 2 varint).
raw() {
	python3 - "$KS_CTL_SOCKET" "$1" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
hdr = b""
while len(hdr) < 4:
    d = s.recv(4 - len(hdr))
    if not d:
        sys.exit("closed before an answer")
    hdr += d
n = struct.unpack(">I", hdr)[0]
body = b""
while len(body) < n:
    body += s.recv(n - len(body))
code = 0
i = 0
while i < len(body):                    # walk the top-level fields
    tag = body[i]; i += 1
    field, wt = tag >> 3, tag & 7
    if wt == 0:
        v = 0; shift = 0
        while True:
            b = body[i]; i += 1
            v |= (b & 0x7f) << shift; shift += 7
            if b < 0x80: break
        if field == 2: code = v
    elif wt == 2:
        ln = body[i]; i += 1 + ln       # short fields only here
    else:
        sys.exit("unexpected wire type")
print(code)
# the server closes after a final answer, and only then
s.settimeout(0.5)
try:
    print("closed" if s.recv(1) == b"" else "data")
except socket.timeout:
    print("open")
PY
}

ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --control-idle-timeout 2s
ctl_b=$(sed -n 's/.*event=control_api socket=\([^ ]*\).*/\1/p' "$T/b.log")
[[ $KS_CTL_SOCKET == "$T"/a.*.ctl.sock && -S $ctl_b ]] || ks_fail "unexpected control sockets $KS_CTL_SOCKET $ctl_b"

# 1. socket and directory modes
[[ $(stat -c %a "$KS_CTL_SOCKET") == 600 ]] || ks_fail "socket mode $(stat -c %a "$KS_CTL_SOCKET"), want 600"
ks_assert_grep "$T/a.log" "event=control_api socket=$KS_CTL_SOCKET" "no control_api line"
ks_pass "control socket created 0600"

# 2. status reflects the identity, the bundle and real traffic
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 1M --half-close --timeout 60 >/dev/null
ks_wait_log "$T/a.log" 'event=conn_close' 10
"$KS_CTL" --socket "$KS_CTL_SOCKET" status >"$T/status.a" || ks_fail "ktlsctl status exited $?"
serial=$(sed -n 's/.*event=identity_loaded .*serial=\([0-9A-F]*\).*/\1/p' "$T/a.log")
fp=$(openssl x509 -in "$T/ca/bundle.crt" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f)
grep -q "^identity  *$KS_CLIENT_ID\$" "$T/status.a" || { cat "$T/status.a"; ks_fail "status: wrong identity"; }
grep -q "^serial  *$serial\$" "$T/status.a" || { cat "$T/status.a"; ks_fail "status: serial is not $serial"; }
grep -q "sha256 $fp" "$T/status.a" || { cat "$T/status.a"; ks_fail "status: bundle fingerprint is not $fp"; }
grep -Eq "^(userspace|kernel) path  *1 closed, 2097152 bytes" "$T/status.a" ||
	{ cat "$T/status.a"; ks_fail "status: the 1 MiB echo is not counted"; }
grep -q "^state  *serving" "$T/status.a" || ks_fail "status: not serving"
ks_pass "ktlsctl status: identity, serial, bundle fingerprint and counters match"

# 3. hostile and broken callers get answers and change nothing
[[ $(raw "00200000" | tr '\n' ' ') == "4 closed " ]] ||
	ks_fail "a 2 MiB frame header was not answered FRAME_TOO_LARGE, then closed"
[[ $(raw "00000004deadbeef" | tr '\n' ' ') == "1 open " ]] ||
	ks_fail "garbage was not answered INVALID_ARGUMENT on a connection that stays open"
[[ $(raw "0000000408079806" | tr '\n' ' ') == "1 open " ]] || ks_fail "a truncated unknown field was not INVALID_ARGUMENT"
ks_assert_grep "$T/a.log" 'event=control_frame_too_large .*bytes=2097152' "oversized frame not logged"
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 1M --half-close --timeout 60 >/dev/null ||
	ks_fail "forwarding broke after bad control frames"
ks_alive "$KS_A_PID" "the sidecar died on a bad control frame"
ks_pass "oversized frame, garbage and a truncated field: error answers, sidecar unharmed"

# 3b. a client that connects and says nothing loses its slot
python3 - "$KS_CTL_SOCKET" <<'PY' || ks_fail "an idle control client was not closed"
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(10)
t = time.monotonic()
if s.recv(1) != b"":
    sys.exit("idle client got data instead of a close")
if not 1.5 <= time.monotonic() - t <= 8:
    sys.exit(f"closed after {time.monotonic() - t:.1f} s, want about 2 s")
PY
ks_assert_grep "$T/a.log" 'event=control_idle_closed .*idle_ms=2000' "idle close not logged"
"$KS_CTL" --socket "$KS_CTL_SOCKET" status >/dev/null || ks_fail "status failed after an idle close"
ks_pass "an idle control client is closed after --control-idle-timeout (2 s), with a log line"

# 4. ktlsctl's own errors
set +e
"$KS_CTL" >/dev/null 2>&1; [[ $? == 2 ]] || ks_fail "no command: want exit 2"
"$KS_CTL" --socket "$KS_CTL_SOCKET" frobnicate >/dev/null 2>&1; [[ $? == 2 ]] || ks_fail "unknown command: want exit 2"
"$KS_CTL" --socket "$T/nonexistent.sock" status 2>"$T/err"; [[ $? == 3 ]] || ks_fail "missing socket: want exit 3"
"$KS_CTL" --help >"$T/help.out"; grep -q "^  status" "$T/help.out" || ks_fail "--help lists no status command"
chmod 0666 "$KS_CTL_SOCKET"
"$KS_CTL" --socket "$KS_CTL_SOCKET" status >/dev/null 2>"$T/err"; rc=$?
chmod 0600 "$KS_CTL_SOCKET"
set -e
[[ $rc == 3 ]] && grep -q "0666" "$T/err" || { cat "$T/err"; ks_fail "ktlsctl used a 0666 socket (exit $rc)"; }
ks_pass "ktlsctl: usage errors exit 2, unreachable or unsafe socket exits 3"

# restart_b SIGNAL SAVE-LOG [ARGS...]: stops B with SIGNAL, keeps its log,
# starts a new B with ARGS (it gets a fresh control socket unless ARGS name one).
# The new B listens on the port the first one chose (ks_pair, port 0): the
# port is known to be ours, and A keeps pointing at it.
restart_b() {
	local sig=$1 keep=$2
	shift 2
	kill "-$sig" "$KS_B_PID"
	wait "$KS_B_PID" 2>/dev/null || true
	mv "$T/b.log" "$T/$keep"
	ks_sidecar "$T/b.log" --inbound "127.0.0.1:$KS_B_PORT=127.0.0.1:$KS_ECHO_PORT" \
		--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" "$@"
	KS_B_PID=$KS_SIDECAR_PID
}

# 5. a caller whose uid is not on the list (root here, list = 4242)
restart_b TERM b1.log --control-allow-uid 4242
[[ ! -e $ctl_b ]] || ks_fail "B left its control socket behind"
set +e
"$KS_CTL" --socket "$KS_CTL_SOCKET" status >/dev/null 2>"$T/err"; rc=$?
set -e
[[ $rc == 4 ]] && grep -q "PERMISSION_DENIED" "$T/err" || { cat "$T/err"; ks_fail "a uid not allowed got exit $rc"; }
ks_assert_grep "$T/b.log" "event=control_denied uid=$(id -u)" "denial not logged"
ks_pass "uid not in --control-allow-uid: PERMISSION_DENIED, exit 4"

# 6. a live socket is not taken over; a stale one is replaced
restart_b TERM b2.log --control-socket "$T/fixed.sock"
KS_CTL_SOCKET=$T/fixed.sock
set +e
# (port 0: it must fail on the control socket; any port it takes is its own)
timeout 20 "$KS_BIN" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" \
	--control-socket "$KS_CTL_SOCKET" >"$T/dup.log" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] && grep -q 'event=start_failed .*in use' "$T/dup.log" ||
	{ cat "$T/dup.log"; ks_fail "a second sidecar took over a live control socket (exit $rc)"; }
restart_b KILL b3.log --control-socket "$T/fixed.sock"
KS_CTL_SOCKET=$T/fixed.sock
grep -q 'event=control_api socket='"$T/fixed.sock" "$T/b.log" || ks_fail "the stale socket was not taken"
"$KS_CTL" --socket "$KS_CTL_SOCKET" status >/dev/null || ks_fail "no status after replacing a stale socket"
ks_pass "live control socket refused to a second sidecar; stale socket replaced"

# 7. ktlsctl drain: like SIGTERM (new connections refused, open stream finishes, exit 0)
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 8M --rate 4M --half-close \
	--timeout 60 >"$T/c.out" 2>&1 &
c=$!
ks_wait_log "$T/b.log" 'event=conn_open' 10
"$KS_CTL" --socket "$KS_CTL_SOCKET" drain --timeout 20s >"$T/drain.out" || ks_fail "ktlsctl drain exited $?"
ks_wait_log "$T/b.log" 'event=draining .*timeout_ms=20000' 5
wait "$c" || { cat "$T/c.out"; ks_fail "the open stream did not survive a control drain"; }
wait "$KS_B_PID" || ks_fail "B exited $? after a control drain, want 0"
ks_assert_grep "$T/b.log" 'event=drain_requested source=control timeout_ms=20000' "no drain_requested line"
[[ ! -e $KS_CTL_SOCKET ]] || ks_fail "the control socket outlived the sidecar"
ks_pass "ktlsctl drain: open stream finished, exit 0, socket removed"

# 8. GetStatus while workers leave: during a drain, idle workers tear their
# event loops down while the control thread still answers. Status must not
# read a worker's loop then (make tsan runs this: a read of wk->loop would be
# a data race with the teardown). One slow stream keeps the drain going on
# one of 8 workers; ktlsctl status runs throughout.
ks_sidecar "$T/b.log" --inbound "127.0.0.1:$KS_B_PORT=127.0.0.1:$KS_ECHO_PORT" --workers 8 \
	--drain-timeout 3s --cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
KS_B_PID=$KS_SIDECAR_PID
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 8M --rate 2M --half-close \
	--timeout 60 >"$T/c8.out" 2>&1 &
c=$!
ks_wait_log "$T/b.log" 'event=conn_open' 10
kill -TERM "$KS_B_PID"
ks_wait_log "$T/b.log" 'event=draining' 5
answered=0 draining=0
while _ks_alive "$KS_B_PID"; do
	if "$KS_CTL" --socket "$KS_CTL_SOCKET" status >"$T/st8.out" 2>/dev/null; then
		answered=$((answered + 1))
		grep -q 'state  *draining' "$T/st8.out" && draining=$((draining + 1))
	fi
	sleep 0.02
done
wait "$KS_B_PID" || ks_fail "B exited $? after draining, want 0"
wait "$c" || true
((draining > 0)) || ks_fail "no status answered while B drained ($answered answered in all)"
ks_pass "status answered $draining times while B's workers drained and left"
