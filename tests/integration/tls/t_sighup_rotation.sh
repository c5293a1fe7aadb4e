#!/usr/bin/env bash
# SIGHUP rotation mid-transfer: the open stream completes intact on the old
# identity, new handshakes present the new certificate, and a corrupt or
# mismatched file is rejected with a clear log line while the last good
# identity stays in force.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
"$KS_PKI" issue "$T/ca" server2 "$KS_SERVER_ID" --serial 4242
"$KS_PKI" issue "$T/ca" other "$KS_SERVER_ID" --serial 4343
# B reads its identity from these paths; we swap the files underneath it.
cp "$T/ca/server.crt" "$T/live.crt"
cp "$T/ca/server.key" "$T/live.key"

# No --count: the s_client probes below are connections to the app too.
ks_echo_server "$T/echo.log" echo
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 2 \
	--cert "$T/live.crt" --key "$T/live.key" --ca "$T/ca/bundle.crt"
b_pid=$KS_SIDECAR_PID KS_B_PORT=${KS_PORTS[0]}
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$KS_B_PORT,id=$KS_SERVER_ID" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
KS_A_PORT=${KS_PORTS[0]}

# serial_seen: the serial of the certificate B presents to a new client.
serial_seen() {
	timeout 10 openssl s_client -connect "127.0.0.1:$KS_B_PORT" -CAfile "$T/ca/bundle.crt" \
		-cert "$T/ca/client.crt" -key "$T/ca/client.key" -cert_chain "$T/ca/int.crt" \
		</dev/null 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2
}
old_serial=$(openssl x509 -in "$T/ca/server.crt" -noout -serial | cut -d= -f2)
[[ $(serial_seen) == "$old_serial" ]] || ks_fail "B does not present its initial certificate"

# A 48 MiB stream at 8 MiB/s: open for about 6 s, across both reloads.
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 48M --rate 8M --seed 3 \
	--half-close --timeout 120 >"$T/client.out" 2>&1 &
client_pid=$!
ks_wait_log "$T/b.log" 'event=conn_open' 10
sleep 1

cp "$T/ca/server2.crt" "$T/live.crt"
cp "$T/ca/server2.key" "$T/live.key"
kill -HUP "$b_pid"
ks_wait_log "$T/b.log" 'event=identity_reloaded .*serial=(0+)?1092' 10 # 4242 = 0x1092
[[ $(serial_seen) =~ ^0*1092$ ]] || ks_fail "new connections do not see the new certificate"
ks_pass "SIGHUP: new handshakes present the new certificate"

# A corrupt certificate file: rejected, the new-but-good identity stays.
head -c 700 "$T/ca/other.crt" >"$T/live.crt"
kill -HUP "$b_pid"
ks_wait_log "$T/b.log" 'event=identity_reload_rejected .*kept_serial=0*1092' 10
ks_assert_grep "$T/b.log" 'event=identity_reload_rejected .*reason="[^"]*(PEM|certificate)' \
	"rejection does not say what is wrong"
[[ $(serial_seen) =~ ^0*1092$ ]] || ks_fail "a corrupt file replaced the identity"
ks_pass "corrupt certificate rejected, previous identity kept"

# A certificate whose key does not match.
cp "$T/ca/other.crt" "$T/live.crt"
kill -HUP "$b_pid"
ks_wait_log "$T/b.log" 'event=identity_reload_rejected .*does not match' 10
[[ $(serial_seen) =~ ^0*1092$ ]] || ks_fail "a mismatched key replaced the identity"
ks_pass "mismatched key rejected, previous identity kept"

ks_alive "$client_pid" "the stream ended early: it should still be running across the reloads"
wait "$client_pid" || { cat "$T/client.out"; ks_fail "the stream opened before the reloads failed"; }
c_sent=$(grep -o 'sent_sha256=[0-9a-f]*' "$T/client.out")
c_recv=$(grep -o 'recv_sha256=[0-9a-f]*' "$T/client.out")
[[ ${c_sent#sent_} == "${c_recv#recv_}" ]] || ks_fail "stream corrupted across reloads"
# It ran on the identity it started with.
ks_assert_grep "$T/b.log" "event=conn_open conn=1 .*identity_serial=$old_serial" "first connection not on the old identity"
ks_pass "the open stream completed intact (48 MiB) on the old identity"
