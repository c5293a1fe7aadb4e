#!/usr/bin/env bash
# The control socket is a trust boundary in both directions (README,
# "Control API"):
#  1. the sidecar refuses a control directory that group or others can
#     write, that another uid owns, or that is a symlink, and binds nothing;
#  2. it never chmods the socket by path (strace: no chmod family call);
#  3. ktlsctl sends nothing to a socket served by another uid than the
#     sidecar's or root (an impostor in a directory its owner controls):
#     exit 4, the impostor reads 0 bytes, even for push-identity --key;
#  4. refused callers are answered and closed at once: a reconnect flood of
#     them holds no slot (every one of 20 allowed calls during it succeeds),
#     each refused one still gets its PERMISSION_DENIED, and the log has a
#     line a second with the count, not a line per caller.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
[[ $(id -u) == 0 ]] || ks_skip "needs root (directories and processes of another uid)"
command -v strace >/dev/null || ks_fail "strace is missing (make deps)"
NOBODY=65534
PY=/usr/bin/python3 # not a per-user shim: uid 65534 runs it too
[[ -x $PY ]] || ks_skip "no /usr/bin/python3"
T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
# uid 65534 runs a sidecar and ktlsctl below: it reads the test identity.
chmod 755 "$T" "$T/ca"
chmod 644 "$T"/ca/*.key
NOBODY_RUN=(setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups --)
as_nobody() { "${NOBODY_RUN[@]}" "$@"; }
identity=(--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt")

# start_refused DIR WHY: a sidecar with its socket in DIR must exit 1 at
# start, say WHY, and leave no socket there.
start_refused() {
	local dir=$1 why=$2 rc=0
	timeout 20 "$KS_BIN" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${identity[@]}" \
		--control-socket "$dir/control.sock" >"$T/refused.log" 2>&1 || rc=$?
	[[ $rc == 1 ]] && grep -q "event=start_failed .*$why" "$T/refused.log" ||
		{ cat "$T/refused.log"; ks_fail "a sidecar with its socket in $dir: exit $rc, want 1 saying '$why'"; }
	[[ ! -e $dir/control.sock ]] || ks_fail "a refused sidecar left a socket in $dir"
}

# 1. directories someone else could write
mkdir -m 0777 "$T/open"
start_refused "$T/open" "has mode 0777: group or others can write it"
mkdir -m 0775 "$T/group"
start_refused "$T/group" "has mode 0775"
mkdir -m 0700 "$T/theirs"
chown $NOBODY:$NOBODY "$T/theirs"
start_refused "$T/theirs" "belongs to uid $NOBODY"
mkdir -m 0700 "$T/real"
ln -s "$T/real" "$T/link"
start_refused "$T/link" "is a symlink"
[[ -z $(ls -A "$T/real") ]] || ks_fail "the symlink's target got a socket"
ks_pass "control directory refused: 0777, 0775, owned by uid $NOBODY, a symlink (exit 1, nothing bound)"

# 2. made 0700 when missing, socket 0600, no chmod by path
# (LeakSanitizer cannot run under ptrace: off for this one, in make asan.)
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
	strace -f -qq -e trace=chmod,fchmodat,fchmod -o "$T/strace.out" \
	"$KS_BIN" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${identity[@]}" \
	--control-socket "$T/new/control.sock" >"$T/strace.log" 2>&1 &
st=$!
ks_cleanup_add pkill -KILL -P "$st"
ks_wait_log "$T/strace.log" 'event=ready' 20 || { cat "$T/strace.log"; ks_fail "the sidecar under strace did not start"; }
[[ $(stat -c %a "$T/new") == 700 && $(stat -c %a "$T/new/control.sock") == 600 ]] ||
	ks_fail "directory $(stat -c %a "$T/new"), socket $(stat -c %a "$T/new/control.sock"): want 700 and 600"
"$KS_CTL" --socket "$T/new/control.sock" status >/dev/null || ks_fail "status on the new socket failed"
pkill -TERM -P "$st" # the sidecar, strace's child
wait "$st" || true
[[ ! -e $T/new/control.sock ]] || ks_fail "the socket outlived the sidecar"
grep -E 'chmod' "$T/strace.out" | grep -v 'exited\|resumed' >"$T/chmods" || true
[[ ! -s $T/chmods ]] || { cat "$T/chmods"; ks_fail "the sidecar changed a mode with chmod(2)"; }
ks_pass "socket directory made 0700, socket 0600 with no chmod call (strace), removed at exit"

# 3. an impostor: uid 65534 owns a directory and serves a 0600 socket there
mkdir -m 0700 "$T/imp"
chown $NOBODY:$NOBODY "$T/imp"
cat >"$T/impostor.py" <<'PY'
import os, socket, sys
os.umask(0o177)
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
open(sys.argv[2] + ".ready", "w").close()
got = 0
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += len(d)
    except socket.timeout:
        pass
    c.close()
    with open(sys.argv[2], "w") as f:
        f.write("%d\n" % got)
PY
ks_bg "$T/impostor.log" "${NOBODY_RUN[@]}" "$PY" "$T/impostor.py" "$T/imp/control.sock" "$T/imp/got" >/dev/null
for _ in $(seq 100); do [[ -e $T/imp/got.ready ]] && break; sleep 0.1; done
[[ -e $T/imp/got.ready ]] || ks_fail "the impostor did not start"
set +e
"$KS_CTL" --socket "$T/imp/control.sock" push-identity --cert "$T/ca/server.crt" \
	--key "$T/ca/server.key" >"$T/imp.out" 2>&1
rc=$?
set -e
[[ $rc == 4 ]] && grep -q "served by uid $NOBODY" "$T/imp.out" ||
	{ cat "$T/imp.out"; ks_fail "root's ktlsctl push-identity --key to an impostor: exit $rc, want 4"; }
sleep 0.5
[[ ! -e $T/imp/got || $(cat "$T/imp/got") == 0 ]] || ks_fail "the impostor read $(cat "$T/imp/got") bytes"
# The check is what stopped it: trusting that uid sends the request.
"$KS_CTL" --socket "$T/imp/control.sock" --sidecar-uid $NOBODY --timeout 1s status >/dev/null 2>&1 || true
for _ in $(seq 50); do (($(cat "$T/imp/got" 2>/dev/null || echo 0) > 0)) && break; sleep 0.1; done
(($(cat "$T/imp/got" 2>/dev/null || echo 0) > 0)) || ks_fail "with --sidecar-uid $NOBODY the request did not go out (the check is not what refused)"
ks_pass "ktlsctl refuses a socket served by uid $NOBODY (exit 4, 0 bytes sent, key included); --sidecar-uid $NOBODY trusts it"

# 4. a sidecar as uid 65534 that allows only its own uid; root is refused
mkdir -m 0700 "$T/ctl"
chown $NOBODY:$NOBODY "$T/ctl"
sock=$T/ctl/control.sock
ks_bg "$T/n.log" "${NOBODY_RUN[@]}" "$KS_BIN" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${identity[@]}" \
	--control-socket "$sock" --control-allow-uid $NOBODY >/dev/null
npid=$KS_BG_PID
ks_wait_log "$T/n.log" 'event=ready' 20 || ks_fail "the sidecar as uid $NOBODY did not start"
as_nobody "$KS_CTL" --socket "$sock" status >/dev/null || ks_fail "uid $NOBODY's own status failed"
set +e
"$KS_CTL" --socket "$sock" status >/dev/null 2>"$T/err"
rc=$?
set -e
[[ $rc == 4 ]] && grep -q "served by uid $NOBODY" "$T/err" ||
	{ cat "$T/err"; ks_fail "root's ktlsctl without --sidecar-uid: exit $rc, want 4 (unexpected server uid)"; }

# The flood: root reconnects as fast as it can for 6 s, keeping up to 200
# connections open; 20 allowed calls run meanwhile.
cat >"$T/flood.py" <<'PY'
import socket, sys, time
path, secs = sys.argv[1], float(sys.argv[2])
held, made, end = [], 0, time.monotonic() + secs
while time.monotonic() < end:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        made += 1
    except OSError:
        s.close()
        continue
    held.append(s)
    if len(held) > 200:
        held.pop(0).close()
print("made", made)
PY
"$PY" "$T/flood.py" "$sock" 6 >"$T/flood.out" 2>&1 &
flood=$!
sleep 1
ok=0
for i in $(seq 20); do
	as_nobody "$KS_CTL" --socket "$sock" status >/dev/null 2>>"$T/legit.err" && ok=$((ok + 1))
	sleep 0.2
done
denied=0
for i in $(seq 10); do
	set +e
	"$KS_CTL" --socket "$sock" --sidecar-uid $NOBODY status >/dev/null 2>"$T/err"
	rc=$?
	set -e
	[[ $rc == 4 ]] && grep -q PERMISSION_DENIED "$T/err" && denied=$((denied + 1))
done
wait $flood
made=$(awk '{print $2}' "$T/flood.out")
lines=$(grep -c 'event=control_denied' "$T/n.log" || true)
total=$(grep -o 'event=control_denied .*refused_total=[0-9]*' "$T/n.log" | tail -1 | sed 's/.*=//')
echo "flood: $made refused connections in 6 s; $ok/20 allowed calls answered; $denied/10 refused calls got PERMISSION_DENIED; $lines control_denied lines, the last counting $total"
((ok == 20)) || { sort "$T/legit.err" | uniq -c; ks_fail "$((20 - ok)) of 20 allowed calls failed during a flood of refused callers"; }
((denied == 10)) || ks_fail "$((10 - denied)) of 10 refused calls did not get PERMISSION_DENIED"
((made > 500)) || ks_fail "the flood made only $made connections: it did not test anything"
((lines <= 12)) || ks_fail "$lines control_denied lines for a 6 s flood: want about one a second"
((total > 500)) || ks_fail "the refusals were not counted (last refused_total=$total)"
ks_assert_grep "$T/n.log" 'event=control_denied .*suppressed=[1-9]' "no line says how many were suppressed"
ks_alive "$npid" "the sidecar died in the flood"
as_nobody "$KS_CTL" --socket "$sock" status >/dev/null || ks_fail "no status after the flood"
ks_pass "$made refused callers in 6 s: 20/20 allowed calls answered, refused ones get PERMISSION_DENIED, $lines log lines (last: refused_total=$total)"
