#!/usr/bin/env bash
# The strict Kubernetes schema validator (tests/tools/k8s/k8s_validate.js):
# negative controls. A valid Deployment passes; each broken copy of it
# (an unknown field at the top, in a container and in a probe, a wrong
# type, a non-integer port, a missing required name, a bad enum, an
# unknown kind) fails with its own message, naming the object and the
# JSON path. t_k8s_validate.sh then runs it over the chart.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"

PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
command -v node >/dev/null || ks_fail "node is missing (make deps)"
SCHEMA=$("$KS_ROOT/tests/tools/k8s/fetch-schema.sh") || ks_fail "cannot install the schema packages"
VALIDATE=(node "$KS_ROOT/tests/tools/k8s/k8s_validate.js" --schema-dir "$SCHEMA")
T=$(ks_tmpdir)

cat >"$T/good.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
  labels: {app: demo}
spec:
  replicas: 1
  selector:
    matchLabels: {app: demo}
  template:
    metadata:
      labels: {app: demo}
    spec:
      initContainers:
        - name: proxy
          image: ktls-sidecar:0.1.0
          restartPolicy: Always
          startupProbe:
            httpGet: {path: /ready, port: 15020}
      containers:
        - name: app
          image: nginx
          imagePullPolicy: IfNotPresent
          ports:
            - containerPort: 8080
          resources:
            limits: {memory: 64Mi, cpu: 1}
          readinessProbe:
            httpGet: {path: /ready, port: admin}
---
apiVersion: v1
kind: Service
metadata:
  name: demo
spec:
  selector: {app: demo}
  ports:
    - port: 8443
      targetPort: mtls
YAML
"${VALIDATE[@]}" "$T/good.yaml" >"$T/good.out" 2>&1 || { cat "$T/good.out"; ks_fail "a valid Deployment and Service were rejected"; }
ks_assert_grep "$T/good.out" '2 objects, 0 errors' "the valid objects were not both checked"
ks_pass "a valid Deployment (native sidecar: initContainers[].restartPolicy) and Service pass"

# bad NAME PYTHON-STATEMENT REGEX: a copy of the Deployment changed by the
# statement (on d, the Deployment; c, its app container) must be rejected
# with a line matching REGEX.
bad() {
	local name=$1 stmt=$2 re=$3 rc=0
	$PY - "$T/good.yaml" "$T/$name.yaml" "$stmt" <<'PY'
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
d = docs[0]
c = d["spec"]["template"]["spec"]["containers"][0]
exec(sys.argv[3])
yaml.safe_dump(d, open(sys.argv[2], "w"))
PY
	"${VALIDATE[@]}" "$T/$name.yaml" >"$T/$name.out" 2>&1 || rc=$?
	[[ $rc == 1 ]] || { cat "$T/$name.out"; ks_fail "$name: exit $rc, want 1"; }
	ks_assert_grep "$T/$name.out" "$re" "$name: not rejected with the expected message"
	echo "  $name: $(grep -Em1 "$re" "$T/$name.out")"
}
bad unknown-top 'd["spec2"] = {}' \
	'Deployment/demo: \.spec2: unknown field "spec2"'
bad unknown-container 'c["readinesProbe"] = c.pop("readinessProbe")' \
	'Deployment/demo: \.spec\.template\.spec\.containers\[0\]\.readinesProbe: unknown field "readinesProbe"'
bad unknown-probe 'c["readinessProbe"]["httpGet"]["scheme2"] = "HTTP"' \
	'\.containers\[0\]\.readinessProbe\.httpGet\.scheme2: unknown field "scheme2"'
bad unknown-metadata 'd["metadata"]["label"] = {"a": "b"}' \
	'\.metadata\.label: unknown field "label"'
bad wrong-type 'd["spec"]["replicas"] = "two"' \
	'\.spec\.replicas: must be a number, got string "two"'
bad not-integer 'c["ports"][0]["containerPort"] = 80.5' \
	'\.containers\[0\]\.ports\[0\]\.containerPort: must be integer \(kubernetes-models\)'
bad wrong-type-array 'c["args"] = "--x"' \
	'\.containers\[0\]\.args: must be an array'
bad label-not-string 'd["metadata"]["labels"]["n"] = 1' \
	'\.metadata\.labels\.n: must be a string, got number'
bad missing-container-name 'del c["name"]' \
	'\.containers\[0\]\.name: required field "name" is missing'
bad missing-object-name 'del d["metadata"]["name"]' \
	'Deployment/\(no name\): \.metadata\.name: required field "name" is missing'
bad bad-enum 'c["imagePullPolicy"] = "Sometimes"' \
	'\.imagePullPolicy: must be one of "Always" \| "IfNotPresent" \| "Never", got "Sometimes"'
bad bad-int-or-string 'c["readinessProbe"]["httpGet"]["port"] = True' \
	'\.httpGet\.port: must be IntstrIntOrString \(string or number\), got boolean'
bad bad-quantity 'c["resources"]["limits"]["memory"] = [64]' \
	'\.resources\.limits\.memory: must be ResourceQuantity \(number or string\), got array'
bad unknown-kind 'd["kind"] = "Deploymnet"' \
	'Deploymnet/demo: \.: unknown apiVersion/kind "apps/v1"/"Deploymnet"'
bad unknown-apiversion 'd["apiVersion"] = "apps/v2"' \
	'unknown apiVersion/kind "apps/v2"/"Deployment"'
ks_pass "unknown fields (top, container, probe, metadata), wrong types, a missing name, a bad enum and an unknown kind are each rejected"

# Several documents: each error names its own object; a valid one stays quiet.
{ cat "$T/good.yaml"; echo ---; cat "$T/unknown-probe.yaml"; } >"$T/multi.yaml"
rc=0; "${VALIDATE[@]}" "$T/multi.yaml" >"$T/multi.out" 2>&1 || rc=$?
[[ $rc == 1 ]] || { cat "$T/multi.out"; ks_fail "multi-document: exit $rc, want 1"; }
ks_assert_grep "$T/multi.out" '3 objects, 1 errors' "multi-document: want 3 objects and exactly 1 error"
ks_pass "multi-document input: every object checked, the one bad object named"

ks_expect_exit 2 'no input file' "${VALIDATE[@]}"
ks_expect_exit 2 'not installed' node "$KS_ROOT/tests/tools/k8s/k8s_validate.js" --schema-dir "$T/none" "$T/good.yaml"
ks_pass "usage errors and a missing schema exit 2 with a clear message"
