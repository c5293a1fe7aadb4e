#!/usr/bin/env bash
# The sidecar opts out of transparent huge pages (prctl PR_SET_THP_DISABLE,
# sidecar/dataplane/worker.c no_huge_pages): under THP "always", khugepaged
# would collapse the pages maybe_trim hands back after a burst of handshakes
# into huge pages again (tests/bench/README.md, "Memory per idle
# connection"). The kernel says so in /proc/PID/status (THP_enabled, 5.0+).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

grep -q '^THP_enabled:' /proc/self/status || ks_skip "this kernel has no THP_enabled line in /proc/PID/status"
[[ $(awk '/^THP_enabled:/ {print $2}' /proc/self/status) == 1 ]] ||
	ks_skip "this shell already runs with THP disabled: the check could not fail"
T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
ks_pair "$T" "$KS_ECHO_PORT" --workers 2
for pid in "$KS_A_PID" "$KS_B_PID"; do
	v=$(awk '/^THP_enabled:/ {print $2}' "/proc/$pid/status")
	[[ $v == 0 ]] || ks_fail "sidecar $pid runs with THP_enabled: $v"
done
! grep -q 'event=thp_disable_failed' "$T/a.log" "$T/b.log" || ks_fail "a sidecar could not disable THP: $(grep -h thp_disable_failed "$T/a.log" "$T/b.log")"
# Still a working pair.
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 64K --timeout 60 >"$T/client.out" ||
	ks_fail "transfer through the pair failed: $(cat "$T/client.out")"
ks_pass "both sidecars run with transparent huge pages disabled"
