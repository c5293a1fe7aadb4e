#!/usr/bin/env bash
# --redirect-check: the sidecar proves at start-up that the pod's redirect
# reaches it, and otherwise refuses to start, saying what is missing. Each
# refusal is a separate start with one thing wrong: no manifest, a uid the
# redirect does not exempt (it would loop), no listener on the redirect's
# port, no redirect in effect, the sidecar outside the pod's cgroup. Then
# the real thing passes, for the BPF and the iptables redirect: a connect()
# to the probe address, made by the exempt sidecar itself, is redirected to
# its own outbound listener and carries the probe address back through
# getsockopt(SO_ORIGINAL_DST).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

skip() {
	[[ ${KS_REQUIRE_REDIRECT:-0} == 1 ]] && ks_fail "required, but: $*"
	ks_skip "$*"
}
[[ $(id -u) -eq 0 ]] || skip "needs root (BPF, network namespaces, cgroups)"
command -v setpriv >/dev/null || skip "setpriv is not installed"
CG2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' /proc/self/mountinfo)
[[ -n $CG2 ]] || skip "no cgroup v2 hierarchy is mounted"
if [[ $(stat -f -c %T /sys/fs/bpf 2>/dev/null) != bpf_fs ]]; then
	mount -t bpf bpf /sys/fs/bpf || skip "cannot mount a BPF file system on /sys/fs/bpf"
	ks_cleanup_add umount /sys/fs/bpf
fi

T=$(ks_tmpdir)
chmod 755 "$T"
N=ks-rchk-$$
mkdir "$CG2/$N" || skip "cannot create a cgroup under $CG2"
ks_cleanup_add rmdir "$CG2/$N"
ip netns add "$N" || skip "cannot create a network namespace"
ks_cleanup_add ip netns del "$N"
ip -n "$N" link set lo up
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
"$KS_CTL" ca issue --ca "$T/ca" "$KS_CLIENT_ID" --out "$T/a" >/dev/null
chmod 644 "$T/a.key" "$T/a.crt" "$T/ca/signer/bundle.pem"
chmod 755 "$T/ca" "$T/ca/signer" # the sidecars run as uid 1337; the CA keys stay 0600
ID=(--cert "$T/a.crt" --key "$T/a.key" --ca "$T/ca/signer/bundle.pem")

manifest() { # FILE UID OUT_PORT
	printf 'mode=bpf\nname=%s\ncgroup=%s\nnetns=/run/netns/%s\nsidecar_uid=%s\noutbound_port=%s\ninbound_port=15006\napp_ports=\nkernel=%s\ninstalled_unix=0\n' \
		"$N" "$CG2/$N" "$N" "$2" "$3" "$(uname -r)" >"$1"
}

# refused LOG REGEX CMD...: the sidecar must exit 1 before event=ready,
# logging event=start_failed with REGEX.
refused() {
	local log=$1 re=$2 rc=0
	shift 2
	timeout 30 "$@" --control-socket none >"$log" 2>&1 || rc=$?
	((rc == 1)) || { cat "$log"; ks_fail "sidecar exited $rc, want 1 (refused start)"; }
	ks_assert_not_grep "$log" 'event=ready' "it became ready anyway"
	ks_assert_grep "$log" "event=start_failed redirect_check=.*$re" "the refusal does not say: $re"
}
IN_NS=(ip netns exec "$N")

refused "$T/1.log" 'cannot read the redirect manifest' \
	"${IN_NS[@]}" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}" --redirect-check "$T/none.conf"
manifest "$T/uid.conf" 4242 15001
refused "$T/2.log" 'runs as uid 0, but the redirect \(bpf\) exempts uid 4242' \
	"${IN_NS[@]}" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}" --redirect-check "$T/uid.conf"
manifest "$T/port.conf" 0 15002
refused "$T/3.log" 'no --outbound-transparent route on it' \
	"${IN_NS[@]}" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}" --redirect-check "$T/port.conf"
manifest "$T/ok0.conf" 0 15001
refused "$T/4.log" 'probe 169.254.255.254:15999 was not redirected .*connect4 hook does not cover this process' \
	"${IN_NS[@]}" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}" --redirect-check "$T/ok0.conf"
ks_pass "refused to start, naming what is missing: no manifest, a uid that would loop, no listener on the port, no redirect"

# The real BPF redirect, installed for the pod.
"$KS_BIN" redirect install --name "$N" --cgroup "$CG2/$N" --netns "/run/netns/$N" --sidecar-uid 1337 \
	--manifest "$T/redirect.conf" >"$T/install.out" 2>&1 || { cat "$T/install.out"; ks_fail "redirect install failed"; }
ks_cleanup_add "$KS_BIN" redirect remove --name "$N" --manifest "$T/redirect.conf"
chmod 644 "$T/redirect.conf"
SC=(setpriv --reuid 1337 --regid 1337 --clear-groups "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}"
	--redirect-check "$T/redirect.conf")
# In the pod's network namespace but outside its cgroup: not covered.
refused "$T/5.log" "connect4 hook does not cover this process: it is in cgroup .* installed for $CG2/$N" "${IN_NS[@]}" "${SC[@]}"
# In the pod: the check passes and the sidecar serves.
INPOD_SH='echo $$ >"$0/cgroup.procs" && exec ip netns exec "$1" "${@:2}"'
ks_bg "$T/ok.log" bash -c "$INPOD_SH" "$CG2/$N" "$N" "${SC[@]}" --control-socket none >/dev/null
ks_wait_log "$T/ok.log" 'event=ready' 20 || ks_fail "the sidecar did not start with a working redirect"
ks_assert_grep "$T/ok.log" 'event=redirect_check result=ok mode=bpf' "no redirect_check ok line"
ks_assert_not_grep "$T/ok.log" 'event=(handshake_rejected|conn_open)' "the probe was treated as a connection"
kill "$KS_BG_PID"
wait "$KS_BG_PID" 2>/dev/null || true
ks_pass "bpf: the probe from the exempt sidecar is redirected to its own listener and carries 169.254.255.254:15999 back"

"$KS_BIN" redirect remove --name "$N" --manifest "$T/redirect.conf" >/dev/null
command -v iptables-restore >/dev/null || skip "iptables-restore is not installed (iptables mode)"
# nat OUTPUT only sees a packet that has a route: give the pod a default
# route (one end of a veth pair inside the namespace), as a real pod has.
ip -n "$N" link add ksd0 type veth peer name ksd1 || skip "cannot create a veth pair"
ip -n "$N" addr add 10.255.0.1/24 dev ksd0
ip -n "$N" link set ksd0 up
ip -n "$N" link set ksd1 up
ip -n "$N" route add default dev ksd0
"$KS_BIN" redirect install --mode iptables --name "$N" --netns "/run/netns/$N" --sidecar-uid 1337 \
	--manifest "$T/redirect.conf" >"$T/install.out" 2>&1 || { cat "$T/install.out"; ks_fail "iptables install failed"; }
ks_cleanup_add "$KS_BIN" redirect remove --mode iptables --netns "/run/netns/$N" --name "$N" \
	--manifest "$T/redirect.conf"
chmod 644 "$T/redirect.conf"
ks_bg "$T/ok2.log" ip netns exec "$N" "${SC[@]}" --control-socket none >/dev/null
ks_wait_log "$T/ok2.log" 'event=ready' 20 || ks_fail "the sidecar did not start with the iptables redirect"
ks_assert_grep "$T/ok2.log" 'event=redirect_check result=ok mode=iptables' "no redirect_check ok line (iptables)"
ks_pass "iptables: the probe passes through the nat OUTPUT rule and conntrack"
echo "PATH: redirect=bpf,iptables (the start-up check; no data moves)"
