#!/usr/bin/env bash
# One shape for the chart and the injector: the chart's sidecar is what
# `ktlsctl inject` adds to the same workload, for each way of saying it.
#
# For each case, the chart is rendered twice:
#  - as users install it: `helm template --post-renderer ktls-inject`, which
#    gives the injector the chart's values as an InjectorConfig;
#  - with injection=webhook (no post-renderer): the plain workload, as the
#    namespace's webhook would receive it, then `ktlsctl inject` on it with
#    the injector's own defaults and the case's flags (or --config).
# The two pods must be the same after normalising (key order). The second
# render is the chart's app alone: so the chart's values.yaml defaults and
# the injector's built-in defaults (sidecar/inject/config.c) cannot drift
# apart without this failing.
#
# Then a hand-written plain Deployment (a Service owner's own manifest, with
# the chart's app container and the same annotations) is injected, and its
# ktls-* containers and volumes compared with the chart's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"
source "$KS_ROOT/tests/lib/helm.sh"

PY=/usr/bin/python3
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
CHART=$KS_ROOT/helm/ktls-sidecar
T=$(ks_tmpdir)
BASE=(--namespace shop --set trustDomain=example.org --set workload.image=registry.example/app:1)

# case NAME "CHART VALUES" "INJECT FLAGS" [CONFIG-YAML]
check_case() {
	local name=$1 values=$2 flags=$3 config=${4:-}
	# shellcheck disable=SC2086 # word splitting of the value lists is meant
	"$HELM" template demo "$CHART" "${BASE[@]}" $KS_POST $values >"$T/$name.chart.yaml" 2>>"$T/$name.err" ||
		{ cat "$T/$name.err"; ks_fail "$name: the chart's render failed"; }
	# shellcheck disable=SC2086
	"$HELM" template demo "$CHART" "${BASE[@]}" --set injection=webhook $values >"$T/$name.plain.yaml" ||
		ks_fail "$name: the plain render failed"
	if [[ -n $config ]]; then
		printf '%s\n' "$config" >"$T/$name.config.yaml"
		flags="$flags --config $T/$name.config.yaml"
	fi
	# shellcheck disable=SC2086
	"$KTLSCTL" inject -f "$T/$name.plain.yaml" $flags >"$T/$name.cli.yaml" 2>"$T/$name.cli.err" ||
		{ cat "$T/$name.cli.err"; ks_fail "$name: ktlsctl inject failed on the plain render"; }
	$PY - "$T/$name.chart.yaml" "$T/$name.cli.yaml" "$name" <<'PY' || ks_fail "$name: the chart and the injector disagree"
import json, sys, yaml
def pod(path):
    d = next(d for d in yaml.safe_load_all(open(path)) if d and d["kind"] in ("Deployment", "Job"))
    return d["spec"]["template"]
a, b, name = pod(sys.argv[1]), pod(sys.argv[2]), sys.argv[3]
norm = lambda x: json.dumps(x, sort_keys=True, indent=1)
if norm(a) != norm(b):
    import difflib
    print("\n".join(difflib.unified_diff(norm(a).splitlines(), norm(b).splitlines(), "chart", "ktlsctl inject", lineterm="")))
    sys.exit(1)
names = [c["name"] for c in a["spec"].get("initContainers", []) + a["spec"]["containers"]]
print(f"  {name}: the same pod ({', '.join(names)})")
PY
}

check_case defaults "" "--trust-domain example.org"
check_case classic "--set sidecar.mode=classic" "--trust-domain example.org --classic"
check_case job "--set workload.kind=Job" "--trust-domain example.org"
check_case spire "--set identity.source=spire" "--trust-domain example.org --identity-source spire"
check_case image "--set image.repository=registry.example/ktls --set image.tag=9.9" \
	"--trust-domain example.org --image registry.example/ktls:9.9"
check_case routes "--set sidecar.outbound[0].localPort=9000 --set sidecar.outbound[0].remote=db.shop:5432
	--set sidecar.outbound[0].id=spiffe://example.org/ns/shop/sa/db --set sidecar.allow[0]=spiffe://example.org/ns/web/sa/*" \
	"--trust-domain example.org"
check_case redirect-files "--set redirect.enabled=true --set identity.source=files --set identity.files.secretName=web-tls
	--set sidecar.logLevel=debug --set sidecar.resources.limits.memory=300Mi" "" \
	"apiVersion: ktls-sidecar.io/v1alpha1
kind: InjectorConfig
trustDomain: example.org
identity: {source: files, files: {secretName: web-tls}}
sidecar: {logLevel: debug, resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {memory: 300Mi}}}
redirect: {enabled: true}"
ks_pass "the chart's pod (post-renderer, its values as the InjectorConfig) = ktlsctl inject on the chart's plain workload (flags or --config), in 7 cases"

# The negative control: a case whose flags differ from the values must fail.
if (check_case mismatch "--set sidecar.mode=classic" "--trust-domain example.org") >"$T/mismatch.out" 2>&1; then
	ks_fail "a classic chart and a native injection compared equal: the comparison cannot fail"
fi
grep -q 'restartPolicy' "$T/mismatch.out" || ks_fail "the mismatch's diff does not show the difference: $(cat "$T/mismatch.out")"
ks_pass "a real difference (classic chart, native injection) fails the comparison, with a diff"

# A plain Deployment as its owner writes it, injected; its ktls-* pieces
# are the chart's.
cat >"$T/own.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop-web
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels: {app: shop-web}
  template:
    metadata:
      labels: {app: shop-web}
      annotations:
        ktls-sidecar.io/inbound: "8443=8080"
    spec:
      serviceAccountName: demo
      containers:
        - name: web
          image: registry.example/web:2.4
          ports: [{name: http, containerPort: 8080}]
          securityContext:
            runAsNonRoot: true
            allowPrivilegeEscalation: false
            capabilities: {drop: ["ALL"]}
            seccompProfile: {type: RuntimeDefault}
EOF
"$KTLSCTL" inject --trust-domain example.org -f "$T/own.yaml" >"$T/own.out.yaml" || ks_fail "ktlsctl inject failed on a plain Deployment"
$PY - "$T/defaults.chart.yaml" "$T/own.out.yaml" <<'PY' || ks_fail "the injected Deployment's sidecar differs from the chart's"
import json, sys, yaml
def pod(path):
    return next(d for d in yaml.safe_load_all(open(path)) if d and d["kind"] == "Deployment")["spec"]["template"]["spec"]
a, b = pod(sys.argv[1]), pod(sys.argv[2])
ours = lambda p: {k: [x for x in p.get(k, []) if x["name"].startswith("ktls-")] for k in ("initContainers", "containers", "volumes")}
assert ours(a) == ours(b), "the ktls-* containers and volumes differ"
assert [c["name"] for c in b["containers"]] == ["web"] and b["securityContext"] == {"fsGroup": 1337}, b
print(f"  shop-web: {', '.join(c['name'] for c in b['initContainers'])} ahead of web, as in the chart")
PY
ks_pass "a plain Deployment, injected: the same ktls-* containers and volumes as the chart's render"
