#!/usr/bin/env bash
# The chart's transparent redirect (redirect.enabled=true), run as rendered:
# a "pod" (a network namespace with a veth to a "node" namespace, default
# routes as a pod has) gets the rendered init container's command
# (ktls-redirect install --mode iptables --netns /proc/self/ns/net ...), then
# the rendered sidecar as uid sidecar.uid with its --redirect-check, and the
# rendered agent; only file paths are mapped (the ports are the chart's: the
# pod has its own network namespace). Then, from the node's namespace, as the
# kubelet and a peer would:
# - the sidecar's readiness and liveness probes (the rendered httpGet paths,
#   on the admin port) answer 200: the redirect does not steer them;
# - an mTLS client on the app's own port (8080) reaches the sidecar (it
#   presents the pod's SPIFFE ID) and, through it, the app;
# - plaintext on that port (what an app probe there would send) is refused
#   by the strict sidecar, never given to the app: why the chart refuses an
#   app probe on workload.port with the redirect on.
# Nothing changes outside the two namespaces, which are deleted at the end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ $(id -u) -eq 0 ]] || ks_skip "needs root (network namespaces, iptables in the pod's namespace)"
for tool in ip setpriv curl iptables-restore ip6tables-restore; do
	command -v "$tool" >/dev/null || ks_skip "$tool is not installed"
done
PY=/usr/bin/python3
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
source "$KS_ROOT/tests/lib/helm.sh"
REDIRECT=$(dirname "$KS_BIN")/ktls-redirect
[[ -x $REDIRECT ]] || ks_fail "no ktls-redirect at $REDIRECT (run make)"
echo "PATH: redirect=iptables"

T=$(ks_tmpdir)
chmod 755 "$T"
"$HELM" template demo "$KS_ROOT/helm/ktls-sidecar" -n shop $KS_POST --set trustDomain=example.org \
	--set workload.image=x --set redirect.enabled=true --set agent.ttl=30s >"$T/manifest.yaml"
$PY - "$T" "$KS_BIN" "$KS_CTL" "$REDIRECT" "$KS_ROOT/tests/tools/k8s" <<'PY'
import sys, yaml
t, sbin, cbin, rbin, k8s = sys.argv[1:]
sys.path.insert(0, k8s)
import kubelet
d = next(d for d in yaml.safe_load_all(open(f"{t}/manifest.yaml")) if d and d["kind"] == "Deployment")
pod = d["spec"]["template"]["spec"]
c = {x["name"]: x for x in pod["initContainers"] + pod["containers"]}
assert [x["name"] for x in pod["initContainers"]] == ["ktls-redirect", "ktls-agent", "ktls-sidecar"]
assert c["ktls-sidecar"]["securityContext"]["runAsUser"] == 1337
def fix(argv):
    out = []
    for a in argv:
        a = a.replace("/usr/bin/ktls-sidecar", sbin).replace("/usr/bin/ktlsctl", cbin)
        a = a.replace("/usr/bin/ktls-redirect", rbin)
        a = a.replace("/run/ktls-sidecar", t + "/run").replace("/etc/ktls-ca", t + "/signer")
        out.append(a)
    return out
for name, key in (("ktls-redirect", "redirect"), ("ktls-sidecar", "sidecar"), ("ktls-agent", "agent")):
    open(f"{t}/{key}.argv", "w").write("\0".join(fix(kubelet.argv(c[name], {"namespace": "shop"}, pod))))
sc = c["ktls-sidecar"]
ports = {p["name"]: p["containerPort"] for p in sc["ports"]}
with open(f"{t}/probes", "w") as f:
    for k in ("readinessProbe", "livenessProbe", "startupProbe"):
        g = sc[k]["httpGet"]
        f.write(f"{k} {ports.get(g['port'], g['port'])} {g['path']}\n")
PY

# tls_echo HOST PORT CA CERT KEY MSG: the server's URI SANs, then what came
# back for MSG (tests/tools/tls_echo.py).
tls_echo() { "${TLS_ECHO_PREFIX[@]}" "$PY" "$KS_ROOT/tests/tools/tls_echo.py" "$@"; }

# --- the pod and the node ------------------------------------------------------
NP=ks-hr-$$-pod NN=ks-hr-$$-node VP=kshrp$$ VN=kshrn$$
POD=10.201.1.2 NODE=10.201.1.1 POD6=fd00:201:1::2 NODE6=fd00:201:1::1
for n in "$NP" "$NN"; do
	ip netns add "$n" || ks_skip "cannot create a network namespace"
	ks_cleanup_add ip netns del "$n"
	ip -n "$n" link set lo up
done
ip link add "$VP" netns "$NP" type veth peer name "$VN" netns "$NN" || ks_skip "cannot create a veth pair"
ip -n "$NP" addr add "$POD/24" dev "$VP"
ip -n "$NN" addr add "$NODE/24" dev "$VN"
ip -n "$NP" addr add "$POD6/64" dev "$VP" nodad
ip -n "$NN" addr add "$NODE6/64" dev "$VN" nodad
ip -n "$NP" link set "$VP" up
ip -n "$NN" link set "$VN" up
# A pod's default routes: the redirect's probe addresses need a route to be
# seen by nat OUTPUT at all.
ip -n "$NP" route add default via "$NODE"
ip -n "$NP" -6 route add default via "$NODE6"

# The emptyDir, and the CA Secret's signer set as the agent (uid 1337) reads it.
mkdir -m 0777 "$T/run"
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
"$KS_CTL" ca export-signer "$T/ca" "$T/signer" >/dev/null
chown -R 1337:1337 "$T/signer"
mapfile -d '' redirect_argv <"$T/redirect.argv"
mapfile -d '' sidecar_argv <"$T/sidecar.argv"
mapfile -d '' agent_argv <"$T/agent.argv"
as_sidecar=(setpriv --reuid 1337 --regid 1337 --clear-groups)

# The init container: in the pod's own namespace, as root, once.
ip netns exec "$NP" "${redirect_argv[@]}" >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; ks_fail "the rendered ktls-redirect install failed"; }
ks_assert_grep "$T/run/redirect.conf" '^mode=iptables$' "the install wrote no manifest for the sidecar"
ks_assert_grep "$T/run/redirect.conf" '^app_ports=8080$' "the install steers other ports than workload.port"

# The app on 127.0.0.1:8080, then the sidecar and the agent, as the pod runs them.
pf=$T/app.port
ks_bg "$T/app.log" ip netns exec "$NP" "$KS_STREAM" server --listen 127.0.0.1:8080 --mode echo --ready-file "$pf" >/dev/null
for _ in $(seq 200); do [[ -s $pf ]] && break; sleep 0.05; done
[[ -s $pf ]] || ks_fail "the app (ks-stream) did not start in the pod"
ks_bg "$T/sidecar.log" ip netns exec "$NP" "${as_sidecar[@]}" "${sidecar_argv[@]}" >/dev/null
sidecar_pid=$KS_BG_PID
ks_wait_log "$T/sidecar.log" 'event=redirect_check result=ok mode=iptables' 20
ks_bg "$T/agent.log" ip netns exec "$NP" "${as_sidecar[@]}" "${agent_argv[@]}" >/dev/null
ks_wait_log "$T/sidecar.log" 'event=control_update op=SetIdentity' 20
ks_pass "the rendered init container installs the redirect; the rendered sidecar proves it (redirect_check ok) and gets its identity from the rendered agent"

# The kubelet's probes, from the node, as rendered.
while read -r kind port path; do
	code=$(ip netns exec "$NN" curl -s -o "$T/probe.out" -w '%{http_code}' --max-time 5 "http://$POD:$port$path" || true)
	[[ $code == 200 ]] || ks_fail "the sidecar's $kind (GET $path on $port) from the node: $code $(cat "$T/probe.out" 2>/dev/null)"
done <"$T/probes"
ks_pass "the sidecar's startup, readiness and liveness probes reach it from the node with the redirect on (the admin port is not steered)"

# A peer on the app's own port: steered to the sidecar, which presents the
# pod's ID and forwards to the app.
"$KS_CTL" ca issue --ca "$T/ca" spiffe://example.org/ns/shop/sa/client --out "$T/client" >/dev/null
printf 'hello through the redirect\n' >"$T/msg"
TLS_ECHO_PREFIX=(ip netns exec "$NN" timeout 20)
tls_echo "$POD" 8080 "$T/ca/signer/bundle.pem" "$T/client.crt" "$T/client.key" 'hello through the redirect' \
	>"$T/tls.out" 2>&1 || { cat "$T/tls.out"; ks_fail "no mTLS connection on the pod's port 8080"; }
[[ $(sed -n 2p "$T/tls.out") == 'hello through the redirect' ]] || ks_fail "no echo through port 8080: $(cat "$T/tls.out")"
[[ $(sed -n 1p "$T/tls.out") == spiffe://example.org/ns/shop/sa/demo ]] ||
	ks_fail "port 8080 was not answered by the sidecar with the pod's ID (URI SANs: $(sed -n 1p "$T/tls.out"))"
ks_assert_grep "$T/sidecar.log" "event=conn_open .*dir=inbound .*peer=$NODE:[0-9]+ peer_id=spiffe://example.org/ns/shop/sa/client" \
	"the sidecar logged no inbound connection from the node's peer"
# Plaintext on that port (an app probe there): refused, never the app's.
rc=0
ip netns exec "$NN" curl -s -o /dev/null --max-time 5 "http://$POD:8080/" || rc=$?
((rc != 0)) || ks_fail "plaintext on the steered app port got an HTTP answer"
ks_wait_log "$T/sidecar.log" 'reason=not_tls' 10
ks_pass "the app's port is steered to the sidecar: mTLS there reaches the app as the pod's ID; plaintext (an app probe on it) is refused (not_tls)"
ks_alive "$sidecar_pid" "the sidecar died"
