#!/usr/bin/env bash
# The TLS policy as a peer sees it: TLS 1.3 only by default, the three AEAD
# suites and nothing else, X25519 and P-256 only, one TLS 1.3 session ticket
# good for --session-lifetime and no early data (0-RTT), weak RSA peer keys
# refused; --tls-min-version 1.2 opens TLS 1.2 (ECDHE + AEAD), which is never
# resumed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
"$KS_PKI" issue "$T/ca" weak "$KS_CLIENT_ID" --rsa 1024
ks_echo_server "$T/echo.log" echo
log=$T/b.log
ks_sidecar "$log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 1 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
port=${KS_PORTS[0]}

# probe NAME [s_client args]: one connection with the client identity.
probe() {
	local name=$1 cert=client
	shift
	local args=()
	# s_client's own security level would refuse to even load a 1024-bit key.
	[[ $name == weak ]] && cert=weak && args=(-cipher 'DEFAULT@SECLEVEL=0')
	# s_client sends close_notify at stdin EOF: the sleep lets the echo arrive first.
	(echo ping; sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$T/ca/bundle.crt" \
		-cert "$T/ca/$cert.crt" -key "$T/ca/$cert.key" -cert_chain "$T/ca/int.crt" \
		"${args[@]}" "$@" >"$T/probe.$name" 2>&1 || true
}
opens() { ks_count "$log" 'event=conn_open'; }
# Refusals from the sidecar's counters: the log lines are rate-limited.
b_sock=$KS_CTL_SOCKET
rejects() {
	"$KS_CTL" --socket "$b_sock" status | sed -n 's/^connections .*, \([0-9]*\) refused at handshake$/\1/p'
}

for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
	probe "$suite" -ciphersuites "$suite"
	ks_wait_log "$log" "event=conn_open .*cipher=$suite" 5
done
ks_pass "all three AEAD suites negotiate"

n=$(rejects)
probe ccm -ciphersuites TLS_AES_128_CCM_SHA256
ks_wait_log "$log" 'event=handshake_rejected .*reason=protocol_error .*no shared cipher' 5
probe p384 -groups P-384
[[ $(rejects) -eq $((n + 2)) ]] || ks_fail "P-384-only client was not refused"
ks_pass "CCM suite and P-384-only key exchange refused"

probe x25519 -groups X25519
ks_wait_log "$log" 'event=conn_open .*group=x25519' 5
probe p256 -groups P-256
ks_wait_log "$log" 'event=conn_open .*group=(secp256r1|prime256v1|P-256)' 5
ks_pass "X25519 and P-256 key exchange"

probe ticket -sess_out "$T/session.pem"
grep -q ping "$T/probe.ticket" || ks_fail "no echo on the ticket probe"
[[ $(grep -c 'Post-Handshake New Session Ticket' "$T/probe.ticket") == 1 ]] ||
	ks_fail "not exactly one NewSessionTicket"
openssl sess_id -in "$T/session.pem" -text -noout >"$T/session.txt"
ks_assert_grep "$T/session.txt" 'Protocol *: TLSv1.3' "the ticket is not a TLS 1.3 one"
ks_assert_grep "$T/session.txt" 'TLS session ticket lifetime hint: 3600 ' "lifetime hint is not --session-lifetime's 1h"
ks_assert_grep "$T/session.txt" 'Max Early Data: 0$' "the ticket allows early data"
ks_pass "one TLS 1.3 session ticket, lifetime 1h, no early data"

n=$(rejects)
probe weak
ks_wait_log "$log" 'event=handshake_rejected .*reason=bad_certificate .*key too (small|weak)' 5
ks_pass "RSA-1024 client certificate refused (bad_certificate)"

# TLS 1.2 is opt-in.
ks_sidecar "$T/b12.log" --tls-min-version 1.2 --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" --workers 1
port12=${KS_PORTS[0]}
(echo ping; sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$port12" -tls1_2 -CAfile "$T/ca/bundle.crt" \
	-cert "$T/ca/client.crt" -key "$T/ca/client.key" -cert_chain "$T/ca/int.crt" >"$T/probe.12" 2>&1 || true
grep -q ping "$T/probe.12" || { cat "$T/probe.12"; ks_fail "TLS 1.2 with --tls-min-version 1.2 failed"; }
ks_assert_grep "$T/b12.log" 'event=conn_open .*tls=TLSv1.2 cipher=ECDHE-ECDSA-AES(128|256)-GCM' "TLS 1.2 suite"
ks_pass "--tls-min-version 1.2 admits TLS 1.2 with ECDHE + AES-GCM"

# TLS 1.2 resumption reuses the master secret with no fresh (EC)DHE: never.
for i in 1 2; do
	in=()
	((i == 2)) && in=(-sess_in "$T/sess12.1")
	(echo ping; sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$port12" -tls1_2 \
		-CAfile "$T/ca/bundle.crt" -cert "$T/ca/client.crt" -key "$T/ca/client.key" \
		-cert_chain "$T/ca/int.crt" -sess_out "$T/sess12.$i" "${in[@]}" >"$T/probe12.$i" 2>&1 || true
done
grep -q '^New, TLSv1.2' "$T/probe12.2" || { cat "$T/probe12.2"; ks_fail "TLS 1.2 session was resumed"; }
ks_assert_grep "$T/b12.log" 'event=conn_open .*tls=TLSv1.2 .*resumed=no' "TLS 1.2 logged as resumed"
ks_pass "TLS 1.2 is never resumed"
