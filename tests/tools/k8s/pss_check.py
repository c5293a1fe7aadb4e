#!/usr/bin/python3
"""pss_check.py: the Pod Security Standards "restricted" profile (baseline
plus the restricted controls) over every pod spec in multi-document YAML
(e.g. `helm template` output).

    pss_check.py [--exempt-container NAME]... FILE...   ("-" reads stdin)

--exempt-container NAME leaves out the violations of containers named NAME
(of any kind), saying how many: for a pod that is restricted but for one
container that is privileged by design (e.g. a redirect's iptables init
container). Pod-level rules still apply.

Exit 0: every pod spec complies; 1: violations, one line each naming the
object, the container (or "pod") and the rule; 2: usage or unreadable input.

The rules are those of https://kubernetes.io/docs/concepts/security/pod-security-standards/
(the "latest" version of the profiles, as Pod Security Admission enforces
them with `pod-security.kubernetes.io/enforce-version: latest`). Each rule
below carries the name the page gives its control. Pod specs are found in
Pod, PodTemplate, ReplicationController, Deployment, ReplicaSet,
StatefulSet, DaemonSet, Job and CronJob; every container kind is checked
(containers, initContainers, ephemeralContainers).
"""
import sys

import yaml

# Baseline "Capabilities": what may be added beyond the runtime's defaults.
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                 "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
# Baseline "SELinux": the types allowed (plus unset or "").
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Baseline "Sysctls": the safe set.
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
# Restricted "Volume Types": the only volume sources allowed.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")


def pod_specs(obj):
    """(where, pod metadata, pod spec) for each pod spec the object holds."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        yield "spec", obj.get("metadata") or {}, spec
    elif kind in ("PodTemplate",):
        t = obj.get("template") or {}
        yield "template.spec", t.get("metadata") or {}, t.get("spec") or {}
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"):
        t = spec.get("template") or {}
        yield "spec.template.spec", t.get("metadata") or {}, t.get("spec") or {}
    elif kind == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        yield "spec.jobTemplate.spec.template.spec", t.get("metadata") or {}, t.get("spec") or {}


def check_pod(meta, spec):
    """Yields (container or "pod", rule, message)."""
    psc = spec.get("securityContext") or {}
    containers = [(k, c) for k in CONTAINER_KINDS for c in (spec.get(k) or [])]
    ann = meta.get("annotations") or {}

    # --- Baseline ---
    # HostProcess: Windows host processes.
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        yield "pod", "HostProcess", "securityContext.windowsOptions.hostProcess must be unset or false"
    # Host Namespaces.
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(f):
            yield "pod", "Host Namespaces", f"{f} must be unset or false"
    # HostPath Volumes.
    for v in spec.get("volumes") or []:
        if "hostPath" in v:
            yield "pod", "HostPath Volumes", f"volume {v.get('name')!r} is a hostPath"
    # AppArmor: pod level (field and the older annotations).
    def apparmor(where, prof):
        if prof and prof.get("type") not in (None, "RuntimeDefault", "Localhost"):
            yield where, "AppArmor", f"appArmorProfile.type {prof.get('type')!r} (allowed: RuntimeDefault, Localhost)"
    yield from apparmor("pod", psc.get("appArmorProfile"))
    for k, v in ann.items():
        if k.startswith("container.apparmor.security.beta.kubernetes.io/") and \
                not (v == "runtime/default" or str(v).startswith("localhost/")):
            yield k.split("/", 1)[1], "AppArmor", f"annotation {k}={v!r} (allowed: runtime/default, localhost/*)"
    # SELinux.
    def selinux(where, opt):
        if not opt:
            return
        if opt.get("type") not in (None, *SELINUX_TYPES):
            yield where, "SELinux", f"seLinuxOptions.type {opt.get('type')!r} is not allowed"
        for f in ("user", "role"):
            if opt.get(f) not in (None, ""):
                yield where, "SELinux", f"seLinuxOptions.{f} must be unset"
    yield from selinux("pod", psc.get("seLinuxOptions"))
    # Seccomp (baseline): never Unconfined.
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        yield "pod", "Seccomp", "seccompProfile.type Unconfined"
    # Sysctls.
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            yield "pod", "Sysctls", f"sysctl {s.get('name')!r} is not in the safe set"

    # --- Restricted (pod level) ---
    for v in spec.get("volumes") or []:
        kinds = [k for k in v if k != "name"]
        bad = [k for k in kinds if k not in RESTRICTED_VOLUMES]
        if bad:
            yield "pod", "Volume Types", f"volume {v.get('name')!r} is {', '.join(bad)} (allowed: {', '.join(sorted(RESTRICTED_VOLUMES))})"
    if psc.get("runAsNonRoot") is False:
        yield "pod", "Running as Non-root", "securityContext.runAsNonRoot is false"
    if psc.get("runAsUser") == 0:
        yield "pod", "Running as Non-root user", "securityContext.runAsUser is 0"

    for kind, c in containers:
        name = f"{kind}/{c.get('name')}"
        sc = c.get("securityContext") or {}
        # Baseline.
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            yield name, "HostProcess", "securityContext.windowsOptions.hostProcess must be unset or false"
        if sc.get("privileged"):
            yield name, "Privileged Containers", "securityContext.privileged must be unset or false"
        caps = sc.get("capabilities") or {}
        for cap in caps.get("add") or []:
            if cap not in BASELINE_CAPS:
                yield name, "Capabilities (baseline)", f"adds {cap}"
        for p in c.get("ports") or []:
            if p.get("hostPort") not in (None, 0):
                yield name, "Host Ports", f"hostPort {p.get('hostPort')}"
        yield from apparmor(name, sc.get("appArmorProfile"))
        yield from selinux(name, sc.get("seLinuxOptions"))
        if sc.get("procMount") not in (None, "Default"):
            yield name, "/proc Mount Type", f"procMount {sc.get('procMount')!r} (allowed: Default)"
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            yield name, "Seccomp", "seccompProfile.type Unconfined"
        # Restricted.
        if sc.get("allowPrivilegeEscalation") is not False:
            yield name, "Privilege Escalation", "securityContext.allowPrivilegeEscalation must be false"
        nonroot = sc.get("runAsNonRoot")
        if nonroot is False or (nonroot is None and psc.get("runAsNonRoot") is not True):
            yield name, "Running as Non-root", "runAsNonRoot must be true (in the container or the pod)"
        if sc.get("runAsUser") == 0:
            yield name, "Running as Non-root user", "securityContext.runAsUser is 0"
        if seccomp is None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
            yield name, "Seccomp", "seccompProfile.type must be RuntimeDefault or Localhost (in the container or the pod)"
        elif seccomp not in (None, "RuntimeDefault", "Localhost"):
            yield name, "Seccomp", f"seccompProfile.type {seccomp!r} (allowed: RuntimeDefault, Localhost)"
        if "ALL" not in (caps.get("drop") or []):
            yield name, "Capabilities", "capabilities.drop must include ALL"
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                yield name, "Capabilities", f"adds {cap} (restricted allows only NET_BIND_SERVICE)"


def main(argv):
    exempt, files = set(), []
    it = iter(argv)
    for a in it:
        if a == "--exempt-container":
            exempt.add(next(it, ""))
        elif a.startswith("--exempt-container="):
            exempt.add(a.split("=", 1)[1])
        elif a.startswith("-") and a != "-":
            files = []
            break
        else:
            files.append(a)
    if not files or "" in exempt:
        sys.stderr.write("usage: pss_check.py [--exempt-container NAME]... FILE... (- for stdin): "
                         "Pod Security \"restricted\" over every pod spec\n")
        return 2
    specs = violations = exempted = 0
    for f in files:
        try:
            with (sys.stdin if f == "-" else open(f)) as fh:
                docs = list(yaml.safe_load_all(fh))
        except (OSError, yaml.YAMLError) as e:
            sys.stderr.write(f"pss_check: cannot read {f}: {e}\n")
            return 2
        for obj in docs:
            if not isinstance(obj, dict):
                continue
            oid = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
            for where, meta, spec in pod_specs(obj):
                specs += 1
                for who, rule, msg in check_pod(meta, spec):
                    if who.split("/")[-1] in exempt and who != "pod":
                        exempted += 1
                        continue
                    print(f"{f}: {oid}: {where}: {who}: [{rule}] {msg}")
                    violations += 1
    note = f" ({exempted} left out: containers {', '.join(sorted(exempt))} exempted)" if exempt else ""
    print(f"pss_check: {specs} pod specs, {violations} violations of \"restricted\"{note}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
