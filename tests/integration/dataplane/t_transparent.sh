#!/usr/bin/env bash
# --outbound-transparent: an unmodified app connects to the remote's real
# address; iptables REDIRECT (in a network namespace standing in for the pod)
# sends it to the sidecar, which finds the destination with SO_ORIGINAL_DST
# and originates mTLS to it. The app runs as 'nobody' and only its traffic is
# redirected, so the sidecar's own connect is not (no loop). A connection
# that was not redirected is refused with a reason.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ $(id -u) -eq 0 ]] || ks_skip "needs root for a network namespace and iptables"
command -v iptables >/dev/null || ks_skip "iptables is not installed"
T=$(ks_tmpdir)
chmod 755 "$T"
ns=ks-transparent-$$
ip netns add "$ns" || ks_skip "cannot create a network namespace"
ks_cleanup_add ip netns del "$ns"
ip -n "$ns" link set lo up
if ! ip netns exec "$ns" iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 9443 \
	-m owner --uid-owner nobody -j REDIRECT --to-ports 15001 2>"$T/ipt.err"; then
	ks_skip "iptables nat REDIRECT unavailable: $(cat "$T/ipt.err")"
fi

ks_pki "$T"
chmod -R a+rX "$T"
# In the namespace: echo app on 8080, B (inbound) on 9443, A (transparent) on 15001.
ks_bg "$T/echo.log" ip netns exec "$ns" "$KS_STREAM" server --listen 127.0.0.1:8080 --mode echo >/dev/null
ks_bg "$T/b.log" ip netns exec "$ns" "$KS_BIN" --inbound 127.0.0.1:9443=127.0.0.1:8080 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" --workers 1 >/dev/null
ks_bg "$T/a.log" ip netns exec "$ns" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" --workers 1 >/dev/null
a_pid=$KS_BG_PID
ks_wait_log "$T/a.log" 'event=ready'
ks_wait_log "$T/b.log" 'event=ready'

# The app, as nobody, talks to 127.0.0.1:9443 in plaintext and knows nothing.
ip netns exec "$ns" setpriv --reuid=nobody --regid=nogroup --clear-groups \
	"$KS_STREAM" client --connect 127.0.0.1:9443 --bytes 8M --half-close --timeout 60 \
	>"$T/client.out" 2>&1 || { cat "$T/client.out"; ks_fail "app traffic through the transparent path failed"; }
ks_assert_grep "$T/a.log" "event=conn_open .*dir=outbound .*peer=127.0.0.1:9443 peer_id=$KS_SERVER_ID" \
	"A did not originate mTLS to the original destination"
ks_assert_grep "$T/b.log" "event=conn_open .*peer_id=$KS_CLIENT_ID" "B did not see A's identity"
ks_pass "redirected app connection carried over mTLS to its original destination (8 MiB intact)"

# Root's connection to the listener itself is not redirected: refused, logged.
# The nat rule above makes conntrack track it and answer SO_ORIGINAL_DST with
# the listener's own address; that must read as "not redirected".
ip netns exec "$ns" python3 -c '
import socket
s = socket.create_connection(("127.0.0.1", 15001), timeout=5)
s.settimeout(5)
print(s.recv(10))' >"$T/direct.out" 2>&1 || true
ks_wait_log "$T/a.log" 'event=handshake_rejected .*reason=upstream_connect_failed .*not redirected' 5
ks_pass "a connection that was not redirected is refused with a reason"

# Per-destination expected IDs. A restarted with a wrong ID for 9443: the
# app's connection is refused by the destination's entry, not the trust domain.
# stop PID: ends a sidecar and waits until its port is free.
stop() {
	kill "$1" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
	ks_fail "sidecar $1 did not stop"
}
stop "$a_pid"
ks_bg "$T/a2.log" ip netns exec "$ns" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" --workers 1 \
	--control-socket none --destination-id "127.0.0.1:9443=spiffe://example.org/ns/b/sa/other" >/dev/null
a_pid=$KS_BG_PID
ks_wait_log "$T/a2.log" 'event=ready'
app() { # PORT BYTES: the app's connection, as nobody
	ip netns exec "$ns" setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$KS_STREAM" client --connect "127.0.0.1:$1" --bytes "$2" --half-close --timeout 20 \
		>"$T/app.$1.out" 2>&1
}
app 9443 1K && ks_fail "the app reached a destination whose server ID does not match its entry"
ks_wait_log "$T/a2.log" "event=handshake_rejected .*reason=server_id_mismatch .*destination's expected ID" 5
ks_pass "--destination-id: a server with another ID than the destination's entry is refused"

# --unknown-destination refuse: a destination no entry names never gets a
# connection; the CIDR entry admits 9443. 9444 is redirected too, to an
# echo server that would answer anything.
ip netns exec "$ns" iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 9444 \
	-m owner --uid-owner nobody -j REDIRECT --to-ports 15001
ks_bg "$T/echo9444.log" ip netns exec "$ns" "$KS_STREAM" server --listen 127.0.0.1:9444 --mode echo >/dev/null
stop "$a_pid"
ks_bg "$T/a3.log" ip netns exec "$ns" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" --workers 1 \
	--control-socket "$T/a3.sock" --destination-id "127.0.0.0/8:9443=$KS_SERVER_ID" \
	--unknown-destination refuse >/dev/null
ks_wait_log "$T/a3.log" 'event=ready'
app 9443 2M || { cat "$T/app.9443.out"; ks_fail "the CIDR entry did not admit 9443"; }
app 9444 1K && ks_fail "a destination without an entry was reached"
ks_wait_log "$T/a3.log" 'event=handshake_rejected .*peer=127.0.0.1:9444 .*reason=no_destination_id' 5
ks_assert_not_grep "$T/a3.log" 'event=conn_open .*peer=127.0.0.1:9444' "a connection to 9444 was opened"
ks_pass "--unknown-destination refuse: an unnamed destination is refused before a byte leaves"

# SetPolicy's destinations replace the command line's; the refusal of
# unknown destinations is the operator's and stays.
"$KS_CTL" --socket "$T/a3.sock" set-policy \
	--destination "127.0.0.1:9443=spiffe://example.org/ns/b/sa/other" >"$T/policy.out" 2>&1 ||
	{ cat "$T/policy.out"; ks_fail "set-policy --destination failed"; }
ks_assert_grep "$T/policy.out" '1 destination\(s\), unknown destinations refused' "set-policy did not confirm"
app 9443 1K && ks_fail "the pushed destination entry was not enforced"
ks_wait_log "$T/a3.log" "event=handshake_rejected .*reason=server_id_mismatch .*destination's expected ID" 5
if "$KS_CTL" --socket "$T/a3.sock" set-policy --destination "db.local:5432=$KS_SERVER_ID" >"$T/policy2.out" 2>&1; then
	ks_fail "a destination by name was accepted"
fi
ks_assert_grep "$T/policy2.out" 'not an IPv4 or IPv6 address' "no clear error for a bad destination"
ks_pass "SetPolicy destinations enforced at run time; bad ones refused"
