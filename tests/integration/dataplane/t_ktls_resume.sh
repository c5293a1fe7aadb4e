#!/usr/bin/env bash
# Session resumption on the record layer this kernel gives us (issue 18):
# kernel TLS in the kTLS VM, userspace elsewhere.
#   - Our server sends its NewSessionTicket before the hand-off: the kernel
#     starts from record 1 out (event=conn_open's record_layer_reason says
#     where it starts). Our client reads the ticket through OpenSSL before
#     its RX key goes to the kernel, so the next connection resumes, also
#     on the kernel path (A's transmit side goes to the kernel at once, its
#     receive side after the ticket: event=ktls_rx), and KS_KTLS_BYTES (256 MiB on the newest kernel)
#     cross a resumed connection with SHA-256 checked both ends.
#   - openssl s_server sends two tickets: the client resumes with one, and
#     a second that reaches the kernel after the hand-off is skipped.
#   - A server that sends none (s_server -num_tickets 0): the wait ends at
#     the first record from it, or after its bound when it stays silent, and
#     the connection works.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
kernel=no
ks_kernel_tls && kernel=yes
rl=$([[ $kernel == yes ]] && echo kernel || echo userspace)
# The userspace path's 256 MiB run is t_resumption's; here it is the
# kernel's: BYTES up, REPLY down (the older kernels get KS_KTLS_BYTES=32M
# from the Makefile). Under a sanitizer the volume checks nothing of ours
# (the crypto is the kernel's): 32M.
BYTES=${KS_KTLS_BYTES:-256M}
REPLY=${KS_KTLS_REPLY:-8M}
[[ -n ${KS_SANITIZED:-} ]] && BYTES=32M
[[ $kernel == no ]] && BYTES=8M
echo "record layer under test: $rl, $BYTES up, $REPLY down"
ks_echo_server "$T/echo.log" eof-reply --reply-bytes "$REPLY" --seed 3
ks_pair "$T" "$KS_ECHO_PORT" --workers 1

# open LOG N: the Nth conn_open line of LOG, once it is there.
open_line() {
	for _ in $(seq 200); do
		[[ $(ks_count "$1" 'event=conn_open') -ge $2 ]] && break
		sleep 0.05
	done
	grep 'event=conn_open' "$1" | sed -n "${2}p"
}
# rx_line LOG CONN: the event=ktls_rx line of connection CONN, once it is there.
rx_line() {
	ks_wait_log "$1" "event=ktls_rx conn=$2 " 10 >/dev/null
	grep "event=ktls_rx conn=$2 " "$1"
}
expect() { # LINE WHAT REGEX
	[[ $1 =~ $3 ]] && return 0
	echo "$1"
	grep -h 'event=resumption_refused\|event=conn_open' "$T"/*.log | cut -c1-400
	ks_fail "$2"
}

# Paced, so that its end (a half-close) comes after both hand-offs: a FIN
# that arrives first keeps a connection on OpenSSL, by design.
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 256K --rate 256K --seed 1 \
	--expect reply --half-close --timeout 120 >/dev/null || ks_fail "first connection failed"
a1=$(open_line "$T/a.log" 1) b1=$(open_line "$T/b.log" 1)
expect "$a1" "A: first connection" "resumed=no record_layer=$rl "
expect "$b1" "B: first connection" "resumed=no record_layer=$rl "
if [[ $kernel == yes ]]; then
	# One ticket, sent under the application key before the hand-off.
	expect "$b1" "B: the kernel must start after our ticket" 'from record 1 out, 0 in"'
	# A's transmit side went to the kernel at once; its receive side once
	# OpenSSL had read the ticket, the first record from B.
	expect "$a1" "A: transmit side not in the kernel at once" '"kTLS TX [A-Z0-9_]+ from record 0 out; RX once'
	expect "$(rx_line "$T/a.log" 1)" "A: the ticket was not read before the receive hand-off" \
		'from_record=1 tickets=1$'
fi
out=$("$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "$BYTES" --seed 2 --expect reply \
	--half-close --timeout 1200) || ks_fail "the $BYTES stream over a resumed connection failed: $out"
grep -q 'status=ok' <<<"$out" || ks_fail "stream: $out"
# SHA-256 of each direction, as the client and the server saw it.
srv=$(grep 'conn=1 ' "$T/echo.log")
[[ $(grep -o 'sent_sha256=[0-9a-f]*' <<<"$out" | cut -d= -f2) == $(grep -o 'recv_sha256=[0-9a-f]*' <<<"$srv" | cut -d= -f2) ]] ||
	ks_fail "upstream corrupted: $out / $srv"
[[ $(grep -o 'recv_sha256=[0-9a-f]*' <<<"$out" | cut -d= -f2) == $(grep -o 'sent_sha256=[0-9a-f]*' <<<"$srv" | cut -d= -f2) ]] ||
	ks_fail "downstream corrupted: $out / $srv"
a2=$(open_line "$T/a.log" 2) b2=$(open_line "$T/b.log" 2)
expect "$a2" "A: second connection" "resumed=yes record_layer=$rl "
expect "$b2" "B: second connection" "peer_id=$KS_CLIENT_ID .*resumed=yes record_layer=$rl "
[[ $kernel == yes ]] && expect "$b2" "B: a resumption sends one new ticket" 'from record 1 out, 0 in"'
ks_pass "sidecar to sidecar: resumed on the $rl path, $BYTES up and $REPLY down, SHA-256 checked"

# s_server: two tickets after the handshake.
talk() { # PORT DELAY: a line after DELAY seconds, its answer
	python3 - "$@" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
time.sleep(float(sys.argv[2]))
s.sendall(b"resume\n")
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(100)
    if not d:
        break
    buf += d
print(buf.decode().strip())
PY
}
for tickets in 2 0; do
	ks_s_server "$T/s_server.$tickets.log" -rev -num_tickets "$tickets" -Verify 2 \
		-verify_return_error -CAfile "$T/ca/bundle.crt" -cert "$T/ca/server.crt" \
		-key "$T/ca/server.key" -cert_chain "$T/ca/int.crt"
	log=$T/o.$tickets.log
	ks_sidecar "$log" --cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt" \
		--outbound "127.0.0.1:0=127.0.0.1:$KS_S_SERVER_PORT,id=$KS_SERVER_ID" --workers 1
	port=${KS_PORTS[0]}
	# The third connection waits before it speaks: with no ticket coming,
	# the hand-off happens once the wait's bound has passed.
	for delay in 0 0 1.5; do
		ans=$(talk "$port" "$delay")
		[[ $ans == emuser ]] || ks_fail "through s_server -num_tickets $tickets: got '$ans'"
	done
	o2=$(open_line "$log" 2) o3=$(open_line "$log" 3)
	if ((tickets)); then
		expect "$o2" "no resumption with s_server's tickets" "resumed=yes record_layer=$rl "
		[[ $kernel == yes ]] && expect "$(rx_line "$log" 1)" "s_server's ticket not read" \
			'from_record=[12] tickets=[12]$'
	else
		expect "$o2" "resumed without a ticket" "resumed=no record_layer=$rl "
		# Its line went out through the kernel after the wait's bound: the
		# receive side went to the kernel with no ticket, before the
		# server's reply or with it (one record at most through OpenSSL).
		[[ $kernel == yes ]] && expect "$(rx_line "$log" 3)" "the silent server's wait" \
			'from_record=[01] tickets=0$'
	fi
	expect "$o3" "third connection" "record_layer=$rl "
	kill "$KS_S_SERVER_PID"
done
ks_pass "outbound to s_server: two tickets resume, none works, a silent server too ($rl)"
