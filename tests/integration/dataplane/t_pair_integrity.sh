#!/usr/bin/env bash
# A sidecar pair end to end: app -> A (outbound) -> mTLS -> B (inbound) -> echo
# server, 256 MiB of pseudo-random data written in random chunk sizes. The
# SHA-256 of what the client sent, what the server received and what came
# back must be equal. Runs once per event-loop backend.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
BYTES=${KS_PAIR_BYTES:-256M}

run_pair() {
	local io=$1 seed=$2 echo_port a_port b_port
	ks_bg "$T/echo.$io.log" "$KS_STREAM" server --listen 127.0.0.1:0 --mode echo \
		--ready-file "$T/echo.$io.port" --count 1 >/dev/null
	local echo_pid=$KS_BG_PID
	for _ in $(seq 100); do [[ -s $T/echo.$io.port ]] && break; sleep 0.05; done
	echo_port=$(cat "$T/echo.$io.port")
	ks_sidecar "$T/b.$io.log" --io "$io" --workers 2 --inbound "127.0.0.1:0=127.0.0.1:$echo_port" \
		--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
	local b_pid=$KS_SIDECAR_PID
	b_port=${KS_PORTS[0]}
	ks_sidecar "$T/a.$io.log" --io "$io" --workers 2 \
		--outbound "127.0.0.1:0=127.0.0.1:$b_port,id=$KS_SERVER_ID" \
		--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
	local a_pid=$KS_SIDECAR_PID
	a_port=${KS_PORTS[0]}
	# (make valgrind forces epoll: see ks_sidecar)
	[[ -n ${KS_VALGRIND_DIR:-} ]] ||
		ks_assert_grep "$T/a.$io.log" "event=io_backend backend=$([[ $io == uring ]] && echo io_uring || echo epoll)" \
			"sidecar A does not run the $io backend"

	"$KS_STREAM" client --connect "127.0.0.1:$a_port" --bytes "$BYTES" --seed "$seed" \
		--half-close --timeout 600 >"$T/client.$io.out" 2>&1 ||
		{ cat "$T/client.$io.out"; ks_fail "$io: client reported an error"; }
	wait "$echo_pid" || { cat "$T/echo.$io.log"; ks_fail "$io: echo server reported an error"; }

	local sent recv srv
	sent=$(grep -o 'sent_sha256=[0-9a-f]*' "$T/client.$io.out")
	recv=$(grep -o 'recv_sha256=[0-9a-f]*' "$T/client.$io.out")
	srv=$(grep -o 'recv_sha256=[0-9a-f]*' "$T/echo.$io.log")
	[[ -n $sent && ${sent#sent_} == "${recv#recv_}" && ${srv#recv_} == "${sent#sent_}" ]] ||
		ks_fail "$io: hashes differ: client $sent, echo server $srv, back at client $recv"
	grep -q "sent_bytes=$(numfmt --from=iec "$BYTES") " "$T/client.$io.out" ||
		ks_fail "$io: client did not send $BYTES"

	# Both sidecars saw the peer's SPIFFE ID and a clean close with the byte counts.
	ks_wait_log "$T/b.$io.log" "event=conn_close .*peer_id=$KS_CLIENT_ID reason=done" 10
	ks_wait_log "$T/a.$io.log" "event=conn_close .*peer_id=$KS_SERVER_ID reason=done" 10
	ks_assert_grep "$T/a.$io.log" "bytes_to_peer=$(numfmt --from=iec "$BYTES") bytes_from_peer=$(numfmt --from=iec "$BYTES")" \
		"$io: sidecar A byte counters are wrong"
	kill "$a_pid" "$b_pid"
	wait "$a_pid" "$b_pid" || true
	ks_assert_grep "$T/a.$io.log" 'event=stopped' "$io: sidecar A did not stop cleanly"
	ks_pass "$io: $BYTES intact both ways (${sent#sent_sha256=})"
}

run_pair uring 1
run_pair epoll 2
