"""What the kubelet does to a container's command line before it runs it,
for the scenarios that run a rendered command line on this machine (or
under podman 4.3, whose kube play does neither): the Downward API's
fieldRefs become values, and $(VAR) references to the container's env are
expanded, as Kubernetes documents for "dependent environment variables":
$(VAR) of a defined variable is replaced, $$ is a literal $, and anything
else is left as it is.
"""
import re

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def env_values(container, pod_meta, pod_spec):
    """The container's env as name -> value, fieldRefs resolved from the pod."""
    fields = {
        "metadata.namespace": pod_meta.get("namespace", "default"),
        "metadata.name": pod_meta.get("name", ""),
        "spec.serviceAccountName": pod_spec.get("serviceAccountName", "default"),
    }
    out = {}
    for e in container.get("env", []):
        if "value" in e:
            out[e["name"]] = expand(e["value"], out)
        elif "fieldRef" in e.get("valueFrom", {}):
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            if path not in fields:
                raise ValueError(f"{e['name']}: fieldRef {path} is not one this helper knows")
            out[e["name"]] = fields[path]
    return out


def expand(s, env):
    return _REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)


def argv(container, pod_meta, pod_spec):
    """command + args as the kubelet would run them."""
    env = env_values(container, pod_meta, pod_spec)
    return [expand(a, env) for a in container.get("command", []) + container.get("args", [])]
