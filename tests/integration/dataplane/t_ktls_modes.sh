#!/usr/bin/env bash
# --ktls=auto|off|require on whatever kernel this runs on. Where the kernel
# cannot offload (the build machines) auto falls back to userspace per
# connection and says why, and require refuses. Where it can (the kTLS VM,
# tests/ktls/), auto and require put the record layer in the kernel, the
# kernel's own counters move, and payload stays out of our memory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
BYTES=${KS_KTLS_BYTES:-8M}

# run MODE: a pair with --ktls MODE carrying BYTES; logs in $T/MODE.{a,b}.log
run() {
	local mode=$1
	ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --ktls "$mode"
	set +e
	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "$BYTES" --half-close \
		--timeout 300 >"$T/$mode.client" 2>&1
	local rc=$?
	set -e
	kill "$KS_A_PID" "$KS_B_PID"
	wait "$KS_A_PID" "$KS_B_PID" || true
	mv "$T/a.log" "$T/$mode.a.log"
	mv "$T/b.log" "$T/$mode.b.log"
	return $rc
}

run auto || { cat "$T/auto.client"; ks_fail "auto: traffic failed"; }
if grep -q 'event=ktls_probe .*aes128gcm=yes' "$T/auto.a.log"; then
	# The kernel can: both sidecars offload, in both directions.
	for s in a b; do
		# A (outbound) gives the kernel its receive side after the server's
		# session ticket: "kTLS TX ...", then event=ktls_rx.
		ks_assert_grep "$T/auto.$s.log" 'event=conn_open .*record_layer=kernel record_layer_reason="kTLS TX(\+RX)? TLS_AES_128_GCM_SHA256 from record' \
			"auto: sidecar $s did not offload"
		# (that it was the ticket is t_ktls_resume's to check)
		[[ $s == b ]] || ks_assert_grep "$T/auto.a.log" 'event=ktls_rx conn=1 ' \
			"auto: A's receive side did not go to the kernel"
		line=$(grep 'event=conn_close' "$T/auto.$s.log")
		ub=$(sed -n 's/.*userspace_bytes=\([0-9]*\).*/\1/p' <<<"$line")
		[[ $ub -lt 1024 ]] || ks_fail "auto: sidecar $s moved $ub payload bytes through userspace"
	done
	# (exact per-connection tls_stat accounting is in t_ktls_ciphers: here the
	# sidecars' start-up probes count too)
	ks_pass "auto: both sidecars offloaded; userspace bytes $ub for $BYTES"
	run require || ks_fail "require: traffic failed on a kTLS kernel"
	ks_assert_grep "$T/require.b.log" 'event=conn_open .*record_layer=kernel' "require did not offload"
	ks_pass "require: offloaded"
else
	for s in a b; do
		ks_assert_grep "$T/auto.$s.log" 'event=conn_open .*record_layer=userspace record_layer_reason="kernel has no tls ULP' \
			"auto: sidecar $s did not say why it stayed in userspace"
		ks_assert_grep "$T/auto.$s.log" "event=conn_close .*reason=done .*record_layer=userspace userspace_bytes=[1-9]" \
			"auto: no userspace byte count"
	done
	ks_pass "auto on a kernel without kTLS: userspace, with the reason"
	if run require; then ks_fail "require: a connection got through without kTLS"; fi
	ks_assert_grep "$T/require.a.log" 'level=error event=ktls_probe mode=require .*every connection will be refused' \
		"require: no start-up error"
	ks_assert_grep "$T/require.a.log" 'event=handshake_rejected .*reason=ktls_unavailable detail="kernel has no tls ULP' \
		"require: refusal not logged with its reason"
	ks_pass "require on a kernel without kTLS: refused, with the reason"
fi

run off || { cat "$T/off.client"; ks_fail "off: traffic failed"; }
ks_assert_grep "$T/off.b.log" 'event=conn_open .*record_layer=userspace record_layer_reason="disabled by --ktls=off"' \
	"off: not userspace with the reason"
ks_pass "off: userspace, with the reason"
