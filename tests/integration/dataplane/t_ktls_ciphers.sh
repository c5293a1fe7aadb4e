#!/usr/bin/env bash
# Each of the three TLS 1.3 AEADs end to end through a sidecar pair: a large
# random stream in random write sizes one way, a reply the other way, SHA-256
# equal at both ends. On a kTLS kernel both sidecars must run the kernel
# record layer for every cipher, and /proc/net/tls_stat must count one TX and
# one RX offload per sidecar per connection; elsewhere this is the userspace
# record layer, per cipher.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
BYTES=${KS_KTLS_BYTES:-256M}
REPLY=${KS_KTLS_REPLY:-32M}
# Under ASan (make asan runs this in the VM too) the volume tests nothing of
# ours: the records are the kernel's crypto, and the unsanitized run moves
# 256M. What ASan checks, our hand-off and splice paths, 32M exercises.
if [[ -n ${KS_SANITIZED:-} && -z ${KS_KTLS_BYTES:-} ]]; then
	BYTES=32M REPLY=8M
fi
kernel=no
ks_kernel_tls && kernel=yes
echo "kernel TLS available: $kernel; $BYTES up, $REPLY down per cipher (AES-128-GCM: see below)"

for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
	# AES-128-GCM's large stream on the kernel path is t_ktls_resume's
	# (256M over a resumed connection, the suite every peer negotiates
	# first): here it gets the older kernels' volume, the others keep theirs.
	bytes=$BYTES reply=$REPLY
	if [[ $suite == TLS_AES_128_GCM_SHA256 && -z ${KS_KTLS_BYTES:-} ]]; then
		bytes=32M reply=8M
	fi
	ks_echo_server "$T/srv.$suite.log" eof-reply --reply-bytes "$reply" --count 2 --seed 11
	srv=$KS_ECHO_PID
	# B (the server) picks the suite: offering only one forces it.
	ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --tls-ciphersuites "$suite"
	tx0=$(ks_tls_stat TlsTxSw) rx0=$(ks_tls_stat TlsRxSw)
	ctx0=$(ks_tls_stat TlsCurrTxSw) crx0=$(ks_tls_stat TlsCurrRxSw)

	# While one connection is held open, the kernel counts it as current.
	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 1K --hold-ms 3000 \
		--expect reply --half-close --timeout 60 >"$T/held.$suite" 2>&1 &
	held=$!
	ks_wait_log "$T/b.log" 'event=conn_open' 20
	ks_wait_log "$T/a.log" 'event=conn_open' 20
	if [[ $kernel == yes ]]; then
		sleep 0.2
		ctx=$(($(ks_tls_stat TlsCurrTxSw) - ctx0)) crx=$(($(ks_tls_stat TlsCurrRxSw) - crx0))
		[[ $ctx -eq 2 && $crx -eq 2 ]] ||
			ks_fail "$suite: TlsCurrTxSw +$ctx, TlsCurrRxSw +$crx with one connection open (want +2 each)"
	fi
	wait "$held" || { cat "$T/held.$suite"; ks_fail "$suite: held connection failed"; }

	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "$bytes" --seed 5 --expect reply \
		--half-close --timeout 1200 >"$T/cli.$suite" 2>&1 || { cat "$T/cli.$suite"; ks_fail "$suite: client error"; }
	wait "$srv" || { cat "$T/srv.$suite.log"; ks_fail "$suite: server error"; }
	up_c=$(grep -o 'sent_sha256=[0-9a-f]*' "$T/cli.$suite")
	up_s=$(grep 'conn=1 ' "$T/srv.$suite.log" | grep -o 'recv_sha256=[0-9a-f]*')
	dn_s=$(grep 'conn=1 ' "$T/srv.$suite.log" | grep -o 'sent_sha256=[0-9a-f]*')
	dn_c=$(grep -o 'recv_sha256=[0-9a-f]*' "$T/cli.$suite")
	[[ ${up_c#sent_} == "${up_s#recv_}" ]] || ks_fail "$suite: upstream corrupted ($up_c vs $up_s)"
	[[ ${dn_s#sent_} == "${dn_c#recv_}" ]] || ks_fail "$suite: downstream corrupted ($dn_s vs $dn_c)"

	for s in a b; do
		ks_assert_grep "$T/$s.log" "event=conn_open .*cipher=$suite" "$suite: sidecar $s negotiated another cipher"
		if [[ $kernel == yes ]]; then
			ks_assert_grep "$T/$s.log" "event=conn_open .*cipher=$suite .*record_layer=kernel" \
				"$suite: sidecar $s did not offload"
		fi
	done
	if [[ $kernel == yes ]]; then
		tx=$(($(ks_tls_stat TlsTxSw) - tx0)) rx=$(($(ks_tls_stat TlsRxSw) - rx0))
		[[ $tx -eq 4 && $rx -eq 4 ]] ||
			ks_fail "$suite: TlsTxSw +$tx, TlsRxSw +$rx for 2 connections (want +4 each)"
	fi
	kill "$KS_A_PID" "$KS_B_PID"; wait "$KS_A_PID" "$KS_B_PID" || true
	mv "$T/a.log" "$T/a.$suite.log"; mv "$T/b.log" "$T/b.$suite.log"
	ks_pass "$suite: $bytes + $reply intact (record layer: $([[ $kernel == yes ]] && echo kernel || echo userspace))"
done
