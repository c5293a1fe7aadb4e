#!/usr/bin/env bash
# --inbound-mode: strict refuses a client that does not speak TLS at all,
# with its own reason (not_tls) and without the app ever seeing it;
# permissive passes such a client straight to the app (every byte checked
# with SHA-256, half-close included), logs it as record_layer=plaintext and
# counts it apart in the status, while TLS clients still get the full mTLS
# check: a TLS client without a certificate is refused in both modes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
app=$KS_ECHO_PORT

ks_sidecar "$T/strict.log" --inbound "127.0.0.1:0=127.0.0.1:$app" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
strict_pid=$KS_SIDECAR_PID strict=${KS_PORTS[0]}
ks_sidecar "$T/perm.log" --inbound "127.0.0.1:0=127.0.0.1:$app" --inbound-mode permissive \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
perm_pid=$KS_SIDECAR_PID perm=${KS_PORTS[0]}
perm_sock=$KS_CTL_SOCKET

# --- strict ------------------------------------------------------------------
apps_before=$(ks_count "$T/echo.log" '^server conn=')
if "$KS_STREAM" client --connect "127.0.0.1:$strict" --bytes 64K --timeout 10 >"$T/strict.out" 2>&1; then
	ks_fail "strict mode let a plaintext client through"
fi
ks_wait_log "$T/strict.log" 'event=handshake_rejected .*reason=not_tls .*did not start with a TLS handshake' 5
curl -s -m 5 "http://127.0.0.1:$strict/" >/dev/null && ks_fail "strict mode answered plaintext HTTP"
ks_wait_log "$T/strict.log" 'event=handshake_rejected .*reason=not_tls .*(http request|wrong version)' 5
[[ $(ks_count "$T/echo.log" '^server conn=') == "$apps_before" ]] || ks_fail "the app saw a plaintext client in strict mode"
ks_pass "strict: plaintext clients (raw bytes, HTTP) refused with reason=not_tls; the app never sees them"

# --- permissive ----------------------------------------------------------------
"$KS_STREAM" client --connect "127.0.0.1:$perm" --bytes 32M --conns 4 --seed 11 --half-close \
	--timeout 60 >"$T/perm.out" 2>&1 || { cat "$T/perm.out"; ks_fail "permissive: plaintext streams failed"; }
[[ $(ks_count "$T/perm.out" 'status=ok') == 4 ]] || ks_fail "permissive: not all 4 plaintext streams ok"
ks_wait_log "$T/perm.log" 'event=conn_close .*record_layer=plaintext' 5
[[ $(ks_count "$T/perm.log" 'event=conn_open .*record_layer=plaintext') == 4 ]] ||
	ks_fail "permissive: plaintext connections not logged as record_layer=plaintext"
ks_assert_not_grep "$T/perm.log" 'event=conn_close .*record_layer=plaintext .*reason=(unclean_eof|app_reset|peer_reset)' \
	"a plaintext stream did not end cleanly"
"$KS_CTL" --socket "$perm_sock" status >"$T/status.out"
grep -Eq '^plaintext +4 closed, 268435456 bytes' "$T/status.out" ||
	{ cat "$T/status.out"; ks_fail "status does not count the plaintext connections apart"; }
ks_pass "permissive: 4 plaintext streams x 32 MiB echoed intact (SHA-256, half-close), counted apart"

# TLS clients in permissive mode: the full mTLS check still applies.
printf 'hello\n' | timeout 10 openssl s_client -connect "127.0.0.1:$perm" -CAfile "$T/ca/bundle.crt" \
	-ign_eof >"$T/nocert.out" 2>&1 || true
ks_wait_log "$T/perm.log" 'event=handshake_rejected .*reason=no_client_cert' 5
printf 'hello mtls\n' | timeout 10 openssl s_client -connect "127.0.0.1:$perm" -CAfile "$T/ca/bundle.crt" \
	-cert "$T/ca/client.crt" -key "$T/ca/client.key" -cert_chain "$T/ca/int.crt" -ign_eof \
	>"$T/mtls.out" 2>&1 || true
grep -q 'hello mtls' "$T/mtls.out" || ks_fail "permissive: an mTLS client did not get through"
ks_wait_log "$T/perm.log" "event=conn_open .*peer_id=$KS_CLIENT_ID .*tls=TLSv1.3" 5
ks_pass "permissive: a TLS client without a certificate is still refused; an mTLS client goes through TLS"
ks_alive "$strict_pid" "strict sidecar died"
ks_alive "$perm_pid" "permissive sidecar died"
