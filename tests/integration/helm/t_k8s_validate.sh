#!/usr/bin/env bash
# Every object the charts render, over a matrix of values, is valid against
# the Kubernetes API schema with unknown fields rejected
# (tests/tools/k8s/k8s_validate.js), and every pod spec of helm/ktls-sidecar
# passes Pod Security "restricted" (tests/tools/k8s/pss_check.py).
# helm/ktls-node, if present, is checked against the schema only: its pods
# are node-level pieces, privileged by nature, for a "privileged" namespace.
# The checkers' own negative controls are t_k8s_schema.sh and t_pss_check.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"

PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
command -v node >/dev/null || ks_fail "node is missing (make deps)"
source "$KS_ROOT/tests/lib/helm.sh"
SCHEMA=$("$KS_ROOT/tests/tools/k8s/fetch-schema.sh") || ks_fail "cannot install the schema packages"
# helm template never needs a cluster; make sure it cannot find one.
export KUBECONFIG=/nonexistent
CHARTS=${KS_CHARTS:-$KS_ROOT/helm} # another folder of charts: KS_CHARTS
T=$(ks_tmpdir)

# The matrix: one row per render.
#   chart | name | needs | pss | helm arguments
# needs: a values.yaml key the row is about ("-": none); a chart without it
# skips the row, saying so (the matrix runs against older charts too).
# pss: "restricted"; "restricted except CONTAINER: why" (one container is
# privileged by design; the rest of the pod must still be restricted); or
# "skip: why" (the whole pod is privileged by design).
BASE="--set trustDomain=example.org --set workload.image=registry.example/app:1"
MATRIX=$(
	cat <<ROWS
ktls-sidecar|defaults|-|restricted|$BASE
ktls-sidecar|agent-off|-|restricted|$BASE --set agent.enabled=false
ktls-sidecar|permissive-outbound|-|restricted|$BASE --set sidecar.inboundMode=permissive --set sidecar.outbound[0].localPort=9000 --set sidecar.outbound[0].remote=backend.shop.svc:8443 --set sidecar.outbound[0].id=spiffe://example.org/ns/shop/sa/backend --set sidecar.allow[0]=spiffe://example.org/ns/shop/sa/* --set sidecar.extraArgs[0]=--log-level=debug
ktls-sidecar|own-serviceaccount|-|restricted|$BASE --set workload.serviceAccount.create=false --set workload.serviceAccount.name=shop
ktls-sidecar|classic|sidecar.mode|restricted|$BASE --set sidecar.mode=classic
ktls-sidecar|classic-agent-off|sidecar.mode|restricted|$BASE --set sidecar.mode=classic --set agent.enabled=false
ktls-sidecar|job|workload.kind|restricted|$BASE --set workload.kind=Job
ktls-sidecar|job-classic|workload.kind|restricted|$BASE --set workload.kind=Job --set sidecar.mode=classic
ktls-sidecar|no-networkpolicy|networkPolicy.enabled|restricted|$BASE --set networkPolicy.enabled=false
ktls-sidecar|identity-csi-driver-spiffe|identity.source|restricted|$BASE --set identity.source=csi-driver-spiffe
ktls-sidecar|identity-csi-driver-spiffe-classic|identity.source|restricted|$BASE --set identity.source=csi-driver-spiffe --set sidecar.mode=classic
ktls-sidecar|identity-spire|identity.source|restricted|$BASE --set identity.source=spire
ktls-sidecar|identity-spire-job|identity.source|restricted|$BASE --set identity.source=spire --set workload.kind=Job
ktls-sidecar|identity-files|identity.source|restricted|$BASE --set identity.source=files --set identity.files.secretName=web-tls
ktls-sidecar|identity-files-spiffe-helper|identity.source|restricted|$BASE --set identity.source=files --set identity.files.secretName=web-svid --set identity.files.layout=spiffe-helper --set identity.files.mountPath=/run/spiffe/certs
ktls-sidecar|redirect|redirect.enabled|restricted except ktls-redirect: the redirect's init container needs NET_ADMIN and NET_RAW as root (its namespace must be "privileged")|$BASE --set redirect.enabled=true --set workload.securityContext.runAsUser=1000
ktls-node|defaults|-|skip: node-level pieces (tls module loader, sysctls) are privileged by nature|
ktls-node|no-tls-module|nodeSetup.loadTlsModule|skip: node-level pieces (tls module loader, sysctls) are privileged by nature|--set nodeSetup.loadTlsModule=false
ROWS
)

# has_key CHART KEY: the chart's values.yaml defines KEY (dotted).
has_key() {
	[[ $2 == - ]] && return 0
	$PY - "$CHARTS/$1/values.yaml" "$2" <<'PY'
import sys, yaml
v = yaml.safe_load(open(sys.argv[1])) or {}
for k in sys.argv[2].split("."):
    if not isinstance(v, dict) or k not in v:
        sys.exit(1)
    v = v[k]
PY
}

schema_files=() pss_files=() pss_exempt=() rows=0
while IFS='|' read -r chart name needs pss args; do
	[[ -n $chart ]] || continue
	if [[ ! -d $CHARTS/$chart ]]; then
		echo "  $chart/$name: no chart $CHARTS/$chart, row skipped"
		continue
	fi
	if ! has_key "$chart" "$needs"; then
		echo "  $chart/$name: $chart has no value $needs, row skipped"
		continue
	fi
	out=$T/$chart-$name.yaml
	# shellcheck disable=SC2086 # the row's arguments are words
	post=
	[[ $chart != ktls-sidecar ]] || post=$KS_POST # the sidecar is the post-renderer's
	"$HELM" template demo "$CHARTS/$chart" --namespace shop $post $args >"$out" 2>>"$T/$chart-$name.err" ||
		{ cat "$T/$chart-$name.err"; ks_fail "$chart/$name: helm template failed ($args)"; }
	n=$(grep -c '^kind: ' "$out" || true)
	echo "  $chart/$name: $n objects ($(grep '^kind: ' "$out" | sed 's/kind: //' | sort | uniq -c | awk '{printf "%s%s×%s", s, $2, $1; s=", "}'))"
	schema_files+=("$out")
	if [[ $pss == restricted ]]; then
		pss_files+=("$out")
	elif [[ $pss == "restricted except "* ]]; then
		c=${pss#restricted except }
		pss_exempt+=("${c%%:*}|$out")
		echo "    Pod Security \"restricted\" except container ${c%%:*}: ${c#*: }"
	else
		echo "    Pod Security \"restricted\" not checked: ${pss#skip: }"
	fi
	rows=$((rows + 1))
done <<<"$MATRIX"
((rows > 0)) || ks_fail "no row of the matrix rendered"
ks_pass "$rows renders of the matrix"

rc=0
node "$KS_ROOT/tests/tools/k8s/k8s_validate.js" --schema-dir "$SCHEMA" "${schema_files[@]}" >"$T/schema.out" 2>&1 || rc=$?
sed "s|$T/||" "$T/schema.out"
((rc == 0)) || ks_fail "rendered objects fail the Kubernetes API schema (above)"
grep -q ' 0 objects' "$T/schema.out" && ks_fail "the schema check saw no object"
ks_pass "every rendered object is valid against the Kubernetes API schema, unknown fields rejected"

rc=0
$PY "$KS_ROOT/tests/tools/k8s/pss_check.py" "${pss_files[@]}" >"$T/pss.out" 2>&1 || rc=$?
for e in "${pss_exempt[@]}"; do
	$PY "$KS_ROOT/tests/tools/k8s/pss_check.py" --exempt-container "${e%%|*}" "${e#*|}" >>"$T/pss.out" 2>&1 || rc=$?
done
sed "s|$T/||" "$T/pss.out"
((rc == 0)) || ks_fail "rendered pod specs violate Pod Security \"restricted\" (above)"
grep -q ' 0 pod specs' "$T/pss.out" && ks_fail "the restricted check saw no pod spec"
ks_pass "every rendered pod spec of ktls-sidecar passes Pod Security \"restricted\""
