#!/usr/bin/env bash
# Outbound: the sidecar originates mTLS to a real `openssl s_server` that
# requires and verifies a client certificate (-Verify), and checks the
# server's SPIFFE ID. A server with the wrong ID, or from a foreign CA, is
# refused before any application byte is sent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
"$KS_PKI" ca "$T/foreign"
"$KS_PKI" issue "$T/foreign" server "$KS_SERVER_ID"

# s_server NAME DIR: -rev answers each line reversed; -Verify 1 demands
# a client certificate and fails the handshake without one. It listens on a
# port of its own choosing: KS_S_SERVER_PORT.
s_server() {
	local name=$1 dir=$2
	ks_s_server "$T/s_server.$name.log" -rev \
		-Verify 2 -verify_return_error -CAfile "$T/ca/bundle.crt" \
		-cert "$dir/server.crt" -key "$dir/server.key" -cert_chain "$dir/int.crt"
}

# talk PORT LINE: sends LINE through the outbound listener, prints the answer.
talk() {
	python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
try:
    while not buf.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        buf += d
except OSError as e:
    buf += ("<%s>" % e).encode()
print(buf.decode(errors="replace").strip())
PY
}

s_server good "$T/ca"
good=$KS_S_SERVER_PORT
log=$T/sidecar.log
ks_sidecar "$log" --cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" \
	--outbound "127.0.0.1:0=127.0.0.1:$good,id=$KS_SERVER_ID" \
	--outbound "127.0.0.1:0=127.0.0.1:$good,id=spiffe://example.org/ns/b/sa/other" \
	--outbound "127.0.0.1:0=127.0.0.1:$good"
out1=${KS_PORTS[0]} out2=${KS_PORTS[1]} out3=${KS_PORTS[2]}

# 1. the right server: the line comes back reversed
ans=$(talk "$out1" "hello sidecar")
[[ $ans == "racedis olleh" ]] || ks_fail "expected reversed line, got '$ans'"
ks_assert_grep "$log" "event=conn_open .*dir=outbound .*peer_id=$KS_SERVER_ID .*tls=TLSv1.3" \
	"outbound connection not logged with the server ID"
# s_server logs the client certificate it verified
ks_assert_grep "$T/s_server.good.log" 'depth=0.*client|verify return:1' "s_server did not verify our certificate"
ks_pass "outbound to s_server -Verify, server ID checked"

# 2. no id= given: any ID in our own trust domain is accepted
ans=$(talk "$out3" "abc")
[[ $ans == "cba" ]] || ks_fail "trust-domain default: expected 'cba', got '$ans'"
ks_pass "default server check: own trust domain"

# 3. wrong server ID: refused, nothing reaches the server
ans=$(talk "$out2" "secret")
[[ $ans != *terces* ]] || ks_fail "data went to a server with the wrong ID"
ks_wait_log "$log" "event=handshake_rejected .*dir=outbound .*peer_id=$KS_SERVER_ID reason=server_id_mismatch" 5
ks_pass "server_id_mismatch"

# 4. a server from a foreign CA
s_server foreign "$T/foreign"
bad=$KS_S_SERVER_PORT
log4=$T/sidecar4.log
ks_sidecar "$log4" --cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" \
	--outbound "127.0.0.1:0=127.0.0.1:$bad,id=$KS_SERVER_ID"
out4=${KS_PORTS[0]}
ans=$(talk "$out4" "secret")
[[ $ans != *terces* ]] || ks_fail "data went to a server from a foreign CA"
ks_wait_log "$log4" "event=handshake_rejected .*dir=outbound .*reason=unknown_ca" 5
ks_pass "foreign server CA: unknown_ca"

# 5. remote not listening: a clear upstream error, the app's connection closed
ks_closed_port
dead=$KS_CLOSED_PORT
log5=$T/sidecar5.log
ks_sidecar "$log5" --cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" \
	--outbound "127.0.0.1:0=127.0.0.1:$dead"
out5=${KS_PORTS[0]}
talk "$out5" "x" >/dev/null
ks_wait_log "$log5" "event=handshake_rejected .*reason=upstream_connect_failed .*Connection refused" 5
ks_pass "remote down: upstream_connect_failed"
