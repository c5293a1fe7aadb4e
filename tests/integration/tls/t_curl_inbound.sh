#!/usr/bin/env bash
# curl with a client certificate -> inbound sidecar -> a plaintext HTTP
# backend (python's http.server). A 32 MiB download arrives intact, the
# sidecar logs the client's SPIFFE ID, and RSA-2048 client certificates work
# as well as ECDSA P-256. curl cannot check SPIFFE IDs, so it pins the
# sidecar's public key instead of trusting a hostname.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
"$KS_PKI" issue "$T/ca" rsa spiffe://example.org/ns/a/sa/rsa-client --rsa 2048
mkdir "$T/www"
head -c 32M /dev/urandom >"$T/www/blob"
want=$(sha256sum <"$T/www/blob" | cut -d' ' -f1)

ks_http_server "$T/http.log" "$T/www"
app=$KS_HTTP_PORT
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$app" --workers 2 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
port=${KS_PORTS[0]}

pin=sha256//$(openssl x509 -in "$T/ca/server.crt" -pubkey -noout | openssl pkey -pubin -outform der |
	openssl dgst -sha256 -binary | base64)

fetch() { # NAME: download with client certificate NAME
	curl -sS --fail --insecure --pinnedpubkey "$pin" --tlsv1.3 \
		--cert "$T/ca/$1.crt" --key "$T/ca/$1.key" -o "$T/got.$1" \
		-w '%{http_code} %{size_download}\n' "https://127.0.0.1:$port/blob"
}

fetch client >"$T/curl.client"
got=$(sha256sum <"$T/got.client" | cut -d' ' -f1)
[[ $got == "$want" ]] || ks_fail "download corrupted: $got != $want"
ks_assert_grep "$T/b.log" "event=conn_open .*peer_id=$KS_CLIENT_ID .*tls=TLSv1.3 cipher=TLS_" "curl's SPIFFE ID not logged"
ks_wait_log "$T/b.log" "event=conn_close .*peer_id=$KS_CLIENT_ID reason=done .*bytes_to_peer=3[0-9]{7}" 5
ks_pass "curl (ECDSA P-256 client) downloaded 32 MiB intact: $(cat "$T/curl.client")"

fetch rsa >"$T/curl.rsa"
cmp -s "$T/got.rsa" "$T/www/blob" || ks_fail "RSA client download corrupted"
ks_assert_grep "$T/b.log" 'event=conn_open .*peer_id=spiffe://example.org/ns/a/sa/rsa-client' "RSA client not logged"
ks_pass "curl with an RSA-2048 client certificate"

# Without a client certificate curl must fail, and the sidecar says why.
if curl -sS --insecure --pinnedpubkey "$pin" -o /dev/null "https://127.0.0.1:$port/blob" 2>"$T/curl.nocert"; then
	ks_fail "curl without a client certificate got through"
fi
ks_wait_log "$T/b.log" 'event=handshake_rejected .*reason=no_client_cert' 5
# The wrong pin must fail on curl's side: proves the pin is checked at all.
if curl -sS --insecure --pinnedpubkey "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" -o /dev/null "https://127.0.0.1:$port/blob" 2>/dev/null; then
	ks_fail "curl ignored the public key pin"
fi
ks_pass "curl without a certificate is refused (no_client_cert)"

# The app is down: curl must report an error, not an empty answer. The
# sidecar sends a fatal internal_error alert, then a reset (README,
# "Errors the peer sees"), under each TLS 1.3 cipher suite.
ks_closed_port
ks_sidecar "$T/down.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_CLOSED_PORT" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
down=${KS_PORTS[0]}
for cs in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
	rc=0
	curl -sS --insecure --pinnedpubkey "$pin" --tlsv1.3 --tls13-ciphers "$cs" \
		--cert "$T/ca/client.crt" --key "$T/ca/client.key" -o /dev/null \
		"https://127.0.0.1:$down/blob" 2>"$T/curl.down" || rc=$?
	[[ $rc == 56 ]] && grep -q 'alert internal error' "$T/curl.down" ||
		ks_fail "app down, $cs: curl exit $rc, want 56 with an internal_error alert: $(cat "$T/curl.down")"
done
"$KS_CTL" --socket "$KS_CTL_SOCKET" status >"$T/down.status"
grep -q '^refused by .*upstream_connect_failed 3' "$T/down.status" ||
	{ cat "$T/down.status"; ks_fail "the three refusals were not counted as upstream_connect_failed"; }
ks_assert_grep "$T/down.log" 'event=handshake_rejected .*reason=upstream_connect_failed' "no refusal line"
ks_pass "app down: curl reports 'tlsv1 alert internal error' (exit 56) under all three suites, not an empty reply"
