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
