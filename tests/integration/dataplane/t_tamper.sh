#!/usr/bin/env bash
# A corrupted byte never reaches the application. A relay between sidecar A
# and sidecar B flips one bit in the TLS stream after 1 MiB. B's record layer
# (the kernel's, or OpenSSL's) must reject the record and end the connection
# with bad_record_mac; A must take that fatal alert and close both sides.
# The client checks every echoed byte: it may see a reset, never a wrong byte.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
rl=userspace
ks_kernel_tls && rl=kernel
ks_echo_server "$T/echo.log" echo
cat >"$T/flip.py" <<'PY'
import socket, sys, threading
target_port = int(sys.argv[1])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
print("listening on", s.getsockname()[1], flush=True)
def pump(src, dst, flip_after):
    seen, flipped = 0, False
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            if flip_after is not None and not flipped and seen + len(d) > flip_after:
                i = max(0, flip_after - seen)
                d = d[:i] + bytes([d[i] ^ 0x01]) + d[i + 1:]
                flipped = True
                print("flipped byte at offset", seen + i, flush=True)
            seen += len(d)
            dst.sendall(d)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        # One side reset: a middlebox passes that on (both ways), it does
        # not leave the other side hanging.
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
while True:
    c, _ = s.accept()
    u = socket.create_connection(("127.0.0.1", target_port))
    threading.Thread(target=pump, args=(c, u, 1 << 20), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, None), daemon=True).start()
PY
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 1 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
b=${KS_PORTS[0]}
ks_py_server "$T/flip.log" "$T/flip.py" "$b"
relay=$KS_PY_PORT
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$relay,id=$KS_SERVER_ID" --workers 1 \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
a=${KS_PORTS[0]}

set +e
"$KS_STREAM" client --connect "127.0.0.1:$a" --bytes 8M --half-close --timeout 120 >"$T/cli.out" 2>&1
rc=$?
set -e
cat "$T/cli.out"
ks_assert_grep "$T/flip.log" 'flipped byte' "the relay did not corrupt anything"
[[ $rc -ne 0 ]] || ks_fail "the transfer 'succeeded' across a corrupted record"
if grep -q 'mismatch' "$T/cli.out"; then
	ks_fail "a corrupted byte reached the application"
fi
ks_assert_grep "$T/b.log" "event=conn_open .*record_layer=$rl" "B not on the $rl path"
ks_wait_log "$T/b.log" 'event=conn_close .*reason=tls_error' 10
# (the relay may cut A's side before B's alert gets through: unclean_eof)
ks_wait_log "$T/a.log" 'event=conn_close .*reason=(tls_error|peer_alert|peer_reset|unclean_eof)' 10
ks_alive "$KS_SIDECAR_PID" "sidecar A died"
ks_pass "$rl record layer: the corrupted record was rejected, no wrong byte reached the app ($(grep -o 'status=[^ ]*' "$T/cli.out"))"
