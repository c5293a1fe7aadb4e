#!/usr/bin/env bash
# The built-in control plane: ktlsctl agent with a 10-second TTL.
#
# The agent starts before the sidecar exists and retries with backoff; once
# the sidecar is up it gets its identity through CreateCsr (the key stays in
# the sidecar) and the dev CA. Then, for about 22 s of continuous new
# connections, the agent renews at half the TTL: at least 4 renewals, each a
# new serial, never an expired certificate in force, and no failed
# connection (every byte SHA-256 checked by ks-stream). SIGTERM stops the
# agent cleanly.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null

# Both agents first: the sockets do not exist yet.
ks_bg "$T/agent-b.log" "$KS_CTL" agent --sidecar "$T/b.sock" --ca "$T/ca" --id "$KS_SERVER_ID" --ttl 10s >/dev/null
agent_b=$KS_BG_PID
ks_bg "$T/agent-a.log" "$KS_CTL" agent --sidecar "$T/a.sock" --ca "$T/ca" --id "$KS_CLIENT_ID" --ttl 10s >/dev/null
ks_wait_log "$T/agent-b.log" 'event=renew_failed exit=3 retry_in_ms=1000' 10
ks_wait_log "$T/agent-b.log" 'event=renew_failed exit=3 retry_in_ms=(1250|2000)' 10
ks_assert_grep "$T/agent-b.log" 'cannot (connect|read|stat)|no such file|No such file' "the agent does not say why it cannot reach the sidecar"
ks_pass "with no sidecar, the agent retries with growing backoff and says why"

ks_echo_server "$T/echo.log" echo
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--control-socket "$T/b.sock" --spiffe-id "$KS_SERVER_ID"
b_pid=$KS_SIDECAR_PID KS_B_PORT=${KS_PORTS[0]}
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$KS_B_PORT,id=$KS_SERVER_ID" \
	--control-socket "$T/a.sock" --spiffe-id "$KS_CLIENT_ID"
a_pid=$KS_SIDECAR_PID KS_A_PORT=${KS_PORTS[0]}
ks_wait_log "$T/b.log" 'event=control_update op=SetIdentity' 15
ks_wait_log "$T/a.log" 'event=control_update op=SetIdentity' 15
ks_pass "once the sidecars are up, the agents deliver their identities"

# ~22 s of load: 2 connections x 64 KiB per round, new seeds each round.
end=$((SECONDS + 22))
i=0
while ((SECONDS < end)); do
	i=$((i + 1))
	"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 64K --conns 2 --seed $((i * 2)) \
		--timeout 30 >>"$T/load.out" 2>&1 || { tail -5 "$T/load.out"; ks_fail "load round $i failed"; }
done
ok=$(ks_count "$T/load.out" 'status=ok')
((ok == i * 2)) || ks_fail "$ok of $((i * 2)) connections ok"
ks_assert_not_grep "$T/b.log" 'event=handshake_rejected' "B refused a handshake during the renewals"
ks_assert_not_grep "$T/a.log" 'event=handshake_rejected' "A refused a handshake during the renewals"

renewals=$(ks_count "$T/b.log" 'event=control_update op=SetIdentity')
serials=$(grep 'event=control_update op=SetIdentity' "$T/b.log" | grep -o 'serial=[0-9A-F]*' | sort -u | wc -l)
((renewals >= 5 && serials == renewals)) ||
	ks_fail "B: $renewals identity updates with $serials distinct serials (want >= 5, all distinct)"
# No gap: each certificate was replaced before it expired. not_after of
# update k must be later than the time of update k+1.
grep 'event=control_update op=SetIdentity' "$T/b.log" | python3 -c '
import sys, datetime
rows = []
for line in sys.stdin:
    f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    at = datetime.datetime.strptime(f["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    na = datetime.datetime.strptime(f["not_after"], "%Y-%m-%dT%H:%M:%SZ")
    rows.append((at, na))
for (at, na), (nxt, _) in zip(rows, rows[1:]):
    if nxt >= na:
        sys.exit(f"gap: a certificate expired at {na} before its renewal at {nxt}")
    if (na - at).total_seconds() > 11:
        sys.exit(f"certificate lives {(na - at).total_seconds()} s, want the 10 s TTL")
print(f"{len(rows)} certificates, each renewed {min((na - nxt).total_seconds() for (_, na), (nxt, _) in zip(rows, rows[1:])):.1f} s or more before expiry")
' >"$T/gaps.out" || { cat "$T/gaps.out"; ks_fail "renewal left a gap"; }
ks_pass "agent renewed B $renewals times in ~22 s with a 10 s TTL, no gap ($(cat "$T/gaps.out")); $ok connections, 0 failed"

kill -TERM "$agent_b"
for _ in $(seq 50); do kill -0 "$agent_b" 2>/dev/null || break; sleep 0.1; done
kill -0 "$agent_b" 2>/dev/null && ks_fail "the agent ignores SIGTERM"
wait "$agent_b" 2>/dev/null && rc=0 || rc=$?
((rc == 0)) || ks_fail "agent exit status $rc after SIGTERM, want 0"
ks_assert_grep "$T/agent-b.log" 'event=stop' "the agent did not log its stop"
ks_pass "SIGTERM stops the agent with status 0"
ks_alive "$a_pid" "sidecar A died"
ks_alive "$b_pid" "sidecar B died"
