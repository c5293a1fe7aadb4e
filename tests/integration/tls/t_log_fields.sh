#!/usr/bin/env bash
# Log lines keep their fields when a value is long (README, "Logs"): a
# client whose SPIFFE ID is 2,029 characters (legal: the limit is 2,048,
# SPIFFE-ID.md 2.3) connects through a real openssl s_client. The sidecar's
# conn_open and conn_close lines carry the ID cut to a marker that says
# how long it was, and every fixed field after it: cipher, record layer,
# identity serial, reason, byte counts, duration. A refused client with
# such an ID keeps its reason and detail.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
long=spiffe://example.org/ns/a/sa/$(printf 'x%.0s' $(seq 2000))
((${#long} == 2029)) || ks_fail "the test ID is ${#long} characters, want 2029"
"$KS_PKI" issue "$T/ca" long "$long"
other=spiffe://example.org/ns/z/sa/$(printf 'y%.0s' $(seq 2000))
"$KS_PKI" issue "$T/ca" other "$other"
ks_echo_server "$T/echo.log" echo
log=$T/sidecar.log
ks_sidecar "$log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" \
	--allow 'spiffe://example.org/ns/a/sa/*'
port=${KS_PORTS[0]}

s_client() { # NAME: one echo through the sidecar with that certificate
	{ printf 'hello\n'; sleep 1; } | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
		-CAfile "$T/ca/bundle.crt" -cert "$T/ca/$1.crt" -key "$T/ca/$1.key" \
		-cert_chain "$T/ca/int.crt" >"$T/s_client.$1.out" 2>&1 || true
}
s_client long
grep -q 'hello$' "$T/s_client.long.out" || ks_fail "no echo for the client with the long ID"
ks_wait_log "$log" 'event=conn_close' 10
open=$(grep 'event=conn_open' "$log")
close=$(grep 'event=conn_close' "$log")
for f in 'peer_id=spiffe://example\.org/ns/a/sa/x+\.\.\.\[truncated:2029_bytes\] ' 'tls=TLSv1\.3 ' \
	'cipher=TLS_[A-Z0-9_]+ ' 'group=[A-Za-z0-9]+ ' 'record_layer=(kernel|userspace) ' \
	'record_layer_reason="[^"]*" ' 'identity_serial=[0-9A-F]+$'; do
	[[ $open =~ $f ]] || ks_fail "conn_open lost /$f/: $open"
done
for f in 'peer_id=spiffe://example\.org/ns/a/sa/x+\.\.\.\[truncated:2029_bytes\] ' 'reason=(done|unclean_eof) ' \
	'bytes_to_peer=6 ' 'bytes_from_peer=6 ' 'record_layer=(kernel|userspace) ' 'key_updates=[0-9]+ ' \
	'duration_ms=[0-9]+$'; do
	[[ $close =~ $f ]] || ks_fail "conn_close lost /$f/: $close"
done
((${#open} < 1024 && ${#close} < 1024)) || ks_fail "lines of ${#open} and ${#close} bytes: the ID was not cut"
ks_assert_not_grep "$log" 'line_truncated' "a line was cut whole"
ks_pass "a 2,029-character peer ID: cut with its length marked; conn_open and conn_close keep every fixed field (${#open} and ${#close} bytes)"

s_client other
ks_wait_log "$log" 'event=handshake_rejected' 10
rej=$(grep 'event=handshake_rejected' "$log")
[[ $rej =~ peer_id=spiffe://example\.org/ns/z/sa/y+\.\.\.\[truncated:2029_bytes\]\ reason=identity_not_allowed\ detail=\"[^\"]+\"$ ]] ||
	ks_fail "the refusal lost its reason or detail: $rej"
ks_pass "a refused 2,029-character peer ID: reason and detail kept"
