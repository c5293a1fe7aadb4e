#!/usr/bin/env bash
# The SPIFFE Workload API (--workload-api), against a server written for the
# test with Debian's python3-grpcio (tests/tools/wapi_server.py; messages
# from proto/workload.proto by Debian's protoc):
#  - the server refuses a call without the workload.spiffe.io metadata, and
#    takes ours: the sidecar sends it;
#  - first SVID: /ready 503 until it comes, then 200, and handshakes present
#    its serial; the first SVID of a response is the one taken;
#  - rotation every second under load through A -> B (SHA-256-checked
#    streams): no connection fails, the last serial is served;
#  - a federated bundle in the response admits a peer of a second trust
#    domain that was refused before it;
#  - malformed responses (garbage DER, a key that does not match, a
#    spiffe_id other than the certificate's) are rejected, logged, counted,
#    and the serial in force stays;
#  - the server going away and coming back, at first refusing with
#    PERMISSION_DENIED: the identity stays, the status is logged, the
#    sidecar retries and takes the next SVID;
#  - --spiffe-id picks its SVID out of several.
# Waits have generous bounds; nothing here measures time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

command -v curl >/dev/null || ks_skip "curl not installed"
command -v protoc >/dev/null || ks_skip "protoc not installed (make deps: protobuf-compiler)"
PY=
for p in /usr/bin/python3 python3; do
	if "$p" -c 'import grpc, google.protobuf' 2>/dev/null; then
		PY=$p
		break
	fi
done
[[ -n $PY ]] || ks_skip "no python3 with grpc (make deps: python3-grpcio, python3-protobuf)"

T=$(ks_tmpdir)
ks_pki "$T"
OTHER_CLIENT=spiffe://other.org/ns/x/sa/client
STRANGER=spiffe://example.org/ns/c/sa/stranger
"$KS_PKI" ca "$T/other" &
for n in 1 2 3 4 5 6 7 8; do
	"$KS_PKI" issue "$T/ca" "s$n" "$KS_SERVER_ID" --serial "$((5000 + n))" &
done
"$KS_PKI" issue "$T/ca" stranger "$STRANGER" &
wait
"$KS_PKI" issue "$T/other" client "$OTHER_CLIENT"
hex() { printf '%X' "$((5000 + $1))"; }
protoc --python_out="$T" -I "$KS_ROOT/proto" "$KS_ROOT/proto/workload.proto"

SOCK=$T/agent/api.sock CTL=$T/ctl
mkdir -p "$T/agent" "$CTL"
SERVER=$KS_ROOT/tests/tools/wapi_server.py
start_server() {
	rm -f "$SOCK"
	ks_bg "$T/wapi.$1.log" "$PY" -u "$SERVER" serve "$SOCK" "$T" "$CTL" >/dev/null
	WAPI_PID=$KS_BG_PID
	ks_wait_log "$T/wapi.$1.log" '^listening on ' 20 || ks_fail "the Workload API server did not start"
}
SEQ=0
# push LOG JSON_SVIDS [JSON_FEDERATED]: the server sends a new response.
push() {
	local log=$1 svids=$2 fed=${3:-'{}'}
	SEQ=$((SEQ + 1))
	printf '{"seq": %d, "svids": [%s], "federated": %s}\n' "$SEQ" "$svids" "$fed" >"$CTL/next.tmp"
	mv "$CTL/next.tmp" "$CTL/next.json"
	ks_wait_log "$log" "^sent seq=$SEQ streams=" 10 || ks_fail "the server did not send response $SEQ"
}
svid() { # ID CRT KEY [BUNDLE]
	printf '{"id": "%s", "crt": "%s", "key": "%s", "bundle": "%s"}' "$1" "$2" "$3" \
		"${4:-$T/ca/bundle.crt}"
}
good() { svid "$KS_SERVER_ID" "$T/ca/s$1.crt" "$T/ca/s$1.key"; }

start_server 1
# (a) The server is a real agent's equal: no metadata, no SVID.
out=$("$PY" "$SERVER" probe "$SOCK" "$T" --no-header)
[[ $out == "refused INVALID_ARGUMENT: security header missing from request" ]] ||
	ks_fail "the test server took a call without workload.spiffe.io: $out"
ks_assert_grep "$T/wapi.1.log" '^refused: no workload.spiffe.io metadata' "the server did not log the refusal"
ks_pass "the server refuses a call without the workload.spiffe.io metadata"

ks_echo_server "$T/echo.log" echo
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 2 \
	--workload-api "unix://$SOCK" --admin 127.0.0.1:0 \
	--allow 'spiffe://example.org/ns/a/sa/*' --allow 'spiffe://other.org/ns/x/sa/*'
B_PORT=${KS_PORTS[0]} B_PID=$KS_SIDECAR_PID
ADMIN=$(ks_admin_port "$T/b.log")
ks_wait_log "$T/wapi.1.log" '^stream open user-agent=ktls-sidecar' 10 ||
	ks_fail "the sidecar's stream was not taken (is workload.spiffe.io sent?)"
(($(ks_count "$T/wapi.1.log" '^refused') == 1)) || ks_fail "the server refused the sidecar's call"
ks_pass "the sidecar's FetchX509SVID carries the metadata: its stream is open"

ready() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/ready"; }
metric() { # RESULT: identity_updates_total{source="workload_api",result=RESULT}
	curl -s "http://127.0.0.1:$ADMIN/metrics" |
		sed -n "s/^ktls_sidecar_identity_updates_total{source=\"workload_api\",result=\"$1\"} //p"
}
updated() { # HEX: B applied the SVID with serial HEX
	ks_wait_log "$T/b.log" "event=workload_api_update .*serial=0*$1 " 10 ||
		ks_fail "B did not apply serial $1"
}

# (b) First SVID: not ready before it, ready after, and served.
[[ $(ready) == 503 ]] || ks_fail "/ready is $(ready) before any SVID, want 503"
curl -s "http://127.0.0.1:$ADMIN/ready" | grep -q 'no identity yet' ||
	ks_fail "/ready does not say it waits for an identity"
# Two SVIDs: the first is the default (SPIFFE_Workload_API.md).
push "$T/wapi.1.log" "$(good 1), $(svid "$STRANGER" "$T/ca/stranger.crt" "$T/ca/stranger.key")"
updated "$(hex 1)"
ks_assert_grep "$T/b.log" "event=workload_api_update id=$KS_SERVER_ID serial=0*$(hex 1) .*svids=2 " \
	"B did not take the first of two SVIDs"
for _ in $(seq 50); do [[ $(ready) == 200 ]] && break; sleep 0.1; done
[[ $(ready) == 200 ]] || ks_fail "/ready is $(ready) with an SVID in force, want 200"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 1)"
ks_pass "first SVID: /ready 503 -> 200, handshakes present serial $(hex 1) (the first of two)"

# (c) A new SVID every second while clients handshake through A -> B.
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$B_PORT,id=$KS_SERVER_ID" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
A_PORT=${KS_PORTS[0]}
ks_load_start "$T" "$A_PORT"
for n in 2 3 4 5; do
	sleep 1
	push "$T/wapi.1.log" "$(good "$n")"
	updated "$(hex "$n")"
done
sleep 0.5
ks_load_stop "the rotations"
ks_assert_not_grep "$T/b.log" 'event=handshake_(failed|rejected)' "a handshake failed during the rotations"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 5)"
ks_pass "4 rotations a second apart under load: $KS_LOAD_OKS connections in $KS_LOAD_RUNS runs, all intact"

# (d) Federation: other.org's client is refused until the response brings
# other.org's bundle.
other_echo() {
	(echo "ping-other"; sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$B_PORT" \
		-CAfile "$T/ca/bundle.crt" -cert "$T/other/client.crt" -key "$T/other/client.key" \
		-cert_chain "$T/other/int.crt" 2>&1 | grep -q ping-other
}
other_echo && ks_fail "other.org was admitted without a federated bundle"
push "$T/wapi.1.log" "$(good 5)" "{\"spiffe://other.org\": \"$T/other/bundle.crt\"}"
ks_wait_log "$T/b.log" "event=workload_api_update .*serial=0*$(hex 5) .*federated=1" 10 ||
	ks_fail "B did not take the federated bundle"
other_echo || ks_fail "other.org's client was not admitted with its federated bundle"
ks_pass "a federated bundle in the response admits other.org's peer (refused before)"

# (e) Malformed responses: rejected, logged, counted; the serial stays.
REJ='event=workload_api_rejected'
rej0=$(metric rejected)
printf '\x30\x82\x01\x00garbage' >"$T/garbage.bin"
rejected() { # WHAT SVID_JSON REASON_REGEX
	local before line re
	before=$(ks_count "$T/b.log" "$REJ")
	push "$T/wapi.1.log" "$2"
	for _ in $(seq 100); do
		(($(ks_count "$T/b.log" "$REJ") > before)) && break
		sleep 0.05
	done
	line=$(grep -E "$REJ" "$T/b.log" | tail -1)
	re="reason=\"[^\"]*($3)[^\"]*\" .*kept_serial=0*$(hex 5)( |\$)"
	[[ $line =~ $re ]] || ks_fail "$1: not rejected with /$3/ keeping $(hex 5): ${line:-nothing logged}"
	ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 5)"
	ks_pass "$1: rejected, serial $(hex 5) still served"
}
rejected "garbage DER" "$(svid "$KS_SERVER_ID" "$T/garbage.bin" "$T/ca/s6.key")" 'not DER'
rejected "a key that does not match" "$(svid "$KS_SERVER_ID" "$T/ca/s6.crt" "$T/ca/s5.key")" 'match'
rejected "a wrong SPIFFE ID" "$(svid "spiffe://example.org/ns/b/sa/wrong" "$T/ca/s6.crt" "$T/ca/s6.key")" \
	'the response says spiffe://example.org/ns/b/sa/wrong'
rej=$(metric rejected)
((rej == rej0 + 3)) || ks_fail "rejected count $rej, want $((rej0 + 3))"
acc=$(metric accepted)
((acc >= 6)) || ks_fail "accepted count $acc, want at least 6"
ks_pass "metrics: workload_api accepted=$acc rejected=$rej"

# (f) The agent goes away: the identity stays; it comes back: B reconnects
# and takes the next SVID.
kill "$WAPI_PID"
wait "$WAPI_PID" 2>/dev/null || true
ks_wait_log "$T/b.log" 'event=workload_api_disconnected .*retry_ms=' 10 ||
	ks_fail "B did not notice the server going away"
[[ $(ready) == 200 ]] || ks_fail "/ready is $(ready) while the agent is away, want 200"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 5)"
sleep 1 # a reconnect or two fails meanwhile
start_server 2
ks_wait_log "$T/wapi.2.log" '^stream open user-agent=ktls-sidecar' 20 ||
	ks_fail "B did not reconnect to the new server"
# The agent refuses (PERMISSION_DENIED, as SPIRE's does for a workload it
# has no entry for): the status is logged, B retries with backoff and keeps
# its identity; the next SVID is taken once the agent gives one.
SEQ=$((SEQ + 1))
echo "{\"seq\": $SEQ, \"deny\": \"no identity issued\"}" >"$CTL/next.tmp"
mv "$CTL/next.tmp" "$CTL/next.json"
DENIED='event=workload_api_disconnected .*reason="grpc-status 7 PERMISSION_DENIED: no identity issued"'
for _ in $(seq 200); do
	(($(ks_count "$T/b.log" "$DENIED") >= 2)) && break
	sleep 0.05
done
(($(ks_count "$T/b.log" "$DENIED") >= 2)) || ks_fail "B did not log the agent's refusal and retry"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 5)"
[[ $(ready) == 200 ]] || ks_fail "/ready is $(ready) while the agent refuses, want 200"
push "$T/wapi.2.log" "$(good 7)"
updated "$(hex 7)"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 7)"
(($(ks_count "$T/b.log" 'event=workload_api_connected') >= 2)) || ks_fail "no second connection logged"
ks_pass "the server went away (identity kept, /ready 200), came back refusing (grpc-status logged, retried), then gave $(hex 7): taken"

# SIGHUP has no files to read: it says so, and the SVID stays.
kill -HUP "$B_PID"
ks_wait_log "$T/b.log" 'event=identity_reload_skipped .*comes from the Workload API' 10 ||
	ks_fail "SIGHUP with the Workload API did not say it has nothing to reload"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 7)"
ks_pass "SIGHUP: nothing to reload (the Workload API gives the identity), serial $(hex 7) kept"

# (g) --spiffe-id picks its SVID, wherever it is in the response.
ks_sidecar "$T/c.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 1 \
	--workload-api "$SOCK" --spiffe-id "$KS_SERVER_ID"
push "$T/wapi.2.log" "$(svid "$STRANGER" "$T/ca/stranger.crt" "$T/ca/stranger.key"), $(good 8)"
ks_wait_log "$T/c.log" "event=workload_api_update id=$KS_SERVER_ID serial=0*$(hex 8) .*svids=2 " 10 ||
	ks_fail "C did not pick --spiffe-id's SVID (the second)"
ks_pass "--spiffe-id picks the second of two SVIDs"
