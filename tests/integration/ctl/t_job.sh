#!/usr/bin/env bash
# A Job's pod completes: the app does its work through the sidecar, then
# POSTs /quitquitquit to the sidecar's admin endpoint. The sidecar drains
# and exits 0, and `ktlsctl agent` (the built-in control plane, a container
# of the same pod) sees its sidecar go and exits 0 too: every container of
# the pod has ended with 0, so the kubelet marks the Job's pod Succeeded.
# (A POST from outside the pod's loopback is refused with 403: t_admin.)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
"$KS_CTL" ca export-signer "$T/ca" "$T/signer" >/dev/null

wait_exit() { # PID WANT WHAT: PID (our child) exits within 20 s with status WANT
	local rc=0
	timeout 20 tail --pid="$1" -f /dev/null || ks_fail "$3 did not exit"
	wait "$1" || rc=$?
	[[ $rc == "$2" ]] || ks_fail "$3 exited $rc, want $2"
}

# The server side: a long-running service with its own sidecar and agent.
ks_echo_server "$T/echo.log" echo
ks_bg "$T/agent-b.log" "$KS_CTL" agent --sidecar "$T/b.sock" --ca "$T/signer" --id "$KS_SERVER_ID" \
	--ttl 1h >/dev/null
agent_b=$KS_BG_PID
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --control-socket "$T/b.sock" \
	--spiffe-id "$KS_SERVER_ID"
b_pid=$KS_SIDECAR_PID B_PORT=${KS_PORTS[0]}

# The Job's pod: sidecar, agent, app.
ks_bg "$T/agent-j.log" "$KS_CTL" agent --sidecar "$T/j.sock" --ca "$T/signer" --id "$KS_CLIENT_ID" \
	--ttl 1h >/dev/null
agent_j=$KS_BG_PID
ks_sidecar "$T/j.log" --outbound "127.0.0.1:0=127.0.0.1:$B_PORT,id=$KS_SERVER_ID" \
	--control-socket "$T/j.sock" --spiffe-id "$KS_CLIENT_ID" --admin 127.0.0.1:0
j_pid=$KS_SIDECAR_PID J_PORT=${KS_PORTS[0]}
J_ADMIN=$(ks_admin_port "$T/j.log")
ks_wait_log "$T/b.log" 'event=control_update op=SetIdentity' 15

cat >"$T/app.sh" <<'EOF'
#!/usr/bin/env bash
# The Job's app: wait until the sidecar is ready, do the work, tell the
# sidecar it is done.
set -euo pipefail
stream=$1 port=$2 admin=$3
for _ in $(seq 150); do
	[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/ready") == 200 ]] && break
	sleep 0.1
done
"$stream" client --connect "127.0.0.1:$port" --bytes 2M --conns 3 --seed 5 --timeout 60
curl -s -f -X POST "http://127.0.0.1:$admin/quitquitquit"
EOF
chmod +x "$T/app.sh"
ks_bg "$T/app.log" "$T/app.sh" "$KS_STREAM" "$J_PORT" "$J_ADMIN" >/dev/null
app=$KS_BG_PID
wait_exit "$app" 0 "the Job's app"
grep -q 'summary conns=3 ok=3 failed=0' "$T/app.log" || { cat "$T/app.log"; ks_fail "the Job's work failed"; }
wait_exit "$j_pid" 0 "the Job's sidecar after /quitquitquit"
wait_exit "$agent_j" 0 "the Job's agent after its sidecar drained"
ks_assert_grep "$T/j.log" 'event=admin_drain path=/quitquitquit result=draining' "the sidecar did not log the request"
ks_pass "Job: the app's work (3 streams, SHA-256 checked), /quitquitquit, then sidecar and agent exit 0"

# The service's pod is untouched, and its agent keeps running.
kill -0 "$b_pid" 2>/dev/null || ks_fail "the server's sidecar went away"
kill -0 "$agent_b" 2>/dev/null || ks_fail "the server's agent went away with the Job's"
ks_pass "the server's sidecar and agent keep running"
