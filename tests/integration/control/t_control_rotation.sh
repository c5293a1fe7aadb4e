#!/usr/bin/env bash
# Hot rotation under load through the control API (issue 5's key test).
#
# Two sidecars start with no identity files; the dev CA (ktlsctl ca) and the
# agent give them their first identities. Then, while a load generator opens
# new connections and streams data through A -> B (every byte checked with
# SHA-256 by ks-stream), both sidecars get a new identity and a new trust
# bundle every 100 ms: B through CreateCsr (agent --once, its key never
# leaves the sidecar), A through push-identity with a key. Zero failed
# handshakes, zero failed or reset streams, zero corrupted bytes; a stream
# opened before the rotations runs through them intact, and a new client
# sees B's newest certificate.
#
# Then a CA rotation with overlap, root A -> A+B -> B, under the same load:
# no failed handshakes, and the early step "bundle B while our certificate
# is from A" is refused with nothing changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
"$KS_CTL" ca init "$T/caA" --trust-domain example.org >/dev/null
"$KS_CTL" ca init "$T/caB" --trust-domain example.org >/dev/null
cat "$T/caA/signer/bundle.pem" "$T/caB/signer/bundle.pem" >"$T/bundleAB.pem"

ks_echo_server "$T/echo.log" echo
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 2 \
	--spiffe-id "$KS_SERVER_ID"
b_pid=$KS_SIDECAR_PID KS_B_PORT=${KS_PORTS[0]}
b_sock=$KS_CTL_SOCKET
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$KS_B_PORT,id=$KS_SERVER_ID" \
	--workers 2 --spiffe-id "$KS_CLIENT_ID"
a_pid=$KS_SIDECAR_PID KS_A_PORT=${KS_PORTS[0]}
a_sock=$KS_CTL_SOCKET
ks_assert_grep "$T/b.log" 'event=identity_loaded identity=none' "B did not start waiting for an identity"

# Before any identity, connections are refused with a reason, not hung.
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 1K --timeout 10 >"$T/early.out" 2>&1 &&
	ks_fail "a connection went through before the sidecars had identities"
ks_wait_log "$T/a.log" 'event=handshake_rejected .*reason=no_identity' 5
ks_pass "without an identity, connections are refused (reason=no_identity)"

"$KS_CTL" --socket "$b_sock" agent --once --ca "$T/caA" --id "$KS_SERVER_ID" 2>>"$T/agent.log"
"$KS_CTL" --socket "$a_sock" agent --once --ca "$T/caA" --id "$KS_CLIENT_ID" 2>>"$T/agent.log"
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 1M --timeout 20 >"$T/first.out" 2>&1 ||
	{ cat "$T/first.out"; ks_fail "no traffic after the agent pushed the first identities"; }
ks_pass "the agent's first identities (CreateCsr, dev CA, SetIdentity) carry traffic"
# B's refusals, from its counters (the log lines are rate-limited).
b_rejected() {
	"$KS_CTL" --socket "$b_sock" status | sed -n 's/^connections .*, \([0-9]*\) refused at handshake$/\1/p'
}
rejected_before=$(b_rejected)
[[ $rejected_before =~ ^[0-9]+$ ]] || ks_fail "no refusal count in B's status"

# A's identities come with their keys: issue them ahead of the clock.
for i in $(seq 1 80); do
	"$KS_CTL" ca issue --ca "$T/caA" "$KS_CLIENT_ID" --ttl 1h --out "$T/a$i" >/dev/null
done

# load LOG STOPFILE: rounds of 4 connections x 256 KiB echoed, new seeds
# each round, until STOPFILE exists. One line per round: rc=N.
load() {
	local log=$1 stop=$2 i=0
	while [[ ! -e $stop ]]; do
		i=$((i + 1))
		rc=0
		"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 256K --conns 4 \
			--seed $((i * 10)) --max-chunk 16K --timeout 60 >>"$log.out" 2>&1 || rc=$?
		echo "round=$i rc=$rc" >>"$log"
	done
}

# check_load LOG MIN_ROUNDS WHAT
check_load() {
	local log=$1 min=$2 what=$3 rounds bad conns
	rounds=$(ks_count "$log" '^round=')
	bad=$(grep -vc ' rc=0$' "$log" || true)
	conns=$(ks_count "$log.out" 'status=ok')
	((bad == 0)) || { grep -v ' rc=0$' "$log"; grep -v 'status=ok' "$log.out" | head; ks_fail "$what: $bad load round(s) failed"; }
	((rounds >= min)) || ks_fail "$what: only $rounds load rounds ran"
	((conns == rounds * 4)) || ks_fail "$what: $conns connections ok out of $((rounds * 4))"
	echo "$conns"
}

# The long stream: opened before the rotations, 48 MiB at 8 MiB/s.
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 48M --rate 8M --seed 7 \
	--half-close --timeout 120 >"$T/long.out" 2>&1 &
long_pid=$!
ks_wait_log "$T/b.log" 'event=conn_open conn=[0-9]+ .*peer_id=spiffe://example.org/ns/a/sa/client' 10
long_serial=$(grep 'event=conn_open' "$T/b.log" | tail -1 | grep -o 'identity_serial=[0-9A-F]*' | cut -d= -f2)

load "$T/load1" "$T/stop1" &
load_pid=$!
sleep 0.5
start=$(date +%s%N)
for i in $(seq 1 60); do
	tick=$(date +%s%N)
	if ((i % 2)); then bundle=$T/bundleAB.pem; else bundle=$T/caA/signer/bundle.pem; fi
	"$KS_CTL" --socket "$b_sock" agent --once --ca "$T/caA" --id "$KS_SERVER_ID" \
		--bundle "$bundle" 2>>"$T/agent.log" &
	p1=$!
	"$KS_CTL" --socket "$a_sock" push-identity --cert "$T/a$i.crt" --key "$T/a$i.key" \
		--bundle "$bundle" >>"$T/push.log" 2>&1 &
	p2=$!
	wait "$p1" || ks_fail "rotation $i of B failed (agent --once)"
	wait "$p2" || { tail -3 "$T/push.log"; ks_fail "rotation $i of A failed (push-identity)"; }
	left=$(((100000000 - ($(date +%s%N) - tick)) / 1000000))
	((left > 0)) && sleep "0.$(printf '%03d' "$left")"
done
secs=$((($(date +%s%N) - start) / 1000000))
touch "$T/stop1"
wait "$load_pid"
conns=$(check_load "$T/load1" 10 "rotation under load")
b_rot=$(ks_count "$T/b.log" 'event=control_update op=SetIdentity')
a_rot=$(ks_count "$T/a.log" 'event=control_update op=SetIdentity')
((b_rot >= 61 && a_rot >= 61)) || ks_fail "expected 61 identity updates each, got B $b_rot, A $a_rot"
[[ $(b_rejected) == "$rejected_before" ]] ||
	{ grep 'event=handshake_rejected' "$T/b.log" | tail -3; ks_fail "B rejected handshakes during the rotations"; }
ks_assert_not_grep "$T/a.log" 'event=handshake_rejected .*reason=(unknown_ca|bad_certificate|server_id_mismatch|peer_rejected)' \
	"A rejected handshakes during the rotations"
ks_pass "60 rotations of identity and bundle on both sidecars in ${secs} ms; $conns connections, each 256 KiB echoed and SHA-256 checked, 0 failed"

wait "$long_pid" || { cat "$T/long.out"; ks_fail "the stream opened before the rotations failed"; }
sent=$(grep -o 'sent_sha256=[0-9a-f]*' "$T/long.out" | cut -d= -f2)
recv=$(grep -o 'recv_sha256=[0-9a-f]*' "$T/long.out" | cut -d= -f2)
[[ -n $sent && $sent == "$recv" ]] || ks_fail "the long stream was corrupted"
ks_pass "the stream opened before the rotations (48 MiB, identity serial $long_serial) finished intact"

# A new client now sees B's newest certificate.
now_serial=$("$KS_CTL" --socket "$b_sock" status | awk '/^serial/ {print $2}')
"$KS_CTL" ca issue --ca "$T/caA" "$KS_CLIENT_ID" --out "$T/probe" >/dev/null
seen=$(timeout 10 openssl s_client -connect "127.0.0.1:$KS_B_PORT" -CAfile "$T/caA/signer/bundle.pem" \
	-cert "$T/probe.crt" -key "$T/probe.key" -cert_chain "$T/caA/signer/intermediate.pem" </dev/null 2>/dev/null |
	openssl x509 -noout -serial | cut -d= -f2)
[[ -n $seen && ${seen##0} == "${now_serial##0}" ]] || ks_fail "new client saw serial '$seen', B's newest is '$now_serial'"
[[ $seen != "$long_serial" ]] || ks_fail "B still presents its first certificate"
ks_pass "a new client sees B's newest certificate ($now_serial)"

# --- CA rotation with overlap: A -> A+B -> B --------------------------------
for s in "$a_sock" "$b_sock"; do "$KS_CTL" --socket "$s" push-bundle "$T/caA/signer/bundle.pem" >/dev/null; done
load "$T/load2" "$T/stop2" &
load_pid=$!
sleep 0.5
# Too early: our certificate is from A, so a bundle of B alone is refused.
set +e
"$KS_CTL" --socket "$b_sock" push-bundle "$T/caB/signer/bundle.pem" >"$T/early_b.out" 2>&1
rc=$?
set -e
((rc == 1)) || ks_fail "bundle B over an identity from A: exit $rc, want 1"
grep -q 'REASON_CHAIN_UNVERIFIED' "$T/early_b.out" || ks_fail "bundle B refusal does not say why: $(cat "$T/early_b.out")"
"$KS_CTL" --socket "$b_sock" status | grep -q 'trust bundle    1 certificate' || ks_fail "refused bundle changed B's state"
ks_pass "bundle B alone is refused while B's certificate is from A (nothing changed)"
for s in "$a_sock" "$b_sock"; do "$KS_CTL" --socket "$s" push-bundle "$T/bundleAB.pem" >/dev/null; done
sleep 1
"$KS_CTL" --socket "$b_sock" agent --once --ca "$T/caB" --id "$KS_SERVER_ID" --bundle "$T/bundleAB.pem" 2>>"$T/agent.log"
"$KS_CTL" --socket "$a_sock" agent --once --ca "$T/caB" --id "$KS_CLIENT_ID" --bundle "$T/bundleAB.pem" 2>>"$T/agent.log"
sleep 1
for s in "$a_sock" "$b_sock"; do "$KS_CTL" --socket "$s" push-bundle "$T/caB/signer/bundle.pem" >/dev/null; done
sleep 1
touch "$T/stop2"
wait "$load_pid"
conns=$(check_load "$T/load2" 3 "CA rotation")
[[ $(b_rejected) == "$rejected_before" ]] ||
	ks_fail "B rejected handshakes during the CA rotation"
fp_b=$(openssl x509 -in "$T/caB/signer/bundle.pem" -outform DER | sha256sum | cut -d' ' -f1)
for s in "$a_sock" "$b_sock"; do
	"$KS_CTL" --socket "$s" status >"$T/st.out"
	grep -q "sha256 $fp_b" "$T/st.out" && grep -q 'trust bundle    1 certificate' "$T/st.out" ||
		{ cat "$T/st.out"; ks_fail "after the CA rotation the bundle is not root B alone"; }
done
ks_pass "CA rotation A -> A+B -> B under load: $conns connections, 0 failed handshakes"
ks_alive "$a_pid" "sidecar A died"
ks_alive "$b_pid" "sidecar B died"
