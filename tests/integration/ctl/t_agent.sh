#!/usr/bin/env bash
# The built-in control plane: ktlsctl agent with a 10-second TTL, signing
# with nothing but the dev CA's exported signer set.
#
# ca init keeps the root apart (root/) from the signer (signer/); ca
# export-signer writes the signer set alone, and no private key in it is
# the root's (compared by public key with openssl). The agents get only
# that set. They start before the sidecars exist and retry with backoff;
# once a sidecar is up it gets its identity through CreateCsr (the key stays
# in the sidecar). Then, for about 22 s of continuous new connections, the
# agent renews at half the TTL: at least 4 renewals, each a new serial,
# never an expired certificate in force, and no failed connection (every
# byte SHA-256 checked by ks-stream). Then: an agent given a directory with
# the root key (a whole CA, or one in the flat layout of earlier ktlsctl)
# still works and warns; export-signer migrates a flat CA; new-signer
# refuses without the root key, and with it makes an intermediate whose
# leaves meet the old one's under the same bundle; every refusal says what
# to do. SIGTERM stops the agent cleanly. An agent exits 0 once its sidecar
# is draining (ktlsctl drain) or has exited (SIGINT: no drain, its socket
# removed), so that a Job's pod completes; a sidecar that crashed (SIGKILL:
# its socket left behind) and restarted gets its identity again within
# seconds, not at the next renewal.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
CHECK=$KS_ROOT/tests/tools/signer_check.py

"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
[[ $(ls "$T/ca") == $'root\nsigner' && ! -e $T/ca/signer/root.key ]] ||
	ks_fail "ca init does not keep the root apart from the signer: $(find "$T/ca" | sort | tr '\n' ' ')"
"$KS_CTL" ca export-signer "$T/ca" "$T/signer" >/dev/null
[[ $(ls "$T/signer" | paste -sd' ') == 'bundle.pem intermediate.key intermediate.pem trust_domain' ]] ||
	ks_fail "the exported signer set holds: $(ls -A "$T/signer" | paste -sd' ')"
# Against the root certificate as ca init wrote it, and as peers trust it.
"$CHECK" "$T/signer" "$T/ca/root/root.pem" "$T/ca/signer/bundle.pem" >"$T/check.out" 2>&1 ||
	ks_fail "the exported signer set: $(cat "$T/check.out")"
ks_pass "ca export-signer: the signer set alone ($(cat "$T/check.out"))"

# Both agents first: the sockets do not exist yet.
ks_bg "$T/agent-b.log" "$KS_CTL" agent --sidecar "$T/b.sock" --ca "$T/signer" --id "$KS_SERVER_ID" --ttl 10s >/dev/null
agent_b=$KS_BG_PID
ks_bg "$T/agent-a.log" "$KS_CTL" agent --sidecar "$T/a.sock" --ca "$T/signer" --id "$KS_CLIENT_ID" --ttl 10s >/dev/null
agent_a=$KS_BG_PID
ks_wait_log "$T/agent-b.log" 'event=renew_failed exit=3 retry_in_ms=1000' 10
ks_wait_log "$T/agent-b.log" 'event=renew_failed exit=3 retry_in_ms=(1250|2000)' 10
ks_assert_grep "$T/agent-b.log" 'cannot (connect|read|stat)|no such file|No such file' "the agent does not say why it cannot reach the sidecar"
ks_pass "with no sidecar, the agent retries with growing backoff and says why"

ks_echo_server "$T/echo.log" echo
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--control-socket "$T/b.sock" --spiffe-id "$KS_SERVER_ID"
b_pid=$KS_SIDECAR_PID KS_B_PORT=${KS_PORTS[0]}
# (A's drain, at the end, lasts its --drain-delay: the agent sees it.)
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$KS_B_PORT,id=$KS_SERVER_ID" \
	--control-socket "$T/a.sock" --spiffe-id "$KS_CLIENT_ID" --drain-delay 3s
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
ks_assert_not_grep "$T/agent-b.log" 'root_key_present' "the agent warns about a root key the signer set does not hold"
ks_pass "the agents ran from the exported signer set alone, with no warning"

# --- directories with the root key in them ----------------------------------
# A whole CA directory: works, and says the root key is there.
"$KS_CTL" --socket "$T/b.sock" agent --once --ca "$T/ca" --id "$KS_SERVER_ID" 2>"$T/once-full.log" ||
	{ cat "$T/once-full.log"; ks_fail "agent --once with the whole CA directory failed"; }
ks_assert_grep "$T/once-full.log" "event=root_key_present path=$T/ca/root/root.key" \
	"the agent does not warn that it can read the root key"
# The flat layout of ktlsctl before the root/signer split (the same CA, the
# same six files in one directory): the agent still works, and warns.
mkdir -m 700 "$T/flat"
cp -p "$T"/ca/root/root.{key,pem} "$T"/ca/signer/* "$T/flat/"
"$KS_CTL" --socket "$T/b.sock" agent --once --ca "$T/flat" --id "$KS_SERVER_ID" 2>"$T/once-flat.log" ||
	{ cat "$T/once-flat.log"; ks_fail "agent --once with a flat CA directory failed"; }
ks_assert_grep "$T/once-flat.log" "event=root_key_present path=$T/flat/root.key" \
	"the agent does not warn about a flat CA's root key"
"$KS_CTL" ca issue --ca "$T/flat" "$KS_CLIENT_ID" --out "$T/flat-leaf" >/dev/null
openssl verify -CAfile "$T/ca/signer/bundle.pem" -untrusted "$T/flat-leaf.crt" "$T/flat-leaf.crt" >/dev/null ||
	ks_fail "a flat CA no longer issues"
# The migration: export-signer from the flat directory leaves its root key behind.
"$KS_CTL" ca export-signer "$T/flat" "$T/flat-signer" >/dev/null
"$CHECK" "$T/flat-signer" "$T/ca/root/root.pem" >"$T/check.out" 2>&1 ||
	ks_fail "the signer set exported from a flat CA: $(cat "$T/check.out")"
# The check itself fails where the root key is: the flat directory.
"$CHECK" "$T/flat" "$T/ca/root/root.pem" >"$T/check.out" 2>&1 && ks_fail "signer_check passed a directory with root.key"
grep -q 'flat/root.key holds the root' "$T/check.out" || ks_fail "signer_check: $(cat "$T/check.out")"
ks_pass "whole and flat CA directories still work, with event=root_key_present; export-signer migrates a flat one"

# --- refusals: exit 5, and what to do instead -------------------------------
ks_expect_exit 5 'no root key .*only the root can sign' "$KS_CTL" ca new-signer "$T/signer"
ks_expect_exit 5 'holds a root key but no signer' "$KS_CTL" --socket "$T/b.sock" agent --once --ca "$T/ca/root" --id "$KS_SERVER_ID"
mkdir "$T/empty"
ks_expect_exit 5 'holds no dev CA' "$KS_CTL" --socket "$T/b.sock" agent --once --ca "$T/empty" --id "$KS_SERVER_ID"
ks_expect_exit 5 'holds root.key' "$KS_CTL" ca export-signer "$T/ca" "$T/flat" --force
ks_expect_exit 5 'already holds a signer set; use --force' "$KS_CTL" ca export-signer "$T/ca" "$T/signer"
ks_expect_exit 2 'export-signer DIR OUT' "$KS_CTL" ca export-signer "$T/ca"
cmp -s "$T/ca/signer/intermediate.pem" "$T/signer/intermediate.pem" || ks_fail "a refused command changed the signer set"
ks_pass "refused: new-signer without the root key, a root or an empty directory as the agent's CA, exporting next to a root key or over a set"

# --- a new signer under the same root ----------------------------------------
"$KS_CTL" ca new-signer "$T/ca" >/dev/null
cmp -s "$T/ca/signer/intermediate.pem" "$T/signer/intermediate.pem" && ks_fail "ca new-signer kept the intermediate"
"$KS_CTL" ca export-signer "$T/ca" "$T/signer" --force >/dev/null
"$CHECK" "$T/signer" "$T/ca/root/root.pem" >/dev/null 2>&1 || ks_fail "the new signer set holds the root key"
"$KS_CTL" --socket "$T/b.sock" agent --once --ca "$T/signer" --id "$KS_SERVER_ID" 2>"$T/once-new.log" ||
	{ cat "$T/once-new.log"; ks_fail "agent --once with the new signer failed"; }
# B now chains to the new intermediate, A (renewed by its agent, still
# running from the set it started with) to the old one: the same root.
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes 64K --seed 9999 --timeout 30 >"$T/new.out" 2>&1 ||
	{ cat "$T/new.out"; ks_fail "A (old intermediate) cannot reach B (new intermediate)"; }
issuer=$(timeout 10 openssl s_client -connect "127.0.0.1:$KS_B_PORT" -CAfile "$T/ca/signer/bundle.pem" \
	-cert "$T/flat-leaf.crt" -key "$T/flat-leaf.key" -cert_chain "$T/flat/intermediate.pem" </dev/null 2>/dev/null |
	openssl x509 -noout -issuer)
[[ $issuer == "$(openssl x509 -in "$T/ca/signer/intermediate.pem" -noout -subject | sed 's/^subject/issuer/')" ]] ||
	ks_fail "B does not present a leaf of the new intermediate ($issuer)"
ks_pass "ca new-signer: a new intermediate under the same root; its leaves and the old one's still meet"

kill -TERM "$agent_b"
for _ in $(seq 50); do kill -0 "$agent_b" 2>/dev/null || break; sleep 0.1; done
kill -0 "$agent_b" 2>/dev/null && ks_fail "the agent ignores SIGTERM"
wait "$agent_b" 2>/dev/null && rc=0 || rc=$?
((rc == 0)) || ks_fail "agent exit status $rc after SIGTERM, want 0"
ks_assert_grep "$T/agent-b.log" 'event=stop' "the agent did not log its stop"
ks_pass "SIGTERM stops the agent with status 0"
ks_alive "$a_pid" "sidecar A died"
ks_alive "$b_pid" "sidecar B died"

# --- the sidecar stops: the agent exits 0 ------------------------------------
# A drains (ktlsctl drain): its agent sees Status.draining and exits 0.
ks_alive "$agent_a" "agent A died before its sidecar drained"
"$KS_CTL" --socket "$T/a.sock" drain >/dev/null || ks_fail "ktlsctl drain of A exited $?"
timeout 15 tail --pid="$agent_a" -f /dev/null || ks_fail "agent A still runs after its sidecar began to drain"
wait "$agent_a" 2>/dev/null && rc=0 || rc=$?
((rc == 0)) || ks_fail "agent A exited $rc after its sidecar began to drain, want 0"
ks_assert_grep "$T/agent-a.log" "event=sidecar_draining socket=$T/a.sock" "agent A did not say why it stopped"
wait "$a_pid" || ks_fail "sidecar A exited $? after ktlsctl drain, want 0"
# D: a sidecar whose agent renews only every 30 minutes (--ttl 1h). D
# crashes (SIGKILL: its socket is left behind) and restarts: the agent
# notices within seconds and gives the new process its identity. Then D
# stops at once (SIGINT: no drain, its socket removed): the agent exits 0.
ks_sidecar "$T/d.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--control-socket "$T/d.sock" --spiffe-id "$KS_SERVER_ID"
d_pid=$KS_SIDECAR_PID
ks_bg "$T/agent-d.log" "$KS_CTL" agent --sidecar "$T/d.sock" --ca "$T/signer" --id "$KS_SERVER_ID" --ttl 1h >/dev/null
agent_d=$KS_BG_PID
ks_wait_log "$T/d.log" 'event=control_update op=SetIdentity' 15
kill -KILL "$d_pid"
wait "$d_pid" 2>/dev/null || true
[[ -S $T/d.sock ]] || ks_fail "SIGKILL did not leave D's socket behind"
ks_sidecar "$T/d2.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--control-socket "$T/d.sock" --spiffe-id "$KS_SERVER_ID"
d_pid=$KS_SIDECAR_PID
ks_wait_log "$T/d2.log" 'event=control_update op=SetIdentity' 20
ks_alive "$agent_d" "the agent exited when its sidecar crashed"
kill -INT "$d_pid"
wait "$d_pid" || ks_fail "sidecar D exited $? after SIGINT, want 0"
timeout 15 tail --pid="$agent_d" -f /dev/null || ks_fail "agent D still runs after its sidecar exited"
wait "$agent_d" 2>/dev/null && rc=0 || rc=$?
((rc == 0)) || ks_fail "agent D exited $rc after its sidecar exited, want 0"
ks_assert_grep "$T/agent-d.log" "event=sidecar_exited socket=$T/d.sock" "agent D did not say why it stopped"
[[ $(ks_count "$T/agent-d.log" 'event=sidecar_') == 1 ]] ||
	ks_fail "agent D took the crash for an exit: $(grep 'event=sidecar_' "$T/agent-d.log")"
ks_pass "the agent exits 0 once its sidecar drains (ktlsctl drain) or has exited; a crashed sidecar's restart gets its identity within seconds"
