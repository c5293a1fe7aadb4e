#!/usr/bin/env bash
# The Helm chart (helm/ktls-sidecar): helm lint passes; a render injects the
# sidecar and the agent (the built-in control plane) into the workload's
# pod, sharing the control socket, with the SPIFFE ID derived from trust
# domain, namespace and service account; bad values fail the render with a
# clear message.
#
# The CA Secret is made as the docs say: the commands in the README's Helm
# section, in the chart's NOTES (helm install --dry-run=client) and in
# values.yaml are run as written, kubectl with --dry-run=client -o yaml (no
# cluster needed). No private key in any of those Secrets may be the root's
# (compared by public key), and each must hold the signer. The README's
# Secret is then mounted as the rendered volume says (its items, symlinks
# like the kubelet's), and a Secret made from a whole CA directory (the
# instructions before the root/signer split) must leave its root key
# outside the pod that way.
#
# Then the rendered command lines themselves are run, with only the pod's
# paths and ports mapped to this machine: the agent gives the sidecar its
# identity from that mount, the chart's readiness probe turns ready, and a
# real mTLS client reaches the app through the sidecar and sees the chart's ID.
#
# Values reach the command line as they were given: arguments holding ':',
# ' #' or spaces are checked in the parsed render (the exact argv) and then
# given to the real sidecar, which must see them whole (its own error names
# the whole value; a value unquoted in YAML would have lost ' #x' silently).
# (t_helm_render.sh covers the schema, the values matrix and ktls-node.)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
source "$KS_ROOT/tests/lib/helm.sh"
KUBECTL=$("$KS_ROOT/tests/tools/fetch-helm.sh" kubectl) || ks_fail "cannot get kubectl"
CHECK=$KS_ROOT/tests/tools/signer_check.py
# kubectl below never needs a cluster (helm.sh points KUBECONFIG nowhere).
CHART=$KS_ROOT/helm/ktls-sidecar
T=$(ks_tmpdir)

"$HELM" lint --strict "$CHART" --set trustDomain=example.org --set workload.image=nginx >"$T/lint.out" 2>&1 ||
	{ cat "$T/lint.out"; ks_fail "helm lint failed"; }
ks_pass "helm lint --strict"

render() { "$HELM" template demo "$CHART" --namespace shop $KS_POST "$@"; }
# Bad values: a clear message, no manifest.
render --set workload.image=nginx >"$T/bad.out" 2>&1 && ks_fail "rendered without a trustDomain"
grep -q 'trustDomain is required' "$T/bad.out" || ks_fail "no clear error for a missing trustDomain: $(cat "$T/bad.out")"
render --set trustDomain=Example.ORG --set workload.image=nginx >"$T/bad.out" 2>&1 && ks_fail "rendered an invalid trust domain"
grep -q "at '/trustDomain': 'Example.ORG' does not match pattern" "$T/bad.out" || ks_fail "no clear error for a bad trustDomain: $(cat "$T/bad.out")"
render --set trustDomain=example.org >"$T/bad.out" 2>&1 && ks_fail "rendered without a workload image"
grep -q 'workload.image is required' "$T/bad.out" || ks_fail "no clear error for a missing workload.image"
ks_pass "missing or invalid values fail the render with a clear message"

# Arguments that YAML would misread unquoted: ': ' makes a map, ' #' a comment.
cat >"$T/args.yaml" <<'VALUES'
sidecar:
  allow: ["spiffe://example.org/ns/shop/sa/*"]
  extraArgs:
    - --destination-id=10.1.2.3:5432=spiffe://example.org/ns/db/sa/pg
VALUES
render --set trustDomain=example.org --set workload.image=registry.example/app:1 \
	--set workload.port=8080 -f "$T/args.yaml" --set agent.ttl=30s >"$T/manifest.yaml"
render --set trustDomain=example.org --set workload.image=x --set sidecar.mode=classic >"$T/classic.yaml"
$PY - "$T/manifest.yaml" "$T" "$T/classic.yaml" "$KS_ROOT/tests/tools/k8s" <<'PY'
import json, sys, yaml
sys.path.insert(0, sys.argv[4])
import kubelet
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
classic = next(d for d in yaml.safe_load_all(open(sys.argv[3])) if d and d["kind"] == "Deployment")
hook = next(x for x in classic["spec"]["template"]["spec"]["containers"]
            if x["name"] == "ktls-sidecar")["lifecycle"]["postStart"]["exec"]["command"]
kinds = {d["kind"]: d for d in docs}
for k in ("Deployment", "Service", "ServiceAccount"):
    assert k in kinds, f"no {k} rendered"
pod = kinds["Deployment"]["spec"]["template"]["spec"]
# Native sidecars (the default): the agent, then the sidecar, as restartable
# initContainers ahead of the app (the sidecar's startupProbe waits for the
# identity the agent brings).
assert [x["name"] for x in pod["initContainers"]] == ["ktls-agent", "ktls-sidecar"], pod["initContainers"]
assert [x["name"] for x in pod["containers"]] == ["app"], pod["containers"]
c = {x["name"]: x for x in pod["initContainers"] + pod["containers"]}
sc, ag = c["ktls-sidecar"], c["ktls-agent"]
# The ID is the kubelet's to complete (the Downward API: namespace and
# service account), not the render's.
want_id = "spiffe://example.org/ns/$(KTLS_POD_NAMESPACE)/sa/$(KTLS_POD_SERVICE_ACCOUNT)"
assert f"--spiffe-id={want_id}" in sc["args"], sc["args"]
assert f"--id={want_id}" in ag["args"], ag["args"]
meta, pspec = {"namespace": "shop"}, pod
assert pod["serviceAccountName"] == "demo"
run_id = "spiffe://example.org/ns/shop/sa/demo"
assert f"--spiffe-id={run_id}" in kubelet.argv(sc, meta, pspec), kubelet.argv(sc, meta, pspec)
assert "--control-socket=/run/ktls-sidecar/api/control.sock" in sc["args"]
assert "--sidecar=/run/ktls-sidecar/api/control.sock" in ag["args"]
assert ag["args"][0] == "agent" and "--ttl=30s" in ag["args"]
assert not any(a.startswith(("--cert", "--key", "--ca=")) for a in sc["args"]), "the sidecar must get its identity from the agent"
mounts = lambda x: {m["name"]: m["mountPath"] for m in x["volumeMounts"]}
assert mounts(sc)["ktls-run"] == mounts(ag)["ktls-run"] == "/run/ktls-sidecar"
assert mounts(ag)["ktls-ca"] == "/etc/ktls-ca" and "ktls-ca" not in mounts(sc), "only the agent sees the CA"
assert all(m["readOnly"] for m in ag["volumeMounts"] if m["name"] == "ktls-ca")
assert "--ca=/etc/ktls-ca" in ag["args"], ag["args"]
vols = {v["name"]: v for v in pod["volumes"]}
sec = vols["ktls-ca"]["secret"]
assert sec["secretName"] == "ktls-dev-ca"
# The signer set's keys alone, by name: whatever else the Secret holds stays out.
signer = ["bundle.pem", "intermediate.key", "intermediate.pem", "trust_domain"]
items = sec.get("items", [])
assert sorted((i["key"], i["path"]) for i in items) == [(n, n) for n in signer], \
    f"the CA volume must project the signer set alone: {items}"
assert pod["securityContext"]["fsGroup"] == sc["securityContext"]["runAsUser"] == ag["securityContext"]["runAsUser"]
for x in (sc, ag):
    s = x["securityContext"]
    assert s["runAsNonRoot"] and not s["allowPrivilegeEscalation"] and s["readOnlyRootFilesystem"]
    assert s["capabilities"]["drop"] == ["ALL"]
# The kubelet probes the admin endpoint over HTTP, on the named port.
assert sc["args"] == [
    "--inbound=0.0.0.0:8443=127.0.0.1:8080", "--allow=spiffe://example.org/ns/shop/sa/*",
    "--inbound-mode=strict", f"--spiffe-id={want_id}",
    "--control-socket=/run/ktls-sidecar/api/control.sock", "--ktls=auto", "--io=auto",
    "--drain-timeout=20s", "--drain-delay=0s", "--admin=0.0.0.0:15020", "--log-level=info",
    "--destination-id=10.1.2.3:5432=spiffe://example.org/ns/db/sa/pg"], sc["args"]
ports = {p["name"]: p["containerPort"] for p in sc["ports"]}
assert ports["ktls-admin"] == 15020, ports
assert sc["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "ktls-admin"}, sc["readinessProbe"]
assert sc["livenessProbe"]["httpGet"] == {"path": "/live", "port": "ktls-admin"}, sc["livenessProbe"]
ann = kinds["Deployment"]["spec"]["template"]["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "15020", ann
assert ann["prometheus.io/path"] == "/metrics", ann
assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == "mtls"
assert ann["ktls-sidecar.io/inbound"] == "8443=8080", ann
assert ann["ktls-sidecar.io/injected-version"], ann
assert ag["readinessProbe"]["exec"]["command"] == ag["livenessProbe"]["exec"]["command"]
json.dump({"sidecar": kubelet.argv(sc, meta, pspec), "agent": kubelet.argv(ag, meta, pspec),
           "agentprobe": ag["readinessProbe"]["exec"]["command"], "hook": hook},
          open(sys.argv[2] + "/cmds.json", "w"))
open(sys.argv[2] + "/probes", "w").write(sc["readinessProbe"]["httpGet"]["path"] + " " +
                                         sc["livenessProbe"]["httpGet"]["path"] + "\n")
json.dump(sec, open(sys.argv[2] + "/ca-volume.json", "w"))
PY
ks_pass "the render injects ktls-sidecar and ktls-agent into the pod, sharing /run/ktls-sidecar; only the agent mounts the CA, its signer set's keys alone"

# agent.enabled=false: no agent, no CA volume.
render --set trustDomain=example.org --set workload.image=x --set agent.enabled=false >"$T/noagent.yaml"
grep -q 'ktls-agent\|ktls-dev-ca' "$T/noagent.yaml" && ks_fail "agent.enabled=false still renders the agent"
ks_pass "agent.enabled=false renders no agent and no CA volume"

# --- the CA Secret, made as the docs say ------------------------------------
"$HELM" install demo "$CHART" --namespace shop --dry-run=client --set trustDomain=example.org \
	--set workload.image=nginx >"$T/install.out" 2>&1 || { cat "$T/install.out"; ks_fail "helm install --dry-run=client failed"; }
# Each source's recipe: its `ktlsctl ca` and `kubectl create secret` lines, in order.
$PY - "$KS_ROOT/README.md" "$T/install.out" "$CHART/values.yaml" "$T" <<'PY'
import re, sys
readme, notes, values, t = sys.argv[1:]
def recipe(lines, where):
    out = []
    for l in lines:
        l = l.strip().lstrip("#").strip()
        if re.match(r"(ktlsctl ca |kubectl .*create secret )", l):
            assert not l.endswith("\\"), f"{where}: a continued line: {l}"
            out.append(re.sub(r"\s+#\s.*$", "", l))
    kube = [l for l in out if l.startswith("kubectl")]
    assert len(kube) == 1 and out[-1] == kube[0] and len(out) > 1, f"{where}: no recipe for the Secret: {out}"
    return out
text = open(readme).read()
helm = text[text.index("### Kubernetes: the Helm chart"):]
block = helm[helm.index("```sh"):helm.index("```", helm.index("```sh") + 5)]
notes = open(notes).read()
sources = {
    "readme": recipe(block.splitlines(), "README.md, Helm section"),
    "notes": recipe(notes[notes.index("NOTES:"):].splitlines(), "the chart's NOTES"),
    "values": recipe(open(values).read().splitlines(), "values.yaml"),
}
for name, lines in sources.items():
    with open(f"{t}/recipe-{name}.sh", "w") as f:
        f.write('ktlsctl() { "$KS_CTL" "$@"; }\n')
        f.write('kubectl() { "$KUBECTL" "$@" --dry-run=client -o yaml >secret.yaml; }\n')
        f.write("\n".join(lines) + "\n")
PY
# secret_files YAML DIR: the Secret's keys as files in DIR; prints its name.
secret_files() {
	$PY - "$1" "$2" <<'PY'
import base64, os, sys, yaml
s = yaml.safe_load(open(sys.argv[1]))
assert s["kind"] == "Secret" and s.get("type", "Opaque") == "Opaque", s
os.makedirs(sys.argv[2], mode=0o700)
for k, v in s.get("data", {}).items():
    with open(os.path.join(sys.argv[2], k), "wb") as f:
        f.write(base64.b64decode(v))
print(s["metadata"]["name"])
PY
}
# mount_secret DIR MNT [all]: DIR's keys as the kubelet mounts the chart's CA
# volume (its items, defaultMode, MNT/name -> ..data/name -> ..<ts>/name);
# "all" mounts every key, as a volume without items would.
mount_secret() {
	$PY - "$T/ca-volume.json" "$@" <<'PY'
import json, os, sys
vol, src, mnt = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
items = [(k, k) for k in sorted(os.listdir(src))] if sys.argv[4:] == ["all"] else \
    [(i["key"], i["path"]) for i in vol["items"]]
ts = os.path.join(mnt, "..2026_01_01_00_00_00.000000001")
os.makedirs(ts)
for key, path in items:
    if not os.path.exists(os.path.join(src, key)):
        sys.exit(f"the pod would not start: the Secret has no key {key}")
    data = open(os.path.join(src, key), "rb").read()
    with open(os.path.join(ts, path), "wb") as f:
        f.write(data)
    os.chmod(os.path.join(ts, path), vol["defaultMode"])
os.symlink(os.path.basename(ts), os.path.join(mnt, "..data"))
for _, path in items:
    os.symlink(os.path.join("..data", path), os.path.join(mnt, path))
PY
}
for r in readme notes values; do
	mkdir "$T/$r"
	(cd "$T/$r" && KS_CTL=$KS_CTL KUBECTL=$KUBECTL bash -euo pipefail "$T/recipe-$r.sh") >"$T/$r.out" 2>&1 ||
		{ cat "$T/$r.out"; ks_fail "the $r recipe for the CA Secret failed: $(paste -sd';' "$T/recipe-$r.sh")"; }
	name=$(secret_files "$T/$r/secret.yaml" "$T/$r/secret")
	[[ $name == ktls-dev-ca ]] || ks_fail "the $r recipe makes Secret '$name', the chart mounts ktls-dev-ca"
	mapfile -t roots < <(find "$T/$r" -name root.pem -not -path "$T/$r/secret/*")
	((${#roots[@]} >= 1)) || ks_fail "the $r recipe made no CA with a root.pem"
	[[ -f $T/$r/secret/bundle.pem ]] && roots+=("$T/$r/secret/bundle.pem")
	"$CHECK" "$T/$r/secret" "${roots[@]}" >"$T/check.out" 2>&1 ||
		ks_fail "the $r recipe's Secret: $(cat "$T/check.out")"
done
ks_pass "the Secret as the README, the chart's NOTES and values.yaml make it holds the signer set and no root key"

CA=$T/readme/ca
mount_secret "$T/readme/secret" "$T/etc-ktls-ca"
[[ $(ls "$T/etc-ktls-ca" | paste -sd' ') == 'bundle.pem intermediate.key intermediate.pem trust_domain' ]] ||
	ks_fail "the agent's mount holds: $(ls "$T/etc-ktls-ca" | paste -sd' ')"
"$CHECK" "$T/etc-ktls-ca" "$CA/signer/bundle.pem" >/dev/null || ks_fail "the agent's mount holds the root key"
# A Secret made from a whole CA directory (--from-file=./ca before the split:
# the six files flat), mounted by this chart: the root key stays out.
mkdir -m 700 "$T/oldca"
cp "$CA"/root/root.{key,pem} "$CA"/signer/* "$T/oldca/"
(cd "$T" && "$KUBECTL" -n shop create secret generic ktls-dev-ca --from-file=./oldca --dry-run=client -o yaml >old-secret.yaml)
secret_files "$T/old-secret.yaml" "$T/old-secret" >/dev/null
"$CHECK" "$T/old-secret" "$CA/root/root.pem" >"$T/check.out" 2>&1 && ks_fail "signer_check passed the old Secret, which holds root.key"
grep -q 'old-secret/root.key holds the root' "$T/check.out" || ks_fail "signer_check on the old Secret: $(cat "$T/check.out")"
mount_secret "$T/old-secret" "$T/old-mount"
mount_secret "$T/old-secret" "$T/old-mount-all" all
"$CHECK" "$T/old-mount" "$CA/root/root.pem" >"$T/check.out" 2>&1 ||
	ks_fail "the chart mounts an old Secret's root key: $(cat "$T/check.out")"
ks_pass "the chart mounts the signer set alone: an old Secret's root.key stays outside the pod"

# Run the rendered commands: map the pod's paths and ports to this machine.
# The pod's listener (0.0.0.0:8443) becomes 127.0.0.1:0: the sidecar picks
# its port, read back from its log once it is ready.
ks_echo_server "$T/echo.log" echo
mkdir -m 0777 "$T/run" # an emptyDir
$PY - "$T/cmds.json" "$T" "$KS_BIN" "$KS_CTL" "$KS_ECHO_PORT" <<'PY'
import json, sys
cmds, t, sbin, cbin, app = sys.argv[1:]
def fix(argv):
    out = []
    for a in argv:
        a = a.replace("/usr/bin/ktls-sidecar", sbin).replace("/usr/bin/ktlsctl", cbin)
        a = a.replace("/run/ktls-sidecar", t + "/run").replace("/etc/ktls-ca", t + "/etc-ktls-ca")
        a = a.replace("0.0.0.0:8443", "127.0.0.1:0").replace("127.0.0.1:8080", "127.0.0.1:" + app)
        a = a.replace("--admin=0.0.0.0:15020", "--admin=127.0.0.1:0").replace("127.0.0.1:15020", "@ADMIN@")
        out.append(a)
    return out
for k, v in json.load(open(cmds)).items():
    open(f"{t}/{k}.argv", "w").write("\0".join(fix(v)))
PY
mapfile -d '' sidecar_argv <"$T/sidecar.argv"
mapfile -d '' agent_argv <"$T/agent.argv"
mapfile -d '' agent_probe <"$T/agentprobe.argv"
mapfile -d '' hook <"$T/hook.argv"
ks_bg "$T/sidecar.log" "${sidecar_argv[@]}" >/dev/null
sidecar_pid=$KS_BG_PID
ks_wait_log "$T/sidecar.log" 'event=ready' 20
port=$(sed -n 's/.*event=route .*listen=.*:\([0-9][0-9]*\) target=.*/\1/p' "$T/sidecar.log")
[[ $port =~ ^[0-9]+$ ]] || ks_fail "the rendered sidecar did not log one listening port: '$port'"
admin=$(ks_admin_port "$T/sidecar.log")
[[ $admin =~ ^[0-9]+$ ]] || ks_fail "the rendered sidecar did not log its admin port: '$admin'"
# tls_echo HOST PORT CA CERT KEY MSG: the server's URI SANs, then what came
# back for MSG (tests/tools/tls_echo.py).
tls_echo() { "${TLS_ECHO_PREFIX[@]}" "$PY" "$KS_ROOT/tests/tools/tls_echo.py" "$@"; }
read -r ready_path live_path <"$T/probes"
probe() { # PATH: as the kubelet's httpGet probe, the status code; the body in $T/probe.out
	curl -s -o "$T/probe.out" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$admin$1" || true
}
[[ $(probe "$live_path") == 200 ]] || ks_fail "the liveness probe fails on a running sidecar: $(cat "$T/probe.out")"
[[ $(probe "$ready_path") == 503 ]] || ks_fail "the readiness probe passed before the identity arrived"
grep -q 'no identity' "$T/probe.out" || ks_fail "readiness probe does not say why: $(cat "$T/probe.out")"
# The agent's exec probe (readiness and liveness), as the kubelet runs it.
rc=0
"${agent_probe[@]}" >"$T/agentprobe.out" 2>&1 || rc=$?
((rc == 1)) && grep -q 'not ready: no identity yet' "$T/agentprobe.out" ||
	ks_fail "the agent's probe before the identity: exit $rc, $(cat "$T/agentprobe.out")"
# The classic mode's postStart hook (ktlsctl wait-ready, from the image
# lane's ktlsctl), started before the agent as the kubelet would: it must
# return 0 once the identity has arrived.
hook_pid=
if "$KS_CTL" wait-ready --help >/dev/null 2>&1; then
	hook=("${hook[@]/@ADMIN@/127.0.0.1:$admin}")
	ks_bg "$T/hook.log" "${hook[@]}" >/dev/null
	hook_pid=$KS_BG_PID
else
	echo "  note: this ktlsctl has no wait-ready: the classic postStart hook is checked in the render only"
fi
ks_bg "$T/agent.log" "${agent_argv[@]}" >/dev/null
ks_wait_log "$T/sidecar.log" 'event=control_update op=SetIdentity' 15
[[ $(probe "$ready_path") == 200 ]] || ks_fail "readiness probe fails with an identity: $(cat "$T/probe.out")"
"${agent_probe[@]}" >"$T/agentprobe.out" 2>&1 || ks_fail "the agent's probe fails with an identity: $(cat "$T/agentprobe.out")"
if [[ -n $hook_pid ]]; then
	rc=0
	wait "$hook_pid" || rc=$?
	((rc == 0)) || ks_fail "the rendered postStart hook exited $rc: $(cat "$T/hook.log")"
	echo "  the classic postStart hook returned 0 once the sidecar was ready"
fi
ks_assert_not_grep "$T/agent.log" 'root_key_present' "the agent found a root key in its mount"
ks_pass "the chart's probes: live at once; the sidecar's /ready and the agent's exec probe fail without an identity, pass once the agent delivered it from the signer set"

"$KS_CTL" ca issue --ca "$CA" spiffe://example.org/ns/shop/sa/client --out "$T/client" >/dev/null
printf 'hello through the chart\n' >"$T/msg"
TLS_ECHO_PREFIX=(timeout 20)
tls_echo 127.0.0.1 "$port" "$CA/signer/bundle.pem" "$T/client.crt" "$T/client.key" 'hello through the chart' \
	>"$T/tls.out" 2>&1 || { cat "$T/tls.out"; ks_fail "no mTLS connection through the chart's sidecar"; }
[[ $(sed -n 2p "$T/tls.out") == 'hello through the chart' ]] || ks_fail "no echo through the chart's sidecar: $(cat "$T/tls.out")"
[[ $(sed -n 1p "$T/tls.out") == spiffe://example.org/ns/shop/sa/demo ]] ||
	ks_fail "the sidecar does not present the chart's SPIFFE ID (URI SANs: $(sed -n 1p "$T/tls.out"))"
ks_pass "the rendered sidecar + agent serve mTLS as spiffe://example.org/ns/shop/sa/demo (a Python ssl client, echo intact)"

# Values with ':', ' #' and spaces, rendered, parsed, and given to the real
# sidecar: the exact argv, and the sidecar's own error naming the whole value.
# render_argv ARGS...: the rendered sidecar's argv, one per line (as JSON).
render_argv() {
	render --set trustDomain=example.org --set workload.image=x "$@" >"$T/q.yaml"
	$PY - "$T/q.yaml" "$KS_ROOT/tests/tools/k8s" <<'PY'
import json, sys, yaml
sys.path.insert(0, sys.argv[2])
import kubelet
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment":
        pod = d["spec"]["template"]["spec"]
        sc = next(x for x in pod["initContainers"] if x["name"] == "ktls-sidecar")
        for a in kubelet.argv(sc, {"namespace": "shop"}, pod):
            print(json.dumps(a))
PY
}
# quoted WANT ARGS...: WANT (a JSON string) is one whole argument of the
# render; the rendered sidecar, run, exits 2 naming it in its error ($3...).
quoted() {
	local want=$1 err=$2
	shift 2
	render_argv "$@" >"$T/q.argv"
	grep -qxF -- "$want" "$T/q.argv" || { cat "$T/q.argv"; ks_fail "the render does not carry $want whole ($*)"; }
	mapfile -t argv < <($PY -c 'import json,sys; [print(json.loads(l)) for l in open(sys.argv[1])]' "$T/q.argv" |
		sed "s#^/usr/bin/ktls-sidecar\$#$KS_BIN#; s#^--admin=0.0.0.0:15020\$#--admin=127.0.0.1:0#; s#0.0.0.0:8443=#127.0.0.1:0=#; s#/run/ktls-sidecar#$T/run#")
	ks_expect_exit 2 "$err" timeout 10 "${argv[@]}"
}
quoted '"--allow=spiffe://example.org/ns/shop/sa/a:b"' \
	"--allow 'spiffe://example.org/ns/shop/sa/a:b': path has a character outside" \
	--set 'sidecar.allow[0]=spiffe://example.org/ns/shop/sa/a:b'
cat >"$T/q1.yaml" <<'VALUES'
sidecar:
  extraArgs: ["--allow=spiffe://example.org/ns/shop/sa/x: y"]
VALUES
quoted '"--allow=spiffe://example.org/ns/shop/sa/x: y"' \
	"--allow 'spiffe://example.org/ns/shop/sa/x: y': path has a character outside" -f "$T/q1.yaml"
cat >"$T/q2.yaml" <<'VALUES'
sidecar:
  extraArgs: ["--log-level=debug #x"]
VALUES
quoted '"--log-level=debug #x"' "--log-level 'debug #x': expected debug, info, warn or error" -f "$T/q2.yaml"
cat >"$T/q3.yaml" <<'VALUES'
sidecar:
  extraArgs: ["--max-connections=10 000", "--log-level", "warn"]
VALUES
quoted '"--max-connections=10 000"' "--max-connections '10 000': expected 1-10000000" -f "$T/q3.yaml"
ks_pass "values with ':', ' #' and spaces reach the sidecar as one argument each: the exact argv, and the sidecar's own error naming the whole value"

# The rendered agent on an old Secret: through the chart's mount it signs
# and sees no root key; mounted whole (a volume without items) it warns.
agent_once() { # MOUNT: the rendered agent, once, with its /etc/ktls-ca at MOUNT
	local a argv=()
	for a in "${agent_argv[@]}"; do argv+=("${a/#--ca=*/--ca=$1}"); done
	"${argv[@]}" --once
}
agent_once "$T/old-mount" 2>"$T/old-agent.log" ||
	{ cat "$T/old-agent.log"; ks_fail "the rendered agent fails on an old Secret through the chart's mount"; }
ks_assert_not_grep "$T/old-agent.log" 'root_key_present' "the agent found a root key through the chart's mount of an old Secret"
agent_once "$T/old-mount-all" 2>"$T/old-all.log" ||
	{ cat "$T/old-all.log"; ks_fail "the rendered agent fails on a whole old Secret"; }
ks_assert_grep "$T/old-all.log" 'event=root_key_present' "the agent does not warn about an old Secret's root key"
ks_pass "the rendered agent on an old Secret: signs through the chart's mount with no root key; warns when it can see one"
ks_alive "$sidecar_pid" "the sidecar died"
