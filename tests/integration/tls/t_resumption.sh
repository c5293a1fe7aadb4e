#!/usr/bin/env bash
# TLS 1.3 session resumption (issue 18), as safe as a full handshake:
#   - between two sidecars: the second connection resumes (resumed=yes on
#     both sides, the same peer IDs as the full handshake), counted in
#     /metrics, and a 256 MiB stream checked by SHA-256 crosses a resumed
#     connection on the userspace record layer;
#   - interop: openssl s_client -sess_out/-sess_in against the inbound
#     sidecar; the outbound sidecar against openssl s_server (two tickets);
#   - every resumption is re-validated: a CRL pushed after the ticket was
#     issued refuses the next resumption (reason=revoked), and the full
#     handshake that follows fails too, on either side; a policy that
#     excludes the peer likewise; a changed trust bundle refuses the ticket
#     (bundle_changed) and the full handshake that follows succeeds;
#   - identity rotation every 100 ms does not stop resumption: tickets from
#     before stay valid while the peer is;
#   - --session-resumption off: no ticket, no resumption.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
# ktlsctl's development CA: its CRLs (ca crl) are what the sidecar takes.
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
"$KS_CTL" ca init "$T/other" --trust-domain example.org >/dev/null
for c in client client2 server; do
	id=$KS_CLIENT_ID
	[[ $c == server ]] && id=$KS_SERVER_ID
	"$KS_CTL" ca issue --ca "$T/ca" "$id" --out "$T/$c" >/dev/null
done
bundle=$T/ca/signer/bundle.pem
ks_echo_server "$T/echo.log" echo
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 2 \
	--cert "$T/server.crt" --key "$T/server.key" --ca "$bundle" --admin 127.0.0.1:0
KS_B_PORT=${KS_PORTS[0]} b_sock=$KS_CTL_SOCKET b_pid=$KS_SIDECAR_PID
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$KS_B_PORT,id=$KS_SERVER_ID" --workers 2 \
	--cert "$T/client.crt" --key "$T/client.key" --ca "$bundle"
KS_A_PORT=${KS_PORTS[0]} a_sock=$KS_CTL_SOCKET a_pid=$KS_SIDECAR_PID

# stream N SIZE: one connection through A, the echo checked byte for byte.
stream() {
	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "$2" --seed "$1" --timeout 60
}
# last LOG: the last conn_open line's resumed= value.
last() { grep 'event=conn_open' "$1" | tail -1 | sed -n 's/.* resumed=\([a-z]*\) .*/\1/p'; }
opens() { ks_count "$1" 'event=conn_open'; }
# one N: a connection, then both conn_open lines; echoes "A B" resumed values.
one() {
	local na nb
	na=$(opens "$T/a.log") nb=$(opens "$T/b.log")
	stream "$1" "${2:-64K}" >/dev/null || ks_fail "stream $1 failed"
	ks_wait_log "$T/b.log" "event=conn_close" 10
	for _ in $(seq 100); do
		(($(opens "$T/a.log") > na && $(opens "$T/b.log") > nb)) && break
		sleep 0.05
	done
	echo "$(last "$T/a.log") $(last "$T/b.log")"
}

# --- between sidecars --------------------------------------------------------
[[ $(one 1) == "no no" ]] || ks_fail "the first connection was not a full handshake"
r=$(one 2); [[ $r == "yes yes" ]] || { echo "got $r"; grep -h "conn_open\|resumption" $T/a.log $T/b.log | cut -c1-250; ks_fail "the second connection did not resume"; }
[[ $(one 3) == "yes yes" ]] || ks_fail "a resumed connection left no ticket for the next"
ks_assert_grep "$T/a.log" "event=conn_open .*peer_id=$KS_SERVER_ID .*resumed=yes" "A: resumed peer ID"
ks_assert_grep "$T/b.log" "event=conn_open .*peer_id=$KS_CLIENT_ID .*group=x25519 resumed=yes" \
	"B: resumed peer ID, with a fresh X25519 share (psk_dhe_ke)"
admin=$(sed -n 's/.*event=admin listen=\([0-9.:]*\) .*/\1/p' "$T/b.log" | tail -1)
curl -sf "http://$admin/metrics" >"$T/metrics"
grep -Eq '^ktls_sidecar_tls_handshakes_total\{direction="inbound",resumed="yes"\} [2-9]' "$T/metrics" ||
	{ grep tls_handshakes "$T/metrics"; ks_fail "B's metrics do not count the resumptions"; }
grep -Eq '^ktls_sidecar_tls_handshakes_total\{direction="inbound",resumed="no"\} 1$' "$T/metrics" ||
	ks_fail "B's metrics do not count the full handshake"
ks_pass "sidecar to sidecar: resumed=yes on both sides, peer IDs kept, counted in /metrics"

big=256M
[[ -n ${KS_SANITIZED:-} ]] && big=64M # ASan/TSan: the same path, a quarter of the bytes
out=$(stream 40 "$big") || ks_fail "the $big stream over a resumed connection failed"
[[ $(last "$T/a.log") == yes ]] || ks_fail "the $big stream did not run over a resumed connection"
grep -q 'status=ok' <<<"$out" || ks_fail "stream: $out"
ks_pass "$big, SHA-256 checked, over a resumed connection (userspace record layer)"

# --- interop -----------------------------------------------------------------
b_port=$KS_B_PORT
sc() { # NAME [s_client args]: one echo to B with the client identity
	local name=$1
	shift
	(echo ping; sleep 0.3) | timeout 10 openssl s_client -connect "127.0.0.1:$b_port" \
		-CAfile "$bundle" -cert "$T/client.crt" -key "$T/client.key" \
		-cert_chain "$T/client.crt" "$@" >"$T/sc.$name" 2>&1 || true
	grep -q 'ping$' "$T/sc.$name" || { cat "$T/sc.$name"; ks_fail "s_client $name: no echo"; }
}
sc 1 -sess_out "$T/s1.pem"
grep -q '^New, TLSv1.3' "$T/sc.1" || ks_fail "s_client 1 did not do a full handshake"
sc 2 -sess_in "$T/s1.pem" -sess_out "$T/s2.pem"
grep -q '^Reused, TLSv1.3' "$T/sc.2" || ks_fail "s_client did not resume with the sidecar's ticket"
sc 3 -sess_in "$T/s2.pem"
grep -q '^Reused, TLSv1.3' "$T/sc.3" || ks_fail "the ticket of a resumed connection did not resume"
ks_pass "openssl s_client -sess_out/-sess_in resumes against the inbound sidecar"
# psk_ke (no fresh key exchange) is never accepted: the same ticket offered
# with psk_dhe_ke resumes (the control), with psk_ke alone it does not.
# No stock client asks for psk_ke alone: psk_hello.py builds the ClientHello.
openssl sess_id -in "$T/s1.pem" -text -noout >"$T/s1.txt"
got=$(python3 "$KS_ROOT/tests/tools/psk_hello.py" 127.0.0.1 "$b_port" "$T/s1.txt" psk_dhe_ke)
[[ $got == resumed ]] || ks_fail "control: the ticket offered with psk_dhe_ke gave '$got'"
got=$(python3 "$KS_ROOT/tests/tools/psk_hello.py" 127.0.0.1 "$b_port" "$T/s1.txt" psk_ke)
[[ $got == full ]] || ks_fail "the ticket offered with psk_ke alone gave '$got', not a full handshake"
ks_pass "psk_ke is refused (full handshake); the same ticket with psk_dhe_ke resumes"

ks_s_server "$T/s_server.log" -rev -Verify 2 -verify_return_error -CAfile "$bundle" \
	-cert "$T/server.crt" -key "$T/server.key" -cert_chain "$T/server.crt"
ks_sidecar "$T/o.log" --cert "$T/client.crt" --key "$T/client.key" --ca "$bundle" \
	--outbound "127.0.0.1:0=127.0.0.1:$KS_S_SERVER_PORT,id=$KS_SERVER_ID" --workers 1
o_port=${KS_PORTS[0]}
for i in 1 2 3; do
	ans=$(python3 -c 'import socket,sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"abc\n"); print(s.recv(100).decode().strip())' "$o_port")
	[[ $ans == cba ]] || ks_fail "outbound to s_server: got '$ans'"
	ks_wait_log "$T/o.log" "event=conn_close conn=$i " 10
done
[[ $(grep 'event=conn_open' "$T/o.log" | grep -c 'resumed=yes') == 2 ]] ||
	{ grep conn_open "$T/o.log"; ks_fail "the outbound sidecar did not resume with s_server's tickets"; }
ks_pass "the outbound sidecar resumes against openssl s_server"

# --- revocation -----------------------------------------------------------------
# revoked SOCK LOG CERT DIR N: with a ticket in hand (connections N, N+1),
# CERT is revoked through SOCK; connection N+2 must fail, LOG showing the
# resumption refused (revoked) and then the full handshake (revoked).
revoked() {
	local sock=$1 log=$2 cert=$3 dir=$4 n=$5
	one "$n" >/dev/null
	[[ $(one $((n + 1))) == "yes yes" ]] || ks_fail "no ticket in hand before the CRL ($dir)"
	"$KS_CTL" ca crl --ca "$T/ca" "$T/$cert.crt" --out "$T/$cert.crl" 2>/dev/null
	"$KS_CTL" --socket "$sock" push-crl "$T/$cert.crl" >/dev/null
	if stream $((n + 2)) 64K >/dev/null 2>&1; then ks_fail "a revoked $cert got through"; fi
	ks_wait_log "$log" "event=resumption_refused .*dir=$dir .*reason=revoked" 10
	ks_wait_log "$log" "event=handshake_rejected .*dir=$dir .*reason=revoked" 10
	"$KS_CTL" --socket "$sock" push-crl --none >/dev/null
}
revoked "$b_sock" "$T/b.log" client inbound 3
ks_pass "a CRL pushed after the ticket: the resumption is refused (revoked), so is the full handshake"
# The client side will not offer a revoked server's ticket either.
revoked "$a_sock" "$T/a.log" server outbound 6
ks_pass "outbound: a revoked server's ticket is not offered (revoked), and the full handshake fails"

# --- policy -------------------------------------------------------------------
# excluded SOCK LOG N REASON REFUSED POLICY...: with a ticket in hand
# (connections N, N+1), POLICY is pushed through SOCK; connection N+2 must
# fail with REASON, its resumption refused first when REFUSED is yes.
excluded() {
	local sock=$1 log=$2 n=$3 reason=$4 refused=$5
	shift 5
	one "$n" >/dev/null
	[[ $(one $((n + 1))) == "yes yes" ]] || ks_fail "no ticket in hand before the policy change ($reason)"
	"$KS_CTL" --socket "$sock" set-policy "$@" >/dev/null
	if stream $((n + 2)) 64K >/dev/null 2>&1; then ks_fail "a peer the policy excludes got through ($reason)"; fi
	if [[ $refused == yes ]]; then
		ks_wait_log "$log" "event=resumption_refused .*reason=$reason" 10
	fi
	ks_wait_log "$log" "event=handshake_rejected .*reason=$reason" 10
	"$KS_CTL" --socket "$sock" set-policy >/dev/null
}
excluded "$b_sock" "$T/b.log" 9 identity_not_allowed yes --allow 'spiffe://example.org/ns/*/sa/web'
# A keeps tickets per expected ID: under the new one it has none to offer.
excluded "$a_sock" "$T/a.log" 12 server_id_mismatch no \
	--outbound "127.0.0.1:$KS_A_PORT,id=spiffe://example.org/ns/b/sa/other"
excluded "$a_sock" "$T/a.log" 50 pin_mismatch yes \
	--outbound "127.0.0.1:$KS_A_PORT,pin=$(printf 'ab%.0s' $(seq 32))"
ks_pass "a policy change that excludes the peer (allow, route ID, pins) ends its resumptions and its handshakes"

# --- trust bundle -------------------------------------------------------------
one 15 >/dev/null
[[ $(one 16) == "yes yes" ]] || ks_fail "no ticket in hand before the bundle change"
cat "$bundle" "$T/other/signer/bundle.pem" >"$T/bundle2.crt"
"$KS_CTL" --socket "$b_sock" push-bundle "$T/bundle2.crt" >/dev/null
[[ $(one 17) == "no no" ]] || ks_fail "a ticket survived a trust bundle change"
ks_assert_grep "$T/b.log" 'event=resumption_refused .*reason=bundle_changed' "bundle_changed not logged"
[[ $(one 18) == "yes yes" ]] || ks_fail "no resumption after the full handshake under the new bundle"
ks_pass "a changed trust bundle refuses the ticket; the full handshake that follows passes"
# Back to the bundle of B's files (what SIGHUP reads below), and a ticket under it.
"$KS_CTL" --socket "$b_sock" push-bundle "$bundle" >/dev/null
one 19 >/dev/null

# --- identity rotation every 100 ms ---------------------------------------------
# Both sidecars rebuild their identity every 100 ms (SIGHUP: the files read
# again, a new identity with new SSL_CTXs), and A once takes another
# certificate of its workload over the control API, while connections go on.
rebuilds() { ks_count "$T/b.log" 'event=identity_reloaded source=sighup'; }
(
	while kill -HUP "$a_pid" "$b_pid" 2>/dev/null; do sleep 0.1; done
) &
rot=$!
ks_cleanup_add sh -c "kill $rot 2>/dev/null || true"
n0=$(grep -c 'event=conn_open .*resumed=yes' "$T/b.log")
r0=$(rebuilds)
n=0
# Connections until 20 rebuilds of each identity went by (300 at most).
while ((n < 300)); do
	stream $((100 + n)) 16K >/dev/null || ks_fail "stream $n failed during rotation"
	n=$((n + 1))
	((n == 10)) && "$KS_CTL" --socket "$a_sock" push-identity --cert "$T/client2.crt" \
		--key "$T/client2.key" >/dev/null
	(($(rebuilds) - r0 >= 20 && n >= 20)) && break
done
kill "$rot" 2>/dev/null
wait "$rot" 2>/dev/null || true
rotations=$(($(rebuilds) - r0))
((rotations >= 20)) || ks_fail "only $rotations identity rebuilds happened"
n1=$(grep -c 'event=conn_open .*resumed=yes' "$T/b.log")
# Tickets outlive the identities on both sides: all resume.
((n1 - n0 == n)) || ks_fail "only $((n1 - n0)) of $n connections resumed during rotation"
ks_pass "identity rebuilt every 100 ms on both sides: $n of $n connections resumed ($rotations rebuilds)"

# --- lifetime -----------------------------------------------------------------
ks_sidecar "$T/l.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --session-lifetime 1s \
	--cert "$T/server.crt" --key "$T/server.key" --ca "$bundle" --workers 1
b_port=${KS_PORTS[0]}
ks_sidecar "$T/la.log" --outbound "127.0.0.1:0=127.0.0.1:$b_port,id=$KS_SERVER_ID" --workers 1 \
	--cert "$T/client.crt" --key "$T/client.key" --ca "$bundle"
la_port=${KS_PORTS[0]}
sc l1 -sess_out "$T/l1.pem"
openssl sess_id -in "$T/l1.pem" -text -noout >"$T/l1.txt"
ks_assert_grep "$T/l1.txt" 'lifetime hint: 1 ' "the ticket does not announce --session-lifetime 1s"
"$KS_STREAM" client --connect "127.0.0.1:$la_port" --bytes 1K --timeout 20 >/dev/null
"$KS_STREAM" client --connect "127.0.0.1:$la_port" --bytes 1K --timeout 20 >/dev/null
sleep 2.2 # past the ticket's lifetime
"$KS_STREAM" client --connect "127.0.0.1:$la_port" --bytes 1K --timeout 20 >/dev/null
ks_wait_log "$T/la.log" 'event=conn_open conn=3 ' 10
grep 'event=conn_open' "$T/la.log" | sed -n 's/.* resumed=\([a-z]*\) .*/\1/p' | paste -sd' ' >"$T/l.seq"
[[ $(cat "$T/l.seq") == "no yes no" ]] || ks_fail "lifetime 1s: resumed sequence $(cat "$T/l.seq"), want 'no yes no'"
ks_pass "--session-lifetime 1s: announced in the ticket, and a ticket older than that is not used"

# --- the peer certificate's notAfter bounds its tickets --------------------------
# Certificates good for 8 more seconds. The server bounds the ticket it
# gives a client by the client's (the lifetime hint); the client keeps a
# server's ticket no longer than the server's, and once that has expired
# neither a resumption nor a full handshake gets through (reason=expired).
ks_pki "$T/p"
"$KS_PKI" issue "$T/p/ca" short "$KS_SERVER_ID" --valid '-1 hour' '+8 seconds'
"$KS_PKI" issue "$T/p/ca" shortc "$KS_CLIENT_ID" --valid '-1 hour' '+8 seconds'
ks_sidecar "$T/s.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 1 \
	--cert "$T/p/ca/short.crt" --key "$T/p/ca/short.key" --ca "$T/p/ca/bundle.crt"
s_port=${KS_PORTS[0]}
ks_sidecar "$T/sa.log" --outbound "127.0.0.1:0=127.0.0.1:$s_port,id=$KS_SERVER_ID" --workers 1 \
	--cert "$T/p/ca/client.crt" --key "$T/p/ca/client.key" --ca "$T/p/ca/bundle.crt"
sa_port=${KS_PORTS[0]}
(echo ping; sleep 0.3) | timeout 10 openssl s_client -connect "127.0.0.1:$s_port" \
	-CAfile "$T/p/ca/bundle.crt" -cert "$T/p/ca/shortc.crt" -key "$T/p/ca/shortc.key" \
	-cert_chain "$T/p/ca/int.crt" -sess_out "$T/short.pem" >/dev/null 2>&1 || true
hint=$(openssl sess_id -in "$T/short.pem" -text -noout | sed -n 's/.*lifetime hint: \([0-9]*\).*/\1/p')
[[ -n $hint ]] && ((hint <= 8)) || ks_fail "ticket lifetime hint '$hint': more than the 8 s the client's certificate has left"
"$KS_STREAM" client --connect "127.0.0.1:$sa_port" --bytes 1K --timeout 20 >/dev/null
"$KS_STREAM" client --connect "127.0.0.1:$sa_port" --bytes 1K --timeout 20 >/dev/null
ks_wait_log "$T/sa.log" 'event=conn_open conn=2 .*resumed=yes' 10
end=$(date -d "$(openssl x509 -noout -enddate -in "$T/p/ca/short.crt" | cut -d= -f2)" +%s)
sleep $((end - $(date +%s) + 1)) # past the certificate's notAfter
if "$KS_STREAM" client --connect "127.0.0.1:$sa_port" --bytes 1K --timeout 20 >/dev/null 2>&1; then
	ks_fail "a server whose certificate expired was used"
fi
ks_wait_log "$T/sa.log" 'event=handshake_rejected conn=3 .*reason=expired' 10
ks_pass "the peer certificate's notAfter bounds its ticket (hint $hint s); after it, no resumption and no handshake"

# --- off ----------------------------------------------------------------------
ks_sidecar "$T/off.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --session-resumption off \
	--cert "$T/server.crt" --key "$T/server.key" --ca "$bundle" --workers 1
b_port=${KS_PORTS[0]}
sc off1 -sess_out "$T/off1.pem"
ks_assert_not_grep "$T/sc.off1" 'Post-Handshake New Session Ticket' "a ticket with --session-resumption off"
sc off2 -sess_in "$T/s2.pem"
grep -q '^New, TLSv1.3' "$T/sc.off2" || ks_fail "resumed with --session-resumption off"
ks_assert_grep "$T/off.log" 'event=session_resumption mode=off' "mode=off not logged"
id=(--cert "$T/server.crt" --key "$T/server.key" --ca "$bundle" --inbound 127.0.0.1:0=127.0.0.1:1)
ks_expect_exit 2 'at least 1s' "$KS_BIN" --session-lifetime 500ms "${id[@]}"
ks_expect_exit 2 'longer than 7 days' "$KS_BIN" --session-lifetime 169h "${id[@]}"
ks_expect_exit 2 'on or off' "$KS_BIN" --session-resumption maybe "${id[@]}"
ks_pass "--session-resumption off: no ticket, no resumption; --session-lifetime bounds checked"
