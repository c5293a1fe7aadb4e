#!/usr/bin/env bash
# Half-close and reset propagation through a sidecar pair.
#  1. The client shuts down writing; the server sees EOF only after the whole
#     request, then replies 8 MiB; the reply arrives whole (FIN -> close_notify
#     -> FIN, while the other direction keeps flowing).
#  2. The server app resets its connection: the client sees a reset, not a
#     clean end of stream.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
for io in uring epoll; do
	ks_echo_server "$T/srv.$io.log" eof-reply --reply-bytes 8M --seed 99 --count 1
	srv_pid=$KS_ECHO_PID
	ks_pair "$T" "$KS_ECHO_PORT" --io "$io" --workers 1
	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 3M --seed 5 --expect reply \
		--half-close --timeout 120 >"$T/cli.$io.out" 2>&1 || { cat "$T/cli.$io.out"; ks_fail "$io: client error"; }
	wait "$srv_pid" || { cat "$T/srv.$io.log"; ks_fail "$io: server error"; }
	c_sent=$(grep -o 'sent_sha256=[0-9a-f]*' "$T/cli.$io.out")
	s_recv=$(grep -o 'recv_sha256=[0-9a-f]*' "$T/srv.$io.log")
	s_sent=$(grep -o 'sent_sha256=[0-9a-f]*' "$T/srv.$io.log")
	c_recv=$(grep -o 'recv_sha256=[0-9a-f]*' "$T/cli.$io.out")
	[[ ${c_sent#sent_} == "${s_recv#recv_}" ]] || ks_fail "$io: request corrupted ($c_sent vs $s_recv)"
	[[ ${s_sent#sent_} == "${c_recv#recv_}" ]] || ks_fail "$io: reply corrupted or cut ($s_sent vs $c_recv)"
	grep -q 'recv_bytes=8388608 ' "$T/cli.$io.out" || ks_fail "$io: reply not whole"
	kill "$KS_A_PID" "$KS_B_PID"; wait "$KS_A_PID" "$KS_B_PID" || true
	mv "$T/a.log" "$T/a.$io.log"; mv "$T/b.log" "$T/b.$io.log"
	ks_pass "$io: half-close, 3 MiB request then 8 MiB reply intact"
done

# 2. reset propagation: the app accepts, reads a little, then aborts with RST.
cat >"$T/rst.py" <<'PY'
import socket, struct, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print("listening on", s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
PY
ks_py_server "$T/rst.log" "$T/rst.py"
ks_pair "$T" "$KS_PY_PORT" --workers 1
out=$(python3 - "$KS_A_PORT" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"x" * 10)
try:
    while True:
        d = s.recv(4096)
        if not d:
            print("clean-eof")
            break
except ConnectionResetError:
    print("reset")
except OSError as e:
    print("error", e)
PY
)
[[ $out == reset ]] || ks_fail "app reset arrived at the client as '$out', not a reset"
ks_wait_log "$T/b.log" 'event=conn_close .*reason=app_reset' 5
ks_wait_log "$T/a.log" 'event=conn_close .*reason=peer_reset' 5
ks_pass "app RST propagates to the client as RST"

# 3. the other way: the client resets, the app sees a reset.
cat >"$T/victim.py" <<'PY'
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print("listening on", s.getsockname()[1], flush=True)
c, _ = s.accept()
c.sendall(b"hello")
try:
    while c.recv(4096):
        pass
    print("clean-eof", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
PY
ks_py_server "$T/victim.log" "$T/victim.py" # not ks_wait_port: it serves one connection
app2=$KS_PY_PORT
mv "$T/a.log" "$T/a.rst1.log"; mv "$T/b.log" "$T/b.rst1.log"
ks_pair "$T" "$app2" --workers 1
python3 - "$KS_A_PORT" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
assert s.recv(5) == b"hello"
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
PY
ks_wait_log "$T/victim.log" 'reset|clean-eof' 10
grep -q '^reset$' "$T/victim.log" || ks_fail "client reset reached the app as '$(cat "$T/victim.log")'"
ks_pass "client RST propagates to the app as RST"

# 4. half-close the other way: the app closes its sending side first, and
#    the client can still send 2 MiB afterwards, all of which arrives.
cat >"$T/early_fin.py" <<'PY'
import hashlib, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print("listening on", s.getsockname()[1], flush=True)
c, _ = s.accept()
c.sendall(b"bye")
c.shutdown(socket.SHUT_WR)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(65536)
    if not d:
        break
    h.update(d)
    n += len(d)
print("got", n, h.hexdigest(), flush=True)
PY
ks_py_server "$T/early_fin.log" "$T/early_fin.py"
app3=$KS_PY_PORT
mv "$T/a.log" "$T/a.rst2.log"; mv "$T/b.log" "$T/b.rst2.log"
ks_pair "$T" "$app3" --workers 1
want=$(python3 - "$KS_A_PORT" <<'PY'
import hashlib, os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
got = b""
while True:
    d = s.recv(100)
    if not d:
        break
    got += d
assert got == b"bye", got
data = os.urandom(2 << 20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print("got", len(data), hashlib.sha256(data).hexdigest())
PY
)
ks_wait_log "$T/early_fin.log" '^got ' 10
[[ $(grep '^got ' "$T/early_fin.log") == "$want" ]] ||
	ks_fail "after the app's FIN the client's data did not arrive whole: app saw '$(grep '^got ' "$T/early_fin.log")', client sent '$want'"
ks_pass "app FIN first: the client's 2 MiB sent afterwards arrived whole"
