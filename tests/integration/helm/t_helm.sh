#!/usr/bin/env bash
# The Helm chart (helm/ktls-sidecar): helm lint passes; a render injects the
# sidecar and the agent (the built-in control plane) into the workload's
# pod, sharing the control socket, with the SPIFFE ID derived from trust
# domain, namespace and service account; bad values fail the render with a
# clear message. Then the rendered command lines themselves are run, with
# only the pod's paths and ports mapped to this machine: the agent gives the
# sidecar its identity, the chart's readiness probe turns ready, and a real
# mTLS client reaches the app through the sidecar and sees the chart's ID.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
HELM=$("$KS_ROOT/tests/tools/fetch-helm.sh") || ks_fail "cannot get helm"
CHART=$KS_ROOT/helm/ktls-sidecar
T=$(ks_tmpdir)

"$HELM" lint --strict "$CHART" --set trustDomain=example.org --set workload.image=nginx >"$T/lint.out" 2>&1 ||
	{ cat "$T/lint.out"; ks_fail "helm lint failed"; }
ks_pass "helm lint --strict"

render() { "$HELM" template demo "$CHART" --namespace shop "$@"; }
# Bad values: a clear message, no manifest.
render --set workload.image=nginx >"$T/bad.out" 2>&1 && ks_fail "rendered without a trustDomain"
grep -q 'trustDomain is required' "$T/bad.out" || ks_fail "no clear error for a missing trustDomain: $(cat "$T/bad.out")"
render --set trustDomain=Example.ORG --set workload.image=nginx >"$T/bad.out" 2>&1 && ks_fail "rendered an invalid trust domain"
grep -q 'only lowercase' "$T/bad.out" || ks_fail "no clear error for a bad trustDomain"
render --set trustDomain=example.org >"$T/bad.out" 2>&1 && ks_fail "rendered without a workload image"
grep -q 'workload.image is required' "$T/bad.out" || ks_fail "no clear error for a missing workload.image"
ks_pass "missing or invalid values fail the render with a clear message"

render --set trustDomain=example.org --set workload.image=registry.example/app:1 \
	--set workload.port=8080 --set 'sidecar.allow[0]=spiffe://example.org/ns/shop/sa/*' \
	--set agent.ttl=30s >"$T/manifest.yaml"
$PY - "$T/manifest.yaml" "$T" <<'PY'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {d["kind"]: d for d in docs}
for k in ("Deployment", "Service", "ServiceAccount"):
    assert k in kinds, f"no {k} rendered"
pod = kinds["Deployment"]["spec"]["template"]["spec"]
c = {x["name"]: x for x in pod["containers"]}
assert list(c) == ["app", "ktls-sidecar", "ktls-agent"], list(c)
sc, ag = c["ktls-sidecar"], c["ktls-agent"]
want_id = "spiffe://example.org/ns/shop/sa/demo"
assert f"--spiffe-id={want_id}" in sc["args"], sc["args"]
assert f"--id={want_id}" in ag["args"], ag["args"]
assert "--control-socket=/run/ktls-sidecar/api/control.sock" in sc["args"]
assert "--sidecar=/run/ktls-sidecar/api/control.sock" in ag["args"]
assert ag["args"][0] == "agent" and "--ttl=30s" in ag["args"]
assert not any(a.startswith(("--cert", "--key", "--ca=")) for a in sc["args"]), "the sidecar must get its identity from the agent"
mounts = lambda x: {m["name"]: m["mountPath"] for m in x["volumeMounts"]}
assert mounts(sc)["ktls-run"] == mounts(ag)["ktls-run"] == "/run/ktls-sidecar"
assert mounts(ag)["ktls-ca"] == "/etc/ktls-ca" and "ktls-ca" not in mounts(sc), "only the agent sees the CA"
vols = {v["name"]: v for v in pod["volumes"]}
assert vols["ktls-ca"]["secret"]["secretName"] == "ktls-dev-ca"
assert pod["securityContext"]["fsGroup"] == sc["securityContext"]["runAsUser"] == ag["securityContext"]["runAsUser"]
for x in (sc, ag):
    s = x["securityContext"]
    assert s["runAsNonRoot"] and not s["allowPrivilegeEscalation"] and s["readOnlyRootFilesystem"]
    assert s["capabilities"]["drop"] == ["ALL"]
assert sc["readinessProbe"]["exec"]["command"][-1] == "ready"
assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == "mtls"
assert kinds["Deployment"]["spec"]["template"]["metadata"]["annotations"]["ktls-sidecar/spiffe-id"] == want_id
json.dump({"sidecar": sc["command"] + sc["args"], "agent": ag["command"] + ag["args"],
           "ready": sc["readinessProbe"]["exec"]["command"]}, open(sys.argv[2] + "/cmds.json", "w"))
PY
ks_pass "the render injects ktls-sidecar and ktls-agent into the pod, sharing /run/ktls-sidecar; only the agent mounts the CA"

# workload.enabled=false: the named templates only, for another chart to include.
[[ -z $(render --set trustDomain=example.org --set workload.enabled=false | grep -v '^#\|^---\|^$' || true) ]] ||
	ks_fail "workload.enabled=false still renders objects"
# agent.enabled=false: no agent, no CA volume.
render --set trustDomain=example.org --set workload.image=x --set agent.enabled=false >"$T/noagent.yaml"
grep -q 'ktls-agent\|ktls-dev-ca' "$T/noagent.yaml" && ks_fail "agent.enabled=false still renders the agent"
ks_pass "workload.enabled=false and agent.enabled=false render what they say"

# Run the rendered commands: map the pod's paths and ports to this machine.
# The pod's listener (0.0.0.0:8443) becomes 127.0.0.1:0: the sidecar picks
# its port, read back from its log once it is ready.
"$KS_CTL" ca init "$T/ca" --trust-domain example.org >/dev/null
ks_echo_server "$T/echo.log" echo
mkdir -m 0777 "$T/run" # an emptyDir
$PY - "$T/cmds.json" "$T" "$KS_BIN" "$KS_CTL" "$KS_ECHO_PORT" <<'PY'
import json, sys
cmds, t, sbin, cbin, app = sys.argv[1:]
def fix(argv):
    out = []
    for a in argv:
        a = a.replace("/usr/bin/ktls-sidecar", sbin).replace("/usr/bin/ktlsctl", cbin)
        a = a.replace("/run/ktls-sidecar", t + "/run").replace("/etc/ktls-ca", t + "/ca")
        a = a.replace("0.0.0.0:8443", "127.0.0.1:0").replace("127.0.0.1:8080", "127.0.0.1:" + app)
        out.append(a)
    return out
for k, v in json.load(open(cmds)).items():
    open(f"{t}/{k}.argv", "w").write("\0".join(fix(v)))
PY
mapfile -d '' sidecar_argv <"$T/sidecar.argv"
mapfile -d '' agent_argv <"$T/agent.argv"
mapfile -d '' ready_argv <"$T/ready.argv"
ks_bg "$T/sidecar.log" "${sidecar_argv[@]}" >/dev/null
sidecar_pid=$KS_BG_PID
ks_wait_log "$T/sidecar.log" 'event=ready' 20
port=$(sed -n 's/.*event=route .*listen=.*:\([0-9][0-9]*\) target=.*/\1/p' "$T/sidecar.log")
[[ $port =~ ^[0-9]+$ ]] || ks_fail "the rendered sidecar did not log one listening port: '$port'"
"${ready_argv[@]}" >"$T/ready.out" 2>&1 && ks_fail "the readiness probe passed before the identity arrived"
grep -q 'no identity' "$T/ready.out" || ks_fail "readiness probe does not say why: $(cat "$T/ready.out")"
ks_bg "$T/agent.log" "${agent_argv[@]}" >/dev/null
ks_wait_log "$T/sidecar.log" 'event=control_update op=SetIdentity' 15
"${ready_argv[@]}" >"$T/ready.out" 2>&1 || ks_fail "readiness probe fails with an identity: $(cat "$T/ready.out")"
ks_pass "the chart's readiness probe: not ready without an identity, ready once the agent delivered it"

"$KS_CTL" ca issue --ca "$T/ca" spiffe://example.org/ns/shop/sa/client --out "$T/client" >/dev/null
printf 'hello through the chart\n' >"$T/msg"
timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$T/ca/bundle.pem" -cert "$T/client.crt" \
	-key "$T/client.key" -cert_chain "$T/ca/intermediate.pem" -verify_return_error -ign_eof \
	<"$T/msg" >"$T/s_client.out" 2>&1 || true
grep -q 'hello through the chart' "$T/s_client.out" || { tail -20 "$T/s_client.out"; ks_fail "no echo through the chart's sidecar"; }
san=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$T/ca/bundle.pem" \
	-cert "$T/client.crt" -key "$T/client.key" -cert_chain "$T/ca/intermediate.pem" </dev/null 2>/dev/null |
	openssl x509 -noout -ext subjectAltName)
[[ $san == *"URI:spiffe://example.org/ns/shop/sa/demo"* ]] ||
	ks_fail "the sidecar does not present the chart's SPIFFE ID (SAN: $san)"
ks_pass "the rendered sidecar + agent serve mTLS as spiffe://example.org/ns/shop/sa/demo (openssl s_client, echo intact)"
ks_alive "$sidecar_pid" "the sidecar died"
