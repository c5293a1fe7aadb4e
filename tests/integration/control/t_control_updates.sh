#!/usr/bin/env bash
# Control API updates against real sidecars and real peers: ListConnections
# shows what is open; a pushed CRL refuses the revoked peer at handshake and
# closes its open connection; SetPolicy's inbound patterns and outbound SPKI
# pins take effect on the next handshake; every refused update exits 1 with
# its reason and leaves the sidecar as it was; ktlsctl's usage and file
# errors have their own exit codes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
"$KS_CTL" ca init "$T/other" --trust-domain example.org >/dev/null
"$KS_CTL" ca issue --ca "$T/ca" "$KS_CLIENT_ID" --out "$T/client" >/dev/null
"$KS_CTL" ca issue --ca "$T/ca" "$KS_CLIENT_ID" --out "$T/client2" >/dev/null
"$KS_CTL" ca issue --ca "$T/ca" "$KS_SERVER_ID" --out "$T/server" >/dev/null
"$KS_CTL" ca issue --ca "$T/other" "$KS_SERVER_ID" --out "$T/alien" >/dev/null

ks_echo_server "$T/echo.log" echo
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --spiffe-id "$KS_SERVER_ID"
b_pid=$KS_SIDECAR_PID KS_B_PORT=${KS_PORTS[0]}
b_sock=$KS_CTL_SOCKET
# A makes full handshakes: the revocation checks below are about the
# certificate A presents. With resumption, A would resume with the ticket
# of an earlier handshake made with another (valid) certificate, and B
# would rightly accept that peer; resumption's own re-validation is
# t_resumption's.
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$KS_B_PORT,id=$KS_SERVER_ID" \
	--session-resumption off
a_pid=$KS_SIDECAR_PID KS_A_PORT=${KS_PORTS[0]}
a_sock=$KS_CTL_SOCKET
"$KS_CTL" --socket "$b_sock" push-identity --cert "$T/server.crt" --key "$T/server.key" --bundle "$T/ca/signer/bundle.pem" >/dev/null
"$KS_CTL" --socket "$a_sock" push-identity --cert "$T/client.crt" --key "$T/client.key" --bundle "$T/ca/signer/bundle.pem" >/dev/null

stream() { # SEED BYTES [ARGS]: one echoed, SHA-256 checked connection through A
	local seed=$1 bytes=$2
	shift 2
	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "$bytes" --seed "$seed" --timeout 20 "$@"
}

# --- refused updates: exit 1, the reason, nothing changed -----------------
serial=$("$KS_CTL" --socket "$b_sock" status | awk '/^serial/ {print $2}')
echo garbage >"$T/garbage.pem"
ks_expect_exit 1 'REJECTED \(REASON_BAD_PEM\)' "$KS_CTL" --socket "$b_sock" push-identity --cert "$T/garbage.pem" --key "$T/server.key"
ks_expect_exit 1 'REASON_KEY_MISMATCH' "$KS_CTL" --socket "$b_sock" push-identity --cert "$T/server.crt" --key "$T/client.key"
ks_expect_exit 1 'REASON_ID_MISMATCH' "$KS_CTL" --socket "$b_sock" push-identity --cert "$T/client.crt" --key "$T/client.key"
ks_expect_exit 1 'REASON_CHAIN_UNVERIFIED' "$KS_CTL" --socket "$b_sock" push-identity --cert "$T/alien.crt" --key "$T/alien.key"
ks_expect_exit 1 'REASON_NO_PENDING_KEY' "$KS_CTL" --socket "$b_sock" push-identity --cert "$T/server.crt"
ks_expect_exit 1 'REASON_CHAIN_UNVERIFIED' "$KS_CTL" --socket "$b_sock" push-bundle "$T/other/signer/bundle.pem"
ks_expect_exit 1 'REASON_CRL_UNVERIFIED' "$KS_CTL" --socket "$b_sock" push-crl <("$KS_CTL" ca crl --ca "$T/other")
ks_expect_exit 1 'REASON_BAD_PATTERN' "$KS_CTL" --socket "$b_sock" set-policy --allow 'spiffe://example.org/**'
ks_expect_exit 1 'REASON_UNKNOWN_DESTINATION' "$KS_CTL" --socket "$a_sock" set-policy --outbound "127.0.0.1:1,id=$KS_SERVER_ID"
ks_expect_exit 1 'REASON_BAD_PIN' "$KS_CTL" --socket "$a_sock" set-policy --outbound "127.0.0.1:$KS_A_PORT,pin=abc"
[[ $("$KS_CTL" --socket "$b_sock" status | awk '/^serial/ {print $2}') == "$serial" ]] || ks_fail "a refused update changed B's identity"
stream 1 1M >/dev/null || ks_fail "traffic broken after refused updates"
ks_pass "10 refused updates: exit 1 with the reason, identity and traffic unchanged"

ks_expect_exit 2 'unknown command' "$KS_CTL" --socket "$b_sock" frobnicate
ks_expect_exit 2 'unknown argument' "$KS_CTL" --socket "$b_sock" set-policy --deny x
ks_expect_exit 2 '--cert FILE is required' "$KS_CTL" --socket "$b_sock" push-identity
ks_expect_exit 5 'cannot read' "$KS_CTL" --socket "$b_sock" push-bundle "$T/nonexistent.pem"
ks_expect_exit 5 'ca (issue|init)|CA' "$KS_CTL" ca issue --ca "$T/nonexistent" "$KS_CLIENT_ID"
ks_expect_exit 2 'trust-domain' "$KS_CTL" ca init "$T/ca3"
ks_pass "ktlsctl usage errors exit 2, local file and CA errors exit 5"

# --- ListConnections ---------------------------------------------------------
stream 2 32M --rate 4M --half-close >"$T/long1.out" 2>&1 &
long=$!
ks_wait_log "$T/b.log" 'event=conn_open conn=[0-9]+ .*peer_id=spiffe://example.org/ns/a/sa/client' 10
sleep 1
"$KS_CTL" --socket "$b_sock" connections >"$T/conns.out"
grep -Eq "^[0-9]+ +inbound +(kernel|userspace) +127\.0\.0\.1:[0-9]+ +TLS_AES_[0-9A-Z_]+ +[1-9][0-9]* +[1-9][0-9]* +[0-9.]+ +$KS_CLIENT_ID\$" "$T/conns.out" ||
	{ cat "$T/conns.out"; ks_fail "B's connection list does not show A's connection"; }
"$KS_CTL" --socket "$a_sock" connections | grep -q " outbound .* $KS_SERVER_ID\$" || ks_fail "A's list lacks its outbound connection"
ks_pass "ktlsctl connections: peer ID, direction, record layer, cipher, bytes, age"

# --- revocation --------------------------------------------------------------
"$KS_CTL" ca crl --ca "$T/ca" "$T/client.crt" --out "$T/revoke.crl" 2>/dev/null
"$KS_CTL" --socket "$b_sock" push-crl "$T/revoke.crl" >/dev/null
ks_wait_log "$T/b.log" 'event=conn_close .*reason=revoked' 5
wait "$long" && ks_fail "the revoked peer's open stream went on after the CRL"
if stream 3 64K >/dev/null 2>&1; then ks_fail "a revoked client got through"; fi
ks_wait_log "$T/b.log" 'event=handshake_rejected .*reason=revoked' 5
ks_pass "a pushed CRL closes the revoked peer's open connection and refuses its handshakes"
# A new, unrevoked certificate for the same workload gets through.
"$KS_CTL" --socket "$a_sock" push-identity --cert "$T/client2.crt" --key "$T/client2.key" >/dev/null
stream 4 1M >/dev/null || ks_fail "an unrevoked certificate is refused"
"$KS_CTL" --socket "$a_sock" push-identity --cert "$T/client.crt" --key "$T/client.key" >/dev/null
if stream 5 64K >/dev/null 2>&1; then ks_fail "the revoked certificate got through again"; fi
"$KS_CTL" --socket "$b_sock" push-crl --none >/dev/null
stream 6 1M >/dev/null || ks_fail "still refused after the CRL was withdrawn"
ks_pass "the CRL names only the revoked certificate, and withdrawing it lets it back"

# --- policy ------------------------------------------------------------------
"$KS_CTL" --socket "$b_sock" set-policy --allow 'spiffe://example.org/ns/*/sa/web' >/dev/null
if stream 7 64K >/dev/null 2>&1; then ks_fail "a client outside the pushed allow list got through"; fi
ks_wait_log "$T/b.log" 'event=handshake_rejected .*reason=identity_not_allowed' 5
"$KS_CTL" --socket "$b_sock" set-policy --allow 'spiffe://example.org/ns/a/sa/*' >/dev/null
stream 8 1M >/dev/null || ks_fail "an allowed client is refused"
ks_pass "SetPolicy inbound patterns apply to the next handshake"

pin_of() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }
good_pin=$(pin_of "$T/server.crt")
bad_pin=$(pin_of "$T/client.crt")
"$KS_CTL" --socket "$a_sock" set-policy --outbound "127.0.0.1:$KS_A_PORT,id=$KS_SERVER_ID,pin=$bad_pin" >/dev/null
if stream 9 64K >/dev/null 2>&1; then ks_fail "a server whose key is not pinned got through"; fi
ks_wait_log "$T/a.log" 'event=handshake_rejected .*reason=pin_mismatch' 5
"$KS_CTL" --socket "$a_sock" set-policy --outbound "127.0.0.1:$KS_A_PORT,pin=$bad_pin,pin=$good_pin" >/dev/null
stream 10 1M >/dev/null || ks_fail "the pinned server is refused"
"$KS_CTL" --socket "$a_sock" set-policy --outbound "127.0.0.1:$KS_A_PORT,id=spiffe://example.org/ns/x/sa/other" >/dev/null
if stream 11 64K >/dev/null 2>&1; then ks_fail "a pushed server ID was not enforced"; fi
ks_wait_log "$T/a.log" 'event=handshake_rejected .*reason=server_id_mismatch' 5
"$KS_CTL" --socket "$a_sock" set-policy >/dev/null
stream 12 1M >/dev/null || ks_fail "an empty policy did not restore the route's own id="
ks_pass "SetPolicy outbound: SPKI pins refuse a valid chain with another key; server ID replaced, then restored"
ks_alive "$a_pid" "sidecar A died"
ks_alive "$b_pid" "sidecar B died"
