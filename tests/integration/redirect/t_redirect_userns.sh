#!/usr/bin/env bash
# The redirect for user-namespaced pods (Kubernetes `hostUsers: false`).
# Each "pod" is a user namespace mapping 0-65535 to 100000-165535 (written
# as root into /proc/PID/uid_map, no newuidmap), a network namespace, and a
# cgroup v2 directory; processes enter with nsenter as uid 1337 (the
# sidecar: 101337 on the host) or 1000 (the app). Two kinds of pod:
#   owned  the network namespace belongs to the pod's user namespace, as in
#          Kubernetes; ktls-redirect finds it with NS_GET_USERNS;
#   named  an `ip netns` namespace of the host's, the pod's user namespace
#          given with --userns (a runtime that makes the netns on the host).
# For each, in each mode (bpf on the host and in the kTLS VM; iptables on
# the host): install with --sidecar-uid 1337; uid 1337's connect() reaches
# its destination directly (exempt), uid 1000's goes to the outbound
# listener (a stand-in that logs SO_ORIGINAL_DST); status and the manifest
# show both uids; a real sidecar in the pod passes its --redirect-check, and
# its own upstream connection for the app is not redirected back to itself.
# Refused, clearly: a --sidecar-uid the pod's namespace does not map; a
# sidecar in another user namespace than the manifest's (the named pod
# installed without --userns); the BPF loader inside a user namespace.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

skip() {
	[[ ${KS_REQUIRE_REDIRECT:-0} == 1 ]] && ks_fail "required, but: $*"
	ks_skip "$*"
}
[[ $(id -u) -eq 0 ]] || skip "needs root (user and network namespaces, cgroups, BPF)"
for tool in unshare nsenter ip python3 stat; do
	command -v "$tool" >/dev/null || skip "$tool is not installed"
done
if ! unshare --user true 2>/dev/null; then
	skip "cannot create a user namespace ($(unshare --user true 2>&1 || true))"
fi
CG2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' /proc/self/mountinfo)
[[ -n $CG2 ]] || skip "no cgroup v2 hierarchy is mounted (BPF cgroup hooks need one)"
if [[ $(stat -f -c %T /sys/fs/bpf 2>/dev/null) != bpf_fs ]]; then
	mount -t bpf bpf /sys/fs/bpf || skip "cannot mount a BPF file system on /sys/fs/bpf"
	ks_cleanup_add umount /sys/fs/bpf
fi
MODES=(bpf)
# The VM's initramfs has no netfilter modules (t_redirect_iptables: host only).
if [[ ${KS_VM:-0} != 1 ]] && command -v iptables-restore >/dev/null && command -v ip6tables-restore >/dev/null; then
	MODES+=(iptables)
fi
echo "PATH: redirect=$(
	IFS=,
	echo "${MODES[*]}"
) userns"

T=$(ks_tmpdir)
chmod 755 "$T"
BASE=100000 UID_SC=1337 UID_APP=1000
HOST_SC=$((BASE + UID_SC))
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
"$KS_CTL" ca issue --ca "$T/ca" "$KS_CLIENT_ID" --out "$T/a" >/dev/null
chmod 644 "$T/a.key" "$T/a.crt" "$T/ca/signer/bundle.pem"
chmod 755 "$T/ca" "$T/ca/signer" # the sidecar runs as 101337 on the host; the CA keys stay 0600
ID=(--cert "$T/a.crt" --key "$T/a.key" --ca "$T/ca/signer/bundle.pem")

# serve ADDR PORT LABEL: says "listening", then logs "LABEL accepted
# peer=... original_dst=..." per connection (the pod's uids cannot write here). connect ADDR PORT TIMEOUT: "connected" or "not connected:
# why", then waits for the other end to close.
cat >"$T/u.py" <<'EOF'
import socket, struct, sys

if sys.argv[1] == "serve":
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((sys.argv[2], int(sys.argv[3])))
    l.listen(16)
    print("listening", flush=True)
    while True:
        c, peer = l.accept()
        try:
            raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
            dst = "%s:%d" % (socket.inet_ntoa(raw[4:8]), struct.unpack_from("!H", raw, 2)[0])
        except OSError as e:
            dst = "none"
        print("%s accepted peer=%s:%d original_dst=%s" % (sys.argv[4], peer[0], peer[1], dst), flush=True)
        c.close()
else:
    s = socket.socket()
    s.settimeout(float(sys.argv[4]))
    try:
        s.connect((sys.argv[2], int(sys.argv[3])))
    except OSError as e:
        print("not connected: %s" % e)
        sys.exit(1)
    print("connected", flush=True)
    try:
        s.recv(1)
    except OSError:
        pass
EOF
chmod 644 "$T/u.py"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)

# pod_up NAME KIND: a pod (owned or named, see above) with a stand-in on the
# outbound port and a plain server on 10.200.78.1:8080, its own address.
# Sets H (a process holding the namespaces), NETNS, USERNS_ARGS.
pod_up() {
	local name=$1 kind=$2 own
	own=$(stat -L -c %i /proc/self/ns/user)
	mkdir "$CG2/$name"
	ks_cleanup_add rmdir "$CG2/$name"
	if [[ $kind == owned ]]; then
		ks_bg "$T/$name.holder.log" unshare --user --net sleep 3600 >/dev/null
	else
		ip netns add "$name"
		ks_cleanup_add ip netns del "$name"
		ks_bg "$T/$name.holder.log" ip netns exec "$name" unshare --user sleep 3600 >/dev/null
	fi
	H=$KS_BG_PID
	for _ in $(seq 200); do
		[[ $(stat -L -c %i "/proc/$H/ns/user" 2>/dev/null) != "$own" ]] && break
		sleep 0.05
	done
	[[ $(stat -L -c %i "/proc/$H/ns/user") != "$own" ]] || ks_fail "$name: no user namespace of its own"
	echo "0 $BASE 65536" >"/proc/$H/uid_map"
	echo "0 $BASE 65536" >"/proc/$H/gid_map"
	# As root of the host, in the pod's network namespace only: a default
	# route (iptables mode needs one for the probes, as a real pod has).
	in_net() { nsenter -t "$H" --net "$@"; }
	in_net ip link set lo up
	in_net ip link add ksu0 type veth peer name ksu1
	in_net ip addr add 10.200.78.1/24 dev ksu0
	in_net ip addr add fd00:200:78::1/64 dev ksu0 nodad
	in_net ip link set ksu0 up
	in_net ip link set ksu1 up
	in_net ip route add default dev ksu0
	in_net ip -6 route add default dev ksu0
	if [[ $kind == owned ]]; then
		NETNS=/proc/$H/ns/net USERNS_ARGS=()
	else
		NETNS=/run/netns/$name USERNS_ARGS=(--userns "/proc/$H/ns/user")
	fi
	POD=$name
	bg_inpod "$T/$name.direct.log" 0 "$PY" "$T/u.py" serve 10.200.78.1 8080 direct
	ks_wait_log "$T/$name.direct.log" '^listening' 20
}

# inpod UID CMD...: CMD in pod $POD (its cgroup, then its user and network
# namespaces) as UID of the pod. bash moves itself into the cgroup and
# execs, so the pid stays CMD's. bg_inpod LOG UID CMD...: the same under ks_bg.
# shellcheck disable=SC2016 # expanded by the inner bash
INPOD_SH='echo $$ >"$0/cgroup.procs" && exec nsenter -t "$1" --user --net --setuid "$2" --setgid "$2" "${@:3}"'
inpod() { bash -c "$INPOD_SH" "$CG2/$POD" "$H" "$@"; }
bg_inpod() {
	local log=$1
	shift
	ks_bg "$log" bash -c "$INPOD_SH" "$CG2/$POD" "$H" "$@" >/dev/null
}

# exemption MODE: uid 1337 goes straight to the server, uid 1000 to the
# stand-in with its original destination.
exemption() {
	local mode=$1 out
	bg_inpod "$T/$POD.standin.log" 0 "$PY" "$T/u.py" serve 127.0.0.1 15001 standin
	STANDIN=$KS_BG_PID
	ks_wait_log "$T/$POD.standin.log" '^listening' 20
	out=$(inpod "$UID_SC" "$PY" "$T/u.py" connect 10.200.78.1 8080 5 2>&1) ||
		ks_fail "$POD ($mode): uid $UID_SC could not connect: $out"
	# (The client returns once the server closed: after it logged.)
	if grep -q accepted "$T/$POD.standin.log"; then
		ks_fail "$POD ($mode): the sidecar's uid $UID_SC (host $HOST_SC) was redirected: $(cat "$T/$POD.standin.log")"
	fi
	ks_wait_log "$T/$POD.direct.log" "^direct accepted peer=10\.200\.78\.1:" 10
	out=$(inpod "$UID_APP" "$PY" "$T/u.py" connect 10.200.78.1 8080 5 2>&1) ||
		ks_fail "$POD ($mode): uid $UID_APP could not connect: $out"
	ks_wait_log "$T/$POD.standin.log" '^standin accepted peer=.* original_dst=10\.200\.78\.1:8080$' 10
	[[ $(grep -c accepted "$T/$POD.direct.log") == 1 ]] ||
		ks_fail "$POD ($mode): the app's uid $UID_APP was not redirected: $(cat "$T/$POD.direct.log")"
	kill "$STANDIN"
	for _ in $(seq 100); do _ks_alive "$STANDIN" || break; sleep 0.05; done
}

# sidecar_ok MODE: the real sidecar as uid 1337 of the pod passes its
# start-up check, and carries the app's connection out without looping.
sidecar_ok() {
	local mode=$1 mf=$2 before
	bg_inpod "$T/$POD.sc.log" "$UID_SC" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 \
		--outbound-transparent '[::1]:15001' "${ID[@]}" --workers 1 --redirect-check "$mf"
	SC=$KS_BG_PID
	ks_wait_log "$T/$POD.sc.log" 'event=ready' 30 || ks_fail "$POD ($mode): the sidecar did not start"
	ks_assert_grep "$T/$POD.sc.log" "event=redirect_check result=ok mode=$mode .* uid=$UID_SC host_uid=$HOST_SC" \
		"$POD ($mode): no redirect_check ok line with both uids"
	before=$(grep -c accepted "$T/$POD.direct.log")
	inpod "$UID_APP" "$PY" "$T/u.py" connect 10.200.78.1 8080 10 >/dev/null 2>&1 || true
	# The sidecar's own connect() (as 1337) reaches the server, which is no
	# TLS server: the handshake fails there, not in a loop back to itself.
	ks_wait_log "$T/$POD.sc.log" 'event=[a-z_]+ .*dir=outbound .*peer=10\.200\.78\.1:8080' 20
	(($(grep -c accepted "$T/$POD.direct.log") == before + 1)) ||
		ks_fail "$POD ($mode): the sidecar's upstream connection did not reach the server: $(cat "$T/$POD.sc.log")"
	ks_assert_not_grep "$T/$POD.sc.log" 'redirect loop|peer=127\.0\.0\.1:15001' "$POD ($mode): the sidecar's connection came back to it"
	kill "$SC"
	for _ in $(seq 200); do _ks_alive "$SC" || break; sleep 0.05; done
	_ks_alive "$SC" && ks_fail "$POD ($mode): the sidecar did not stop"
	return 0
}

n=0
for mode in "${MODES[@]}"; do
	for kind in owned named; do
		n=$((n + 1))
		name=ks-uns-$$-$n
		pod_up "$name" "$kind"
		mf=$T/$name.conf
		at=(--name "$name" --manifest "$mf")
		if [[ $mode == iptables ]]; then
			at=(--mode iptables --netns "$NETNS" "${at[@]}")
			where=()
		else
			where=(--cgroup "$CG2/$name" --netns "$NETNS")
		fi
		inst=("${at[@]}" "${where[@]}" "${USERNS_ARGS[@]}")
		ks_cleanup_add "$KS_BIN" redirect remove "${at[@]}"
		"$KS_BIN" redirect install "${inst[@]}" --sidecar-uid "$UID_SC" >"$T/$name.install.out" 2>&1 ||
			{ cat "$T/$name.install.out"; ks_fail "$name ($mode, $kind): install failed"; }
		exemption "$mode"
		grep -q -- "--sidecar-uid $UID_SC is read in .*: uid $HOST_SC on the host" "$T/$name.install.out" ||
			ks_fail "$name ($mode): install did not say the translation: $(cat "$T/$name.install.out")"
		"$KS_BIN" redirect status "${at[@]}" >"$T/$name.status" 2>&1 ||
			{ cat "$T/$name.status"; ks_fail "$name ($mode): status"; }
		if [[ $mode == bpf ]]; then
			grep -Eq "sidecar uid +$HOST_SC on the host, $UID_SC in the pod's user namespace" "$T/$name.status" ||
				ks_fail "$name: status does not show the translation: $(cat "$T/$name.status")"
			grep -q ' redirected=1 exempt_uid=1 ' "$T/$name.status" ||
				ks_fail "$name: counters: $(grep counters "$T/$name.status")"
		elif [[ $kind == owned ]]; then
			# The rule is read in the netns's user namespace: 1337 there.
			grep -q "sidecar uid: $UID_SC in the netns's user namespace, $HOST_SC on the host" "$T/$name.status" ||
				ks_fail "$name: status does not show the translation: $(cat "$T/$name.status")"
		else
			# The netns is the host's: the rule says the host's uid.
			grep -q "sidecar uid: $HOST_SC (the netns belongs to this user namespace)" "$T/$name.status" ||
				ks_fail "$name: status does not show the host's uid: $(cat "$T/$name.status")"
		fi
		grep -q "manifest .*(sidecar uid $UID_SC, $HOST_SC on the host; user namespace [0-9]*)" "$T/$name.status" ||
			ks_fail "$name ($mode): status does not show the manifest's uids: $(cat "$T/$name.status")"
		ino=$(stat -L -c %i "/proc/$H/ns/user")
		for kv in "sidecar_uid=$UID_SC" "sidecar_host_uid=$HOST_SC" "sidecar_userns=$ino"; do
			grep -qx "$kv" "$mf" || ks_fail "$name ($mode): the manifest lacks $kv: $(cat "$mf")"
		done
		sidecar_ok "$mode" "$mf"
		ks_pass "$mode, $kind pod: uid $UID_SC of the pod ($HOST_SC on the host) exempt, uid $UID_APP redirected; status and manifest show both; the sidecar passes its check and its connection is not redirected back"

		if [[ $kind == named ]]; then
			# Without --userns the loader takes the netns's namespace (the
			# host's): the manifest names it, and the sidecar refuses.
			"$KS_BIN" redirect remove "${at[@]}" >/dev/null
			"$KS_BIN" redirect install "${at[@]}" "${where[@]}" --sidecar-uid "$UID_SC" >"$T/$name.install2.out" 2>&1 ||
				{ cat "$T/$name.install2.out"; ks_fail "$name ($mode): install without --userns failed"; }
			rc=0
			inpod "$UID_SC" timeout 30 "$KS_BIN" --outbound-transparent 127.0.0.1:15001 \
				--outbound-transparent '[::1]:15001' "${ID[@]}" --redirect-check "$mf" >"$T/$name.refused.log" 2>&1 || rc=$?
			((rc == 1)) || { cat "$T/$name.refused.log"; ks_fail "$name ($mode): the sidecar exited $rc, want 1"; }
			ks_assert_grep "$T/$name.refused.log" "event=start_failed redirect_check=.*this sidecar runs in user namespace $ino, but the redirect \($mode\) exempts uid $UID_SC of user namespace [0-9]+ .*--userns" \
				"$name ($mode): the refusal does not name the user namespaces"
			ks_pass "$mode: installed without --userns for a pod whose netns is the host's, the sidecar in the pod's user namespace refuses to start, naming both"
		fi
		"$KS_BIN" redirect remove "${at[@]}" >/dev/null
		# A uid the pod's namespace does not map: refused before anything.
		rc=0
		"$KS_BIN" redirect install "${inst[@]}" --sidecar-uid 70000 >"$T/$name.bad.out" 2>&1 || rc=$?
		((rc == 1)) && grep -q -- '--sidecar-uid 70000 is not mapped in .*uid_map: 0 100000 65536' "$T/$name.bad.out" ||
			ks_fail "$name ($mode): install of an unmapped uid: exit $rc, $(cat "$T/$name.bad.out")"
		[[ ! -e $mf ]] || ks_fail "$name ($mode): the refused install left a manifest"
	done
done

# The BPF loader inside a user namespace: its capabilities there do not
# load cgroup programs (kernel/bpf/syscall.c checks the initial namespace).
rc=0
unshare --user --map-root-user --net "$KS_BIN" redirect install --name "ks-uns-$$-in" --cgroup "$CG2/ks-uns-$$-1" \
	--netns /proc/self/ns/net --manifest none >"$T/inside.out" 2>&1 || rc=$?
((rc == 1)) && grep -q 'runs in a user namespace (uid_map: 0 0 1).*hostUsers: false) cannot load them' "$T/inside.out" ||
	ks_fail "the loader in a user namespace: exit $rc, $(cat "$T/inside.out")"
[[ ! -e /sys/fs/bpf/ks-uns-$$-in ]] || ks_fail "the refused install left pins"
ks_pass "refused: an unmapped --sidecar-uid (named with the pod's uid_map); the BPF loader inside a user namespace (it needs the host's CAP_BPF and CAP_NET_ADMIN)"
