#!/usr/bin/env bash
# Pods that really run: the chart's rendered manifests (helm/ktls-sidecar,
# sidecar.mode=classic) played by `podman kube play` (Debian's podman
# 4.3), with the image from `make image` and a test-app image built here
# (FROM scratch: ks-stream, its libraries and busybox-static; nothing is
# pulled). Four pods on a bridge network of the test's own:
#  1. server (Deployment: agent, sidecar, `ks-stream server --mode echo`)
#     and client (Deployment: agent, sidecar, app): the client app sends
#     64 MiB of random data in random write sizes through its sidecar's
#     outbound route (mTLS to the server pod's IP, server ID required) and
#     reads the echo. Proved by the peer SPIFFE IDs in both sidecars' logs
#     (podman logs), by ktls_sidecar_connections_total on both /metrics
#     (scraped over the pod IPs, as Prometheus would), and by SHA-256: the
#     client's sent = the server's received, and back;
#  2. job (workload.kind=Job): its app streams 1 MiB to the server, then
#     POSTs /quitquitquit: the sidecar drains and exits 0, the agent
#     follows, and the pod ends with every container exited 0;
#  3. nopost (Job), two negatives: its app exits 0 without the POST, and
#     the pod does not end: its sidecar and agent still run once they have
#     been without the app for longer than the job pod took from its app's
#     exit to its end (and 2 s more); its route names the wrong server ID,
#     so its connection is refused (its sidecar logs server_id_mismatch,
#     the server's metrics do not count it).
#
# podman 4.3's kube play cannot play the render as it is; the test
# rewrites the workload object (tests/tools/kube_play43.py, which says why
# for each) and prints each rewrite: classic mode (a value, not a rewrite:
# kube play 4.3 runs initContainers to completion, so native sidecars would
# never start); the CA Secret volume becomes a hostPath of the signer set; a
# Job becomes a Pod with the Job's template; each emptyDir gets the pod's
# name as a suffix; containers' `ports` go.
# The Service, ServiceAccount and NetworkPolicy are played as rendered
# (kube play 4.3 ignores those kinds). kube play 4.3 ignores readiness and
# startup probes and postStart hooks, and its liveness probes need systemd
# timers, which this machine lacks: the apps wait for their sidecar's
# /ready themselves (the classic hook's job), and the probes, the hooks
# and the native mode are covered by the render tests only
# (t_helm, t_helm_render, t_k8s_validate).
#
# The host: podman and CNI run in a network namespace of the test's own,
# and the test fails if the host's netfilter, forwarding sysctls or
# /etc/cni/net.d changed, or a pod, volume, IPAM state or cgroup is left
# (tests/lib/pods.sh, shared with t_inject_pods).
#
# No kTLS here: this host's kernel has no tls ULP, so the sidecars run on
# the userspace record layer (the kTLS VMs have no podman). podman's default
# seccomp profile blocks io_uring, so the sidecars in containers run on
# epoll (event=io_backend backend=epoll): expected, noted, not a failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/pods.sh"

ks_pods_preflight
source "$KS_ROOT/tests/lib/helm.sh"

T=$(ks_tmpdir)
# --- the host, before; the images ---------------------------------------------
ks_pods_init "$T"
ks_pods_images

# --- the CA (the signer set that the chart's Secret holds) --------------------
ks_pods_signer "$T"

# --- render, rewrite ----------------------------------------------------------
# The pods' network lives in the test's own network namespace, so its
# subnet cannot clash with the host's routes (nor the host see it).
NET=ks-pods-$$
SUBNET=10.231.7
declare -A IP=([server]=$SUBNET.10 [client]=$SUBNET.11 [job]=$SUBNET.12 [nopost]=$SUBNET.13)
BYTES=$((64 << 20))
SEED=$RANDOM # ks-stream's data: xoshiro256** from this seed, other bytes each run
TD=example.org
id_of() { echo "spiffe://$TD/ns/shop/sa/$1"; }
# The apps wait for their sidecar's /ready themselves: that is the classic
# mode's postStart hook (ktlsctl wait-ready), which kube play 4.3 ignores.
WAIT_READY='until wget -q -O /dev/null http://127.0.0.1:15020/ready 2>/dev/null; do sleep 0.2; done'
# values KIND SCRIPT [SERVER_ID]: a release's values (JSON is YAML): the
# app runs SCRIPT; with SERVER_ID, an outbound route 127.0.0.1:9000 to the
# server pod that requires that ID.
values() {
	$PY - "$TD" "$APP_IMAGE" "${IP[server]}:8443" "$@" <<'EOF'
import json, sys
td, image, server, kind, script = sys.argv[1:6]
v = {"trustDomain": td, "sidecar": {"mode": "classic"},
     "workload": {"kind": kind, "image": image, "command": ["/usr/bin/busybox", "sh", "-c"], "args": [script]}}
if len(sys.argv) > 6:
    v["sidecar"]["outbound"] = [{"localPort": 9000, "remote": server, "id": sys.argv[6]}]
print(json.dumps(v, indent=2))
EOF
}
values Deployment 'exec ks-stream server --listen 127.0.0.1:8080 --mode echo' >"$T/server.values"
values Deployment "$WAIT_READY; ks-stream client --connect 127.0.0.1:9000 --bytes $BYTES --seed $SEED --timeout 60; echo app_rc=\$?; exec sleep 100000" \
	"$(id_of server)" >"$T/client.values"
values Job "$WAIT_READY; ks-stream client --connect 127.0.0.1:9000 --bytes $((1 << 20)) --timeout 30 || exit 1; wget -q -O - --post-data= http://127.0.0.1:15020/quitquitquit" \
	"$(id_of server)" >"$T/job.values"
values Job "$WAIT_READY; ks-stream client --connect 127.0.0.1:9000 --bytes $((1 << 20)) --timeout 30; echo app_rc=\$?; exit 0" \
	"$(id_of wrong)" >"$T/nopost.values"

# render RELEASE: the chart's render of RELEASE.values, in $T/RELEASE.yaml.
render() {
	"$HELM" template "$1" "$KS_ROOT/helm/ktls-sidecar" --namespace shop $KS_POST -f "$T/$1.values" >"$T/$1.yaml" 2>>"$T/$1.err" ||
		{ cat "$T/$1.err"; ks_fail "helm template $1 failed"; }
}
echo "manifest rewrites for podman 4.3 kube play (render: helm template RELEASE helm/ktls-sidecar -n shop --post-renderer ktls-inject -f RELEASE.values, sidecar.mode=classic):"
for r in server client job nopost; do
	render "$r"
	ks_pods_rewrite "$r" --namespace shop
done

# --- the network, in a namespace of the test's own ----------------------------
ks_pods_net "$NET" "$SUBNET" "server-pod-0 client-pod-0 job nopost" \
	"ktls-run-server ktls-run-client ktls-run-job ktls-run-nopost"

play() { ks_pods_play "$1" "${IP[$1]}"; } # RELEASE: kube play its rewritten render at its IP

start=$EPOCHREALTIME
play server
# As a Service's endpoints wait for readiness: the server's sidecar has its
# identity before any client connects.
ks_pods_wait 30 "ready server sidecar (GET http://${IP[server]}:15020/ready)" ks_pods_ready "${IP[server]}"
play client
play job
play nopost
pod_state() { ks_pm pod inspect --format '{{.State}}' "$1" 2>/dev/null; }
app_done() { ks_pods_logs "$1"; grep -q "$2" "$T/$1.log"; }
ks_pods_wait 60 "client summary from client-pod-0-app" app_done client-pod-0-app '^client summary'
job_ended() { [[ $(pod_state job) == Exited ]]; }
nopost_app_exited() { [[ $(ks_pods_state nopost-app) == "exited 0" ]]; }
ks_pods_wait 60 "end of the job pod" job_ended
ks_pods_wait 30 "exit of nopost-app" nopost_app_exited
# The nopost pod is looked at once it has been without its app for longer
# than the job pod took from its app's exit to its own end, and 2 s more.
finished() { ks_pm inspect --format '{{.State.FinishedAt.UnixMilli}}' "$1"; }
job_ms=$(($(finished job-ktls-sidecar) - $(finished job-app)))
look_ms=$(($(finished nopost-app) + job_ms + 2000))
while (($(date +%s%3N) < look_ms)); do sleep 0.2; done
play_secs=$(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")
for c in server-pod-0-ktls-sidecar client-pod-0-ktls-sidecar job-ktls-sidecar job-ktls-agent job-app \
	nopost-ktls-sidecar nopost-ktls-agent nopost-app server-pod-0-app; do
	ks_pods_logs "$c"
done
ks_pods_metrics "${IP[server]}" >"$T/server.metrics" || ks_fail "no /metrics from the server pod at ${IP[server]}:15020"
ks_pods_metrics "${IP[client]}" >"$T/client.metrics" || ks_fail "no /metrics from the client pod at ${IP[client]}:15020"
echo "CNI's rules went to the test's namespace: $(ks_innet nft list tables | paste -sd, -)"

# --- 1. client -> server over mTLS ------------------------------------------------
ks_pods_mtls_seen "$T/client-pod-0-ktls-sidecar.log" "$T/server-pod-0-ktls-sidecar.log" \
	"${IP[server]}" "$(id_of server)" "${IP[client]}" "$(id_of client)" "$BYTES"
ks_pods_want_metric "$T/client.metrics" connections_total 'direction="outbound",record_layer="userspace"' 1
ks_pods_want_metric "$T/client.metrics" connections_total 'direction="inbound",record_layer="userspace"' 0
# The server: the client's and the job's connections, not nopost's.
ks_pods_want_metric "$T/server.metrics" connections_total 'direction="inbound",record_layer="userspace"' 2
ks_pods_want_metric "$T/server.metrics" connections_total 'direction="inbound",record_layer="plaintext"' 0
ks_pass "client -> server over mTLS: peer IDs $(id_of server) (client's log) and $(id_of client) (server's log); connections_total: client outbound 1, server inbound 2 (client, job), scraped at http://${IP[client]}:15020 and http://${IP[server]}:15020"

# SHA-256 of the 64 MiB each way.
ks_pods_stream "$T/client-pod-0-app.log" "$T/server-pod-0-app.log" "$BYTES"
ks_pass "64 MiB of random data in random write sizes, each way: client sent = server received = $KS_PODS_SHA; server sent = client received"

# --- 2. the Job ends with its app's POST ---------------------------------------------
ks_assert_grep "$T/server-pod-0-ktls-sidecar.log" \
	"event=conn_open conn=[0-9]+ dir=inbound listen=0.0.0.0:8443 peer=${IP[job]}:[0-9]+ peer_id=$(id_of job) " \
	"the server's sidecar has no connection from the job pod with the job's ID"
grep -q '^client summary conns=1 ok=1 failed=0' "$T/job-app.log" || ks_fail "the job's stream failed: $(cat "$T/job-app.log")"
ks_assert_grep "$T/job-ktls-sidecar.log" 'event=admin_drain path=/quitquitquit result=draining' \
	"the job's sidecar saw no POST /quitquitquit"
ks_assert_grep "$T/job-ktls-sidecar.log" 'event=stopped' "the job's sidecar did not stop"
ks_assert_grep "$T/job-ktls-agent.log" 'event=sidecar_draining' "the job's agent did not see the drain"
for c in job-app job-ktls-sidecar job-ktls-agent; do
	[[ $(ks_pods_state "$c") == "exited 0" ]] || ks_fail "$c: $(ks_pods_state "$c"), want exited 0"
done
ks_pass "job: its app POSTed /quitquitquit; app, sidecar and agent exited 0 and the pod ended (pod $(pod_state job); ${job_ms} ms from the app's exit to the sidecar's)"

# --- 3. negatives: a Job that never POSTs; a wrong server ID ---------------------------
for c in nopost-ktls-sidecar nopost-ktls-agent; do
	[[ $(ks_pods_state "$c") == "running 0" ]] || ks_fail "$c: $(ks_pods_state "$c"): the Job without the POST ended its sidecars"
done
[[ $(pod_state nopost) != Exited ]] || ks_fail "the nopost pod ended without its app's POST"
ks_assert_not_grep "$T/nopost-ktls-sidecar.log" 'admin_drain|event=stopping' "the nopost sidecar drained without a POST"
ks_pass "a Job whose app exits 0 without the POST does not end: $(((look_ms - $(finished nopost-app)) / 1000))s after its app's exit (the job pod needed ${job_ms} ms from its app's to its end), its sidecar and agent still run (pod $(pod_state nopost))"

ks_pods_metrics "${IP[nopost]}" >"$T/nopost.metrics" || ks_fail "no /metrics from the nopost pod at ${IP[nopost]}:15020"
ks_assert_grep "$T/nopost-ktls-sidecar.log" \
	"event=handshake_rejected conn=[0-9]+ dir=outbound listen=127.0.0.1:9000 peer=${IP[server]}:8443 peer_id=$(id_of server) reason=server_id_mismatch" \
	"a route requiring $(id_of wrong) was not refused by the server's ID"
grep -q '^client summary conns=1 ok=0 failed=1' "$T/nopost-app.log" ||
	ks_fail "the stream over the wrong-ID route did not fail: $(cat "$T/nopost-app.log")"
ks_pods_want_metric "$T/nopost.metrics" connections_total 'direction="outbound",record_layer="userspace"' 0
ks_pods_want_metric "$T/nopost.metrics" handshake_failures_total 'direction="outbound",reason="server_id_mismatch"' 1
ks_assert_grep "$T/server-pod-0-ktls-sidecar.log" "event=handshake_rejected .*dir=inbound .*peer=${IP[nopost]}:" \
	"the server did not see the refused handshake from the nopost pod"
ks_pass "a route naming $(id_of wrong) is refused: server_id_mismatch (the server's real ID $(id_of server) logged), the app's stream failed, nothing counted as a connection"

# The record layer and the I/O backend, as this host gives them.
! grep -q 'event=io_backend backend=epoll' "$T"/*-ktls-sidecar.log ||
	echo "note: the sidecars run on epoll in podman's containers (its default seccomp profile blocks io_uring), as expected"
echo "PATH: podman=kube-play mode=classic io=$(grep -ho 'event=io_backend backend=[a-z]*' "$T"/*-ktls-sidecar.log | sed 's/.*=//' | sort -u | paste -sd, -)"

# --- the host, after -------------------------------------------------------------------
ks_pods_host_after '^(server-pod-0|client-pod-0|job|nopost)-'
down_secs=$KS_PODS_DOWN_SECS
ks_pass "play and checks ${play_secs}s, teardown ${down_secs}s; the host's netfilter (nft, iptables(-legacy), ip6tables(-legacy)), forwarding sysctls and /etc/cni/net.d are as before; no pod, network, IPAM state or cgroup left"
