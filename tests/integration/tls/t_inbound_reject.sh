#!/usr/bin/env bash
# Every inbound refusal has its own logged reason, with the peer address,
# and a misbehaving peer never takes the process down. Peers are real
# `openssl s_client` processes and raw bytes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
P=$KS_PKI
"$P" ca "$T/foreign"
"$P" issue "$T/foreign" alien "$KS_CLIENT_ID"
"$P" issue "$T/ca" expired "$KS_CLIENT_ID" --expired
"$P" issue "$T/ca" future "$KS_CLIENT_ID" --not-yet-valid
"$P" issue "$T/ca" intruder spiffe://example.org/ns/other/sa/intruder
"$P" issue "$T/ca" nouri unused --no-uri
"$P" selfsigned "$T/ca" selfsigned "$KS_CLIENT_ID"

log=$T/sidecar.log
ks_http_server "$T/app.log"
app=$KS_HTTP_PORT
ks_sidecar "$log" --inbound "127.0.0.1:0=127.0.0.1:$app" \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" \
	--allow 'spiffe://example.org/ns/a/sa/*' --handshake-timeout 30s --first-byte-timeout 1s --workers 2
port=${KS_PORTS[0]}

# s_client NAME ARGS...: one connection with a client certificate NAME (or
# none); its output is kept for debugging.
s_client() {
	local name=$1
	shift
	local args=()
	if [[ $name != none ]]; then
		local dir=$T/ca
		[[ $name == alien ]] && dir=$T/foreign
		args=(-cert "$dir/$name.crt" -key "$dir/$name.key" -cert_chain "$dir/int.crt")
	fi
	printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
		-CAfile "$T/ca/bundle.crt" -ign_eof "${args[@]}" "$@" >"$T/s_client.$name.out" 2>&1 || true
}

# The sidecar's counters (ktlsctl status): refusals in all, and by reason.
sock=$KS_CTL_SOCKET
refused_total() {
	"$KS_CTL" --socket "$sock" status | sed -n 's/^connections .*, \([0-9]*\) refused at handshake$/\1/p'
}
refused_by() { # REASON
	local n
	n=$("$KS_CTL" --socket "$sock" status | sed -n "s/^refused by .*[ ,]$1 \([0-9]*\).*/\1/p")
	echo "${n:-0}"
}

# expect_reason REASON: exactly one new refusal, counted under that reason,
# and its line (a few refusals per reason and source are all logged: the
# limiter's burst) names the reason and the client's address.
seen=0
declare -A by=()
expect_reason() {
	local reason=$1 n=0 last
	for _ in $(seq 200); do
		n=$(refused_total)
		[[ $n -gt $seen ]] && break
		sleep 0.05
	done
	[[ $n -eq $((seen + 1)) ]] || ks_fail "expected one new refusal ($reason), have $((n - seen))"
	seen=$n
	by[$reason]=$((${by[$reason]:-0} + 1))
	[[ $(refused_by "$reason") == "${by[$reason]}" ]] ||
		ks_fail "the $reason counter says $(refused_by "$reason"), want ${by[$reason]}"
	last=$(grep 'event=handshake_rejected' "$log" | tail -n 1)
	[[ $last =~ peer=127\.0\.0\.1:[0-9]+\ .*reason=$reason\  ]] ||
		ks_fail "want reason=$reason with the peer address, got: $last"
	ks_pass "$reason"
}

s_client none
expect_reason no_client_cert
s_client alien
expect_reason unknown_ca
s_client selfsigned
expect_reason unknown_ca
s_client expired
expect_reason expired
s_client future
expect_reason not_yet_valid
s_client intruder
expect_reason identity_not_allowed
ks_assert_grep "$log" 'peer_id=spiffe://example.org/ns/other/sa/intruder reason=identity_not_allowed' \
	"identity_not_allowed does not name the peer ID"
s_client nouri
expect_reason no_spiffe_id

# Garbage instead of a ClientHello.
# (a first byte of 22 would look like a handshake record: not this one; a
# second byte of 0 is no TLS version, so no random header can pass for one)
{ printf '\x01\x00'; head -c 4096 /dev/urandom; } | timeout 5 bash -c "cat >/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
expect_reason not_tls

# A TLS record header announcing 65,535 bytes, over 2^14 (RFC 8446 §5.1):
# TLS framing, so not not_tls.
{ printf '\x16\x03\x01\xff\xff'; head -c 64 /dev/zero; } | timeout 5 bash -c "cat >/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
expect_reason record_overflow

# A real ClientHello, then a close_notify alert instead of the rest.
python3 - "$port" <<'PY'
import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
t = ctx.wrap_bio(i, o, server_side=False)
try:
    t.do_handshake()
except ssl.SSLWantReadError:
    pass
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(o.read() + bytes.fromhex("15030300020100"))  # alert: warning, close_notify
time.sleep(0.5)
s.close()
PY
expect_reason handshake_close_notify

# A plaintext HTTP request to the TLS port.
printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' | timeout 5 bash -c "cat >/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
expect_reason not_tls

# TLS 1.2 only: refused (1.3 is the default minimum).
s_client client -tls1_2
expect_reason protocol_error

# Connect and say nothing: the 1 s first-byte timeout fires, long before
# the 30 s handshake timeout (admission: a silent client holds a pending
# slot for as short a time as possible).
exec 3<>"/dev/tcp/127.0.0.1/$port"
expect_reason handshake_timeout
exec 3>&-
ks_assert_grep "$log" 'event=handshake_rejected .*reason=handshake_timeout detail="the client sent nothing within 1000 ms \(--first-byte-timeout\)"' \
	"the silent client was not cut by the first-byte timeout"

# Still alive, and an allowed client still gets through to the app.
ks_alive "$KS_SIDECAR_PID" "sidecar died after bad peers"
s_client client
grep -q 'HTTP/1.0 200' "$T/s_client.client.out" || { cat "$T/s_client.client.out"; ks_fail "allowed client got no response"; }
ks_assert_grep "$log" "event=conn_open .*peer_id=$KS_CLIENT_ID .*tls=TLSv1.3" "allowed client not logged"
[[ $(refused_total) -eq $seen ]] || ks_fail "allowed client was rejected"
ks_pass "allowed client reaches the app; sidecar survived $seen bad peers"
