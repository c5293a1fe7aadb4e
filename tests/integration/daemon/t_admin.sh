#!/usr/bin/env bash
# The admin endpoint (--admin), against real clients:
#  1. /ready is 503 until the control API pushes an identity, then 200;
#  2. a real Prometheus scrapes a sidecar pair while echo traffic and three
#     clients without a certificate run; its query API then reads
#     handshake_failures_total{reason="no_client_cert"} = 3 and byte
#     counters equal to what ks-stream sent; `promtool check metrics` finds
#     nothing to say about either scrape;
#  3. /live turns 503 when worker 0 stalls (the KS_TEST_STALL_FILE seam),
#     and 200 again when it moves;
#  4. the HTTP edge: unknown path 404, wrong method 405, garbage 400, an
#     oversized head 431, Transfer-Encoding 501, a 17th concurrent client
#     503, and slow clients are cut after 5 s;
#  5. POST /quitquitquit from another network namespace is 403 and changes
#     nothing; from loopback it drains and the sidecar exits 0;
#  6. a taken admin port is a start-up error that says what to do.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

for tool in prometheus promtool curl openssl python3; do
	command -v "$tool" >/dev/null || ks_fail "$tool is missing (make deps installs it)"
done

T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo

# GET|POST URL: prints the status code; the body goes to $T/body.
http() {
	curl -s -o "$T/body" -w '%{http_code}' -X "$1" --max-time 10 "$2" || true
}
wait_exit() { # PID WANT WHAT: PID (our child) exits within 15 s with status WANT
	local rc=0
	timeout 15 tail --pid="$1" -f /dev/null || ks_fail "$3 did not exit"
	wait "$1" || rc=$?
	[[ $rc == "$2" ]] || ks_fail "$3 exited $rc, want $2"
}
# PORT REQUEST: sends REQUEST (printf format) raw, prints the status line.
raw() {
	python3 - "$1" "$2" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode("latin-1").decode("unicode_escape").encode("latin-1"))
data = b""
while True:
    try:
        b = s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        break
    if not b:
        break
    data += b
print(data.split(b"\r\n", 1)[0].decode("latin-1"))
EOF
}

# --- 1. /ready follows the identity pushed over the control API
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --admin 127.0.0.1:0
B_PID=$KS_SIDECAR_PID B_PORT=${KS_PORTS[0]} B_SOCK=$KS_CTL_SOCKET
B_ADMIN=$(ks_admin_port "$T/b.log")
[[ -n $B_ADMIN ]] || ks_fail "no event=admin line with the port in b.log"
[[ $(http GET "http://127.0.0.1:$B_ADMIN/ready") == 503 ]] ||
	ks_fail "/ready is not 503 before any identity: $(cat "$T/body")"
grep -q 'no identity' "$T/body" || ks_fail "/ready's 503 does not say why: $(cat "$T/body")"
"$KS_CTL" --socket "$B_SOCK" push-identity --cert "$T/ca/server.crt" --key "$T/ca/server.key" \
	--bundle "$T/ca/bundle.crt" >"$T/push.out" 2>&1 || { cat "$T/push.out"; ks_fail "push-identity failed"; }
[[ $(http GET "http://127.0.0.1:$B_ADMIN/ready") == 200 ]] ||
	ks_fail "/ready is not 200 after the identity arrived: $(cat "$T/body")"
ks_pass "/ready: 503 (no identity) before SetIdentity, 200 after"

# --- 2. a real Prometheus scrapes the pair
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$B_PORT,id=$KS_SERVER_ID" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" --admin 127.0.0.1:0
A_PID=$KS_SIDECAR_PID A_PORT=${KS_PORTS[0]}
A_ADMIN=$(ks_admin_port "$T/a.log")
cat >"$T/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: a
    static_configs: [{targets: ["127.0.0.1:$A_ADMIN"]}]
  - job_name: b
    static_configs: [{targets: ["127.0.0.1:$B_ADMIN"]}]
EOF
ks_bg "$T/prometheus.log" prometheus --config.file="$T/prometheus.yml" \
	--storage.tsdb.path="$T/tsdb" --web.listen-address=127.0.0.1:0 >/dev/null
ks_wait_log "$T/prometheus.log" 'msg="Listening on" address=127.0.0.1:[1-9]' 30
PROM=$(sed -n 's/.*msg="Listening on" address=127.0.0.1:\([0-9][0-9]*\).*/\1/p' "$T/prometheus.log" | head -n 1)

CONNS=4 PER=3145728
"$KS_STREAM" client --connect "127.0.0.1:$A_PORT" --conns $CONNS --bytes $PER --seed 7 \
	--timeout 60 >"$T/stream.out" 2>&1 || { cat "$T/stream.out"; ks_fail "echo traffic through the pair failed"; }
SENT=$((CONNS * PER))
for _ in 1 2 3; do
	openssl s_client -connect "127.0.0.1:$B_PORT" -CAfile "$T/ca/bundle.crt" -quiet \
		</dev/null >/dev/null 2>&1 || true
done
ks_wait_log "$T/b.log" 'reason=no_client_cert' 10
for _ in $(seq 100); do
	[[ $(ks_count "$T/b.log" 'event=handshake_rejected .*reason=no_client_cert') -ge 3 ]] && break
	sleep 0.1
done

# query PROMQL: the single value of an instant vector, or "none".
query() {
	curl -s --max-time 5 -G "http://127.0.0.1:$PROM/api/v1/query" --data-urlencode "query=$1" |
		python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if len(r) == 1 else "none")'
}
expect_query() { # PROMQL WANT WHAT: waits up to 20 s for Prometheus to see WANT
	local got=none
	for _ in $(seq 100); do
		got=$(query "$1") || got=error
		[[ $got == "$2" ]] && return 0
		sleep 0.2
	done
	ks_fail "$3: Prometheus has $1 = $got, want $2"
}
expect_query 'ktls_sidecar_handshake_failures_total{job="b",direction="inbound",reason="no_client_cert"}' 3 \
	"three clients without a certificate"
expect_query 'sum(ktls_sidecar_handshake_failures_total{reason="no_client_cert"})' 3 \
	"no_client_cert over both sidecars"
for q in 'job="a",direction="outbound",flow="to_peer"' 'job="a",direction="outbound",flow="from_peer"' \
	'job="b",direction="inbound",flow="from_peer"' 'job="b",direction="inbound",flow="to_peer"'; do
	expect_query "ktls_sidecar_bytes_total{$q}" "$SENT" "bytes ($q), ks-stream sent $SENT each way"
done
expect_query 'ktls_sidecar_connections_total{job="b",direction="inbound"} > 0' "$CONNS" \
	"inbound connections on B"
expect_query 'sum(ktls_sidecar_identity_updates_total{job="b",source="set_identity",result="accepted"})' 1 \
	"the pushed identity"
ks_pass "Prometheus: no_client_cert = 3, bytes_total = $SENT each way on both sidecars"

for p in "$A_ADMIN" "$B_ADMIN"; do
	curl -s --max-time 5 "http://127.0.0.1:$p/metrics" >"$T/scrape.$p"
	promtool check metrics <"$T/scrape.$p" >"$T/promtool.$p" 2>&1 ||
		{ cat "$T/promtool.$p"; ks_fail "promtool check metrics failed on :$p"; }
	[[ ! -s $T/promtool.$p ]] || { cat "$T/promtool.$p"; ks_fail "promtool has remarks on :$p"; }
done
# The check can fail: a counter without _total is a remark.
sed 's/^ktls_sidecar_bytes_total/ktls_sidecar_bytes/; s/TYPE ktls_sidecar_bytes_total/TYPE ktls_sidecar_bytes/' \
	"$T/scrape.$A_ADMIN" | promtool check metrics >"$T/promtool.neg" 2>&1 || true
[[ -s $T/promtool.neg ]] || ks_fail "promtool found nothing wrong with a counter named without _total"
ks_pass "promtool check metrics: no remarks on either scrape"

# --- 2b. SIGTERM: /ready turns 503 at once, and an open stream still completes
"$KS_STREAM" client --connect "127.0.0.1:$A_PORT" --bytes 6M --rate 3M --seed 11 --half-close \
	--timeout 60 >"$T/drain.out" 2>&1 &
STREAM=$!
ks_wait_log "$T/b.log" "event=conn_open .*dir=inbound" 10
for _ in $(seq 100); do
	[[ $(ks_count "$T/b.log" 'event=conn_open .*dir=inbound') -gt $CONNS ]] && break
	sleep 0.05
done
kill -TERM "$B_PID"
ks_wait_log "$T/b.log" 'event=draining' 5
[[ $(http GET "http://127.0.0.1:$B_ADMIN/ready") == 503 ]] || ks_fail "/ready is not 503 while B drains"
grep -q draining "$T/body" || ks_fail "/ready's 503 does not say draining: $(cat "$T/body")"
wait "$STREAM" || { cat "$T/drain.out"; ks_fail "the open stream did not survive B's drain"; }
grep -q 'status=ok' "$T/drain.out" || ks_fail "ks-stream did not check the stream"
wait_exit "$B_PID" 0 "B after SIGTERM"
ks_pass "SIGTERM: /ready 503 (draining) at once; the open 6 MiB stream completed, SHA-256 checked"

# --- 3. /live and a stalled worker (test seam)
STALL=$T/stall
KS_TEST_STALL_FILE=$STALL ks_sidecar "$T/c.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" \
	--admin 127.0.0.1:0 --workers 1 --stall-timeout 3s
C_PID=$KS_SIDECAR_PID C_ADMIN=$(ks_admin_port "$T/c.log")
ks_assert_grep "$T/c.log" 'event=test_seam name=KS_TEST_STALL_FILE' "the seam did not announce itself"
sleep 1.5
[[ $(http GET "http://127.0.0.1:$C_ADMIN/live") == 200 ]] || ks_fail "/live is not 200 on an idle sidecar"
touch "$STALL"
code=200
for _ in $(seq 100); do
	code=$(http GET "http://127.0.0.1:$C_ADMIN/live")
	[[ $code == 503 ]] && break
	sleep 0.1
done
[[ $code == 503 ]] || ks_fail "/live stayed $code while worker 0 stalled"
grep -q 'worker 0' "$T/body" || ks_fail "/live's 503 does not name the worker: $(cat "$T/body")"
rm -f "$STALL"
for _ in $(seq 100); do
	code=$(http GET "http://127.0.0.1:$C_ADMIN/live")
	[[ $code == 200 ]] && break
	sleep 0.1
done
[[ $code == 200 ]] || ks_fail "/live stayed $code after worker 0 moved again"
ks_pass "/live: 503 naming worker 0 while it stalled, 200 again after"

# --- 4. the HTTP edge
[[ $(http GET "http://127.0.0.1:$C_ADMIN/nope") == 404 ]] || ks_fail "an unknown path is not 404"
[[ $(http GET "http://127.0.0.1:$C_ADMIN/quitquitquit") == 405 ]] || ks_fail "GET /quitquitquit is not 405"
[[ $(http POST "http://127.0.0.1:$C_ADMIN/metrics") == 405 ]] || ks_fail "POST /metrics is not 405"
[[ $(raw "$C_ADMIN" 'garbage\r\n\r\n') == "HTTP/1.1 400 Bad Request" ]] || ks_fail "garbage is not 400"
[[ $(raw "$C_ADMIN" 'GET /ready HTTP/1.1\r\nHost : x\r\n\r\n') == "HTTP/1.1 400 Bad Request" ]] ||
	ks_fail "whitespace before a header's colon is not 400"
[[ $(raw "$C_ADMIN" 'POST /drain HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n') == \
	"HTTP/1.1 501 Not Implemented" ]] || ks_fail "Transfer-Encoding is not 501"
[[ $(raw "$C_ADMIN" "GET /ready HTTP/1.1\\r\\nX: $(head -c 9000 /dev/zero | tr '\0' a)\\r\\n\\r\\n") == \
	"HTTP/1.1 431 Request Header Fields Too Large" ]] || ks_fail "a 9000-byte header is not 431"
[[ $(raw "$C_ADMIN" 'GET /ready HTTP/2.0\r\n\r\n') == "HTTP/1.1 505 HTTP Version Not Supported" ]] ||
	ks_fail "HTTP/2.0 is not 505"
# 16 clients that send nothing hold every slot: the 17th is turned away,
# and the silent ones are cut at 5 s.
python3 - "$C_ADMIN" >"$T/slots.out" 2>&1 <<'EOF' || { cat "$T/slots.out"; ks_fail "client bound"; }
import socket, sys, time
port = int(sys.argv[1])
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
time.sleep(0.5)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"GET /ready HTTP/1.1\r\n\r\n")
line = s.recv(4096).split(b"\r\n", 1)[0]
assert line == b"HTTP/1.1 503 Service Unavailable", line
t0 = time.monotonic()
for c in idle:
    c.settimeout(10)
    assert c.recv(1) == b"", "an idle client got data"
cut = time.monotonic() - t0
assert cut < 9, "idle clients were not cut by the request deadline (%.1fs)" % cut
print("idle clients cut after %.1f s" % cut)
EOF
[[ $(http GET "http://127.0.0.1:$C_ADMIN/ready") == 200 ]] || ks_fail "/ready failed after the slots freed"
ks_pass "HTTP edge: 404 405 400 501 431 505; 17th client 503; silent clients cut ($(cat "$T/slots.out"))"

# --- 5. /quitquitquit: loopback only
N=ks-admin-$$
ip netns add "$N" || ks_fail "cannot create a network namespace"
ks_cleanup_add ip netns del "$N"
net=10.251.$((RANDOM % 250)).
ip link add "ksa$$" type veth peer name "ksb$$" netns "$N" || ks_fail "cannot create a veth pair"
ks_cleanup_add ip link del "ksa$$"
ip addr add "${net}1/30" dev "ksa$$" && ip link set "ksa$$" up
ip -n "$N" addr add "${net}2/30" dev "ksb$$" && ip -n "$N" link set "ksb$$" up
ks_sidecar "$T/d.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" --admin 0.0.0.0:0
D_PID=$KS_SIDECAR_PID D_ADMIN=$(ks_admin_port "$T/d.log")
code=$(ip netns exec "$N" curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -X POST \
	"http://${net}1:$D_ADMIN/quitquitquit" || true)
[[ $code == 403 ]] || ks_fail "POST /quitquitquit from ${net}2 got $code, want 403"
[[ $(ip netns exec "$N" curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
	"http://${net}1:$D_ADMIN/ready") == 200 ]] || ks_fail "a refused /quitquitquit changed /ready"
ks_alive "$D_PID" "a refused /quitquitquit stopped the sidecar"
ks_assert_grep "$T/d.log" 'event=admin_refused path=/quitquitquit' "the refusal was not logged"
[[ $(http POST "http://127.0.0.1:$D_ADMIN/quitquitquit") == 202 ]] ||
	ks_fail "POST /quitquitquit from loopback was not accepted: $(cat "$T/body")"
wait_exit "$D_PID" 0 "the sidecar after /quitquitquit"
ks_pass "/quitquitquit: 403 from ${net}2 (nothing changed), 202 from loopback, then exit 0"

# --- 6. a taken admin port
ks_bg "$T/e.log" "$KS_BIN" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" \
	--admin "127.0.0.1:$C_ADMIN" >/dev/null
wait_exit "$KS_BG_PID" 1 "a sidecar whose admin port is taken"
ks_assert_grep "$T/e.log" "event=start_failed admin=127.0.0.1:$C_ADMIN .*Address already in use.*--admin" \
	"the start-up error does not say the port is taken and what to do"
ks_pass "a taken admin port: exit 1, saying so and how to choose another"

kill "$A_PID" "$C_PID" 2>/dev/null || true
