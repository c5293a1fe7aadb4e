#!/usr/bin/env bash
# The charts' renders, without a cluster (t_helm runs the rendered command
# lines; tests/integration/helm/t_k8s_validate.sh checks the renders against
# the OpenAPI schema and Pod Security "restricted").
#
# - helm lint --strict on helm/ktls-sidecar and helm/ktls-node.
# - values.schema.json and the template's own checks: a typo, a bad enum, a
#   port out of range, a bad duration or SPIFFE pattern, a drainTimeout
#   longer than terminationGracePeriodSeconds, an app probe the redirect
#   would steer, an identity.source without what it needs or with identity
#   flags in extraArgs... each fails helm template (and helm install) with a
#   message naming the value, and renders nothing.
# - A matrix of values (native/classic x redirect x networkPolicy x agent,
#   a Job, injection=webhook), each render checked for what it must
#   hold and what it must not: the containers and their order, the native
#   sidecars' restartPolicy and startupProbe, the classic postStart hook,
#   the agent's probes, restricted security contexts (the redirect's
#   installer the one, named exception), the NetworkPolicy's ports, the
#   labels on every object.
# - identity.source (dev, csi-driver-spiffe, spire, files): each render holds
#   its volume and the sidecar's arguments for it, and no agent, CA Secret or
#   root key where it must not. The SPIRE command line is checked here only
#   (t_helm_identity.sh runs the file sources' command lines for real).
# - helm/ktls-node: its DaemonSet, and its setup script run against a
#   stand-in /proc/sys (raise, keep) and a node with no modprobe (fails,
#   saying so).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"

PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
source "$KS_ROOT/tests/lib/helm.sh"
CHART=$KS_ROOT/helm/ktls-sidecar
NODE=$KS_ROOT/helm/ktls-node
T=$(ks_tmpdir)

"$HELM" lint --strict "$CHART" --set trustDomain=example.org --set workload.image=nginx >"$T/lint.out" 2>&1 ||
	{ cat "$T/lint.out"; ks_fail "helm lint --strict $CHART failed"; }
"$HELM" lint --strict "$NODE" >"$T/lint.out" 2>&1 || { cat "$T/lint.out"; ks_fail "helm lint --strict $NODE failed"; }
ks_pass "helm lint --strict: ktls-sidecar and ktls-node"

render() { "$HELM" template demo "$CHART" --namespace shop $KS_POST --set trustDomain=example.org --set workload.image=nginx "$@"; }
# reject REGEX ARGS...: the render fails, prints nothing on stdout, and its
# message matches REGEX.
reject() {
	local re=$1 rc=0
	shift
	: >"$T/rej.err" # appended to: the post-renderer's message goes there too (helm.sh)
	render "$@" >"$T/rej.out" 2>>"$T/rej.err" || rc=$?
	((rc != 0)) || ks_fail "rendered with $*"
	[[ ! -s $T/rej.out ]] || ks_fail "a failed render printed manifests ($*)"
	grep -Eq -- "$re" "$T/rej.err" || ks_fail "no clear message for $*: $(cat "$T/rej.err")"
	echo "  rejected $*: $(grep -E -m1 -- "$re" "$T/rej.err" | cut -c1-200)"
}
reject "at '': additional properties 'sidecarr' not allowed" --set sidecarr.mode=native
reject "at '/sidecar': additional properties 'mdoe' not allowed" --set sidecar.mdoe=classic
reject "at '/workload/securityContext': additional properties 'runAsNonroot' not allowed" --set workload.securityContext.runAsNonroot=true
reject "at '/sidecar/mode': value must be one of 'native', 'classic'" --set sidecar.mode=hybrid
reject "at '/sidecar/ktls': value must be one of 'auto', 'off', 'require'" --set sidecar.ktls=on
reject "at '/workload/kind': value must be one of 'Deployment', 'Job'" --set workload.kind=StatefulSet
reject "at '/sidecar/inboundMode'" --set sidecar.inboundMode=lenient
reject "at '/sidecar/adminPort': maximum: got 70,000, want 65,535" --set sidecar.adminPort=70000
reject "at '/workload/port': minimum: got 0, want 1" --set workload.port=0
reject "at '/sidecar/drainTimeout': '20sec' does not match pattern" --set sidecar.drainTimeout=20sec
reject "at '/agent/ttl': got number, want string" --set agent.ttl=3600
reject "at '/sidecar/allow/0': 'example.org/ns/x' does not match pattern" --set 'sidecar.allow[0]=example.org/ns/x'
reject "at '/sidecar/outbound/0': missing property 'remote'" --set 'sidecar.outbound[0].localPort=9000'
reject "at '/trustDomain': 'Example.ORG' does not match pattern" --set trustDomain=Example.ORG
reject "at '/redirect/excludeCidrs/0'" --set redirect.enabled=true --set 'redirect.excludeCidrs[0]=10.0.0.0'
reject "sidecar.drainTimeout 31s is longer than the pod's terminationGracePeriodSeconds \(30s\)" --set sidecar.drainTimeout=31s
reject "sidecar.drainTimeout 2m is longer than the pod's terminationGracePeriodSeconds \(90s\)" --set sidecar.drainTimeout=2m --set terminationGracePeriodSeconds=90
reject "sidecar.drainDelay 25s is longer than sidecar.drainTimeout 20s" --set sidecar.drainDelay=25s
reject "at '/sidecar/drainDelay': '5 s' does not match pattern" --set 'sidecar.drainDelay=5 s'
reject "sidecar.adminPort and ktls-sidecar.io/inbound's 8443 are both port 8443" --set sidecar.adminPort=8443
reject "container app's readinessProbe uses port 8080, which the redirect steers" \
	--set redirect.enabled=true --set workload.readinessProbe.httpGet.port=8080 --set workload.readinessProbe.httpGet.path=/
reject "container app's livenessProbe uses port 8080, which the redirect steers" \
	--set redirect.enabled=true --set workload.livenessProbe.tcpSocket.port=8080
reject "container app runs as uid 1337, the sidecar's" --set redirect.enabled=true --set workload.securityContext.runAsUser=1337
# identity.source: the schema's enum and per-source settings, the template's consistency checks.
reject "at '/identity/source': value must be one of 'dev', 'csi-driver-spiffe', 'spire', 'files'" --set identity.source=vault
reject "at '/identity/spire': additional properties 'socket' not allowed" --set identity.source=spire --set identity.spire.socket=x
reject "at '/identity/spire/socketName': '../agent.sock' does not match pattern" --set identity.source=spire --set identity.spire.socketName=../agent.sock
reject "at '/identity/files/layout': value must be one of 'csi-driver-spiffe', 'spiffe-helper', 'files'" \
	--set identity.source=files --set identity.files.secretName=s --set identity.files.layout=pem
reject "at '/identity/files/secretName': 'Web_TLS' does not match pattern" --set identity.source=files --set identity.files.secretName=Web_TLS
reject "at '/identity/csiDriverSpiffe/mountPath': 'var/run/x' does not match pattern" \
	--set identity.source=csi-driver-spiffe --set identity.csiDriverSpiffe.mountPath=var/run/x
reject "identity.source=files needs identity.files.secretName: the Secret holding tls.crt, tls.key, ca.crt" --set identity.source=files
reject "identity.source=files needs identity.files.secretName: the Secret holding svid.pem, svid_key.pem, svid_bundle.pem" \
	--set identity.source=files --set identity.files.layout=spiffe-helper
reject "sidecar.extraArgs '--cert=/x.pem': identity.source=csi-driver-spiffe already says where the identity comes from" \
	--set identity.source=csi-driver-spiffe --set 'sidecar.extraArgs[0]=--cert=/x.pem'
reject "sidecar.extraArgs '--workload-api': identity.source=files already says" \
	--set identity.source=files --set identity.files.secretName=s --set 'sidecar.extraArgs[0]=--workload-api' --set 'sidecar.extraArgs[1]=unix:///x'
reject "identity.spire.mountPath '/run/ktls-sidecar/id' overlaps the control socket's /run/ktls-sidecar" \
	--set identity.source=spire --set identity.spire.mountPath=/run/ktls-sidecar/id
reject "identity.files.mountPath '/run' overlaps the control socket's /run/ktls-sidecar" \
	--set identity.source=files --set identity.files.secretName=s --set identity.files.mountPath=/run
# helm install checks the same schema (no cluster: --dry-run=client).
"$HELM" install demo "$CHART" -n shop --dry-run=client --set trustDomain=example.org --set workload.image=nginx \
	--set sidecar.mode=sidecar >"$T/inst.out" 2>&1 && ks_fail "helm install took sidecar.mode=sidecar"
grep -q "at '/sidecar/mode': value must be one of 'native', 'classic'" "$T/inst.out" ||
	ks_fail "helm install: no clear message for a bad enum: $(cat "$T/inst.out")"
# The limits are limits, not more: the boundary values render.
render --set sidecar.drainTimeout=30s --set sidecar.adminPort=65535 --set workload.port=1 >/dev/null ||
	ks_fail "drainTimeout = terminationGracePeriodSeconds, or ports 1 and 65535, were refused"
rc=0
"$HELM" template n "$NODE" --set 'nodeSetup.sysctls.kernel\.panic=1' >"$T/rej.out" 2>&1 || rc=$?
((rc != 0)) && grep -q "invalid propertyName 'kernel.panic'" "$T/rej.out" ||
	ks_fail "ktls-node took an unknown sysctl: $(cat "$T/rej.out")"
rc=0
"$HELM" template n "$NODE" --set nodeSetup.loadTls=false >"$T/rej.out" 2>&1 || rc=$?
((rc != 0)) && grep -q "at '/nodeSetup': additional properties 'loadTls' not allowed" "$T/rej.out" ||
	ks_fail "ktls-node took a typo: $(cat "$T/rej.out")"
ks_pass "typos, bad enums, ports, durations, patterns, drainTimeout > grace, steered app probes, inconsistent identity sources: refused with a message naming the value"

# --drain-delay: 0s where no endpoint must learn that the pod is going (a
# native sidecar is stopped after the app; a Job has no Service), 5s for a
# classic Deployment, or the value.
delay_of() { render "$@" | grep -o -- '--drain-delay=[^"[:space:]]*' | sort -u | tr '\n' ' '; }
for c in 'native Deployment "" 0s' 'classic Deployment "" 5s' 'classic Job "" 0s' 'native Job "" 0s' \
	'classic Deployment 20s 20s' 'native Deployment 1500ms 1500ms'; do
	eval "set -- $c"
	got=$(delay_of --set sidecar.mode="$1" --set workload.kind="$2" --set sidecar.drainDelay="$3")
	[[ $got == "--drain-delay=$4 " ]] ||
		ks_fail "sidecar.mode=$1 workload.kind=$2 sidecar.drainDelay='$3': want --drain-delay=$4, got '$got'"
done
ks_pass "--drain-delay: 0s for native sidecars and Jobs, 5s for a classic Deployment, or sidecar.drainDelay (at most drainTimeout)"

# --- the matrix ---------------------------------------------------------------
cases=()
for mode in native classic; do
	for rd in false true; do
		for np in true false; do
			for ag in true false; do
				name=$mode-rd$rd-np$np-ag$ag
				cases+=("$name")
				render --set sidecar.mode=$mode --set redirect.enabled=$rd --set networkPolicy.enabled=$np \
					--set agent.enabled=$ag --set workload.readinessProbe.httpGet.port=9090 \
					--set workload.readinessProbe.httpGet.path=/healthz >"$T/$name.yaml" ||
					ks_fail "render $name failed"
			done
		done
	done
done
render --set workload.kind=Job >"$T/job-native.yaml"
render --set workload.kind=Job --set sidecar.mode=classic >"$T/job-classic.yaml"
# injection=webhook: no post-renderer; the namespace's webhook injects.
"$HELM" template demo "$CHART" --namespace shop --set trustDomain=example.org --set workload.image=nginx \
	--set injection=webhook >"$T/webhook.yaml"
render --set redirect.enabled=true --set redirect.ipv4Only=true --set workload.securityContext.runAsUser=1000 \
	--set 'redirect.excludePorts[0]=5432' --set 'redirect.excludeCidrs[0]=10.96.0.0/12' >"$T/redirect-opts.yaml"
"$HELM" template n "$NODE" -n ktls-system >"$T/node.yaml"
"$HELM" template n "$NODE" -n ktls-system --set nodeSetup.enabled=false >"$T/node-off.yaml"

$PY - "$T" "$CHART/Chart.yaml" "${cases[@]}" <<'PY'
import sys, yaml
t, chart, cases = sys.argv[1], yaml.safe_load(open(sys.argv[2])), sys.argv[3:]
def load(name):
    return [d for d in yaml.safe_load_all(open(f"{t}/{name}.yaml")) if d]
def labels_ok(docs, name, app="ktls-sidecar", ver=chart["appVersion"]):
    for d in docs:
        l = d["metadata"].get("labels", {})
        for k in ("name", "instance", "version", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{k}" in l, f"{name}: {d['kind']} lacks app.kubernetes.io/{k}: {l}"
        assert l["app.kubernetes.io/version"] == ver and l["app.kubernetes.io/managed-by"] == "Helm", (name, l)
        assert l["helm.sh/chart"].startswith(app + "-"), (name, l)
        tpl = d.get("spec", {}).get("template")
        if tpl:
            assert set(l) <= set(tpl["metadata"]["labels"]), f"{name}: the pod template lacks labels"
def restricted(pod, c, name):
    """Pod Security "restricted" (v1.30) for one container, pod-level defaults applied."""
    s, ps = c.get("securityContext", {}), pod.get("securityContext", {})
    where = f"{name}: {c['name']}"
    assert s.get("runAsNonRoot", ps.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
    assert s.get("runAsUser", ps.get("runAsUser", 1)) != 0, f"{where}: runAsUser 0"
    assert s.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
    assert "ALL" in s.get("capabilities", {}).get("drop", []), f"{where}: capabilities.drop ALL"
    assert set(s.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, f"{where}: capabilities.add"
    assert not s.get("privileged"), f"{where}: privileged"
    sp = s.get("seccompProfile", ps.get("seccompProfile", {})).get("type")
    assert sp in ("RuntimeDefault", "Localhost"), f"{where}: seccompProfile {sp}"
def ports_of(probe):
    for k in ("httpGet", "tcpSocket", "grpc"):
        if k in probe:
            yield probe[k]["port"]

SOCK = "/run/ktls-sidecar/api/control.sock"
AGENT_PROBE = ["/usr/bin/ktlsctl", "--socket", SOCK, "--timeout", "3s", "ready"]
for name in cases + ["job-native", "job-classic", "redirect-opts"]:
    docs = load(name)
    labels_ok(docs, name)
    kinds = {d["kind"]: d for d in docs}
    mode = "classic" if "classic" in name else "native"
    rd = "rdtrue" in name or name == "redirect-opts"
    np = "npfalse" not in name
    ag = "agfalse" not in name
    job = name.startswith("job")
    want_kinds = {"Job" if job else "Deployment", "ServiceAccount"} | ({"NetworkPolicy"} if np else set()) \
        | (set() if job else {"Service"})
    assert set(kinds) == want_kinds, f"{name}: rendered {sorted(kinds)}, want {sorted(want_kinds)}"
    wl = kinds["Job" if job else "Deployment"]
    pod = wl["spec"]["template"]["spec"]
    if job:
        assert pod["restartPolicy"] == "Never" and wl["spec"]["backoffLimit"] == 0, name
    inits = pod.get("initContainers", [])
    conts = pod["containers"]
    proxy = (["ktls-agent"] if ag else []) + ["ktls-sidecar"]
    if mode == "native":
        want_init, want_cont = (["ktls-redirect"] if rd else []) + proxy, ["app"]
    else:
        want_init, want_cont = (["ktls-redirect"] if rd else []), proxy + ["app"]
    assert [c["name"] for c in inits] == want_init, f"{name}: initContainers {[c['name'] for c in inits]}, want {want_init}"
    assert [c["name"] for c in conts] == want_cont, f"{name}: containers {[c['name'] for c in conts]}, want {want_cont}"
    if not inits:
        assert "initContainers" not in pod, f"{name}: an empty initContainers"
    c = {x["name"]: x for x in inits + conts}
    sc = c["ktls-sidecar"]
    for x in proxy:
        # Native sidecars: restartable init containers; classic: none.
        assert c[x].get("restartPolicy") == ("Always" if mode == "native" else None), f"{name}: {x} restartPolicy"
    if rd:
        assert "restartPolicy" not in c["ktls-redirect"], f"{name}: the redirect's installer must run to completion"
    if mode == "native":
        assert sc["startupProbe"]["httpGet"] == {"path": "/ready", "port": "ktls-admin"}, f"{name}: startupProbe"
        assert sc["startupProbe"]["periodSeconds"] * sc["startupProbe"]["failureThreshold"] == 120, name
        assert "lifecycle" not in sc, f"{name}: a postStart hook on a native sidecar"
    else:
        assert sc["lifecycle"]["postStart"]["exec"]["command"] == [
            "/usr/bin/ktlsctl", "wait-ready", "--admin", "127.0.0.1:15020", "--timeout", "120s"], f"{name}: postStart"
        assert "startupProbe" not in sc, f"{name}: a startupProbe holds nothing back in classic mode"
    assert sc["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "ktls-admin"}, name
    assert sc["livenessProbe"]["httpGet"] == {"path": "/live", "port": "ktls-admin"}, name
    if ag:
        a = c["ktls-agent"]
        assert a["readinessProbe"]["exec"]["command"] == AGENT_PROBE, f"{name}: agent readiness"
        assert a["livenessProbe"]["exec"]["command"] == AGENT_PROBE, f"{name}: agent liveness"
        lv = a["livenessProbe"]
        assert lv["periodSeconds"] * lv["failureThreshold"] >= 600 and lv["timeoutSeconds"] > 3, f"{name}: agent liveness slack"
    vols = {v["name"] for v in pod["volumes"]}
    assert ("ktls-ca" in vols) == ag and ("ktls-xtables" in vols) == rd, f"{name}: volumes {vols}"
    assert not any("hostPath" in v for v in pod["volumes"]), f"{name}: a hostPath volume"
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(k), f"{name}: {k}"
    # Pod Security "restricted": every container but the redirect's installer.
    for x in inits + conts:
        if x["name"] != "ktls-redirect":
            restricted(pod, x, name)
    args = sc["args"]
    if rd:
        r = c["ktls-redirect"]
        s = r["securityContext"]
        assert s["runAsUser"] == 0 and s["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}, \
            f"{name}: the installer's privileges: {s}"
        assert s["allowPrivilegeEscalation"] is False and not s.get("privileged"), name
        rargs = r["args"]
        assert rargs[:4] == ["install", "--mode=iptables", "--name=ktls", "--netns=/proc/self/ns/net"], rargs
        steered = {int(a.split("=")[1]) for a in rargs if a.startswith("--app-port=")}
        assert steered == {8080}, f"{name}: steered {steered}"
        assert "--sidecar-uid=1337" in rargs and "--manifest=/run/ktls-sidecar/redirect.conf" in rargs, rargs
        assert "--redirect-check=/run/ktls-sidecar/redirect.conf" in args, args
        assert "--inbound=0.0.0.0:15006=127.0.0.1:8080" in args and "--outbound-transparent=127.0.0.1:15001" in args, args
        # kubelet probes: none on a steered port (the sidecar's use the admin port).
        named = {p["name"]: p["containerPort"] for x in conts + inits for p in x.get("ports", [])}
        for x in inits + conts:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                for p in ports_of(x.get(kind, {})):
                    assert named.get(p, p) not in steered, f"{name}: {x['name']} {kind} on steered port {p}"
        svc = kinds.get("Service")
        if svc:
            assert {p["port"] for p in svc["spec"]["ports"]} == {8443, 8080}, svc["spec"]["ports"]
    else:
        assert not any(a.startswith(("--redirect-check", "--outbound-transparent")) for a in args), f"{name}: {args}"
        assert not any(":15006" in a for a in args), name
    if np:
        pol = kinds["NetworkPolicy"]["spec"]
        assert pol["policyTypes"] == ["Ingress"] and len(pol["ingress"]) == 1 and "from" not in pol["ingress"][0], pol
        assert pol["podSelector"]["matchLabels"].items() <= wl["spec"]["template"]["metadata"]["labels"].items(), pol
        got = sorted(p["port"] for p in pol["ingress"][0]["ports"])
        want = sorted([8443, 15020] + ([8080] if rd else []))
        assert got == want, f"{name}: the NetworkPolicy admits {got}, want {want}"
    app = c["app"]
    if name in cases:  # the app's own probe, on a port of its own
        assert app["readinessProbe"]["httpGet"] == {"port": 9090, "path": "/healthz"}, app.get("readinessProbe")
    # fsGroup: for the agent's read of the CA Secret; none without an agent.
    if name.endswith("agfalse"):
        assert "fsGroup" not in pod.get("securityContext", {}), name
    else:
        assert pod["securityContext"]["fsGroup"] == 1337, name
print(f"checked {len(cases) + 3} renders")

opts = {c["name"]: c for c in next(d for d in load("redirect-opts") if d["kind"] == "Deployment")["spec"]["template"]["spec"]["initContainers"]}
ra = opts["ktls-redirect"]["args"]
for a in ("--app-uid=1000", "--exclude-port=5432", "--exclude-cidr=10.96.0.0/12", "--ipv4-only"):
    assert a in ra, f"redirect-opts: {a} missing from {ra}"
sa = opts["ktls-sidecar"]["args"]
assert not any("[::" in a for a in sa), f"ipv4Only: no IPv6 listeners: {sa}"
wh = load("webhook")
assert not [d for d in wh if d["kind"] == "InjectorConfig"], "injection=webhook renders an InjectorConfig"
whpod = next(d for d in wh if d["kind"] == "Deployment")["spec"]["template"]
assert [c["name"] for c in whpod["spec"]["containers"]] == ["app"] and "initContainers" not in whpod["spec"], whpod
assert whpod["metadata"]["annotations"]["ktls-sidecar.io/inbound"] == "8443=8080", whpod["metadata"]

node = load("node")
assert [d["kind"] for d in node] == ["DaemonSet"], [d["kind"] for d in node]
labels_ok(node, "node", app="ktls-node")
pod = node[0]["spec"]["template"]["spec"]
setup = pod["initContainers"][0]
assert setup["securityContext"] == {"privileged": True, "runAsUser": 0}, setup["securityContext"]
assert setup["command"][:2] == ["/bin/sh", "-euc"], setup["command"]
assert sorted(setup["command"][4:]) == ["fs.nr_open=1048576", "fs.pipe-user-pages-soft=262144"], setup["command"]
assert {"name": "KTLS_LOAD_TLS", "value": "true"} in setup["env"], setup["env"]
assert pod["volumes"] == [{"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}}], pod["volumes"]
assert setup["volumeMounts"] == [{"name": "host-root", "mountPath": "/host", "readOnly": True}]
restricted(pod, pod["containers"][0], "node")  # the pause container
assert {"operator": "Exists"} in pod["tolerations"], pod["tolerations"]
open(f"{t}/node-setup.sh", "w").write(setup["command"][2])
open(f"{t}/node-setup.args", "w").write("\0".join(setup["command"][3:]))
assert load("node-off") == [], "nodeSetup.enabled=false renders objects"
PY
ks_pass "the matrix (native/classic x redirect x networkPolicy x agent, Jobs, injection=webhook, ktls-node): containers, order, probes, hooks, restricted, NetworkPolicy ports, labels"

# --- identity.source ---------------------------------------------------------
# Each source renders its volume and the sidecar's arguments for it, and
# none of the others': no agent and no CA Secret outside dev, no root key
# anywhere, native and classic alike (Pod Security: t_k8s_validate.sh).
src_cases=()
for mode in native classic; do
	render --set sidecar.mode=$mode >"$T/src-dev-$mode.yaml"
	render --set sidecar.mode=$mode --set identity.source=csi-driver-spiffe >"$T/src-csi-driver-spiffe-$mode.yaml"
	render --set sidecar.mode=$mode --set identity.source=spire >"$T/src-spire-$mode.yaml"
	render --set sidecar.mode=$mode --set identity.source=files --set identity.files.secretName=web-tls >"$T/src-files-$mode.yaml"
	src_cases+=("dev-$mode" "csi-driver-spiffe-$mode" "spire-$mode" "files-$mode")
done
# Non-default settings reach the render; agent.enabled (true by default)
# does not bring the agent back outside dev.
render --set identity.source=files --set identity.files.secretName=web-svid --set identity.files.layout=spiffe-helper \
	--set identity.files.mountPath=/run/spiffe/certs >"$T/src-files-helper.yaml"
render --set identity.source=spire --set identity.spire.mountPath=/run/spire/sockets --set identity.spire.socketName=agent.sock \
	--set identity.spire.driver=csi.spiffe.example >"$T/src-spire-custom.yaml"
render --set identity.source=csi-driver-spiffe --set sidecar.uid=2000 >"$T/src-csi-uid.yaml"
render --set identity.source=spire --set agent.enabled=true --set agent.caSecret=other-ca >"$T/src-spire-agent.yaml"

$PY - "$T" "${src_cases[@]}" <<'PY'
import sys, yaml
t, cases = sys.argv[1], sys.argv[2:]
def pod_of(name):
    text = open(f"{t}/src-{name}.yaml").read()
    w = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment")
    return w["spec"]["template"]["spec"], text
def check(name, source, mode="native", mount=None, layout=None, secret=None, sock=None, driver=None, gid="1337"):
    pod, text = pod_of(name)
    conts = pod.get("initContainers", []) + pod["containers"]
    names = [c["name"] for c in conts]
    sc = next(c for c in conts if c["name"] == "ktls-sidecar")
    args, vols = sc["args"], {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in sc["volumeMounts"]}
    idargs = [a for a in args if a.startswith(("--identity-dir", "--identity-layout", "--workload-api", "--cert", "--key", "--ca"))]
    # No root key anywhere, whatever the source.
    assert "root.key" not in text and "root.pem" not in text, f"{name}: a root key in the render"
    assert not any("hostPath" in v for v in pod["volumes"]), f"{name}: a hostPath volume"
    want_names = (["ktls-agent"] if source == "dev" else []) + ["ktls-sidecar"]
    if mode == "classic":
        assert names == want_names + ["app"] and "initContainers" not in pod, f"{name}: {names}"
    else:
        assert [c["name"] for c in pod["initContainers"]] == want_names and names[-1] == "app", f"{name}: {names}"
    # fsGroup: the agent's CA Secret (dev) and the files Secret are read
    # through the pod's group; the CSI sources set their own (fs-group) or
    # serve a socket.
    if source in ("dev", "files"):
        assert pod["securityContext"]["fsGroup"] == int(gid), f"{name}: fsGroup"
    else:
        assert "fsGroup" not in pod.get("securityContext", {}), f"{name}: fsGroup"
    if source == "dev":
        assert "ktls-ca" in vols and "ktls-identity" not in vols, f"{name}: {list(vols)}"
        assert idargs == [], f"{name}: identity arguments with the agent: {idargs}"
        return
    assert "ktls-ca" not in vols and "ktls-dev-ca" not in text and "other-ca" not in text and "/etc/ktls-ca" not in text, \
        f"{name}: the CA Secret outside dev"
    assert set(vols) == {"ktls-run", "ktls-identity"}, f"{name}: volumes {list(vols)}"
    v, m = vols["ktls-identity"], mounts["ktls-identity"]
    # Read-only, and whole (a subPath mount never sees the updates).
    assert m == {"name": "ktls-identity", "mountPath": mount, "readOnly": True}, f"{name}: mount {m}"
    for c in conts:  # only the sidecar mounts the identity
        if c["name"] != "ktls-sidecar":
            assert "ktls-identity" not in {x["name"] for x in c.get("volumeMounts", [])}, f"{name}: {c['name']} mounts it"
    assert "--spiffe-id=spiffe://example.org/ns/$(KTLS_POD_NAMESPACE)/sa/$(KTLS_POD_SERVICE_ACCOUNT)" in args, f"{name}: {args}"
    assert "--control-socket=/run/ktls-sidecar/api/control.sock" in args, f"{name}: no control socket (ktlsctl status)"
    if source == "csi-driver-spiffe":
        assert v["csi"] == {"driver": driver or "spiffe.csi.cert-manager.io", "readOnly": True,
                            "volumeAttributes": {"spiffe.csi.cert-manager.io/fs-group": gid}}, f"{name}: {v}"
        assert idargs == [f"--identity-dir={mount}", "--identity-layout=csi-driver-spiffe"], f"{name}: {idargs}"
    elif source == "spire":
        assert v["csi"] == {"driver": driver or "csi.spiffe.io", "readOnly": True}, f"{name}: {v}"
        assert idargs == [f"--workload-api=unix://{mount}/{sock}"], f"{name}: {idargs}"
    elif source == "files":
        files = {"csi-driver-spiffe": ["tls.crt", "tls.key", "ca.crt"],
                 "spiffe-helper": ["svid.pem", "svid_key.pem", "svid_bundle.pem"]}[layout]
        assert v["secret"] == {"secretName": secret, "defaultMode": 0o440,
                               "items": [{"key": f, "path": f} for f in files]}, f"{name}: {v}"
        assert idargs == [f"--identity-dir={mount}", f"--identity-layout={layout}"], f"{name}: {idargs}"
mounts = {"csi-driver-spiffe": "/var/run/secrets/spiffe.io", "spire": "/spiffe-workload-api", "files": "/etc/ktls-identity"}
for c in cases:
    source, mode = c.rsplit("-", 1)
    check(c, source, mode, mount=mounts.get(source), layout="csi-driver-spiffe", secret="web-tls", sock="spire-agent.sock")
check("files-helper", "files", mount="/run/spiffe/certs", layout="spiffe-helper", secret="web-svid")
check("spire-custom", "spire", mount="/run/spire/sockets", sock="agent.sock", driver="csi.spiffe.example")
check("csi-uid", "csi-driver-spiffe", mount="/var/run/secrets/spiffe.io", gid="2000")
check("spire-agent", "spire", mount="/spiffe-workload-api", sock="spire-agent.sock")
print(f"checked {len(cases) + 4} identity renders")
PY
ks_pass "identity.source: dev (agent + signer set), csi-driver-spiffe (its CSI volume with fs-group), spire (csi.spiffe.io, --workload-api), files (the Secret's layout keys): each its volume and arguments, no agent or CA Secret outside dev, no root key, native and classic"

# ktls-node's setup script, as rendered, on a stand-in /proc/sys.
mkdir -p "$T/proc/fs" "$T/noroot"
echo 16384 >"$T/proc/fs/pipe-user-pages-soft"
echo 2097152 >"$T/proc/fs/nr_open"
mapfile -d '' nargs <"$T/node-setup.args"
KTLS_LOAD_TLS=false KTLS_PROC_SYS=$T/proc sh -euc "$(cat "$T/node-setup.sh")" "${nargs[@]}" >"$T/setup.out" 2>&1 ||
	{ cat "$T/setup.out"; ks_fail "the node setup script failed"; }
[[ $(cat "$T/proc/fs/pipe-user-pages-soft") == 262144 ]] || ks_fail "fs.pipe-user-pages-soft not raised: $(cat "$T/setup.out")"
[[ $(cat "$T/proc/fs/nr_open") == 2097152 ]] || ks_fail "fs.nr_open was lowered: $(cat "$T/setup.out")"
ks_assert_grep "$T/setup.out" 'event=sysctl key=fs.pipe-user-pages-soft was=16384 now=262144' "no log of the raise"
ks_assert_grep "$T/setup.out" 'event=sysctl key=fs.nr_open kept=2097152 at_least=1048576' "no log of the kept value"
# A node where modprobe cannot load tls: the pod fails, saying what it means.
rc=0
KTLS_LOAD_TLS=true KTLS_HOST_ROOT=$T/noroot KTLS_PROC_SYS=$T/proc sh -euc "$(cat "$T/node-setup.sh")" \
	"${nargs[@]}" >"$T/setup.out" 2>&1 || rc=$?
((rc == 1)) || ks_fail "the setup script exited $rc without modprobe, want 1"
ks_assert_grep "$T/setup.out" 'event=module_failed name=tls: kTLS is off on this node.*userspace record layer' \
	"no clear message when tls cannot be loaded"
ks_pass "ktls-node's setup script: raises a sysctl below the value, keeps one above, fails loudly without the tls module"
