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
# podman 4.3's kube play cannot play the render as it is; the test rewrites
# the workload object in these ways alone, and prints them:
#  - classic mode (a value, not a rewrite): kube play 4.3 runs
#    initContainers to completion, so native sidecars would never start;
#  - the CA Secret volume becomes a hostPath of the signer set (kube play
#    4.3 mounts hostPath, emptyDir and PVC only);
#  - a Job becomes a Pod with the Job's template (restartPolicy: Never):
#    kube play 4.3 plays Pods, Deployments, ConfigMaps and PVCs only;
#  - each emptyDir gets the pod's name as a suffix: kube play 4.3 makes an
#    emptyDir a named volume of the emptyDir's name, so every pod of the
#    chart would share one /run/ktls-sidecar (and one control socket);
#  - containers' `ports` go: kube play 4.3 publishes every containerPort
#    on the host as the same port (podman issues 15942, 17028; 4.7 stopped
#    it), so a second pod with 8443 cannot start.
# The Service, ServiceAccount and NetworkPolicy are played as rendered
# (kube play 4.3 ignores those kinds). kube play 4.3 ignores readiness and
# startup probes and postStart hooks, and its liveness probes need systemd
# timers, which this machine lacks: the apps wait for their sidecar's
# /ready themselves (the classic hook's job), and the probes, the hooks
# and the native mode are covered by the render tests only
# (t_helm, t_helm_render, t_k8s_validate).
#
# The host: podman and CNI run in a network namespace of the test's own
# (nsenter --net): the bridge, the CNI plugins' netfilter rules (CNI-FORWARD,
# masquerade, the nat table that turns conntrack on) and ip_forward all
# live and die with it, and the host's netfilter is never touched. The test
# compares the host's rules (nft, iptables-nft and iptables-legacy, IPv4
# and IPv6) and forwarding sysctls before and after, and fails on any
# change (restoring what CNI would have added there). Network configs go to
# a directory of the test's (--network-config-dir; /etc/cni/net.d is left
# as the package made it); host-local IPAM state (/var/lib/cni), the
# pods' cgroups (libpod_parent) and podman volumes are removed too.
#
# No kTLS here: this host's kernel has no tls ULP, so the sidecars run on
# the userspace record layer (the kTLS VMs have no podman). podman's default
# seccomp profile blocks io_uring, so the sidecars in containers run on
# epoll (event=io_backend backend=epoll): expected, noted, not a failure.
set -euo pipefail
# The build folder the binaries are in (before sidecar.sh may copy them).
BUILD_DIR=$(cd "$(dirname "${KS_BIN:-$(dirname "$0")/../../../build/ktls-sidecar}")" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

# make asan runs every scenario against build/asan: an image of sanitized
# binaries is not a product (t_image does the same). make test runs this
# scenario on the plain build.
if [[ -n ${KS_SANITIZED:-} && ${KS_SANITIZED:-0} != 0 ]]; then
	echo "PASS: nothing checked under KS_SANITIZED=$KS_SANITIZED: the image is made from the plain build (make test)"
	exit 0
fi
[[ $(id -u) == 0 ]] || ks_skip "not root: podman kube play on a bridge network needs root"
command -v podman >/dev/null || ks_skip "no podman on this machine (make deps installs it)"
for tool in buildah runc catatonit nsenter nft iptables-save iptables-legacy-save curl python3; do
	command -v "$tool" >/dev/null || ks_fail "$tool is missing (make deps installs it)"
done
PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
STREAM_BIN=$BUILD_DIR/tests/ks-stream
[[ -x $STREAM_BIN && -x $KS_CTL ]] || ks_fail "no ks-stream or ktlsctl in $BUILD_DIR (run make)"
HELM=$("$KS_ROOT/tests/tools/fetch-helm.sh") || ks_fail "cannot get helm"
export KUBECONFIG=/nonexistent # helm template needs no cluster

T=$(ks_tmpdir)
ctr() { "$KS_ROOT/image/podman.sh" "$BUILD_DIR" "$@"; }
unmount_under() { # podman's overlay storage can leave a mount behind on failure
	findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r | xargs -r -n 1 umount
}
ks_cleanup_add unmount_under "$T"

# --- the host, before ---------------------------------------------------------
# host_state DIR: what podman and CNI could change on the host. Counters
# and comments are not state.
host_state() {
	mkdir -p "$1"
	nft -s list ruleset >"$1/nft"
	for t in iptables ip6tables iptables-legacy ip6tables-legacy; do
		"$t-save" 2>/dev/null | sed '/^#/d; s/\[[0-9]*:[0-9]*\]//g' >"$1/$t" || true
	done
	sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding >"$1/sysctl"
	(cd /etc/cni/net.d 2>/dev/null && find . -type f ! -name cni.lock -exec sha256sum {} + | sort) >"$1/cni-conf" || true
}
host_state "$T/before"
for t in $(nft list tables | awk '{print $2 "/" $3}'); do # family/name
	mkdir -p "$T/before/tables/${t%/*}"
	nft -s list table "${t%/*}" "${t#*/}" >"$T/before/tables/$t"
done
# nf_restore: if a table with CNI's chains (CNI-*) appeared on the host or
# changed there, put it back as it was (delete it, or reload the saved
# one); tables without CNI's chains are someone else's and stay. A no-op
# when podman stayed in its namespace, as it should.
nf_restore() {
	local t fam name legacy
	for t in $(nft list tables 2>/dev/null | awk '{print $2 "/" $3}'); do
		fam=${t%/*} name=${t#*/}
		nft -s list table "$fam" "$name" | grep -q 'CNI-' || continue
		[[ -f $T/before/tables/$t ]] && nft -s list table "$fam" "$name" | cmp -s - "$T/before/tables/$t" && continue
		echo "t_pods: restoring the host's nft table $fam $name (CNI's chains were added)" >&2
		nft delete table "$fam" "$name"
		[[ ! -f $T/before/tables/$t ]] || nft -f "$T/before/tables/$t"
	done
	for legacy in iptables-legacy ip6tables-legacy; do
		"$legacy-save" 2>/dev/null | grep -q 'CNI-' || continue
		echo "t_pods: restoring the host's $legacy rules (CNI's chains were added)" >&2
		for t in filter nat mangle raw; do
			"$legacy" -t "$t" -F 2>/dev/null || continue
			"$legacy" -t "$t" -X 2>/dev/null || true
		done
		"$legacy-restore" <"$T/before/$legacy" || true
	done
}
ks_cleanup_add nf_restore
# Pod cgroups: podman puts a kube play pod under /libpod_parent/<pod ID>
# (kube play has no --cgroup-parent) and leaves the named hierarchies'
# directories behind; libpod_parent goes too if it was not there before.
mapfile -t CG_HAD < <(ls -d /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/libpod_parent 2>/dev/null || true)
VAR_CNI_HAD=$([[ -d /var/lib/cni ]] && echo 1 || echo 0)
RUN_NETNS_HAD=$([[ -d /run/netns ]] && echo 1 || echo 0)

# --- the images ---------------------------------------------------------------
VERSION=$(ks_make BUILD="$BUILD_DIR" image-version)
IMAGE=localhost/ktls-sidecar:$VERSION
start=$EPOCHREALTIME
# make rebuilds only when the stamp (BUILD/image/image-id) is stale.
ks_make BUILD="$BUILD_DIR" image >"$T/make.out" 2>&1 ||
	{ cat "$T/make.out"; ks_fail "make image failed"; }
[[ $(ctr podman image inspect --format '{{.Id}}' "$IMAGE") == "$(cat "$BUILD_DIR/image/image-id")" ]] ||
	ks_fail "$IMAGE is not the image that make image's stamp names"
# The test app: ks-stream with its libraries (image/rootfs.sh lays them
# out, as for the product image) and busybox-static (a shell for the app's
# command, wget for /ready and the POST). Rebuilt only when an input
# changes: the stamp holds the inputs' hash and the image ID.
APP_IMAGE=localhost/ktls-pods-app:test
APP_DIR=$BUILD_DIR/pods-app
BUSYBOX=/usr/bin/busybox
if [[ ! -x $BUSYBOX ]] || ldd "$BUSYBOX" >/dev/null 2>&1; then
	ks_fail "$BUSYBOX is missing or not busybox-static (make deps installs busybox-static)"
fi
APP_CONTAINERFILE='FROM scratch
COPY rootfs/ /
USER 65534:65534
ENV PATH=/usr/bin
ENTRYPOINT ["/usr/bin/busybox", "sh", "-c"]'
app_key=$({
	echo "$APP_CONTAINERFILE"
	ldd "$STREAM_BIN" | sed -n 's/.*=> \(\/[^ ]*\) (0x.*/\1/p' | xargs -r readlink -f | xargs -r sha256sum
	sha256sum "$STREAM_BIN" "$BUSYBOX" "$KS_ROOT/image/rootfs.sh" | awk '{print $1}'
} | sha256sum | cut -c1-64)
app_id=
if [[ -s $APP_DIR/stamp ]] && read -r key id <"$APP_DIR/stamp" && [[ $key == "$app_key" ]] &&
	[[ $(ctr podman image inspect --format '{{.Id}}' "$APP_IMAGE" 2>/dev/null) == "$id" ]]; then
	app_id=$id
else
	rm -rf "$APP_DIR"
	mkdir -p "$APP_DIR"
	"$KS_ROOT/image/rootfs.sh" "$APP_DIR/rootfs" "$STREAM_BIN" >"$T/app-rootfs.out" 2>&1 ||
		{ cat "$T/app-rootfs.out"; ks_fail "image/rootfs.sh failed for the test app"; }
	install -m 0755 "$BUSYBOX" "$APP_DIR/rootfs/usr/bin/busybox"
	echo "$APP_CONTAINERFILE" >"$APP_DIR/Containerfile"
	ctr buildah bud --quiet --format oci --layers=false -f "$APP_DIR/Containerfile" -t "$APP_IMAGE" \
		"$APP_DIR" >"$T/app-build.out" 2>&1 || { cat "$T/app-build.out"; ks_fail "the test-app image did not build"; }
	app_id=$(ctr podman image inspect --format '{{.Id}}' "$APP_IMAGE")
	ctr podman image prune --force >/dev/null # the app image this one replaced
	echo "$app_key $app_id" >"$APP_DIR/stamp"
fi
ks_pass "images ($(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")s, built only when stale): $IMAGE, $APP_IMAGE ($app_id)"

# --- the CA (the signer set that the chart's Secret holds) --------------------
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
"$KS_CTL" ca export-signer "$T/ca" "$T/signer" >/dev/null
# The Secret's defaultMode 0440 for the agent's uid (the chart's fsGroup).
chown -R 1337:1337 "$T/signer"
chmod 0440 "$T/signer"/*
chmod 0550 "$T/signer"

# --- render, rewrite ----------------------------------------------------------
# The pods' network lives in the test's own network namespace, so its
# subnet cannot clash with the host's routes (nor the host see it).
NET=ks-pods-$$
NETNS=ks-pods-$$
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

cat >"$T/rewrite.py" <<'EOF'
# rewrite.py IN OUT CA_DIR: the render, with its workload object made
# playable by podman 4.3's kube play; prints each rewrite.
import sys, yaml
src, out, ca = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(src)) if d]
played, notes = [], []
for d in docs:
    kind, name = d["kind"], d["metadata"]["name"]
    if kind not in ("Deployment", "Job"):
        played.append(d)  # kube play 4.3 ignores Service, ServiceAccount, NetworkPolicy
        continue
    if kind == "Job":
        t = d["spec"]["template"]
        assert t["spec"]["restartPolicy"] == "Never", t["spec"].get("restartPolicy")
        d = {"apiVersion": "v1", "kind": "Pod", "metadata": dict(t["metadata"], name=name), "spec": t["spec"]}
        notes.append(f"Job {name} -> Pod {name} (the Job's template; restartPolicy: Never)")
    spec = d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]
    ctrs = spec.get("initContainers", []) + spec["containers"]
    assert not spec.get("initContainers"), "classic mode renders no initContainers"
    for v in spec["volumes"]:
        if "secret" in v:
            s = v.pop("secret")
            v["hostPath"] = {"path": ca, "type": "Directory"}
            notes.append(f"volume {v['name']}: secret {s['secretName']} -> hostPath {ca}")
        elif "emptyDir" in v:
            old, v["name"] = v["name"], f"{v['name']}-{name}"
            for c in ctrs:
                for m in c.get("volumeMounts", []):
                    if m["name"] == old:
                        m["name"] = v["name"]
            notes.append(f"volume {old} (emptyDir) -> {v['name']}")
    for c in ctrs:
        if c.pop("ports", None):
            notes.append(f"container {c['name']}: ports dropped")
    played.append(d)
yaml.safe_dump_all(played, open(out, "w"), sort_keys=False)
for n in notes:
    print(n)
EOF
echo "manifest rewrites for podman 4.3 kube play (render: helm template RELEASE helm/ktls-sidecar -n shop -f RELEASE.values, sidecar.mode=classic):"
for r in server client job nopost; do
	"$HELM" template "$r" "$KS_ROOT/helm/ktls-sidecar" --namespace shop -f "$T/$r.values" >"$T/$r.yaml" 2>"$T/$r.err" ||
		{ cat "$T/$r.err"; ks_fail "helm template $r failed"; }
	$PY "$T/rewrite.py" "$T/$r.yaml" "$T/$r.play.yaml" "$T/signer" >"$T/$r.rewrites" ||
		ks_fail "the rewrite of $r's render failed"
	sed "s/^/  $r: /" "$T/$r.rewrites"
done

# --- the network, in a namespace of the test's own ----------------------------
ip netns add "$NETNS"
netns_del() {
	[[ ! -e /run/netns/$NETNS ]] || ip netns del "$NETNS"
	# ip netns (and podman) make /run/netns; empty, it goes if it was not there.
	[[ $RUN_NETNS_HAD == 1 ]] || rmdir /run/netns 2>/dev/null || true
}
ks_cleanup_add netns_del
nsenter --net="/run/netns/$NETNS" ip link set lo up
mkdir "$T/net.d"
# pm ARGS: podman in the test's network namespace, with its network
# configs in the test's directory (never /etc/cni/net.d).
pm() { nsenter --net="/run/netns/$NETNS" "$KS_ROOT/image/podman.sh" "$BUILD_DIR" podman --network-config-dir "$T/net.d" "$@"; }
innet() { nsenter --net="/run/netns/$NETNS" "$@"; }
POD_IDS=()
teardown() { # the pods (their emptyDir volumes go with them), the network, the IPAM state, the cgroups
	local p id d ids=()
	# Every pod on the test's network, and the test's pods by name.
	mapfile -t ids < <(pm pod ps -q --no-trunc --filter network="$NET" 2>/dev/null)
	for p in server-pod-0 client-pod-0 job nopost; do
		id=$(pm pod inspect --format '{{.Id}}' "$p" 2>/dev/null) && ids+=("$id")
	done
	if ((${#ids[@]})); then
		POD_IDS+=("${ids[@]}")
		# Stopped first: `pod rm --force --time 0` of a running pod
		# takes seconds longer here than a stop and a rm.
		pm pod stop --ignore --time 0 "${ids[@]}" >"$T/pod-rm.out" 2>&1 || true
		pm pod rm --force --ignore "${ids[@]}" >>"$T/pod-rm.out" 2>&1 || true
	fi
	for p in server client job nopost; do
		pm volume rm --force "ktls-run-$p" >/dev/null 2>&1 || true
	done
	pm network rm --force "$NET" >/dev/null 2>&1 || true
	rm -rf "/var/lib/cni/networks/$NET" /var/lib/cni/results/"$NET"-*
	# Empty directories only: another podman run may be using them.
	[[ $VAR_CNI_HAD == 1 ]] || rmdir /var/lib/cni/networks /var/lib/cni/results /var/lib/cni 2>/dev/null
	for id in "${POD_IDS[@]}"; do
		for d in /sys/fs/cgroup/*/libpod_parent/"$id" /sys/fs/cgroup/libpod_parent/"$id"; do
			[[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
		done
	done
	for d in /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/libpod_parent; do
		[[ -d $d ]] && ! printf '%s\n' "${CG_HAD[@]}" | grep -qxF "$d" && rmdir "$d" 2>/dev/null
	done
	return 0
}
ks_cleanup_add teardown
pm network create --subnet "$SUBNET.0/24" "$NET" >"$T/net.out" 2>&1 || { cat "$T/net.out"; ks_fail "podman network create failed"; }

play() { # RELEASE: kube play its rewritten render at its IP
	pm kube play --network "$NET" --ip "${IP[$1]}" "$T/$1.play.yaml" >"$T/$1.play.out" 2>&1 ||
		{ cat "$T/$1.play.out"; ks_fail "podman kube play of $1 failed"; }
}
# wait_for SECS WHAT CMD...: until CMD succeeds; fails naming WHAT.
wait_for() {
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$(($(_ks_now_usec) + secs * 1000000))
	until "$@" >/dev/null 2>&1; do
		(($(_ks_now_usec) < deadline)) || ks_fail "no $what after ${secs}s"
		sleep 0.2
	done
}
logs() { pm logs "$1" >"$T/$1.log" 2>&1 || true; }
ready() { [[ $(innet curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$1:15020/ready") == 200 ]]; }
metrics() { innet curl -sf --max-time 5 "http://$1:15020/metrics"; }
state() { pm inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$1" 2>/dev/null; }

start=$EPOCHREALTIME
play server
# As a Service's endpoints wait for readiness: the server's sidecar has its
# identity before any client connects.
wait_for 30 "ready server sidecar (GET http://${IP[server]}:15020/ready)" ready "${IP[server]}"
play client
play job
play nopost
pod_state() { pm pod inspect --format '{{.State}}' "$1" 2>/dev/null; }
app_done() { logs "$1"; grep -q "$2" "$T/$1.log"; }
wait_for 60 "client summary from client-pod-0-app" app_done client-pod-0-app '^client summary'
job_ended() { [[ $(pod_state job) == Exited ]]; }
nopost_app_exited() { [[ $(state nopost-app) == "exited 0" ]]; }
wait_for 60 "end of the job pod" job_ended
wait_for 30 "exit of nopost-app" nopost_app_exited
# The nopost pod is looked at once it has been without its app for longer
# than the job pod took from its app's exit to its own end, and 2 s more.
finished() { pm inspect --format '{{.State.FinishedAt.UnixMilli}}' "$1"; }
job_ms=$(($(finished job-ktls-sidecar) - $(finished job-app)))
look_ms=$(($(finished nopost-app) + job_ms + 2000))
while (($(date +%s%3N) < look_ms)); do sleep 0.2; done
play_secs=$(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")
for c in server-pod-0-ktls-sidecar client-pod-0-ktls-sidecar job-ktls-sidecar job-ktls-agent job-app \
	nopost-ktls-sidecar nopost-ktls-agent nopost-app server-pod-0-app; do
	logs "$c"
done
metrics "${IP[server]}" >"$T/server.metrics" || ks_fail "no /metrics from the server pod at ${IP[server]}:15020"
metrics "${IP[client]}" >"$T/client.metrics" || ks_fail "no /metrics from the client pod at ${IP[client]}:15020"
echo "CNI's rules went to the test's namespace: $(innet nft list tables | paste -sd, -)"

# --- 1. client -> server over mTLS ------------------------------------------------
ks_assert_grep "$T/client-pod-0-ktls-sidecar.log" \
	"event=conn_open conn=[0-9]+ dir=outbound listen=127.0.0.1:9000 peer=${IP[server]}:8443 peer_id=$(id_of server) tls=TLSv1.3 " \
	"the client's sidecar has no outbound connection to the server pod with the server's ID"
ks_assert_grep "$T/server-pod-0-ktls-sidecar.log" \
	"event=conn_open conn=[0-9]+ dir=inbound listen=0.0.0.0:8443 peer=${IP[client]}:[0-9]+ peer_id=$(id_of client) tls=TLSv1.3 " \
	"the server's sidecar has no inbound connection from the client pod with the client's ID"
ks_assert_grep "$T/client-pod-0-ktls-sidecar.log" \
	"event=conn_close conn=[0-9]+ dir=outbound peer=${IP[server]}:8443 peer_id=$(id_of server) reason=done .*bytes_to_peer=$BYTES bytes_from_peer=$BYTES " \
	"the client's sidecar did not carry $BYTES bytes each way to a clean end"
# metric NAME LABELS FILE: the sample's value
metric() { sed -n "s/^ktls_sidecar_$1{$2} \([0-9]*\)$/\1/p" "$3"; }
want_metric() { # FILE NAME LABELS VALUE
	local got
	got=$(metric "$2" "$3" "$1")
	[[ $got == "$4" ]] || { grep "^ktls_sidecar_$2" "$1" >&2; ks_fail "$(basename "$1"): ktls_sidecar_$2{$3} is '$got', want $4"; }
}
want_metric "$T/client.metrics" connections_total 'direction="outbound",record_layer="userspace"' 1
want_metric "$T/client.metrics" connections_total 'direction="inbound",record_layer="userspace"' 0
# The server: the client's and the job's connections, not nopost's.
want_metric "$T/server.metrics" connections_total 'direction="inbound",record_layer="userspace"' 2
want_metric "$T/server.metrics" connections_total 'direction="inbound",record_layer="plaintext"' 0
ks_pass "client -> server over mTLS: peer IDs $(id_of server) (client's log) and $(id_of client) (server's log); connections_total: client outbound 1, server inbound 2 (client, job), scraped at http://${IP[client]}:15020 and http://${IP[server]}:15020"

# SHA-256 of the 64 MiB each way: the client's line, and the server's line
# for the connection that received that many bytes.
c_line=$(grep '^client conn=0 ' "$T/client-pod-0-app.log") || ks_fail "no client result: $(cat "$T/client-pod-0-app.log")"
s_line=$(grep "^server conn=[0-9]* recv_bytes=$BYTES " "$T/server-pod-0-app.log") ||
	ks_fail "the server app did not receive $BYTES bytes: $(cat "$T/server-pod-0-app.log")"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
[[ $(field status "$c_line") == ok && $(field status "$s_line") == ok ]] ||
	ks_fail "a stream failed: client: $c_line; server: $s_line"
grep -q '^app_rc=0$' "$T/client-pod-0-app.log" || ks_fail "the client app's ks-stream did not exit 0"
[[ $(field sent_bytes "$c_line") == "$BYTES" && $(field recv_bytes "$c_line") == "$BYTES" ]] ||
	ks_fail "the client did not send and receive $BYTES bytes: $c_line"
[[ $(field sent_sha256 "$c_line") == "$(field recv_sha256 "$s_line")" ]] ||
	ks_fail "client sent_sha256 != server recv_sha256: $c_line / $s_line"
[[ $(field sent_sha256 "$s_line") == "$(field recv_sha256 "$c_line")" ]] ||
	ks_fail "server sent_sha256 != client recv_sha256: $s_line / $c_line"
ks_pass "64 MiB of random data in random write sizes, each way: client sent = server received = $(field sent_sha256 "$c_line"); server sent = client received"

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
	[[ $(state "$c") == "exited 0" ]] || ks_fail "$c: $(state "$c"), want exited 0"
done
ks_pass "job: its app POSTed /quitquitquit; app, sidecar and agent exited 0 and the pod ended (pod $(pod_state job); ${job_ms} ms from the app's exit to the sidecar's)"

# --- 3. negatives: a Job that never POSTs; a wrong server ID ---------------------------
for c in nopost-ktls-sidecar nopost-ktls-agent; do
	[[ $(state "$c") == "running 0" ]] || ks_fail "$c: $(state "$c"): the Job without the POST ended its sidecars"
done
[[ $(pod_state nopost) != Exited ]] || ks_fail "the nopost pod ended without its app's POST"
ks_assert_not_grep "$T/nopost-ktls-sidecar.log" 'admin_drain|event=stopping' "the nopost sidecar drained without a POST"
ks_pass "a Job whose app exits 0 without the POST does not end: $(((look_ms - $(finished nopost-app)) / 1000))s after its app's exit (the job pod needed ${job_ms} ms from its app's to its end), its sidecar and agent still run (pod $(pod_state nopost))"

metrics "${IP[nopost]}" >"$T/nopost.metrics" || ks_fail "no /metrics from the nopost pod at ${IP[nopost]}:15020"
ks_assert_grep "$T/nopost-ktls-sidecar.log" \
	"event=handshake_rejected conn=[0-9]+ dir=outbound listen=127.0.0.1:9000 peer=${IP[server]}:8443 peer_id=$(id_of server) reason=server_id_mismatch" \
	"a route requiring $(id_of wrong) was not refused by the server's ID"
grep -q '^client summary conns=1 ok=0 failed=1' "$T/nopost-app.log" ||
	ks_fail "the stream over the wrong-ID route did not fail: $(cat "$T/nopost-app.log")"
want_metric "$T/nopost.metrics" connections_total 'direction="outbound",record_layer="userspace"' 0
want_metric "$T/nopost.metrics" handshake_failures_total 'direction="outbound",reason="server_id_mismatch"' 1
ks_assert_grep "$T/server-pod-0-ktls-sidecar.log" "event=handshake_rejected .*dir=inbound .*peer=${IP[nopost]}:" \
	"the server did not see the refused handshake from the nopost pod"
ks_pass "a route naming $(id_of wrong) is refused: server_id_mismatch (the server's real ID $(id_of server) logged), the app's stream failed, nothing counted as a connection"

# The record layer and the I/O backend, as this host gives them.
! grep -q 'event=io_backend backend=epoll' "$T"/*-ktls-sidecar.log ||
	echo "note: the sidecars run on epoll in podman's containers (its default seccomp profile blocks io_uring), as expected"
echo "PATH: podman=kube-play mode=classic io=$(grep -ho 'event=io_backend backend=[a-z]*' "$T"/*-ktls-sidecar.log | sed 's/.*=//' | sort -u | paste -sd, -)"

# --- the host, after -------------------------------------------------------------------
start=$EPOCHREALTIME
teardown
netns_del
down_secs=$(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")
host_state "$T/after"
nf_restore
changed=0
for f in nft iptables ip6tables iptables-legacy ip6tables-legacy sysctl cni-conf; do
	diff -u "$T/before/$f" "$T/after/$f" >&2 || { changed=1 && echo "t_pods: the host's $f changed (above)" >&2; }
done
((changed == 0)) || ks_fail "podman changed the host (see above; CNI's tables, if any, were put back)"
left=$(ctr podman ps -a --format '{{.Names}}' | grep -E '^(server-pod-0|client-pod-0|job|nopost)-' || true)
[[ -z $left ]] || ks_fail "containers left: $left"
left=$(ctr podman volume ls --format '{{.Name}}' | grep -E '^ktls-run' || true)
[[ -z $left ]] || ks_fail "volumes left: $left"
[[ ! -e /var/lib/cni/networks/$NET ]] || ks_fail "/var/lib/cni/networks/$NET is left"
for id in "${POD_IDS[@]}"; do
	ls -d /sys/fs/cgroup/*/libpod_parent/"$id" 2>/dev/null && ks_fail "the cgroup of pod $id is left"
done
ks_pass "play and checks ${play_secs}s, teardown ${down_secs}s; the host's netfilter (nft, iptables(-legacy), ip6tables(-legacy)), forwarding sysctls and /etc/cni/net.d are as before; no pod, network, IPAM state or cgroup left"
