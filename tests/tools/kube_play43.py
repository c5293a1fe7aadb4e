#!/usr/bin/env python3
"""kube_play43.py IN OUT --ca DIR [--namespace NS]: a manifest made playable
by podman 4.3's `kube play`, rewritten in these ways alone, each printed on
stdout (one line a rewrite):

 - a Job becomes a Pod with the Job's template (restartPolicy: Never):
   kube play 4.3 plays Pods, Deployments, ConfigMaps and PVCs only;
 - a Secret volume becomes a hostPath of DIR (the dev CA's signer set, the
   files the Secret would hold): kube play 4.3 mounts hostPath, emptyDir
   and PVC only;
 - each emptyDir gets the object's name as a suffix: kube play 4.3 makes
   an emptyDir a named volume of the emptyDir's name, so every pod would
   share one /run/ktls-sidecar (and one control socket);
 - containers' `ports` go: kube play 4.3 publishes every containerPort on
   the host as the same port (podman issues 15942, 17028; 4.7 stopped it),
   so a second pod with 8443 cannot start;
 - env entries from the Downward API fields metadata.namespace and
   spec.serviceAccountName become literal values (NS, and the pod's
   serviceAccountName or "default"): kube play 4.3 refuses them ("fieldPath
   metadata.namespace is either not valid or not supported");
 - $(VAR) in command and args is expanded from the container's literal env
   values, as the kubelet does ($$ is a literal $; an unknown VAR stays):
   kube play 4.3 passes "$(VAR)" on as it is. Only a command or argument
   that changes is rewritten (and printed).

Other kinds (Service, ServiceAccount, NetworkPolicy, ...) pass as they are:
kube play 4.3 ignores them. Exit 0, or 1 with the reason.
"""
import argparse
import re
import sys

import yaml

DOWNWARD = ("metadata.namespace", "spec.serviceAccountName")


def expand(s, env):
    """Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion)."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            if s[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            m = re.match(r"\(([^()]*)\)", s[i + 1:])
            if m:
                name = m.group(1)
                out.append(env[name] if name in env else "$(" + name + ")")
                i += 1 + m.end()
                continue
        out.append(s[i])
        i += 1
    return "".join(out)


def rewrite(d, args, notes):
    kind, name = d["kind"], d["metadata"]["name"]
    if kind == "Job":
        t = d["spec"]["template"]
        if t["spec"].get("restartPolicy") != "Never":
            sys.exit(f"kube_play43: Job {name}: restartPolicy {t['spec'].get('restartPolicy')!r}, want Never")
        d = {"apiVersion": "v1", "kind": "Pod", "metadata": dict(t["metadata"], name=name), "spec": t["spec"]}
        notes.append(f"Job {name} -> Pod {name} (the Job's template; restartPolicy: Never)")
    ns = d["metadata"].get("namespace")
    if ns is not None and args.namespace is not None and ns != args.namespace:
        sys.exit(f"kube_play43: {kind} {name}: metadata.namespace {ns!r}, but the test plays it as {args.namespace!r}")
    spec = d["spec"] if d["kind"] == "Pod" else d["spec"]["template"]["spec"]
    if spec.get("initContainers"):
        sys.exit(f"kube_play43: {kind} {name} has initContainers: kube play 4.3 runs them to completion (classic mode renders none)")
    ctrs = spec["containers"]
    for v in spec.get("volumes", []):
        if "secret" in v:
            s = v.pop("secret")
            v["hostPath"] = {"path": args.ca, "type": "Directory"}
            notes.append(f"volume {v['name']}: secret {s['secretName']} -> hostPath {args.ca}")
        elif "emptyDir" in v:
            old, v["name"] = v["name"], f"{v['name']}-{name}"
            for c in ctrs:
                for m in c.get("volumeMounts", []):
                    if m["name"] == old:
                        m["name"] = v["name"]
            notes.append(f"volume {old} (emptyDir) -> {v['name']}")
    sa = spec.get("serviceAccountName") or "default"
    for c in ctrs:
        if c.pop("ports", None):
            notes.append(f"container {c['name']}: ports dropped")
        literal = {}
        for e in c.get("env", []):
            path = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if path in DOWNWARD:
                if path == "metadata.namespace":
                    if args.namespace is None:
                        sys.exit(f"kube_play43: {kind} {name}: env {e['name']} needs the namespace (--namespace)")
                    val = args.namespace
                else:
                    val = sa
                del e["valueFrom"]
                e["value"] = val
                notes.append(f"container {c['name']}: env {e['name']}: fieldRef {path} -> \"{val}\"")
            if "value" in e:
                literal[e["name"]] = e["value"]
        for field in ("command", "args"):
            for i, a in enumerate(c.get(field) or []):
                x = expand(a, literal)
                if x != a:
                    c[field][i] = x
                    notes.append(f"container {c['name']}: {field}[{i}] {a} -> {x}")
    return d


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--ca", required=True, help="the signer set's directory (the CA Secret's hostPath)")
    p.add_argument("--namespace", help="the namespace the pods play in (for metadata.namespace)")
    args = p.parse_args()
    played, notes = [], []
    with open(args.src) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for d in docs:
        played.append(rewrite(d, args, notes) if d["kind"] in ("Deployment", "Job", "Pod") else d)
    with open(args.out, "w") as f:
        yaml.safe_dump_all(played, f, sort_keys=False)
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
