#!/usr/bin/env bash
# Real peers against the record layer this kernel gives us (kernel TLS in the
# kTLS VM, userspace elsewhere):
#  - curl and openssl s_client, with client certificates, against an inbound
#    sidecar;
#  - an outbound sidecar against openssl s_server, which sends two session
#    tickets after the handshake: on the kernel path they arrive as control
#    records and must be read and dropped, not hang the connection;
#  - a KeyUpdate from either peer, also one that asks for ours in return:
#    userspace OpenSSL follows it; on the kernel path of 6.14+ the sidecar
#    gives the kernel the next key in each direction and the data keeps
#    flowing (the peer can only read our bytes after its request if our
#    transmit key moved too); before 6.14 the kernel cannot, so the
#    connection ends with a logged reason and no byte after the KeyUpdate
#    reaches the app.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
kernel=no rekey=no
ks_kernel_tls && kernel=yes
ks_kernel_rekey && rekey=yes
rl=$([[ $kernel == yes ]] && echo kernel || echo userspace)
echo "record layer under test: $rl (kernel rekey: $rekey)"
# follows: the connection survives KeyUpdates (OpenSSL, or a kernel that rekeys)
follows=$([[ $kernel == no || $rekey == yes ]] && echo yes || echo no)

# 1. curl -> inbound -> http.server
mkdir "$T/www"
head -c 8M /dev/urandom >"$T/www/blob"
ks_http_server "$T/http.log" "$T/www"
app=$KS_HTTP_PORT
ks_sidecar "$T/in.log" --inbound "127.0.0.1:0=127.0.0.1:$app" --workers 1 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
in_port=${KS_PORTS[0]}
curl -sS --fail --insecure --cert "$T/ca/client.crt" --key "$T/ca/client.key" \
	-o "$T/got" "https://127.0.0.1:$in_port/blob"
cmp -s "$T/got" "$T/www/blob" || ks_fail "curl download corrupted"
ks_assert_grep "$T/in.log" "event=conn_open .*peer_id=$KS_CLIENT_ID .*record_layer=$rl" "curl connection not on the $rl path"
ks_pass "curl with a client certificate: 8 MiB intact ($rl)"

# A line-oriented echo app for the interactive peers.
ks_echo_server "$T/echo.log" echo
echo_port=$KS_ECHO_PORT
ks_sidecar "$T/in2.log" --inbound "127.0.0.1:0=127.0.0.1:$echo_port" --workers 1 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
in2=${KS_PORTS[0]}

# feed FIFO LINES...: writes each line to FIFO with a pause between them;
# stops quietly when the reader has gone (the kernel path ends the
# connection at the KeyUpdate, and s_client exits).
feed() {
	(
		trap '' PIPE
		exec 7>"$1"
		shift
		for l in "$@"; do
			printf '%s\n' "$l" >&7 2>/dev/null || break
			sleep 1
		done
		sleep 1
	)
}

# 2. s_client -> inbound: two lines echoed, then a KeyUpdate ('k'), a line,
# a KeyUpdate that asks for ours ('K'), and a line.
mkfifo "$T/sc.in"
rx0=$(ks_tls_stat TlsRxRekeyOk) tx0=$(ks_tls_stat TlsTxRekeyOk)
timeout 60 openssl s_client -connect "127.0.0.1:$in2" -CAfile "$T/ca/bundle.crt" \
	-cert "$T/ca/client.crt" -key "$T/ca/client.key" -cert_chain "$T/ca/int.crt" \
	<"$T/sc.in" >"$T/sc.out" 2>&1 &
sc=$!
feed "$T/sc.in" "alpha-line" "beta-line" "k" "after-keyupdate" "K" "after-requested-update"
wait "$sc" || true
grep -q 'alpha-line$' "$T/sc.out" && grep -q 'beta-line$' "$T/sc.out" ||
	{ cat "$T/sc.out"; ks_fail "s_client: lines before the KeyUpdate were not echoed"; }
grep -q 'KEYUPDATE' "$T/sc.out" || { cat "$T/sc.out"; ks_fail "s_client did not send a KeyUpdate"; }
if [[ $follows == no ]]; then
	ks_wait_log "$T/in2.log" 'event=conn_close .*reason=key_update_unsupported' 10
	grep -q 'after-keyupdate' "$T/sc.out" && ks_fail "data after the KeyUpdate came back through a dead kTLS receive key"
	ks_pass "s_client KeyUpdate on the kernel path ($(uname -r)): connection ended with reason key_update_unsupported, nothing corrupted"
else
	grep -q 'after-keyupdate$' "$T/sc.out" || { cat "$T/sc.out"; ks_fail "$rl path did not follow the KeyUpdate"; }
	grep -q 'after-requested-update$' "$T/sc.out" ||
		{ cat "$T/sc.out"; ks_fail "$rl path: no data after a KeyUpdate that asked for ours (our new transmit key is wrong or missing)"; }
	if [[ $kernel == yes ]]; then
		ks_assert_grep "$T/in2.log" 'event=tls_key_update .*direction=rx update_requested=0' "no receive rekey logged"
		ks_assert_grep "$T/in2.log" 'event=tls_key_update .*direction=rx update_requested=1' "no requested update logged"
		ks_assert_grep "$T/in2.log" 'event=tls_key_update .*direction=tx' "our KeyUpdate was not sent"
		[[ $(ks_tls_stat TlsRxRekeyOk) -ge $((rx0 + 2)) && $(ks_tls_stat TlsTxRekeyOk) -ge $((tx0 + 1)) ]] ||
			ks_fail "tls_stat: TlsRxRekeyOk $rx0 -> $(ks_tls_stat TlsRxRekeyOk), TlsTxRekeyOk $tx0 -> $(ks_tls_stat TlsTxRekeyOk)"
		grep -q 'event=conn_close .*reason=key_update_unsupported' "$T/in2.log" && ks_fail "a KeyUpdate ended the connection on a kernel that rekeys"
	fi
	ks_pass "s_client KeyUpdate, then one asking for ours, on the $rl path: followed, data kept flowing"
fi
ks_alive "$KS_SIDECAR_PID" "the sidecar died on a KeyUpdate"

# 3. outbound -> s_server (tickets, then a KeyUpdate from the server side)
mkfifo "$T/ss.in"
exec 8<>"$T/ss.in" # keep the FIFO open so s_server's stdin does not hit EOF
# (ks_bg gives its command /dev/null as stdin: exec the FIFO in explicitly,
# which is why this is not ks_s_server; the port is still s_server's choice)
ks_bg "$T/ss.log" bash -c 'exec openssl s_server -accept 127.0.0.1:0 -Verify 2 -verify_return_error \
	-CAfile "$1/ca/bundle.crt" -cert "$1/ca/server.crt" -key "$1/ca/server.key" \
	-cert_chain "$1/ca/int.crt" -naccept 1 <"$1/ss.in"' _ "$T" >/dev/null
ks_wait_log "$T/ss.log" '^ACCEPT 127\.0\.0\.1:[0-9]+'
srv=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/ss.log" | head -1)
# Without resumption the sidecar does not wait for the tickets (as it does
# to keep them, t_ktls_resume): they reach the kernel as control records.
ks_sidecar "$T/out.log" --outbound "127.0.0.1:0=127.0.0.1:$srv,id=$KS_SERVER_ID" --workers 1 \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" \
	--session-resumption off
out=${KS_PORTS[0]}
python3 - "$out" "$T/ss.in" >"$T/app.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(b"hello-server\n")
time.sleep(1.5)
with open(sys.argv[2], "w") as f:       # s_server's stdin: a line, then a KeyUpdate, then a line
    f.write("from-server-1\n"); f.flush(); time.sleep(1)
    f.write("k\n"); f.flush(); time.sleep(1)
    f.write("from-server-2\n"); f.flush(); time.sleep(1.5)
s.settimeout(3)
got = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
except (socket.timeout, ConnectionResetError) as e:
    got += ("<%s>" % type(e).__name__).encode()
print(got.decode(errors="replace"))
PY
app_pid=$!
wait "$app_pid" || true
grep -q 'hello-server' "$T/ss.log" || ks_fail "s_server did not get the app's line"
grep -q 'from-server-1' "$T/app.out" || { cat "$T/app.out"; ks_fail "the app did not get s_server's first line"; }
ks_assert_grep "$T/out.log" "event=conn_open .*peer_id=$KS_SERVER_ID .*record_layer=$rl" "outbound not on the $rl path"
if [[ $follows == no ]]; then
	ks_wait_log "$T/out.log" 'event=conn_close .*reason=key_update_unsupported' 10
	grep -q 'from-server-2' "$T/app.out" && ks_fail "data after the server's KeyUpdate reached the app"
	ks_assert_grep "$T/out.log" 'event=conn_close .*userspace_bytes=[1-9]' "session tickets were not read as control records"
	ks_pass "s_server: tickets dropped as control records, KeyUpdate ends the connection cleanly"
else
	grep -q 'from-server-2' "$T/app.out" || { cat "$T/app.out"; ks_fail "$rl path lost data after the server's KeyUpdate"; }
	if [[ $kernel == yes ]]; then
		ks_assert_grep "$T/out.log" 'event=tls_key_update .*direction=rx update_requested=0' "no receive rekey logged"
		ks_wait_log "$T/out.log" 'event=conn_close .*userspace_bytes=[1-9]' 10
		ks_pass "s_server: tickets dropped as control records, KeyUpdate followed by a kernel rekey"
	else
		ks_pass "s_server: tickets and KeyUpdate handled by OpenSSL in userspace"
	fi
fi
exec 8>&-

# 4. Our own KeyUpdate before the AEAD usage limit (RFC 8446 §5.5), with the
# limit lowered to 64 records: 8 MiB each way is at least 512 records, so
# each sidecar rekeys its transmit direction several times (a bound: the
# last records of a burst may be counted only after it), and the
# other follows on receive. The hash of the stream proves no byte was lost
# or sealed under a key the peer did not have.
ks_echo_server "$T/echo4.log" echo
ks_sidecar "$T/b4.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 1 \
	--tls-key-update-records 64 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
b4=${KS_PORTS[0]}
ks_sidecar "$T/a4.log" --outbound "127.0.0.1:0=127.0.0.1:$b4,id=$KS_SERVER_ID" --workers 1 \
	--tls-key-update-records 64 \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
a4=${KS_PORTS[0]}
"$KS_STREAM" client --connect "127.0.0.1:$a4" --bytes 8M --half-close --timeout 300 \
	>"$T/stream4.out" 2>&1 || { cat "$T/stream4.out"; ks_fail "the stream across our own KeyUpdates failed"; }
if [[ $kernel == yes && $rekey == yes ]]; then
	for s in a4 b4; do
		n=$(ks_count "$T/$s.log" 'event=tls_key_update .*direction=tx .*reason=aead_limit')
		[[ $n -ge 4 ]] || ks_fail "$s sent $n KeyUpdates at the lowered limit, want 4 or more"
		ks_wait_log "$T/$s.log" 'event=conn_close .*reason=done' 10
		ks_assert_grep "$T/$s.log" 'event=tls_key_update .*direction=rx' "$s did not follow the peer's KeyUpdates"
	done
	ks_pass "kernel path: our KeyUpdate before the AEAD limit (lowered to 64 records), both ways, 8 MiB intact"
else
	ks_assert_not_grep "$T/a4.log" 'reason=aead_limit' "a KeyUpdate was sent where the kernel cannot rekey"
	ks_pass "$rl path (kernel rekey: $rekey): no KeyUpdate of ours, 8 MiB intact"
fi
