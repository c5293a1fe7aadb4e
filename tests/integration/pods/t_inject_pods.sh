#!/usr/bin/env bash
# An injected pod runs: plain Deployments (no sidecar, only the
# ktls-sidecar.io/* annotations a user would write) injected by
# `ktlsctl inject --classic --trust-domain example.org --identity-source dev`
# and played by `podman kube play` (Debian's podman 4.3) as t_pods plays
# the chart's render, with the image from `make image` and t_pods' test-app
# image. Three pods on a bridge network of the test's own, namespace shop:
#  1. server (inbound "8443=8080", app `ks-stream server --mode echo`) and
#     client (outbound "9000=<server pod IP>:8443,id=<server's ID>"): the
#     client app sends 16 MiB of random data in random write sizes through
#     its sidecar and reads the echo. Proved by the peer SPIFFE IDs in both
#     sidecars' logs (the IDs the injector derives at run time from the
#     pod's namespace and service account), and by SHA-256: the client's
#     sent = the server's received, and back;
#  2. wrongid, a negative: its outbound route names the wrong server ID,
#     so its connection is refused (server_id_mismatch in its sidecar's
#     log, its stream fails, the server sees the handshake refused).
# The injected manifests are checked first: the plain ones have no
# sidecar, the injected ones have the agent and the sidecar as plain
# containers (classic), the injected-version annotation and the run-time
# SPIFFE ID (Downward API env, $(VAR) in args).
#
# --classic: podman 4.3 runs initContainers to completion, so a native
# sidecar (an initContainer that never exits) would never let the app
# start. The injector's output is rewritten for kube play 4.3 by
# tests/tools/kube_play43.py (each rewrite printed): t_pods' rewrites (the
# CA Secret -> a hostPath of the dev signer set, emptyDir names suffixed,
# containers' ports dropped), and the run-time SPIFFE ID: kube play 4.3
# supports neither the fieldRefs metadata.namespace and
# spec.serviceAccountName ("fieldPath metadata.namespace is either not
# valid or not supported") nor $(VAR) in args (passed on literally), so
# the env entries KTLS_POD_NAMESPACE and KTLS_POD_SERVICE_ACCOUNT become
# literal values (the namespace the test plays in, the pod's service
# account), and $(KTLS_POD_*) in args is expanded, as the kubelet would.
# kube play 4.3 ignores probes and postStart hooks: the apps wait for their
# sidecar's /ready themselves (the classic hook's job).
#
# The host: as t_pods (tests/lib/pods.sh): podman and CNI in a network
# namespace of the test's own; the host's netfilter, forwarding sysctls and
# /etc/cni/net.d compared before and after; no pod, volume, IPAM state or
# cgroup left, even on failure. No kTLS (no tls ULP on this host), epoll
# (podman's seccomp profile blocks io_uring), as in t_pods.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/pods.sh"

ks_pods_preflight
T=$(ks_tmpdir)
# --- the host, before; the images; the CA ------------------------------------
ks_pods_init "$T"
ks_pods_images
ks_pods_signer "$T"

# --- plain Deployments ----------------------------------------------------------
NET=ks-ipods-$$
SUBNET=10.231.8
declare -A IP=([server]=$SUBNET.10 [client]=$SUBNET.11 [wrongid]=$SUBNET.12)
NS=shop
TD=example.org
BYTES=$((16 << 20))
SEED=$RANDOM # ks-stream's data: xoshiro256** from this seed, other bytes each run
id_of() { echo "spiffe://$TD/ns/$NS/sa/$1"; }
WAIT_READY='until wget -q -O /dev/null http://127.0.0.1:15020/ready 2>/dev/null; do sleep 0.2; done'
# plain NAME ANNOTATION VALUE SCRIPT: a Deployment of one app container
# (service account NAME) that runs SCRIPT, annotated for the injector.
plain() {
	cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $1
  namespace: $NS
  labels: {app: $1}
spec:
  replicas: 1
  selector:
    matchLabels: {app: $1}
  template:
    metadata:
      labels: {app: $1}
      annotations:
        $2: "$3"
    spec:
      serviceAccountName: $1
      containers:
        - name: app
          image: $APP_IMAGE
          command: ["/usr/bin/busybox", "sh", "-c"]
          args:
            - '$4'
EOF
}
plain server ktls-sidecar.io/inbound "8443=8080" 'exec ks-stream server --listen 127.0.0.1:8080 --mode echo' >"$T/server.plain.yaml"
plain client ktls-sidecar.io/outbound "9000=${IP[server]}:8443,id=$(id_of server)" \
	"$WAIT_READY; ks-stream client --connect 127.0.0.1:9000 --bytes $BYTES --seed $SEED --timeout 60; echo app_rc=\$?; exec sleep 100000" \
	>"$T/client.plain.yaml"
plain wrongid ktls-sidecar.io/outbound "9000=${IP[server]}:8443,id=$(id_of wrong)" \
	"$WAIT_READY; ks-stream client --connect 127.0.0.1:9000 --bytes $((1 << 20)) --timeout 30; echo app_rc=\$?; exec sleep 100000" \
	>"$T/wrongid.plain.yaml"

# --- inject, check, rewrite -----------------------------------------------------
# containers FILE: the pod template's containers and initContainers, by name.
containers() {
	$PY -c 'import sys, yaml
d = yaml.safe_load(open(sys.argv[1])); s = d["spec"]["template"]["spec"]
print(" ".join(c["name"] for c in s.get("initContainers", [])) + "|" + " ".join(c["name"] for c in s["containers"]))' "$1"
}
INJECT=("$KS_CTL" inject --classic --trust-domain "$TD" --identity-source dev --image "$IMAGE")
SPIFFE_ARG="--spiffe-id=spiffe://$TD/ns/\$(KTLS_POD_NAMESPACE)/sa/\$(KTLS_POD_SERVICE_ACCOUNT)"
for r in server client wrongid; do
	[[ $(containers "$T/$r.plain.yaml") == "|app" ]] || ks_fail "$r's plain Deployment is not plain: $(containers "$T/$r.plain.yaml")"
	"${INJECT[@]}" -f "$T/$r.plain.yaml" >"$T/$r.yaml" 2>"$T/$r.inject.err" ||
		{ cat "$T/$r.inject.err"; ks_fail "${INJECT[*]} -f $r.plain.yaml failed"; }
	got=$(containers "$T/$r.yaml")
	[[ $got == "|ktls-agent ktls-sidecar app" ]] ||
		ks_fail "$r injected: containers '$got', want no initContainers and ktls-agent, ktls-sidecar, app (classic)"
	grep -q '^        ktls-sidecar.io/injected-version: ' "$T/$r.yaml" || ks_fail "$r injected: no injected-version annotation"
	grep -qxF -- "        - $SPIFFE_ARG" "$T/$r.yaml" || ks_fail "$r injected: no run-time SPIFFE ID ($SPIFFE_ARG)"
	grep -q 'fieldPath: spec.serviceAccountName' "$T/$r.yaml" || ks_fail "$r injected: no Downward API service account"
done
ks_pass "injected by ktlsctl ${INJECT[*]:1}: plain (app) -> ktls-agent, ktls-sidecar, app as containers, injected-version annotated, SPIFFE ID from the Downward API at run time"

echo "manifest rewrites for podman 4.3 kube play (of ktlsctl inject's output; namespace $NS):"
for r in server client wrongid; do
	ks_pods_rewrite "$r" --namespace "$NS"
	grep -q "^container ktls-sidecar: args\[[0-9]*\] .* -> --spiffe-id=$(id_of "$r")$" "$T/$r.rewrites" ||
		ks_fail "the rewrite of $r did not give its sidecar --spiffe-id=$(id_of "$r")"
done

# --- play ----------------------------------------------------------------------------
ks_pods_net "$NET" "$SUBNET" "server-pod-0 client-pod-0 wrongid-pod-0" "ktls-run-server ktls-run-client ktls-run-wrongid"
start=$EPOCHREALTIME
ks_pods_play server "${IP[server]}"
# As a Service's endpoints wait for readiness: the server's sidecar has its
# identity before any client connects.
ks_pods_wait 30 "ready server sidecar (GET http://${IP[server]}:15020/ready)" ks_pods_ready "${IP[server]}"
ks_pods_play client "${IP[client]}"
ks_pods_play wrongid "${IP[wrongid]}"
app_done() { ks_pods_logs "$1"; grep -q '^app_rc=' "$T/$1.log"; }
ks_pods_wait 60 "end of ks-stream in client-pod-0-app" app_done client-pod-0-app
ks_pods_wait 60 "end of ks-stream in wrongid-pod-0-app" app_done wrongid-pod-0-app
play_secs=$(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")
for p in server client wrongid; do
	for c in ktls-agent ktls-sidecar app; do
		ks_pods_logs "$p-pod-0-$c"
	done
done
ks_pods_metrics "${IP[wrongid]}" >"$T/wrongid.metrics" || ks_fail "no /metrics from the wrongid pod at ${IP[wrongid]}:15020"

# --- 1. client -> server over mTLS --------------------------------------------------
ks_pods_mtls_seen "$T/client-pod-0-ktls-sidecar.log" "$T/server-pod-0-ktls-sidecar.log" \
	"${IP[server]}" "$(id_of server)" "${IP[client]}" "$(id_of client)" "$BYTES"
ks_pass "client -> server over mTLS: peer IDs $(id_of server) (client's sidecar) and $(id_of client) (server's sidecar)"
ks_pods_stream "$T/client-pod-0-app.log" "$T/server-pod-0-app.log" "$BYTES"
ks_pass "16 MiB of random data in random write sizes, each way: client sent = server received = $KS_PODS_SHA; server sent = client received"

# --- 2. a route naming the wrong server ID is refused --------------------------------
ks_assert_grep "$T/wrongid-pod-0-ktls-sidecar.log" \
	"event=handshake_rejected conn=[0-9]+ dir=outbound listen=127.0.0.1:9000 peer=${IP[server]}:8443 peer_id=$(id_of server) reason=server_id_mismatch" \
	"a route requiring $(id_of wrong) was not refused by the server's ID"
grep -q '^client summary conns=1 ok=0 failed=1' "$T/wrongid-pod-0-app.log" ||
	ks_fail "the stream over the wrong-ID route did not fail: $(cat "$T/wrongid-pod-0-app.log")"
ks_pods_want_metric "$T/wrongid.metrics" connections_total 'direction="outbound",record_layer="userspace"' 0
ks_pods_want_metric "$T/wrongid.metrics" handshake_failures_total 'direction="outbound",reason="server_id_mismatch"' 1
ks_assert_grep "$T/server-pod-0-ktls-sidecar.log" "event=handshake_rejected .*dir=inbound .*peer=${IP[wrongid]}:" \
	"the server did not see the refused handshake from the wrongid pod"
ks_assert_not_grep "$T/server-pod-0-ktls-sidecar.log" "event=conn_open .*peer=${IP[wrongid]}:" \
	"the server's sidecar opened a connection from the wrongid pod"
ks_pass "a route naming $(id_of wrong) is refused: server_id_mismatch (the server's real ID $(id_of server) logged), the app's stream failed, nothing counted as a connection"

echo "PATH: podman=kube-play inject=classic io=$(grep -ho 'event=io_backend backend=[a-z]*' "$T"/*-ktls-sidecar.log | sed 's/.*=//' | sort -u | paste -sd, -)"

# --- the host, after -------------------------------------------------------------------
ks_pods_host_after '^(server|client|wrongid)-pod-0-'
ks_pass "play and checks ${play_secs}s, teardown ${KS_PODS_DOWN_SECS}s; the host's netfilter (nft, iptables(-legacy), ip6tables(-legacy)), forwarding sysctls and /etc/cni/net.d are as before; no pod, network, IPAM state or cgroup left"
