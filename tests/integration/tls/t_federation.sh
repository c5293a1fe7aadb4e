#!/usr/bin/env bash
# Trust domains bound to their roots (SPIFFE federation). A root vouches only
# for the trust domain whose bundle it is in: with our root and a foreign one
# in --ca, a leaf of the foreign root that claims an ID in our trust domain
# is refused (reason=foreign_root). A foreign trust domain gets in only with
# its own bundle (--federated-ca, or SetTrustBundle with its trust_domain),
# and then end to end, through a pair of sidecars in two trust domains.
# Peers are real openssl s_client processes and sidecars.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
P=$KS_PKI
OTHER_CLIENT=spiffe://other.org/ns/x/sa/client
"$P" ca "$T/other"
"$P" issue "$T/other" impostor "$KS_CLIENT_ID"  # other.org's root, our trust domain's ID
"$P" issue "$T/other" client "$OTHER_CLIENT"
cat "$T/ca/bundle.crt" "$T/other/bundle.crt" >"$T/both.crt"
ks_echo_server "$T/echo.log" echo

# s_client DIR NAME PORT: one echo through the sidecar on PORT with DIR/NAME's certificate.
s_client() {
	local dir=$T/$1 name=$2 port=$3
	(echo "ping-$name"; sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
		-CAfile "$T/ca/bundle.crt" -cert "$dir/$name.crt" -key "$dir/$name.key" \
		-cert_chain "$dir/int.crt" >"$T/s_client.$1.$name.out" 2>&1 || true
}
refused_by() { # SOCKET REASON
	local n
	n=$("$KS_CTL" --socket "$1" status | sed -n "s/^refused by .*[ ,]$2 \([0-9]*\).*/\1/p")
	echo "${n:-0}"
}
echoed() { grep -q "ping-$2" "$T/s_client.$1.$2.out"; }
wait_refused() { # SOCKET REASON N
	for _ in $(seq 100); do
		[[ $(refused_by "$1" "$2") -ge $3 ]] && return 0
		sleep 0.05
	done
	ks_fail "expected $3 refusal(s) with reason $2, have $(refused_by "$1" "$2")"
}

# 1. The flat bundle of old: both roots in --ca.
ks_sidecar "$T/flat.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 1 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/both.crt" \
	--allow 'spiffe://example.org/ns/a/sa/*' --allow 'spiffe://other.org/ns/x/sa/*'
flat=$KS_CTL_SOCKET port=${KS_PORTS[0]}
s_client ca client "$port"
echoed ca client || ks_fail "our own client was not served"
# Every root in --ca is ours: the impostor chains to one of ours, so it
# passes; a real other.org peer does not, whatever --allow says.
s_client other client "$port"
echoed other client && ks_fail "other.org was admitted without a federated bundle"
wait_refused "$flat" foreign_root 1
ks_assert_grep "$T/flat.log" 'event=handshake_rejected .*reason=foreign_root .*no bundle for the peer.s trust domain' \
	"the refusal does not say the trust domain has no bundle"
ks_pass "without a federated bundle, a foreign trust domain's peer is refused (foreign_root)"

# 2. Federation: our roots are ours alone, other.org has its own.
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 1 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" \
	--federated-ca "other.org=$T/other/bundle.crt" \
	--allow 'spiffe://example.org/ns/a/sa/*' --allow 'spiffe://other.org/ns/x/sa/*'
b=$KS_CTL_SOCKET b_port=${KS_PORTS[0]}
ks_assert_grep "$T/b.log" 'event=identity_loaded .*federated=other.org ' "the log does not name the federation"
"$KS_CTL" --socket "$b" status >"$T/b.status"
ks_assert_grep "$T/b.status" '^federated +other.org: 1 certificate' "status does not show the federated bundle"
# The two-root case: other.org's root issuing an ID in our trust domain.
s_client other impostor "$b_port"
echoed other impostor && ks_fail "a foreign root's leaf with our trust domain's ID was admitted"
wait_refused "$b" foreign_root 1
ks_assert_grep "$T/b.log" 'event=handshake_rejected .*reason=foreign_root .*not in its trust domain.s bundle' \
	"the refusal does not name the root"
s_client other client "$b_port"
echoed other client || ks_fail "other.org's client was not admitted with its federated bundle"
s_client ca client "$b_port"
echoed ca client || ks_fail "our own client was not served"
ks_pass "two roots: a leaf of other.org's root with our ID is refused (foreign_root), other.org's own IDs get in"

# End to end: A lives in other.org and federates with us.
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$b_port,id=$KS_SERVER_ID" --workers 1 \
	--cert "$T/other/client.crt" --key "$T/other/client.key" --ca "$T/other/bundle.crt" \
	--federated-ca "spiffe://example.org=$T/ca/bundle.crt"
a_port=${KS_PORTS[0]}
"$KS_STREAM" client --connect "127.0.0.1:$a_port" --bytes 4M --half-close --timeout 60 \
	>"$T/stream.out" 2>&1 || { cat "$T/stream.out"; ks_fail "the federated pair did not carry the stream"; }
ks_assert_grep "$T/a.log" "event=conn_open .*peer_id=$KS_SERVER_ID" "A did not verify B"
ks_assert_grep "$T/b.log" "event=conn_open .*peer_id=$OTHER_CLIENT" "B did not see A's other.org ID"
ks_pass "federated pair across two trust domains: 4 MiB echoed intact"

# A without example.org's bundle refuses B as a server, by the same reason.
ks_sidecar "$T/a2.log" --outbound "127.0.0.1:0=127.0.0.1:$b_port,id=$KS_SERVER_ID" --workers 1 \
	--cert "$T/other/client.crt" --key "$T/other/client.key" --ca "$T/both.crt"
a2=$KS_CTL_SOCKET a2_port=${KS_PORTS[0]}
"$KS_STREAM" client --connect "127.0.0.1:$a2_port" --bytes 1K --timeout 10 >"$T/stream2.out" 2>&1 &&
	ks_fail "A without a federated bundle reached B"
wait_refused "$a2" foreign_root 1
ks_pass "outbound: a server of a trust domain we have no bundle for is refused (foreign_root)"

# 3. The control API: SetTrustBundle with a trust_domain adds, then ends, a federation.
ks_sidecar "$T/c.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 1 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" \
	--allow 'spiffe://other.org/ns/x/sa/*'
c=$KS_CTL_SOCKET c_port=${KS_PORTS[0]}
s_client other client "$c_port"
echoed other client && ks_fail "other.org admitted before its bundle was pushed"
wait_refused "$c" unknown_ca 1 # no root of it anywhere: OpenSSL cannot build the chain
"$KS_CTL" --socket "$c" push-bundle --trust-domain other.org "$T/other/bundle.crt" >"$T/push.out" 2>&1 ||
	{ cat "$T/push.out"; ks_fail "push-bundle --trust-domain failed"; }
ks_assert_grep "$T/push.out" 'federated bundle of other.org' "push-bundle did not confirm"
s_client other client "$c_port"
echoed other client || ks_fail "other.org not admitted after its bundle was pushed"
"$KS_CTL" --socket "$c" push-bundle --trust-domain other.org --none >"$T/push2.out" 2>&1 ||
	{ cat "$T/push2.out"; ks_fail "push-bundle --none failed"; }
s_client other client "$c_port"
echoed other client && ks_fail "other.org still admitted after its federation ended"
wait_refused "$c" unknown_ca 2
# A bad trust domain is refused, and changes nothing.
if "$KS_CTL" --socket "$c" push-bundle --trust-domain 'Other.Org' "$T/other/bundle.crt" >"$T/push3.out" 2>&1; then
	ks_fail "an invalid trust domain was accepted"
fi
ks_assert_grep "$T/push3.out" 'BAD_TRUST_DOMAIN|trust_domain' "the refusal does not name the trust domain"
ks_pass "SetTrustBundle per trust domain: federation added and ended at run time, bad names refused"

# 4. Bad flags are refused at start, by name.
for bad in "--federated-ca other.org" "--federated-ca Other.org=$T/other/bundle.crt" \
	"--federated-ca example.org=$T/other/bundle.crt" "--federated-ca other.org=$T/missing.pem"; do
	# shellcheck disable=SC2086 # the flag and its value are two words
	if "$KS_BIN" --inbound 127.0.0.1:0=127.0.0.1:1 --cert "$T/ca/server.crt" --key "$T/ca/server.key" \
		--ca "$T/ca/bundle.crt" --control-socket none $bad >"$T/bad.out" 2>&1; then
		ks_fail "started with $bad"
	fi
	grep -qiE 'federated|trust domain' "$T/bad.out" || { cat "$T/bad.out"; ks_fail "no clear error for $bad"; }
done
ks_pass "malformed, own or missing federated bundles refused at start"
