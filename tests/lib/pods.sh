# shellcheck shell=bash
# Pods that really run under podman 4.3's `kube play` (t_pods,
# t_inject_pods), on top of sidecar.sh:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../../lib/pods.sh"
#
# Sourcing sets BUILD_DIR (the folder KS_BIN is in, before sidecar.sh may
# copy the binaries) and sources sidecar.sh.
#
# ks_pods_preflight   passes under KS_SANITIZED (the image is made from the
#                     plain build), skips unless root with podman, fails
#                     when a tool is missing; sets PY (Debian's python3,
#                     with python3-yaml) and STREAM_BIN.
# ks_pods_init DIR    DIR (a ks_tmpdir) holds the test's files ($T below):
#                     records the host's netfilter, forwarding sysctls,
#                     /etc/cni/net.d, cgroups and directories that podman
#                     and CNI may change, for ks_pods_host_after; registers
#                     the restores (even on failure).
# ks_pods_images      `make image` (built only when stale) and the test-app
#                     image (ks-stream and busybox-static, FROM scratch);
#                     sets VERSION, IMAGE and APP_IMAGE.
# ks_pods_signer DIR  a dev CA (trust domain example.org) and its signer
#                     set in DIR/signer, as the CA Secret would hold it.
# ks_pods_rewrite NAME [--namespace NS]: $T/NAME.yaml made playable by
#                     kube play 4.3 ($T/NAME.play.yaml; tests/tools/
#                     kube_play43.py says how); prints each rewrite.
# ks_pods_net NAME SUBNET PODS VOLUMES: a network namespace of the test's
#                     own with a podman bridge network NAME on SUBNET.0/24;
#                     PODS and VOLUMES (space-separated) are the pods'
#                     and the named volumes' names that the teardown
#                     removes (besides every pod on the network).
# ks_pm ARGS          podman in that namespace, with the network configs
#                     in $T/net.d (never /etc/cni/net.d).
# ks_innet CMD...     CMD in that namespace (curl to a pod's IP).
# ks_ctr ARGS         podman or buildah on the project's storage.
# ks_pods_play NAME IP: kube play $T/NAME.play.yaml at IP.
# ks_pods_wait SECS WHAT CMD...: until CMD succeeds; fails naming WHAT.
# ks_pods_logs CTR    CTR's log to $T/CTR.log.
# ks_pods_ready IP    the sidecar at IP answers GET :15020/ready with 200.
# ks_pods_metrics IP  the sidecar's /metrics at IP.
# ks_pods_state CTR   "STATUS EXITCODE" of a container.
# ks_pods_want_metric FILE NAME LABELS VALUE: ktls_sidecar_NAME{LABELS} is
#                     VALUE in FILE, or the test fails.
# ks_pods_stream CLIENT_LOG SERVER_LOG BYTES: ks-stream's lines: the client
#                     sent and received BYTES, the server received BYTES on
#                     one connection, and the SHA-256 of each direction
#                     matches; sets KS_PODS_SHA (the client's sent_sha256).
# ks_pods_host_after CTR_RE: tears the pods, the network and the namespace
#                     down and fails if the host changed or anything is
#                     left (containers whose names match the extended
#                     regex CTR_RE, volumes, IPAM state, cgroups); sets
#                     KS_PODS_DOWN_SECS.
#
# The host: podman and CNI run in a network namespace of the test's own
# (nsenter --net): the bridge, the CNI plugins' netfilter rules (CNI-FORWARD,
# masquerade, the nat table that turns conntrack on) and ip_forward all
# live and die with it, and the host's netfilter is never touched. The host's
# rules (nft, iptables-nft and iptables-legacy, IPv4 and IPv6) and forwarding
# sysctls are compared before and after, and any change fails the test
# (what CNI would have added there is restored). Network configs go to a
# directory of the test's (--network-config-dir; /etc/cni/net.d is left as
# the package made it); host-local IPAM state (/var/lib/cni), the pods'
# cgroups (libpod_parent) and podman volumes are removed too.

# The build folder the binaries are in (before sidecar.sh may copy them).
BUILD_DIR=$(cd "$(dirname "${KS_BIN:-$(dirname "${BASH_SOURCE[0]}")/../../build/ktls-sidecar}")" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/sidecar.sh"

_ks_pods_me=$(basename "$0" .sh)

ks_pods_preflight() {
	# make asan runs every scenario against build/asan: an image of
	# sanitized binaries is not a product (t_image does the same). make
	# test runs these scenarios on the plain build.
	if [[ -n ${KS_SANITIZED:-} && ${KS_SANITIZED:-0} != 0 ]]; then
		echo "PASS: nothing checked under KS_SANITIZED=$KS_SANITIZED: the image is made from the plain build (make test)"
		exit 0
	fi
	[[ $(id -u) == 0 ]] || ks_skip "not root: podman kube play on a bridge network needs root"
	command -v podman >/dev/null || ks_skip "no podman on this machine (make deps installs it)"
	local tool
	for tool in buildah runc catatonit nsenter nft iptables-save iptables-legacy-save curl python3; do
		command -v "$tool" >/dev/null || ks_fail "$tool is missing (make deps installs it)"
	done
	PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
	$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
	STREAM_BIN=$BUILD_DIR/tests/ks-stream
	[[ -x $STREAM_BIN && -x $KS_CTL ]] || ks_fail "no ks-stream or ktlsctl in $BUILD_DIR (run make)"
}

ks_ctr() { "$KS_ROOT/image/podman.sh" "$BUILD_DIR" "$@"; }

_ks_pods_unmount_under() { # podman's overlay storage can leave a mount behind on failure
	findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r | xargs -r -n 1 umount
}

# _ks_pods_host_state DIR: what podman and CNI could change on the host.
# Counters and comments are not state.
_ks_pods_host_state() {
	local t
	mkdir -p "$1"
	nft -s list ruleset >"$1/nft"
	for t in iptables ip6tables iptables-legacy ip6tables-legacy; do
		"$t-save" 2>/dev/null | sed '/^#/d; s/\[[0-9]*:[0-9]*\]//g' >"$1/$t" || true
	done
	sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding >"$1/sysctl"
	(cd /etc/cni/net.d 2>/dev/null && find . -type f ! -name cni.lock -exec sha256sum {} + | sort) >"$1/cni-conf" || true
}

ks_pods_init() {
	T=$1
	ks_cleanup_add _ks_pods_unmount_under "$T"
	_ks_pods_host_state "$T/before"
	local t
	for t in $(nft list tables | awk '{print $2 "/" $3}'); do # family/name
		mkdir -p "$T/before/tables/${t%/*}"
		nft -s list table "${t%/*}" "${t#*/}" >"$T/before/tables/$t"
	done
	ks_cleanup_add _ks_pods_nf_restore
	# Pod cgroups: podman puts a kube play pod under /libpod_parent/<pod
	# ID> (kube play has no --cgroup-parent) and leaves the named
	# hierarchies' directories behind; libpod_parent goes too if it was
	# not there before.
	mapfile -t _KS_PODS_CG_HAD < <(ls -d /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/libpod_parent 2>/dev/null || true)
	_KS_PODS_VAR_CNI_HAD=$([[ -d /var/lib/cni ]] && echo 1 || echo 0)
	_KS_PODS_RUN_NETNS_HAD=$([[ -d /run/netns ]] && echo 1 || echo 0)
	_KS_PODS_IDS=()
}

# _ks_pods_nf_restore: if a table with CNI's chains (CNI-*) appeared on the
# host or changed there, put it back as it was (delete it, or reload the
# saved one); tables without CNI's chains are someone else's and stay. A
# no-op when podman stayed in its namespace, as it should.
_ks_pods_nf_restore() {
	local t fam name legacy
	for t in $(nft list tables 2>/dev/null | awk '{print $2 "/" $3}'); do
		fam=${t%/*} name=${t#*/}
		nft -s list table "$fam" "$name" | grep -q 'CNI-' || continue
		[[ -f $T/before/tables/$t ]] && nft -s list table "$fam" "$name" | cmp -s - "$T/before/tables/$t" && continue
		echo "$_ks_pods_me: restoring the host's nft table $fam $name (CNI's chains were added)" >&2
		nft delete table "$fam" "$name"
		[[ ! -f $T/before/tables/$t ]] || nft -f "$T/before/tables/$t"
	done
	for legacy in iptables-legacy ip6tables-legacy; do
		"$legacy-save" 2>/dev/null | grep -q 'CNI-' || continue
		echo "$_ks_pods_me: restoring the host's $legacy rules (CNI's chains were added)" >&2
		for t in filter nat mangle raw; do
			"$legacy" -t "$t" -F 2>/dev/null || continue
			"$legacy" -t "$t" -X 2>/dev/null || true
		done
		"$legacy-restore" <"$T/before/$legacy" || true
	done
}

ks_pods_images() {
	VERSION=$(ks_make BUILD="$BUILD_DIR" image-version)
	IMAGE=localhost/ktls-sidecar:$VERSION
	local start=$EPOCHREALTIME
	# make rebuilds only when the stamp (BUILD/image/image-id) is stale.
	ks_make BUILD="$BUILD_DIR" image >"$T/make.out" 2>&1 ||
		{ cat "$T/make.out"; ks_fail "make image failed"; }
	[[ $(ks_ctr podman image inspect --format '{{.Id}}' "$IMAGE") == "$(cat "$BUILD_DIR/image/image-id")" ]] ||
		ks_fail "$IMAGE is not the image that make image's stamp names"
	# The test app: ks-stream with its libraries (image/rootfs.sh lays
	# them out, as for the product image) and busybox-static (a shell for
	# the app's command, wget for /ready and the POST). Rebuilt only when
	# an input changes: the stamp holds the inputs' hash and the image ID.
	APP_IMAGE=localhost/ktls-pods-app:test
	local app_dir=$BUILD_DIR/pods-app busybox=/usr/bin/busybox app_key app_id='' key id
	if [[ ! -x $busybox ]] || ldd "$busybox" >/dev/null 2>&1; then
		ks_fail "$busybox is missing or not busybox-static (make deps installs busybox-static)"
	fi
	local containerfile='FROM scratch
COPY rootfs/ /
USER 65534:65534
ENV PATH=/usr/bin
ENTRYPOINT ["/usr/bin/busybox", "sh", "-c"]'
	app_key=$({
		echo "$containerfile"
		ldd "$STREAM_BIN" | sed -n 's/.*=> \(\/[^ ]*\) (0x.*/\1/p' | xargs -r readlink -f | xargs -r sha256sum
		sha256sum "$STREAM_BIN" "$busybox" "$KS_ROOT/image/rootfs.sh" | awk '{print $1}'
	} | sha256sum | cut -c1-64)
	if [[ -s $app_dir/stamp ]] && read -r key id <"$app_dir/stamp" && [[ $key == "$app_key" ]] &&
		[[ $(ks_ctr podman image inspect --format '{{.Id}}' "$APP_IMAGE" 2>/dev/null) == "$id" ]]; then
		app_id=$id
	else
		rm -rf "$app_dir"
		mkdir -p "$app_dir"
		"$KS_ROOT/image/rootfs.sh" "$app_dir/rootfs" "$STREAM_BIN" >"$T/app-rootfs.out" 2>&1 ||
			{ cat "$T/app-rootfs.out"; ks_fail "image/rootfs.sh failed for the test app"; }
		install -m 0755 "$busybox" "$app_dir/rootfs/usr/bin/busybox"
		echo "$containerfile" >"$app_dir/Containerfile"
		ks_ctr buildah bud --quiet --format oci --layers=false -f "$app_dir/Containerfile" -t "$APP_IMAGE" \
			"$app_dir" >"$T/app-build.out" 2>&1 || { cat "$T/app-build.out"; ks_fail "the test-app image did not build"; }
		app_id=$(ks_ctr podman image inspect --format '{{.Id}}' "$APP_IMAGE")
		ks_ctr podman image prune --force >/dev/null # the app image this one replaced
		echo "$app_key $app_id" >"$app_dir/stamp"
	fi
	ks_pass "images ($(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")s, built only when stale): $IMAGE, $APP_IMAGE ($app_id)"
}

ks_pods_signer() {
	"$KS_CTL" ca init "$1/ca" --trust-domain example.org >/dev/null
	"$KS_CTL" ca export-signer "$1/ca" "$1/signer" >/dev/null
	# The Secret's defaultMode 0440 for the agent's uid (the pods' fsGroup).
	chown -R 1337:1337 "$1/signer"
	chmod 0440 "$1/signer"/*
	chmod 0550 "$1/signer"
}

ks_pods_rewrite() {
	local name=$1
	shift
	$PY "$KS_ROOT/tests/tools/kube_play43.py" "$T/$name.yaml" "$T/$name.play.yaml" --ca "$T/signer" "$@" \
		>"$T/$name.rewrites" || ks_fail "the rewrite of $name's manifest for kube play 4.3 failed"
	sed "s/^/  $name: /" "$T/$name.rewrites"
}

ks_pods_net() {
	_KS_PODS_NET=$1 _KS_PODS_NETNS=$1
	_KS_PODS_NAMES=$3 _KS_PODS_VOLUMES=$4
	ip netns add "$_KS_PODS_NETNS"
	ks_cleanup_add _ks_pods_netns_del
	nsenter --net="/run/netns/$_KS_PODS_NETNS" ip link set lo up
	mkdir "$T/net.d"
	ks_cleanup_add _ks_pods_teardown
	ks_pm network create --subnet "$2.0/24" "$_KS_PODS_NET" >"$T/net.out" 2>&1 ||
		{ cat "$T/net.out"; ks_fail "podman network create failed"; }
}

_ks_pods_netns_del() {
	[[ ! -e /run/netns/$_KS_PODS_NETNS ]] || ip netns del "$_KS_PODS_NETNS"
	# ip netns (and podman) make /run/netns; empty, it goes if it was not there.
	[[ $_KS_PODS_RUN_NETNS_HAD == 1 ]] || rmdir /run/netns 2>/dev/null || true
}

ks_pm() { nsenter --net="/run/netns/$_KS_PODS_NETNS" "$KS_ROOT/image/podman.sh" "$BUILD_DIR" podman --network-config-dir "$T/net.d" "$@"; }
ks_innet() { nsenter --net="/run/netns/$_KS_PODS_NETNS" "$@"; }

# The pods (their emptyDir volumes go with them), the network, the IPAM
# state, the cgroups.
_ks_pods_teardown() {
	local p id d ids=()
	# Every pod on the test's network, and the test's pods by name.
	mapfile -t ids < <(ks_pm pod ps -q --no-trunc --filter network="$_KS_PODS_NET" 2>/dev/null)
	for p in $_KS_PODS_NAMES; do
		id=$(ks_pm pod inspect --format '{{.Id}}' "$p" 2>/dev/null) && ids+=("$id")
	done
	if ((${#ids[@]})); then
		_KS_PODS_IDS+=("${ids[@]}")
		# Stopped first: `pod rm --force --time 0` of a running pod
		# takes seconds longer here than a stop and a rm.
		ks_pm pod stop --ignore --time 0 "${ids[@]}" >"$T/pod-rm.out" 2>&1 || true
		ks_pm pod rm --force --ignore "${ids[@]}" >>"$T/pod-rm.out" 2>&1 || true
	fi
	for p in $_KS_PODS_VOLUMES; do
		ks_pm volume rm --force "$p" >/dev/null 2>&1 || true
	done
	ks_pm network rm --force "$_KS_PODS_NET" >/dev/null 2>&1 || true
	rm -rf "/var/lib/cni/networks/$_KS_PODS_NET" /var/lib/cni/results/"$_KS_PODS_NET"-*
	# Empty directories only: another podman run may be using them.
	[[ $_KS_PODS_VAR_CNI_HAD == 1 ]] || rmdir /var/lib/cni/networks /var/lib/cni/results /var/lib/cni 2>/dev/null
	for id in "${_KS_PODS_IDS[@]}"; do
		for d in /sys/fs/cgroup/*/libpod_parent/"$id" /sys/fs/cgroup/libpod_parent/"$id"; do
			[[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
		done
	done
	for d in /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/libpod_parent; do
		[[ -d $d ]] && ! printf '%s\n' "${_KS_PODS_CG_HAD[@]}" | grep -qxF "$d" && rmdir "$d" 2>/dev/null
	done
	return 0
}

ks_pods_play() {
	ks_pm kube play --network "$_KS_PODS_NET" --ip "$2" "$T/$1.play.yaml" >"$T/$1.play.out" 2>&1 ||
		{ cat "$T/$1.play.out"; ks_fail "podman kube play of $1 failed"; }
}

ks_pods_wait() {
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$(($(_ks_now_usec) + secs * 1000000))
	until "$@" >/dev/null 2>&1; do
		(($(_ks_now_usec) < deadline)) || ks_fail "no $what after ${secs}s"
		sleep 0.2
	done
}
ks_pods_logs() { ks_pm logs "$1" >"$T/$1.log" 2>&1 || true; }
ks_pods_ready() { [[ $(ks_innet curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$1:15020/ready") == 200 ]]; }
ks_pods_metrics() { ks_innet curl -sf --max-time 5 "http://$1:15020/metrics"; }
ks_pods_state() { ks_pm inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$1" 2>/dev/null; }

ks_pods_want_metric() {
	local got
	got=$(sed -n "s/^ktls_sidecar_$2{$3} \([0-9]*\)$/\1/p" "$1")
	[[ $got == "$4" ]] || { grep "^ktls_sidecar_$2" "$1" >&2; ks_fail "$(basename "$1"): ktls_sidecar_$2{$3} is '$got', want $4"; }
}

_ks_pods_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
ks_pods_stream() {
	local c_log=$1 s_log=$2 bytes=$3 c_line s_line
	# The client's line, and the server's line for the connection that
	# received that many bytes.
	c_line=$(grep '^client conn=0 ' "$c_log") || ks_fail "no client result: $(cat "$c_log")"
	s_line=$(grep "^server conn=[0-9]* recv_bytes=$bytes " "$s_log") ||
		ks_fail "the server app did not receive $bytes bytes: $(cat "$s_log")"
	[[ $(_ks_pods_field status "$c_line") == ok && $(_ks_pods_field status "$s_line") == ok ]] ||
		ks_fail "a stream failed: client: $c_line; server: $s_line"
	grep -q '^app_rc=0$' "$c_log" || ks_fail "the client app's ks-stream did not exit 0"
	[[ $(_ks_pods_field sent_bytes "$c_line") == "$bytes" && $(_ks_pods_field recv_bytes "$c_line") == "$bytes" ]] ||
		ks_fail "the client did not send and receive $bytes bytes: $c_line"
	[[ $(_ks_pods_field sent_sha256 "$c_line") == "$(_ks_pods_field recv_sha256 "$s_line")" ]] ||
		ks_fail "client sent_sha256 != server recv_sha256: $c_line / $s_line"
	[[ $(_ks_pods_field sent_sha256 "$s_line") == "$(_ks_pods_field recv_sha256 "$c_line")" ]] ||
		ks_fail "server sent_sha256 != client recv_sha256: $s_line / $c_line"
	# shellcheck disable=SC2034 # for the caller
	KS_PODS_SHA=$(_ks_pods_field sent_sha256 "$c_line")
}

ks_pods_host_after() {
	local start=$EPOCHREALTIME changed=0 f left id
	_ks_pods_teardown
	_ks_pods_netns_del
	# shellcheck disable=SC2034 # for the caller
	KS_PODS_DOWN_SECS=$(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")
	_ks_pods_host_state "$T/after"
	_ks_pods_nf_restore
	for f in nft iptables ip6tables iptables-legacy ip6tables-legacy sysctl cni-conf; do
		diff -u "$T/before/$f" "$T/after/$f" >&2 || { changed=1 && echo "$_ks_pods_me: the host's $f changed (above)" >&2; }
	done
	((changed == 0)) || ks_fail "podman changed the host (see above; CNI's tables, if any, were put back)"
	left=$(ks_ctr podman ps -a --format '{{.Names}}' | grep -E "$1" || true)
	[[ -z $left ]] || ks_fail "containers left: $left"
	left=$(ks_ctr podman volume ls --format '{{.Name}}' | grep -E '^ktls-run' || true)
	[[ -z $left ]] || ks_fail "volumes left: $left"
	[[ ! -e /var/lib/cni/networks/$_KS_PODS_NET ]] || ks_fail "/var/lib/cni/networks/$_KS_PODS_NET is left"
	for id in "${_KS_PODS_IDS[@]}"; do
		ls -d /sys/fs/cgroup/*/libpod_parent/"$id" 2>/dev/null && ks_fail "the cgroup of pod $id is left"
	done
	return 0
}

# ks_pods_mtls_seen CLIENT_LOG SERVER_LOG SERVER_IP SERVER_ID CLIENT_IP CLIENT_ID BYTES:
# the client's sidecar logged an outbound mTLS connection to the server pod
# with the server's ID, carried BYTES each way to a clean end; the server's
# sidecar logged the inbound one from the client pod with the client's ID.
ks_pods_mtls_seen() {
	local clog=$1 slog=$2 sip=$3 sid=$4 cip=$5 cid=$6 bytes=$7
	ks_assert_grep "$clog" \
		"event=conn_open conn=[0-9]+ dir=outbound listen=127.0.0.1:9000 peer=$sip:8443 peer_id=$sid tls=TLSv1.3 " \
		"the client's sidecar has no outbound connection to the server pod with the server's ID"
	ks_assert_grep "$slog" \
		"event=conn_open conn=[0-9]+ dir=inbound listen=0.0.0.0:8443 peer=$cip:[0-9]+ peer_id=$cid tls=TLSv1.3 " \
		"the server's sidecar has no inbound connection from the client pod with the client's ID"
	ks_assert_grep "$clog" \
		"event=conn_close conn=[0-9]+ dir=outbound peer=$sip:8443 peer_id=$sid reason=done .*bytes_to_peer=$bytes bytes_from_peer=$bytes " \
		"the client's sidecar did not carry $bytes bytes each way to a clean end"
}
