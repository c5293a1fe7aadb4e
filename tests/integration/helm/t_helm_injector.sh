#!/usr/bin/env bash
# The injector's chart (helm/ktls-injector), without a cluster:
#
# - Its appVersion is helm/ktls-sidecar's (the Makefile tags the one image
#   with that), and the render runs and injects that image.
# - helm lint --strict.
# - The chart README's recipe for a serving certificate without
#   cert-manager is run as written (openssl; kubectl and helm install with
#   no cluster: kubectl --dry-run=client, helm template): the Secret it makes
#   is the one the pod mounts, its certificate is for the name the API
#   server calls and chains to the caBundle the webhook gets.
# - Renders: defaults with that caBundle; cert-manager with the chart's own
#   issuers; cert-manager with a ClusterIssuer of yours; failurePolicy
#   Ignore with one replica; the InjectorConfig's values changed, released
#   into kube-system. Every object is validated against the Kubernetes API
#   schema with unknown fields rejected (tests/tools/k8s/k8s_validate.js;
#   cert-manager's kinds are CRDs it cannot know: skipped, each named), a
#   broken webhook and PodDisruptionBudget are caught by it, and the pod
#   passes Pod Security "restricted" (tests/tools/k8s/pss_check.py).
# - The webhook: one webhook inject.ktls-sidecar.io on CREATE of pods,
#   service path /inject on 443, caBundle or cert-manager's inject-ca-from
#   annotation naming the Certificate that makes the mounted Secret,
#   sideEffects None, admissionReviewVersions v1, timeoutSeconds,
#   reinvocationPolicy IfNeeded, failurePolicy; its namespaceSelector and
#   objectSelector evaluated over namespaces and pods (a labelled namespace
#   is selected, its own namespace and kube-system never, a pod labelled
#   false or disabled never, the injector's own pods never).
# - The Deployment (args, probes on the admin port, the projected volume
#   with no subPath, restricted securityContext, resources, anti-affinity
#   and spread), the PodDisruptionBudget, the Service, the ServiceAccount,
#   the InjectorConfig (exactly the values' keys) and the labels.
# - Refusals, each with a message and no manifest: unknown values (top
#   level, nested, a per-pod sidecar setting), a bad failurePolicy, a
#   timeout over 30s, neither or both CA sources, a caBundle that is not
#   base64 PEM, cert-manager without an issuer, one replica with Fail, no
#   trustDomain, identity.source=files without its Secret.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"

PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
command -v node >/dev/null || ks_fail "node is missing (make deps)"
command -v openssl >/dev/null || ks_fail "openssl is missing"
HELM=$("$KS_ROOT/tests/tools/fetch-helm.sh") || ks_fail "cannot get helm"
KUBECTL=$("$KS_ROOT/tests/tools/fetch-helm.sh" kubectl) || ks_fail "cannot get kubectl"
SCHEMA=$("$KS_ROOT/tests/tools/k8s/fetch-schema.sh") || ks_fail "cannot install the schema packages"
# helm and kubectl never need a cluster here; make sure they cannot find one.
export KUBECONFIG=/nonexistent
CHART=$KS_ROOT/helm/ktls-injector
T=$(ks_tmpdir)

# --- one version -----------------------------------------------------------
appver() { $PY -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["appVersion"])' "$1"; }
VERSION=$(appver "$KS_ROOT/helm/ktls-sidecar/Chart.yaml")
[[ -n $VERSION && $(appver "$CHART/Chart.yaml") == "$VERSION" ]] ||
	ks_fail "helm/ktls-injector's appVersion '$(appver "$CHART/Chart.yaml")' is not helm/ktls-sidecar's '$VERSION' (the one image's tag)"
ks_pass "appVersion $VERSION, as helm/ktls-sidecar's"

"$HELM" lint --strict "$CHART" --set trustDomain=example.org --set certManager.enabled=true >"$T/lint.out" 2>&1 ||
	{ cat "$T/lint.out"; ks_fail "helm lint --strict $CHART failed"; }
ks_pass "helm lint --strict"

# --- the README's certificate recipe, as written -----------------------------
$PY - "$CHART/README.md" "$T/recipe.sh" <<'PY'
import sys
text = open(sys.argv[1]).read()
mark = "<!-- t_helm_injector runs this block"
start = text.index("```sh", text.index(mark)) + len("```sh")
block = text[start:text.index("```", start)]
assert "openssl" in block and "create secret tls" in block and "helm install" in block, block
open(sys.argv[2], "w").write(
    'kubectl() { "$KUBECTL" "$@" --dry-run=client -o yaml >secret.yaml; }\n'
    'helm() { [[ $1 == install ]] || return 1; shift; "$HELM" template "$@" >render.yaml; }\n' + block)
PY
mkdir "$T/recipe"
ln -s "$KS_ROOT/helm" "$T/recipe/helm"
(cd "$T/recipe" && KUBECTL=$KUBECTL HELM=$HELM bash -euo pipefail "$T/recipe.sh") >"$T/recipe.out" 2>&1 ||
	{ cat "$T/recipe.out"; ks_fail "the README's certificate recipe failed"; }
R=$T/recipe
CABUNDLE=$(base64 -w0 "$R/ca.crt")
cp "$R/render.yaml" "$T/ca.yaml"
$PY - "$R/secret.yaml" "$R" <<'PY'
import base64, sys, yaml
s = yaml.safe_load(open(sys.argv[1]))
assert s["kind"] == "Secret" and s["type"] == "kubernetes.io/tls", s
for k in ("tls.crt", "tls.key"):
    open(f"{sys.argv[2]}/secret-{k}", "wb").write(base64.b64decode(s["data"][k]))
print(s["metadata"]["name"], s["metadata"]["namespace"], file=open(f"{sys.argv[2]}/secret.id", "w"))
PY
openssl verify -CAfile "$R/ca.crt" -purpose sslserver "$R/secret-tls.crt" >"$T/verify.out" 2>&1 ||
	{ cat "$T/verify.out"; ks_fail "the recipe's certificate does not chain to its CA for TLS servers"; }
openssl x509 -in "$R/secret-tls.crt" -noout -ext subjectAltName >"$R/san.txt"
[[ $(openssl x509 -in "$R/secret-tls.crt" -noout -pubkey) == $(openssl pkey -in "$R/secret-tls.key" -pubout) ]] ||
	ks_fail "the recipe's Secret holds a key that is not its certificate's"
ks_pass "the README's recipe: a kubernetes.io/tls Secret whose certificate chains to the caBundle it installs with"

# --- renders -----------------------------------------------------------------
render() { "$HELM" template demo "$CHART" --namespace mesh --set trustDomain=example.org "$@"; }
render --set certManager.enabled=true >"$T/cm.yaml"
render --set certManager.enabled=true --set certManager.createIssuer=false --set certManager.issuerRef.name=corp-ca \
	--set certManager.issuerRef.kind=ClusterIssuer --set tls.secretName=injector-serving >"$T/cmref.yaml"
render --set webhook.caBundle="$CABUNDLE" --set webhook.failurePolicy=Ignore --set injector.replicas=1 \
	--set webhook.timeoutSeconds=10 >"$T/ignore.yaml"
"$HELM" template ktls-injector "$CHART" --namespace kube-system --set trustDomain=corp.example \
	--set webhook.caBundle="$CABUNDLE" --set mode=classic --set identity.source=spire --set sidecar.logLevel=debug \
	--set image.repository=registry.example/ktls-sidecar --set image.tag=0.2.0 --set redirect.enabled=true \
	--set 'redirect.excludePorts[0]=5432' --set agent.ttl=30m --set 'sidecar.extraArgs[0]=--x=a #b' >"$T/cfg.yaml"
RENDERS=(ca cm cmref ignore cfg)

# Schema: all but cert-manager's CRDs, which are named.
$PY - "$T" "${RENDERS[@]}" <<'PY'
import sys, yaml
t, names = sys.argv[1], sys.argv[2:]
n = 0
for name in names:
    docs = [d for d in yaml.safe_load_all(open(f"{t}/{name}.yaml")) if d]
    keep = [d for d in docs if not d["apiVersion"].startswith("cert-manager.io/")]
    for d in docs:
        if d not in keep:
            print(f"  {name}: {d['apiVersion']} {d['kind']}/{d['metadata']['name']}: a cert-manager CRD, not in the Kubernetes schema: skipped")
    yaml.safe_dump_all(keep, open(f"{t}/{name}.k8s.yaml", "w"))
    n += len(keep)
    kinds = sorted({d["kind"] for d in keep})
    print(f"  {name}: {len(keep)} objects to validate ({', '.join(kinds)})")
open(f"{t}/k8s.count", "w").write(str(n))
PY
rc=0
node "$KS_ROOT/tests/tools/k8s/k8s_validate.js" --schema-dir "$SCHEMA" "$T"/*.k8s.yaml >"$T/schema.out" 2>&1 || rc=$?
sed "s|$T/||" "$T/schema.out"
((rc == 0)) || ks_fail "rendered objects fail the Kubernetes API schema (above)"
ks_assert_grep "$T/schema.out" "^k8s_validate: $(cat "$T/k8s.count") objects, 0 errors" "the schema check did not see every object"
# The validator knows these kinds deeply: a misspelt field in each is caught.
$PY - "$T/cm.k8s.yaml" "$T/broken.yaml" <<'PY'
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
w = next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration")
w["webhooks"][0]["reinvokationPolicy"] = w["webhooks"][0].pop("reinvocationPolicy")
p = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
p["spec"]["minAvaliable"] = p["spec"].pop("minAvailable")
yaml.safe_dump_all([w, p], open(sys.argv[2], "w"))
PY
rc=0
node "$KS_ROOT/tests/tools/k8s/k8s_validate.js" --schema-dir "$SCHEMA" "$T/broken.yaml" >"$T/broken.out" 2>&1 || rc=$?
((rc == 1)) || { cat "$T/broken.out"; ks_fail "the validator passed a misspelt webhook field (exit $rc)"; }
ks_assert_grep "$T/broken.out" 'MutatingWebhookConfiguration/demo-ktls-injector: \.webhooks\[0\]\.reinvokationPolicy: unknown field' "a misspelt webhook field was not caught"
ks_assert_grep "$T/broken.out" 'PodDisruptionBudget/demo-ktls-injector: \.spec\.minAvaliable: unknown field' "a misspelt PDB field was not caught"
ks_pass "every object of 5 renders is valid against the Kubernetes API schema (cert-manager's CRDs named and skipped); misspelt webhook and PDB fields are caught"

pods=()
for r in "${RENDERS[@]}"; do pods+=("$T/$r.yaml"); done
rc=0
$PY "$KS_ROOT/tests/tools/k8s/pss_check.py" "${pods[@]}" >"$T/pss.out" 2>&1 || rc=$?
sed "s|$T/||" "$T/pss.out"
((rc == 0)) || ks_fail "the injector's pod violates Pod Security \"restricted\" (above)"
ks_assert_grep "$T/pss.out" '5 pod specs, 0 violations' "the restricted check did not see the 5 pods"
ks_pass "the injector's pod passes Pod Security \"restricted\" in every render"

# --- what the renders hold ---------------------------------------------------
$PY - "$T" "$VERSION" "$CHART/values.yaml" "$CABUNDLE" "$R/san.txt" "$(cat "$R/secret.id")" <<'PY'
import sys, yaml
t, version, values_file, cabundle, san_file, secret_id = sys.argv[1:]
values = yaml.safe_load(open(values_file))
san = open(san_file).read()
def load(name):
    return [d for d in yaml.safe_load_all(open(f"{t}/{name}.yaml")) if d]
def one(docs, kind, name=None):
    got = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(got) == 1, f"{len(got)} {kind} {name or ''}"
    return got[0]

# Label selectors as the API server evaluates them.
def matches(sel, labels):
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(k) not in vals: return False
        if op == "NotIn" and k in labels and labels[k] in vals: return False
        if op == "Exists" and k not in labels: return False
        if op == "DoesNotExist" and k in labels: return False
    return True

def check(name, ns, full, policy="Fail", timeout=5, replicas=2, ca=None, cm=None, tls=None, image=None, cfg=None):
    docs = load(name)
    where = name
    for d in docs:
        l = d["metadata"].get("labels", {})
        for k in ("name", "instance", "version", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{k}" in l, f"{where}: {d['kind']} lacks app.kubernetes.io/{k}"
        assert l["app.kubernetes.io/version"] == version and l["app.kubernetes.io/part-of"] == "ktls-sidecar", (where, l)
        assert l["helm.sh/chart"].startswith("ktls-injector-"), (where, l)
    kinds = sorted(d["kind"] for d in docs)
    want = ["ConfigMap", "Deployment", "MutatingWebhookConfiguration", "Service", "ServiceAccount"]
    if replicas >= 2: want.append("PodDisruptionBudget")
    if cm == "own": want += ["Certificate", "Certificate", "Issuer", "Issuer"]
    if cm == "ref": want += ["Certificate"]
    assert kinds == sorted(want), f"{where}: rendered {kinds}, want {sorted(want)}"

    # -- the Deployment and its pod
    dep = one(docs, "Deployment", full)
    sel = dep["spec"]["selector"]["matchLabels"]
    assert dep["spec"]["replicas"] == replicas, where
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, where
    tpl = dep["spec"]["template"]
    plabels = tpl["metadata"]["labels"]
    assert set(sel.items()) <= set(plabels.items()), f"{where}: the selector does not select the pods"
    pod = tpl["spec"]
    assert [c["name"] for c in pod["containers"]] == ["ktls-injector"] and "initContainers" not in pod, where
    c = pod["containers"][0]
    assert c["image"] == (image or f"ktls-sidecar:{version}"), f"{where}: image {c['image']}"
    assert c["command"] == ["/usr/bin/ktlsctl"], where
    assert c["args"] == ["inject", "--serve=0.0.0.0:9443", "--cert=/etc/ktls-injector/tls/tls.crt",
                         "--key=/etc/ktls-injector/tls/tls.key", "--config=/etc/ktls-injector/config.yaml",
                         "--admin=0.0.0.0:15020"], f"{where}: args {c['args']}"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 9443, "admin": 15020}, f"{where}: ports {ports}"
    for probe, path in (("startupProbe", "/ready"), ("readinessProbe", "/ready"), ("livenessProbe", "/live")):
        assert c[probe]["httpGet"] == {"path": path, "port": "admin"}, f"{where}: {probe} {c[probe]}"
    s = c["securityContext"]
    assert s["runAsNonRoot"] is True and s["runAsUser"] == 1337 and s["readOnlyRootFilesystem"] is True, (where, s)
    assert s["allowPrivilegeEscalation"] is False and s["capabilities"] == {"drop": ["ALL"]}, (where, s)
    assert s["seccompProfile"] == {"type": "RuntimeDefault"}, (where, s)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 1337, where
    r = c["resources"]
    assert r["requests"]["cpu"] and r["requests"]["memory"] and r["limits"]["memory"], f"{where}: resources {r}"
    assert pod["automountServiceAccountToken"] is False, where
    sa = one(docs, "ServiceAccount", full)
    assert pod["serviceAccountName"] == full and sa["automountServiceAccountToken"] is False, where
    # Apart: preferred anti-affinity by hostname, and spread.
    aff = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert any(a["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname" and
               a["podAffinityTerm"]["labelSelector"]["matchLabels"] == sel for a in aff), f"{where}: {aff}"
    tsc = {x["topologyKey"]: x for x in pod["topologySpreadConstraints"]}
    assert tsc["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == sel, where
    assert all(x["whenUnsatisfiable"] == "ScheduleAnyway" for x in tsc.values()), where
    # The files the args name, from one projected volume mounted whole.
    assert c["volumeMounts"] == [{"name": "config", "mountPath": "/etc/ktls-injector", "readOnly": True}], \
        f"{where}: mounts {c['volumeMounts']}"
    assert "subPath" not in str(pod), f"{where}: a subPath mount never sees an update"
    vol = one([dict(v, kind="v", metadata={"name": v["name"]}) for v in pod["volumes"]], "v", "config")
    srcs = vol["projected"]["sources"]
    cmap = next(x["configMap"] for x in srcs if "configMap" in x)
    sec = next(x["secret"] for x in srcs if "secret" in x)
    files = {f"/etc/ktls-injector/{i['path']}": i["key"] for x in (cmap, sec) for i in x["items"]}
    assert files == {"/etc/ktls-injector/config.yaml": "config.yaml", "/etc/ktls-injector/tls/tls.crt": "tls.crt",
                     "/etc/ktls-injector/tls/tls.key": "tls.key"}, f"{where}: {files}"
    secret_name = tls or f"{full}-tls"
    assert sec["name"] == secret_name, f"{where}: mounts Secret {sec['name']}, want {secret_name}"
    conf = one(docs, "ConfigMap", cmap["name"])

    # -- the InjectorConfig: the values' keys exactly, the image's tag explicit
    doc = yaml.safe_load(conf["data"]["config.yaml"])
    want_cfg = {k: values[k] for k in ("trustDomain", "mode", "identity", "agent", "sidecar", "redirect")}
    want_cfg.update(apiVersion="ktls-sidecar.io/v1alpha1", kind="InjectorConfig", trustDomain="example.org",
                    image=dict(values["image"], tag=version))
    for path, v in (cfg or {}).items():
        d = want_cfg
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        d[last] = v
    assert doc == want_cfg, f"{where}: InjectorConfig\n{yaml.safe_dump(doc)}\nwant\n{yaml.safe_dump(want_cfg)}"
    assert image is None or f"{doc['image']['repository']}:{doc['image']['tag']}" == c["image"], \
        f"{where}: the injector injects another image than it runs"

    # -- PodDisruptionBudget and Service
    if replicas >= 2:
        pdb = one(docs, "PodDisruptionBudget", full)
        assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": sel}}, f"{where}: {pdb['spec']}"
    svc = one(docs, "Service", full)
    assert svc["spec"]["selector"] == sel, where
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(443, "https")], where

    # -- the webhook
    mwc = one(docs, "MutatingWebhookConfiguration")
    assert len(mwc["webhooks"]) == 1, where
    w = mwc["webhooks"][0]
    assert w["name"] == "inject.ktls-sidecar.io", where
    assert w["clientConfig"]["service"] == {"name": full, "namespace": ns, "path": "/inject", "port": 443}, \
        f"{where}: {w['clientConfig']}"
    assert w["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"], "scope": "Namespaced"}], f"{where}: rules {w['rules']}"
    excl = [ns] if ns == "kube-system" else [ns, "kube-system"]
    assert w["namespaceSelector"] == {
        "matchLabels": {"ktls-sidecar.io/inject": "enabled"},
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excl}]}, \
        f"{where}: namespaceSelector {w['namespaceSelector']}"
    assert w["objectSelector"] == {"matchExpressions": [
        {"key": "ktls-sidecar.io/inject", "operator": "NotIn", "values": ["false", "disabled"]}]}, \
        f"{where}: objectSelector {w['objectSelector']}"
    assert w["sideEffects"] == "None" and w["admissionReviewVersions"] == ["v1"], where
    assert w["timeoutSeconds"] == timeout and w["reinvocationPolicy"] == "IfNeeded", where
    assert w["failurePolicy"] == policy, f"{where}: failurePolicy {w['failurePolicy']}"
    # The selectors over namespaces and pods.
    nsl = lambda n, **l: dict(l, **{"kubernetes.io/metadata.name": n})
    on = {"ktls-sidecar.io/inject": "enabled"}
    assert matches(w["namespaceSelector"], nsl("shop", **on)), f"{where}: a labelled namespace is not selected"
    assert not matches(w["namespaceSelector"], nsl("shop")), f"{where}: an unlabelled namespace is selected"
    assert not matches(w["namespaceSelector"], nsl("shop", **{"ktls-sidecar.io/inject": "disabled"})), where
    for n in (ns, "kube-system"):
        assert not matches(w["namespaceSelector"], nsl(n, **on)), f"{where}: namespace {n} is selected when labelled"
    for labels, want in (({}, True), ({"app": "web"}, True), ({"ktls-sidecar.io/inject": "true"}, True),
                         ({"ktls-sidecar.io/inject": "false"}, False), ({"ktls-sidecar.io/inject": "disabled"}, False)):
        assert matches(w["objectSelector"], labels) == want, f"{where}: pod labels {labels}: selected != {want}"
    assert not matches(w["objectSelector"], plabels), f"{where}: the injector's own pods are selected"
    ann = mwc["metadata"].get("annotations") or {}
    if ca:
        assert w["clientConfig"]["caBundle"] == ca, f"{where}: caBundle"
        assert "cert-manager.io/inject-ca-from" not in ann, where
    else:
        assert "caBundle" not in w["clientConfig"], f"{where}: a caBundle next to cert-manager's"
        ref = ann["cert-manager.io/inject-ca-from"]
        assert ref == f"{ns}/{full}", f"{where}: inject-ca-from {ref}"
        cert = one(docs, "Certificate", ref.split("/")[1])
        cs = cert["spec"]
        # The Certificate makes the Secret the pod mounts, for the name the API server calls.
        assert cs["secretName"] == secret_name, f"{where}: the Certificate writes {cs['secretName']}, the pod mounts {secret_name}"
        assert f"{full}.{ns}.svc" in cs["dnsNames"], f"{where}: dnsNames {cs['dnsNames']}"
        assert "server auth" in cs["usages"], where
        if cm == "own":
            iss = one(docs, "Issuer", cs["issuerRef"]["name"])
            assert cs["issuerRef"]["kind"] == "Issuer", where
            cacert = one(docs, "Certificate", next(d["metadata"]["name"] for d in docs if d["kind"] == "Certificate"
                                                   and d["spec"].get("isCA")))
            assert iss["spec"] == {"ca": {"secretName": cacert["spec"]["secretName"]}}, f"{where}: CA Issuer {iss['spec']}"
            root = one(docs, "Issuer", cacert["spec"]["issuerRef"]["name"])
            assert root["spec"] == {"selfSigned": {}}, f"{where}: the CA's issuer {root['spec']}"
        else:
            assert cs["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}, where
    return svc

svc = check("ca", "ktls-system", "ktls-injector", ca=cabundle)
# The recipe's Secret is the mounted one, in the release's namespace, for its Service.
assert secret_id.split() == ["ktls-injector-tls", "ktls-system"], f"the recipe makes Secret {secret_id}"
assert "DNS:ktls-injector.ktls-system.svc" in san, f"the recipe's certificate is not for the Service: {san}"
check("cm", "mesh", "demo-ktls-injector", cm="own")
check("cmref", "mesh", "demo-ktls-injector", cm="ref", tls="injector-serving")
check("ignore", "mesh", "demo-ktls-injector", policy="Ignore", timeout=10, replicas=1, ca=cabundle)
check("cfg", "kube-system", "ktls-injector", ca=cabundle, image="registry.example/ktls-sidecar:0.2.0", cfg={
    "trustDomain": "corp.example", "mode": "classic", "identity.source": "spire", "sidecar.logLevel": "debug",
    "image.repository": "registry.example/ktls-sidecar", "image.tag": "0.2.0", "redirect.enabled": True,
    "redirect.excludePorts": [5432], "agent.ttl": "30m", "sidecar.extraArgs": ["--x=a #b"]})
print("checked 5 renders")
PY
ks_pass "the webhook (pods on CREATE, /inject on 443, selectors evaluated: labelled namespaces, never its own or kube-system, pods labelled false/disabled opt out), caBundle or inject-ca-from naming the Certificate of the mounted Secret, the Deployment, PDB, Service and InjectorConfig"

# NOTES: how to label a namespace, and the dev signer Secret per namespace.
"$HELM" install demo "$CHART" -n mesh --dry-run=client --set trustDomain=example.org --set certManager.enabled=true \
	>"$T/notes.out" 2>&1 || { cat "$T/notes.out"; ks_fail "helm install --dry-run=client failed"; }
ks_assert_grep "$T/notes.out" 'kubectl label namespace NS ktls-sidecar.io/inject=enabled' "NOTES: no namespace label command"
ks_assert_grep "$T/notes.out" 'kubectl create secret generic ktls-dev-ca --from-file=./ca-signer -n NS .*every injected namespace' \
	"NOTES: no signer Secret per namespace for identity.source=dev"
ks_pass "NOTES: the namespace label, and the dev signer Secret in every injected namespace"

# --- refusals ----------------------------------------------------------------
# reject REGEX ARGS...: the render fails, prints nothing on stdout, and its
# message matches REGEX.
reject() {
	local re=$1 rc=0
	shift
	"$HELM" template demo "$CHART" --namespace mesh "$@" >"$T/rej.out" 2>"$T/rej.err" || rc=$?
	((rc != 0)) || ks_fail "rendered with $*"
	[[ ! -s $T/rej.out ]] || ks_fail "a failed render printed manifests ($*)"
	grep -Eq -- "$re" "$T/rej.err" || ks_fail "no clear message for $*: $(cat "$T/rej.err")"
	local shown=$*
	echo "  rejected ${shown//"$CABUNDLE"/"<ca.crt in base64>"}: $(grep -E -m1 -o -- "$re.{0,60}" "$T/rej.err" | cut -c1-160)"
}
OK=(--set trustDomain=example.org --set certManager.enabled=true)
reject "at '': additional properties 'replicas' not allowed" "${OK[@]}" --set replicas=3
reject "at '/webhook': additional properties 'failurPolicy' not allowed" "${OK[@]}" --set webhook.failurPolicy=Ignore
reject "at '/certManager/issuerRef': additional properties 'namespace' not allowed" "${OK[@]}" --set certManager.issuerRef.namespace=x
reject "at '/sidecar': additional properties 'inboundPort' not allowed" "${OK[@]}" --set sidecar.inboundPort=8443
reject "at '/injector/resources': additional properties 'limit' not allowed" "${OK[@]}" --set injector.resources.limit.memory=1Gi
reject "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'" "${OK[@]}" --set webhook.failurePolicy=Never
reject "at '/webhook/timeoutSeconds': maximum: got 31, want 30" "${OK[@]}" --set webhook.timeoutSeconds=31
reject "at '/mode': value must be one of 'native', 'classic'" "${OK[@]}" --set mode=hybrid
reject "at '/webhook/caBundle': 'not base64!' does not match pattern" --set trustDomain=example.org --set 'webhook.caBundle=not base64!'
reject "the webhook needs the CA of its serving certificate: set webhook.caBundle .* or certManager.enabled=true" \
	--set trustDomain=example.org
reject "webhook.caBundle and certManager.enabled are both set" "${OK[@]}" --set webhook.caBundle="$CABUNDLE"
reject "webhook.caBundle is not base64 of PEM certificates" --set trustDomain=example.org --set webhook.caBundle=aGVsbG8=
reject "certManager.createIssuer=false needs certManager.issuerRef.name" "${OK[@]}" --set certManager.createIssuer=false
reject "injector.replicas 1 with webhook.failurePolicy Fail" "${OK[@]}" --set injector.replicas=1
reject "trustDomain is required" --set certManager.enabled=true
reject "identity.source=files needs identity.files.secretName" "${OK[@]}" --set identity.source=files
# helm install checks the same (no cluster: --dry-run=client).
"$HELM" install demo "$CHART" -n mesh --dry-run=client "${OK[@]}" --set webhook.failurePolicy=Sometimes >"$T/inst.out" 2>&1 &&
	ks_fail "helm install took webhook.failurePolicy=Sometimes"
ks_assert_grep "$T/inst.out" "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'" "helm install: no clear message for a bad failurePolicy"
ks_pass "unknown values, a bad failurePolicy or timeout, neither or both CA sources, a caBundle that is not PEM, no issuer, one replica with Fail, no trustDomain: refused with a message"

# The InjectorConfig the ConfigMap carries is one the injector takes: the
# webhook reads this file (--config), and ktlsctl inject reads it the same
# way; its settings reach the pod (cfg.yaml's changed values).
KTLSCTL=${KS_CTL:-$(dirname "${KS_BIN:-$KS_ROOT/build/ktls-sidecar}")/ktlsctl}
[[ -x $KTLSCTL ]] || ks_fail "ktlsctl is missing at $KTLSCTL (make)"
for r in ca cfg; do
	$PY - "$T/$r.yaml" >"$T/$r.config.yaml" <<'PY'
import sys, yaml
cm = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap")
print(cm["data"]["config.yaml"])
PY
	cat >"$T/pod.yaml" <<'POD'
apiVersion: v1
kind: Pod
metadata: {name: web, annotations: {ktls-sidecar.io/inbound: "8443=8080"}}
spec: {containers: [{name: web, image: registry.example/web:1}]}
POD
	"$KTLSCTL" inject --config "$T/$r.config.yaml" -f "$T/pod.yaml" >"$T/$r.pod.yaml" 2>"$T/$r.inject.err" ||
		{ cat "$T/$r.inject.err"; ks_fail "$r: ktlsctl inject refused the chart's InjectorConfig"; }
	grep -q 'name: ktls-sidecar' "$T/$r.pod.yaml" || ks_fail "$r: no sidecar injected with the chart's InjectorConfig"
done
for want in '--exclude-port=5432' '--log-level=debug' 'image: registry.example/ktls-sidecar:0.2.0' \
	'--workload-api=unix://' 'postStart'; do
	grep -q -- "$want" "$T/cfg.pod.yaml" || ks_fail "the chart's InjectorConfig ($want) does not reach the injected pod"
done
grep -q 'ktls-agent' "$T/cfg.pod.yaml" && ks_fail "identity.source=spire, and yet an agent"
ks_pass "the ConfigMap's InjectorConfig is taken by ktlsctl inject --config, and its values reach the pod"
