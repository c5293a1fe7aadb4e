#!/usr/bin/env bash
# --redirect-check: the sidecar proves at start-up that the pod's redirect
# reaches it, and otherwise refuses to start, saying what is missing. Each
# refusal is a separate start with one thing wrong: no manifest, a uid the
# redirect does not exempt (it would loop), a redirect that exempts root
# (every root process would bypass the sidecar), no listener on the redirect's
# port, no redirect in effect, the sidecar outside the pod's cgroup. Then
# the real thing passes, for the BPF and the iptables redirect: a connect()
# to the probe address, made by the exempt sidecar itself, is redirected to
# its own outbound listener and carries the probe address back through
# getsockopt(SO_ORIGINAL_DST). Where the redirect covers IPv6 (manifest
# ipv6=yes) the IPv6 probe must pass too: a sidecar without an IPv6
# listener, or an IPv4-only iptables install whose manifest claims IPv6, is
# refused. An iptables install on a node without ip6tables fails unless
# --ipv4-only says so. A sidecar in another user namespace than the one the
# manifest's uid was read in is refused (its uid is another to the hooks).
# An app's own connection to a probe address is refused once, with a
# reason, not carried in a loop back to the sidecar.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/redirect.sh"

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
# The exemption is by uid alone: one that exempts root lets every root
# process of the pod around the sidecar (an older loader, or by hand).
manifest "$T/root.conf" 0 15001
refused "$T/2r.log" 'the redirect \(bpf\) exempts uid 0: every process running as root in the pod bypasses' \
	"${IN_NS[@]}" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}" --redirect-check "$T/root.conf"
AS1337=(setpriv --reuid 1337 --regid 1337 --clear-groups)
manifest "$T/port.conf" 1337 15002
refused "$T/3.log" 'no --outbound-transparent route on it' \
	"${IN_NS[@]}" "${AS1337[@]}" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}" --redirect-check "$T/port.conf"
manifest "$T/ok0.conf" 1337 15001
refused "$T/4.log" 'probe 169.254.255.254:15999 was not redirected .*connect4 hook does not cover this process' \
	"${IN_NS[@]}" "${AS1337[@]}" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}" --redirect-check "$T/ok0.conf"
# The uid was read in another user namespace (a pod's): the same getuid(),
# another uid to the hooks.
manifest "$T/userns.conf" 1337 15001
printf 'ipv6=no\nsidecar_host_uid=101337\nsidecar_userns=1\n' >>"$T/userns.conf"
refused "$T/4u.log" "this sidecar runs in user namespace $(stat -L -c %i /proc/self/ns/user), but the redirect \(bpf\) exempts uid 1337 of user namespace 1 \(101337 on the host\)" \
	"${IN_NS[@]}" "${AS1337[@]}" "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}" --redirect-check "$T/userns.conf"
ks_pass "refused to start, naming what is missing: no manifest, a uid that would loop, root exempt, no listener on the port, no redirect, another user namespace"

# probe_from_app LOG MODE APP...: APP (a plain process of the pod) connects
# to both probe addresses. The redirect sends them to the sidecar, which
# must refuse each once: connecting there itself would come back to it,
# again and again, until admission sheds.
# shellcheck disable=SC2016 # python, not shell
PROBE_APP='import socket, sys
s = socket.create_connection((sys.argv[1], 15999), timeout=5)
s.settimeout(5)
try:
    print("read", s.recv(1))
except OSError as e:
    print("error", e)'
probe_from_app() {
	local log=$1 mode=$2
	shift 2
	for dst in 169.254.255.254 100::a9fe:fffe; do
		"$@" python3 -c "$PROBE_APP" "$dst" >"$T/app.out" 2>&1 || { cat "$T/app.out"; ks_fail "$mode: the app's connect to $dst:15999"; }
	done
	ks_wait_log "$log" 'event=handshake_rejected .*peer=169\.254\.255\.254:15999 .*reason=upstream_connect_failed detail=".*start-up probe address' 10
	ks_wait_log "$log" 'event=handshake_rejected .*peer=\[100::a9fe:fffe\]:15999 .*reason=upstream_connect_failed detail=".*start-up probe address' 10
	sleep 0.5
	kill -USR1 "$KS_BG_PID"
	ks_wait_log "$log" 'event=status ' 10
	ks_assert_grep "$log" 'event=status open_connections=0 rejected=2 .* shed_max_handshakes=0 ' \
		"$mode: the app's connections to the probe addresses were not refused once each"
}

# The real BPF redirect, installed for the pod.
"$KS_BIN" redirect install --name "$N" --cgroup "$CG2/$N" --netns "/run/netns/$N" --sidecar-uid 1337 \
	--manifest "$T/redirect.conf" >"$T/install.out" 2>&1 || { cat "$T/install.out"; ks_fail "redirect install failed"; }
ks_cleanup_add "$KS_BIN" redirect remove --name "$N" --manifest "$T/redirect.conf"
chmod 644 "$T/redirect.conf"
grep -qx 'ipv6=yes' "$T/redirect.conf" || ks_fail "the BPF manifest does not say ipv6=yes: $(cat "$T/redirect.conf")"
SC4=(setpriv --reuid 1337 --regid 1337 --clear-groups "$KS_BIN" --outbound-transparent 127.0.0.1:15001 "${ID[@]}"
	--redirect-check "$T/redirect.conf")
SC=("${SC4[@]}" --outbound-transparent '[::1]:15001')
# The redirect covers IPv6: a sidecar with no IPv6 listener would see none of it.
refused "$T/5v6.log" 'covers IPv6 .* no IPv6 --outbound-transparent route there \(add --outbound-transparent \[::1\]:15001\)' \
	"${IN_NS[@]}" "${SC4[@]}"
# In the pod's network namespace but outside its cgroup: not covered.
refused "$T/5.log" "connect4 hook does not cover this process: it is in cgroup .* installed for $CG2/$N" "${IN_NS[@]}" "${SC[@]}"
# In the pod: the check passes and the sidecar serves.
INPOD_SH='echo $$ >"$0/cgroup.procs" && exec ip netns exec "$1" "${@:2}"'
ks_bg "$T/ok.log" bash -c "$INPOD_SH" "$CG2/$N" "$N" "${SC[@]}" --control-socket none >/dev/null
ks_wait_log "$T/ok.log" 'event=ready' 20 || ks_fail "the sidecar did not start with a working redirect"
ks_assert_grep "$T/ok.log" 'event=redirect_check result=ok mode=bpf .*ipv6=yes' "no redirect_check ok line (with IPv6)"
ks_assert_not_grep "$T/ok.log" 'event=(handshake_rejected|conn_open)' "the probe was treated as a connection"
ks_pass "bpf: the probes from the exempt sidecar are redirected to its own listeners and carry 169.254.255.254:15999 and [100::a9fe:fffe]:15999 back; no IPv6 listener: refused"
probe_from_app "$T/ok.log" bpf bash -c "$INPOD_SH" "$CG2/$N" "$N"
kill "$KS_BG_PID"
wait "$KS_BG_PID" 2>/dev/null || true
ks_pass "bpf: an app's connections to the probe addresses are refused once each (upstream_connect_failed), not looped"

"$KS_BIN" redirect remove --name "$N" --manifest "$T/redirect.conf" >/dev/null
command -v iptables-restore >/dev/null || skip "iptables-restore is not installed (iptables mode)"
# nat OUTPUT only sees a packet that has a route: give the pod a default
# route (one end of a veth pair inside the namespace), as a real pod has.
ip -n "$N" link add ksd0 type veth peer name ksd1 || skip "cannot create a veth pair"
ip -n "$N" addr add 10.255.0.1/24 dev ksd0
ip -n "$N" link set ksd0 up
ip -n "$N" link set ksd1 up
ip -n "$N" route add default dev ksd0
ip -n "$N" addr add fd00:255::1/64 dev ksd0 nodad
ip -n "$N" -6 route add default dev ksd0
IPT=(--mode iptables --name "$N" --netns "/run/netns/$N" --manifest "$T/redirect.conf")
ks_cleanup_add "$KS_BIN" redirect remove "${IPT[@]}"

# No ip6tables on a node with IPv6: refused, nothing installed, no manifest.
rc=0
ks_without_ip6tables "$KS_BIN" redirect install "${IPT[@]}" --sidecar-uid 1337 >"$T/install.out" 2>&1 || rc=$?
((rc == 1)) || { cat "$T/install.out"; ks_fail "install without ip6tables exited $rc, want 1"; }
ks_assert_grep "$T/install.out" 'IPv6 is enabled .*ip6tables-restore .*not in PATH.*bypass the sidecar.*--ipv4-only' \
	"the refusal does not name ip6tables and --ipv4-only"
[[ ! -e $T/redirect.conf ]] || ks_fail "a refused install left a manifest"
ip netns exec "$N" iptables-save -t nat | grep -E 'KS_|ks-redirect' && ks_fail "a refused install left IPv4 rules"
# --ipv4-only, knowingly: IPv4 rules, manifest ipv6=no, an IPv4-only sidecar passes.
ks_without_ip6tables "$KS_BIN" redirect install "${IPT[@]}" --sidecar-uid 1337 --ipv4-only >"$T/install.out" 2>&1 ||
	{ cat "$T/install.out"; ks_fail "install --ipv4-only without ip6tables failed"; }
chmod 644 "$T/redirect.conf"
grep -qx 'ipv6=no' "$T/redirect.conf" || ks_fail "--ipv4-only: the manifest does not say ipv6=no"
ip netns exec "$N" ip6tables-save -t nat | grep -E 'KS_|ks-redirect' && ks_fail "--ipv4-only installed IPv6 rules"
ks_bg "$T/ok4.log" ip netns exec "$N" "${SC4[@]}" --control-socket none >/dev/null
ks_wait_log "$T/ok4.log" 'event=ready' 20 || ks_fail "the sidecar did not start with the IPv4-only iptables redirect"
ks_assert_grep "$T/ok4.log" 'event=redirect_check result=ok mode=iptables .*ipv6=no' "no redirect_check ok line (IPv4 only)"
kill "$KS_BG_PID"
wait "$KS_BG_PID" 2>/dev/null || true
# A manifest that says IPv6 over rules that do not redirect it: the IPv6 probe fails.
sed -i 's/^ipv6=no$/ipv6=yes/' "$T/redirect.conf"
refused "$T/6.log" 'IPv6 probe \[100::a9fe:fffe\]:15999 was not redirected .*no ip6tables nat OUTPUT REDIRECT rule' \
	ip netns exec "$N" "${SC[@]}"
"$KS_BIN" redirect remove "${IPT[@]}" >/dev/null
ks_pass "iptables without ip6tables: install refused (no rules, no manifest) unless --ipv4-only (manifest ipv6=no); IPv6 claimed but not redirected: refused"

"$KS_BIN" redirect install "${IPT[@]}" --sidecar-uid 1337 >"$T/install.out" 2>&1 ||
	{ cat "$T/install.out"; ks_fail "iptables install failed"; }
chmod 644 "$T/redirect.conf"
grep -qx 'ipv6=yes' "$T/redirect.conf" || ks_fail "the iptables manifest does not say ipv6=yes"
ks_bg "$T/ok2.log" ip netns exec "$N" "${SC[@]}" --control-socket none >/dev/null
ks_wait_log "$T/ok2.log" 'event=ready' 20 || ks_fail "the sidecar did not start with the iptables redirect"
ks_assert_grep "$T/ok2.log" 'event=redirect_check result=ok mode=iptables .*ipv6=yes' "no redirect_check ok line (iptables)"
ks_pass "iptables: both probes pass through the nat OUTPUT rules and conntrack"
probe_from_app "$T/ok2.log" iptables "${IN_NS[@]}"
ks_pass "iptables: an app's connections to the probe addresses are refused once each (upstream_connect_failed), not looped"
echo "PATH: redirect=bpf,iptables (the start-up check; no data moves)"
