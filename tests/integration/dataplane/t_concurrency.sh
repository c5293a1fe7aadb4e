#!/usr/bin/env bash
# 200 concurrent connections through a sidecar pair, each echoing 512 KiB of
# random-chunked data: every one intact, none refused, none left open.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
ks_pair "$T" "$KS_ECHO_PORT" --workers 2

"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --conns 200 --bytes 512K --seed 7 \
	--max-chunk 20000 --half-close --timeout 300 >"$T/client.out" 2>&1 ||
	{ tail -20 "$T/client.out"; ks_fail "client reported errors"; }
grep -q 'client summary conns=200 ok=200 failed=0' "$T/client.out" ||
	{ tail -5 "$T/client.out"; ks_fail "not all 200 connections succeeded"; }
ks_pass "200 concurrent connections intact"

for side in a b; do
	for _ in $(seq 100); do
		[[ $(ks_count "$T/$side.log" 'event=conn_close .*reason=done') -ge 200 ]] && break
		sleep 0.1
	done
	n_open=$(ks_count "$T/$side.log" 'event=conn_open')
	n_done=$(ks_count "$T/$side.log" 'event=conn_close .*reason=done')
	[[ $n_open -eq 200 && $n_done -eq 200 ]] || ks_fail "sidecar $side: $n_open opened, $n_done closed cleanly (want 200/200)"
	ks_assert_not_grep "$T/$side.log" 'handshake_rejected|level=error' "sidecar $side logged errors"
done
ks_pass "both sidecars: 200 opened, 200 closed cleanly"
