#!/usr/bin/env bash
# The Pod Security "restricted" checker (tests/tools/k8s/pss_check.py):
# negative controls. A compliant pod passes (as a Pod and inside a
# Deployment and a CronJob); one copy per rule of
# https://kubernetes.io/docs/concepts/security/pod-security-standards/
# (baseline and restricted) breaks only that rule, in a container of each
# kind where the rule is per container, and each is rejected naming the
# rule, the object and the container. t_k8s_validate.sh runs it over the
# chart.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"

PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
PSS=("$PY" "$KS_ROOT/tests/tools/k8s/pss_check.py")
T=$(ks_tmpdir)

cat >"$T/good.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: demo
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1337
    seccompProfile: {type: RuntimeDefault}
    sysctls:
      - {name: net.ipv4.ip_unprivileged_port_start, value: "0"}
  initContainers:
    - name: proxy
      image: ktls-sidecar:0.1.0
      restartPolicy: Always
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
  containers:
    - name: app
      image: nginx
      ports: [{containerPort: 8080}]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
        seccompProfile: {type: Localhost, localhostProfile: app.json}
  ephemeralContainers:
    - name: debug
      image: busybox
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
  volumes:
    - {name: run, emptyDir: {}}
    - {name: ca, secret: {secretName: ca}}
    - {name: token, projected: {sources: []}}
YAML
# The same pod spec as a Deployment's and a CronJob's template.
$PY - "$T/good.yaml" "$T/good-workloads.yaml" <<'PY'
import sys, yaml
pod = yaml.safe_load(open(sys.argv[1]))
tmpl = {"metadata": {"labels": {"a": "b"}}, "spec": pod["spec"]}
dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo"},
       "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": tmpl}}
cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "demo"},
      "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": tmpl}}}}
yaml.safe_dump_all([dep, cj], open(sys.argv[2], "w"))
PY
"${PSS[@]}" "$T/good.yaml" "$T/good-workloads.yaml" >"$T/good.out" 2>&1 ||
	{ cat "$T/good.out"; ks_fail "a compliant pod was rejected"; }
ks_assert_grep "$T/good.out" '3 pod specs, 0 violations' "the compliant pod specs were not all checked"
ks_pass "a compliant pod passes, as a Pod, a Deployment's template and a CronJob's"

# bad NAME PYTHON-STATEMENT REGEX: the pod changed by the statement (on s,
# its spec; i, a, e: its init, app and ephemeral container) must be
# rejected with a line matching REGEX.
n=0
bad() {
	local name=$1 stmt=$2 re=$3 rc=0
	$PY - "$T/good.yaml" "$T/$name.yaml" "$stmt" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
s = d["spec"]
i, a, e = s["initContainers"][0], s["containers"][0], s["ephemeralContainers"][0]
sc = lambda c: c.setdefault("securityContext", {})
exec(sys.argv[3])
yaml.safe_dump(d, open(sys.argv[2], "w"))
PY
	"${PSS[@]}" "$T/$name.yaml" >"$T/$name.out" 2>&1 || rc=$?
	[[ $rc == 1 ]] || { cat "$T/$name.out"; ks_fail "$name: exit $rc, want 1"; }
	ks_assert_grep "$T/$name.out" "$re" "$name: not rejected with the expected rule"
	echo "  $name: $(grep -Em1 "$re" "$T/$name.out")"
	n=$((n + 1))
}
# Baseline.
bad host-process 'sc(a)["windowsOptions"] = {"hostProcess": True}' 'containers/app: \[HostProcess\]'
bad host-process-pod 's["securityContext"]["windowsOptions"] = {"hostProcess": True}' 'pod: \[HostProcess\]'
bad host-network 's["hostNetwork"] = True' 'pod: \[Host Namespaces\] hostNetwork'
bad host-pid 's["hostPID"] = True' 'pod: \[Host Namespaces\] hostPID'
bad host-ipc 's["hostIPC"] = True' 'pod: \[Host Namespaces\] hostIPC'
bad privileged 'sc(i)["privileged"] = True' 'initContainers/proxy: \[Privileged Containers\]'
bad privileged-ephemeral 'sc(e)["privileged"] = True' 'ephemeralContainers/debug: \[Privileged Containers\]'
bad caps-baseline 'sc(a)["capabilities"]["add"] = ["SYS_ADMIN"]' 'containers/app: \[Capabilities \(baseline\)\] adds SYS_ADMIN'
bad host-path 's["volumes"].append({"name": "h", "hostPath": {"path": "/"}})' 'pod: \[HostPath Volumes\]'
bad host-port 'a["ports"][0]["hostPort"] = 8080' 'containers/app: \[Host Ports\] hostPort 8080'
bad apparmor 'sc(a)["appArmorProfile"] = {"type": "Unconfined"}' 'containers/app: \[AppArmor\]'
bad apparmor-annotation 'd["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}' 'app: \[AppArmor\] annotation'
bad selinux-type 'sc(a)["seLinuxOptions"] = {"type": "spc_t"}' 'containers/app: \[SELinux\] seLinuxOptions.type'
bad selinux-user 's["securityContext"]["seLinuxOptions"] = {"user": "system_u"}' 'pod: \[SELinux\] seLinuxOptions.user'
bad proc-mount 'sc(a)["procMount"] = "Unmasked"' 'containers/app: \[/proc Mount Type\]'
bad seccomp-unconfined 'sc(i)["seccompProfile"] = {"type": "Unconfined"}' 'initContainers/proxy: \[Seccomp\] seccompProfile.type Unconfined'
bad sysctl 's["securityContext"]["sysctls"].append({"name": "kernel.msgmax", "value": "1"})' 'pod: \[Sysctls\] sysctl .kernel.msgmax.'
# Restricted.
bad volume-type 's["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}})' 'pod: \[Volume Types\] volume .n. is nfs'
bad priv-escalation 'del sc(a)["allowPrivilegeEscalation"]' 'containers/app: \[Privilege Escalation\]'
bad priv-escalation-true 'sc(e)["allowPrivilegeEscalation"] = True' 'ephemeralContainers/debug: \[Privilege Escalation\]'
bad non-root-unset 'del s["securityContext"]["runAsNonRoot"]' 'containers/app: \[Running as Non-root\]'
bad non-root-false 'sc(i)["runAsNonRoot"] = False' 'initContainers/proxy: \[Running as Non-root\]'
bad run-as-user-0 'sc(a)["runAsUser"] = 0' 'containers/app: \[Running as Non-root user\]'
bad run-as-user-0-pod 's["securityContext"]["runAsUser"] = 0' 'pod: \[Running as Non-root user\]'
bad seccomp-unset 'del s["securityContext"]["seccompProfile"]' 'initContainers/proxy: \[Seccomp\] seccompProfile.type must be'
bad caps-no-drop 'sc(e)["capabilities"] = {}' 'ephemeralContainers/debug: \[Capabilities\] capabilities.drop must include ALL'
bad caps-add 'sc(i)["capabilities"]["add"] = ["NET_BIND_SERVICE", "CHOWN"]' 'initContainers/proxy: \[Capabilities\] adds CHOWN'
ks_pass "each of $n broken pods is rejected, naming the rule and the container"

# --exempt-container leaves out that container's violations, no other's,
# and never the pod's own.
$PY - "$T/good.yaml" "$T/exempt.yaml" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
s = d["spec"]
s["initContainers"][0]["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
s["containers"][0]["securityContext"]["privileged"] = True
yaml.safe_dump(d, open(sys.argv[2], "w"))
PY
rc=0; "${PSS[@]}" --exempt-container proxy "$T/exempt.yaml" >"$T/exempt.out" 2>&1 || rc=$?
[[ $rc == 1 ]] || { cat "$T/exempt.out"; ks_fail "--exempt-container: exit $rc, want 1"; }
ks_assert_grep "$T/exempt.out" 'containers/app: \[Privileged Containers\]' "--exempt-container proxy hid the app's violation"
ks_assert_not_grep "$T/exempt.out" 'initContainers/proxy' "--exempt-container proxy still reports proxy"
ks_assert_grep "$T/exempt.out" '1 violations of "restricted" \(2 left out: containers proxy exempted\)' "--exempt-container: no count of what it left out"
rc=0; "${PSS[@]}" --exempt-container app "$T/host-network.yaml" >"$T/exempt-pod.out" 2>&1 || rc=$?
[[ $rc == 1 ]] || ks_fail "--exempt-container hid a pod-level violation"
ks_pass "--exempt-container leaves out only the named container, and says how many"

ks_expect_exit 2 'usage' "${PSS[@]}"
ks_pass "no input: usage, exit 2"
