#!/usr/bin/env bash
# ktlsctl inject over the golden inputs (tests/integration/inject/golden:
# real-world-shaped manifests of every kind it handles, a List, a
# multi-document stream with objects that pass through, a JSON input, and
# inputs it must skip), in several modes and with each identity source.
# Properties, not snapshots (the shape may change; these must not):
#   - every output validates against the Kubernetes API schema with unknown
#     fields rejected (tests/tools/k8s/k8s_validate.js), read as kubectl
#     reads YAML (YAML 1.1 typing: PyYAML, like go-yaml v2);
#   - every pod passes Pod Security "restricted" (pss_check.py); with the
#     redirect on, its init container ktls-redirect is the only exception;
#   - injecting the output again gives the same bytes, and re-injecting
#     under another image or mode gives exactly a fresh injection;
#   - objects that are not workloads, and skipped workloads, come out equal
#     to what went in, each skip with a line on stderr naming the object
#     and the reason;
#   - JSON in, JSON out;
#   - errors: a bad annotation (exit 5, names object and annotation, nothing
#     on stdout), an unreadable file, a YAML syntax error (line number), an
#     unknown flag (exit 2), no trust domain, two InjectorConfigs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"

PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
command -v node >/dev/null || ks_fail "node is missing (make deps)"
CTL=${KS_CTL:-$(dirname "$KS_BIN")/ktlsctl}
[[ -x $CTL ]] || ks_fail "no ktlsctl at $CTL (make all; KS_BIN or KS_CTL point to the build)"
SCHEMA=$("$KS_ROOT/tests/tools/k8s/fetch-schema.sh") || ks_fail "cannot install the schema packages"
GOLD=$KS_ROOT/tests/integration/inject/golden
T=$(ks_tmpdir)
mkdir -p "$T/out" "$T/k8s"

# ------------------------------------------------------------ configurations
# Each identity source with what it needs (files: the Secret), given in an
# InjectorConfig; the source itself comes from --identity-source, so the
# flag is shown to win over the file's default.
cfg() { # NAME BODY: an InjectorConfig file
	printf 'apiVersion: ktls-sidecar.io/v1alpha1\nkind: InjectorConfig\n%s\n' "$2" >"$T/$1.yaml"
}
cfg dev 'agent:
  caSecret: shop-dev-ca
  ttl: 30m'
cfg csi-driver-spiffe 'identity:
  csiDriverSpiffe:
    driver: spiffe.csi.cert-manager.io
    mountPath: /var/run/secrets/spiffe.io'
cfg spire 'identity:
  spire:
    driver: csi.spiffe.io
    mountPath: /spiffe-workload-api
    socketName: agent.sock'
cfg files 'identity:
  files:
    secretName: workload-svid
    layout: spiffe-helper
    mountPath: /etc/ktls-identity'
cfg redirect 'redirect:
  enabled: true
  excludePorts: [9090]
  excludeCidrs: ["169.254.169.254/32"]'

# ------------------------------------------------------------ the runs
# RUN NAME INPUT ARGS...: injects INPUT, then injects the output again with
# the same arguments and wants the same bytes. Leaves $T/out/NAME.{out,err}.
runs=0
RUN() {
	local name=$1 in=$2
	shift 2
	local out=$T/out/$name.out err=$T/out/$name.err
	"$CTL" inject --trust-domain example.org "$@" -f "$in" >"$out" 2>"$err" ||
		{ cat "$err" >&2; ks_fail "$name: ktlsctl inject $* -f ${in#"$KS_ROOT"/} exited $?"; }
	[[ -s $out ]] || ks_fail "$name: no output"
	"$CTL" inject --trust-domain example.org "$@" -f "$out" >"$out.2" 2>"$err.2" ||
		{ cat "$err.2" >&2; ks_fail "$name: injecting the output again failed"; }
	cmp -s "$out" "$out.2" || {
		diff -u "$out" "$out.2" | head -40 >&2 || true
		ks_fail "$name: injecting the output a second time changed it"
	}
	runs=$((runs + 1))
}

inputs=() skips=()
for f in "$GOLD"/*.yaml "$GOLD"/*.json; do
	case $(basename "$f") in
	skip-*) skips+=("$f") ;;
	*) inputs+=("$f") ;;
	esac
done
((${#inputs[@]} >= 10 && ${#skips[@]} >= 3)) || ks_fail "the golden inputs are missing from $GOLD"

# Every input with the defaults (native, dev).
# Run names: the input's name with its extension (deployment-yaml-...).
for f in "${inputs[@]}"; do
	b=$(basename "$f" | tr . -)
	RUN "$b-native" "$f"
done
# A subset in classic mode and with each identity source.
subset=(deployment.yaml statefulset.yaml cronjob.yaml list.yaml deployment.json)
for s in "${subset[@]}"; do
	f=$GOLD/$s b=${s/./-}
	RUN "$b-classic" "$f" --classic
	for src in dev csi-driver-spiffe spire files; do
		RUN "$b-$src" "$f" --config "$T/$src.yaml" --identity-source "$src"
	done
	RUN "$b-files-classic" "$f" --config "$T/files.yaml" --identity-source files --classic
done
# The redirect (its pods are exempt from "restricted" for ktls-redirect
# alone). The echo ReplicaSet names two inbound ports: refused below.
redirected=()
for s in deployment.yaml statefulset.yaml job.yaml pod.yaml daemonset.yaml; do
	b=${s/./-}
	RUN "$b-redirect" "$GOLD/$s" --config "$T/redirect.yaml"
	RUN "$b-redirect-classic" "$GOLD/$s" --config "$T/redirect.yaml" --classic
	redirected+=("$b-redirect" "$b-redirect-classic")
done
ks_pass "$runs injections; injecting each output a second time gave the same bytes"

# A re-injection under another configuration gives exactly a fresh one: an
# older injector's image in classic mode, re-injected by this one natively;
# a native injection re-injected in classic mode.
for s in deployment.yaml cronjob.yaml list.yaml deployment.json; do
	b=${s/./-}
	"$CTL" inject --trust-domain example.org --image registry.example/ktls-sidecar:0.0.1 \
		--classic -f "$GOLD/$s" >"$T/old.out"
	grep -q 'registry.example/ktls-sidecar:0.0.1' "$T/old.out" || ks_fail "$b: the older image is not in its output"
	"$CTL" inject --trust-domain example.org -f "$T/old.out" >"$T/re.out"
	cmp -s "$T/re.out" "$T/out/$b-native.out" || {
		diff -u "$T/out/$b-native.out" "$T/re.out" | head -40 >&2 || true
		ks_fail "$b: re-injecting an older classic injection differs from a fresh native one"
	}
	"$CTL" inject --trust-domain example.org --classic -f "$T/out/$b-native.out" >"$T/re.out"
	cmp -s "$T/re.out" "$T/out/$b-classic.out" || {
		diff -u "$T/out/$b-classic.out" "$T/re.out" | head -40 >&2 || true
		ks_fail "$b: re-injecting a native injection in classic mode differs from a fresh classic one"
	}
done
ks_pass "re-injection under another image or mode gives exactly a fresh injection"

# ------------------------------------------------------------ what changed
# check.py: per run, the facts the schema and Pod Security checks cannot see,
# and the conversion of the output into what kubectl would read (PyYAML
# resolves YAML 1.1 as go-yaml v2 does: yes/on are booleans, 0755 is octal),
# Lists flattened, one JSON document per "---" for the validator.
cat >"$T/check.py" <<'PY'
import json, sys, yaml

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]

def flat(ds):
    for d in ds:
        if isinstance(d, dict) and d.get("kind") == "List":
            yield from d.get("items") or []
        else:
            yield d

def template(o):
    k = o.get("kind")
    if k == "Pod":
        return o
    if k == "CronJob":
        return o["spec"]["jobTemplate"]["spec"]["template"]
    if k in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return o["spec"]["template"]
    return None

def names(spec, key):
    return [c["name"] for c in spec.get(key) or []]

mode, src, inp, out, k8s = sys.argv[1:6]
want_native = mode != "classic"
ins, outs = list(flat(docs(inp))), list(flat(docs(out)))
errs = []
if len(ins) != len(outs):
    errs.append(f"{len(ins)} objects in, {len(outs)} out")
injected = 0
for i, o in zip(ins, outs):
    t = template(i)
    if t is None:
        if i != o:
            errs.append(f"{i.get('kind')} {i['metadata'].get('name')}: not a workload, but changed")
        continue
    who = f"{i.get('kind')} {i['metadata'].get('name')}"
    ot = template(o)
    spec, ospec = t["spec"], ot["spec"]
    ann = (ot.get("metadata") or {}).get("annotations") or {}
    if "ktls-sidecar.io/injected-version" not in ann:
        errs.append(f"{who}: no ktls-sidecar.io/injected-version annotation")
    injected += 1
    init, ctrs = names(ospec, "initContainers"), names(ospec, "containers")
    ours = [n for n in init + ctrs if n.startswith("ktls-")]
    want = (["ktls-redirect"] if src == "redirect" else []) + \
           (["ktls-agent"] if src in ("dev", "redirect") else []) + ["ktls-sidecar"]
    if ours != want:
        errs.append(f"{who}: ktls containers {ours}, want {want}")
    # Order: redirect, agent, sidecar; native: all lead initContainers;
    # classic: the redirect leads initContainers, the others containers.
    lead = [n for n in want if n != "ktls-redirect"]
    heads = [(init, want)] if want_native else [(init, want[:len(want) - len(lead)]), (ctrs, lead)]
    for have, w in heads:
        if have[:len(w)] != w:
            errs.append(f"{who}: {mode}: {w} should lead {have}")
    # The app's own containers, init containers and volumes are all there,
    # unchanged and in their order.
    for key in ("initContainers", "containers", "volumes"):
        mine = [c for c in ospec.get(key) or [] if not c["name"].startswith("ktls-")]
        if mine != (spec.get(key) or []):
            errs.append(f"{who}: spec.{key} of the app changed")
    for k, v in (t.get("metadata") or {}).get("annotations", {}).items():
        if ann.get(k) != v:
            errs.append(f"{who}: annotation {k} changed")
    sc = ospec.get("securityContext") or {}
    isc = spec.get("securityContext") or {}
    if "fsGroup" in isc and sc.get("fsGroup") != isc["fsGroup"]:
        errs.append(f"{who}: the pod's own fsGroup was changed")
    if src in ("dev", "files", "redirect") and "fsGroup" not in sc:
        errs.append(f"{who}: {src} needs an fsGroup, none set")
    if src in ("csi-driver-spiffe", "spire") and "fsGroup" not in isc and "fsGroup" in sc:
        errs.append(f"{who}: {src}: fsGroup set though the source needs none")
    sidecar = [c for c in ospec.get("initContainers" if want_native else "containers") if c["name"] == "ktls-sidecar"][0]
    args = " ".join(sidecar["args"])
    if "--spiffe-id=spiffe://example.org/ns/$(KTLS_POD_NAMESPACE)/sa/$(KTLS_POD_SERVICE_ACCOUNT)" not in args:
        errs.append(f"{who}: no run-time --spiffe-id")
    vols = {v["name"]: v for v in ospec.get("volumes") or []}
    if src == "spire" and "--workload-api=unix:///spiffe-workload-api/agent.sock" not in args:
        errs.append(f"{who}: spire: no --workload-api")
    if src == "files" and (vols.get("ktls-identity", {}).get("secret", {}).get("secretName") != "workload-svid"
                           or "--identity-layout=spiffe-helper" not in args):
        errs.append(f"{who}: files: no Secret volume workload-svid or layout")
    if src == "csi-driver-spiffe" and vols.get("ktls-identity", {}).get("csi", {}).get("driver") != "spiffe.csi.cert-manager.io":
        errs.append(f"{who}: csi-driver-spiffe: no CSI volume")
    if src == "dev" and mode == "native" and vols.get("ktls-ca", {}).get("secret", {}).get("secretName") != "shop-dev-ca":
        errs.append(f"{who}: dev: the CA Secret is not the configured shop-dev-ca")
    job = i.get("kind") in ("Job", "CronJob")
    delay = "0s" if (want_native or job) else "5s"
    if f"--drain-delay={delay}" not in args:
        errs.append(f"{who}: {mode}: want --drain-delay={delay}")
with open(k8s, "w") as f:
    for o in outs:
        f.write("---\n" + json.dumps(o, default=str) + "\n")
for e in errs:
    print(f"{out}: {e}")
sys.exit(1 if errs else (0 if injected else 3))
PY

check() { # NAME MODE SOURCE INPUT
	local rc=0
	$PY "$T/check.py" "$2" "$3" "$4" "$T/out/$1.out" "$T/k8s/$1.yaml" >"$T/out/$1.check" 2>&1 || rc=$?
	((rc == 0)) || { sed "s|$T/||" "$T/out/$1.check" >&2; ks_fail "$1: the injected objects are not as they should be (above)"; }
}
for f in "${inputs[@]}"; do
	b=$(basename "$f" | tr . -)
	check "$b-native" default dev "$f"
done
for s in "${subset[@]}"; do
	b=${s/./-}
	check "$b-classic" classic dev "$GOLD/$s"
	for src in dev csi-driver-spiffe spire files; do
		check "$b-$src" native "$src" "$GOLD/$s"
	done
	check "$b-files-classic" classic files "$GOLD/$s"
done
for r in "${redirected[@]}"; do
	m=native
	[[ $r == *-classic ]] && m=classic
	s=${r%-redirect*}
	check "$r" "$m" redirect "$GOLD/${s%-*}.${s##*-}"
done
ks_pass "each output carries the sidecar where its mode puts it, the identity source's args and volumes, the app's own containers and volumes unchanged, and non-workloads unchanged"

# JSON in, JSON out: the runs of deployment.json (natively, classic, four
# sources, files classic) parse as one JSON document; the YAML's do not.
n=0
for o in "$T"/out/deployment-json-*.out; do
	head -c1 "$o" | grep -q '{' || ks_fail "${o#"$T"/}: not JSON"
	$PY -c 'import json,sys; json.load(open(sys.argv[1]))' "$o" || ks_fail "${o#"$T"/}: not one JSON document"
	n=$((n + 1))
done
((n == 7)) || ks_fail "$n outputs of deployment.json, want 7"
for o in "$T"/out/*-yaml-*.out; do
	head -c1 "$o" | grep -q '{' && ks_fail "${o#"$T"/}: a YAML input came out as JSON"
done
ks_pass "the JSON input came out as JSON (7 runs), the YAML inputs as YAML"

# ------------------------------------------------------------ schema, PSS
rc=0
node "$KS_ROOT/tests/tools/k8s/k8s_validate.js" --schema-dir "$SCHEMA" "$T"/k8s/*.yaml >"$T/schema.out" 2>&1 || rc=$?
sed "s|$T/k8s/||" "$T/schema.out" | tail -n 20
((rc == 0)) || ks_fail "injected objects fail the Kubernetes API schema (above)"
grep -Eq ' 0 objects' "$T/schema.out" && ks_fail "the schema check saw no object"
ks_pass "every injected object is valid against the Kubernetes API schema, unknown fields rejected"

plain=() redir=()
for y in "$T"/k8s/*.yaml; do
	case $(basename "$y") in
	*-redirect.yaml | *-redirect-classic.yaml) redir+=("$y") ;;
	*) plain+=("$y") ;;
	esac
done
rc=0
$PY "$KS_ROOT/tests/tools/k8s/pss_check.py" "${plain[@]}" >"$T/pss.out" 2>&1 || rc=$?
sed "s|$T/k8s/||" "$T/pss.out" | tail -n 20
((rc == 0)) || ks_fail "injected pods violate Pod Security \"restricted\" (above)"
grep -q ' 0 pod specs' "$T/pss.out" && ks_fail "the restricted check saw no pod spec"
ks_pass "every injected pod passes Pod Security \"restricted\""
# With the redirect: restricted except ktls-redirect, and ktls-redirect
# does violate it (so the exemption is the only thing letting it pass).
rc=0
$PY "$KS_ROOT/tests/tools/k8s/pss_check.py" --exempt-container ktls-redirect "${redir[@]}" >"$T/pss-redirect.out" 2>&1 || rc=$?
sed "s|$T/k8s/||" "$T/pss-redirect.out" | tail -n 20
((rc == 0)) || ks_fail "redirected pods violate \"restricted\" beyond ktls-redirect (above)"
rc=0
$PY "$KS_ROOT/tests/tools/k8s/pss_check.py" "${redir[@]}" >"$T/pss-redirect-all.out" 2>&1 || rc=$?
((rc == 1)) || ks_fail "the redirected pods pass \"restricted\" even with ktls-redirect in: the check checks nothing"
grep -v '^pss_check:' "$T/pss-redirect-all.out" | grep -v ': initContainers/ktls-redirect: ' >"$T/pss-other" || true
[[ ! -s $T/pss-other ]] || { cat "$T/pss-other" >&2; ks_fail "violations other than ktls-redirect's"; }
ks_pass "with the redirect, ktls-redirect is the only container outside \"restricted\" ($(grep -c ktls-redirect "$T/pss-redirect-all.out") violations, all its own)"

# ------------------------------------------------------------ skipped
for f in "${skips[@]}"; do
	b=$(basename "${f%.*}")
	"$CTL" inject --trust-domain example.org -f "$f" >"$T/out/$b.out" 2>"$T/out/$b.err" ||
		{ cat "$T/out/$b.err" >&2; ks_fail "$b: exited $?"; }
	$PY - "$f" "$T/out/$b.out" <<'PY' || ks_fail "$b: a skipped object came out changed"
import sys, yaml
a, b = (list(yaml.safe_load_all(open(p))) for p in sys.argv[1:3])
sys.exit(0 if a == b else 1)
PY
	kind=$(awk '/^kind: /{print $2; exit}' "$f")
	name=$(awk '/^  name: /{print $2; exit}' "$f")
	ns=$(awk '/^  namespace: /{print $2; exit}' "$f")
	case $b in
	*hostnetwork*) why=hostNetwork ;;
	*istio*) why='another mesh.*istio-proxy' ;;
	*optout*) why='ktls-sidecar.io/inject is "false"' ;;
	*) why= ;; # a new skip-* input: its line must still name the object
	esac
	ks_assert_grep "$T/out/$b.err" "^ktlsctl inject: $kind $ns/$name: skipped: .*$why" "$b: no line on stderr naming the object and the reason"
	echo "  $b: $(cat "$T/out/$b.err")"
done
ks_pass "${#skips[@]} skipped inputs came out unchanged, each with its reason on stderr"

# ------------------------------------------------------------ errors
# A bad annotation: exit 5, the object and the annotation named, nothing on
# stdout (not half a stream).
bad=$T/bad.yaml
sed 's|ktls-sidecar.io/inbound: "8443=8080"|ktls-sidecar.io/inbound: "8443=80x"|' "$GOLD/app-bundle.yaml" >"$bad"
grep -q '80x' "$bad" || ks_fail "could not make the bad annotation"
rc=0
"$CTL" inject --trust-domain example.org -f "$bad" >"$T/bad.out" 2>"$T/bad.err" || rc=$?
((rc == 5)) || ks_fail "a bad annotation exited $rc, want 5"
[[ ! -s $T/bad.out ]] || ks_fail "a bad annotation still wrote to stdout"
ks_assert_grep "$T/bad.err" "Deployment shop/catalog: annotation ktls-sidecar.io/inbound: '8443=80x'" "the message does not name the object and the annotation"
echo "  $(cat "$T/bad.err")"
# Two inbound ports with the redirect (it steers one).
ks_expect_exit 5 "ReplicaSet default/echo-7d9f8c: annotation ktls-sidecar.io/inbound names 2 ports" \
	"$CTL" inject --trust-domain example.org --config "$T/redirect.yaml" -f "$GOLD/replicaset.yaml"
ks_pass "a bad annotation: exit 5 naming the object and the annotation, nothing on stdout"

ks_expect_exit 5 "$T/nonexistent.yaml: No such file" "$CTL" inject --trust-domain example.org -f "$T/nonexistent.yaml"
ks_expect_exit 5 "$T: Is a directory" "$CTL" inject --trust-domain example.org -f "$T"
ks_expect_exit 5 "$T/nonexistent.yaml: No such file" "$CTL" inject --trust-domain example.org --config "$T/nonexistent.yaml" -f "$GOLD/pod.yaml"
# A syntax error: line 13 opens a flow mapping and a quote it never closes;
# the message names that line.
sed '13s|.*|  labels: {"app: broken|' "$GOLD/pod.yaml" >"$T/syntax.yaml"
ks_expect_exit 5 "syntax.yaml: line [0-9]+: .* that starts on line 13$" "$CTL" inject --trust-domain example.org -f "$T/syntax.yaml"
ks_expect_exit 2 "unknown argument '--frobnicate'" "$CTL" inject --trust-domain example.org --frobnicate -f "$GOLD/pod.yaml"
ks_expect_exit 2 "needs a value" "$CTL" inject --trust-domain example.org -f
ks_expect_exit 5 "no trust domain: set trustDomain in the InjectorConfig, or --trust-domain" "$CTL" inject -f "$GOLD/pod.yaml"
{ cat "$T/dev.yaml"; echo ---; cat "$T/spire.yaml"; echo ---; cat "$GOLD/pod.yaml"; } >"$T/two-configs.yaml"
ks_expect_exit 5 "two InjectorConfigs in the input" "$CTL" inject --trust-domain example.org -f "$T/two-configs.yaml"
{ cat "$T/dev.yaml"; echo ---; cat "$GOLD/pod.yaml"; } >"$T/one-config.yaml"
ks_expect_exit 5 "an InjectorConfig in the input, and --config" "$CTL" inject --trust-domain example.org --config "$T/spire.yaml" -f "$T/one-config.yaml"
# One InjectorConfig in the stream is consumed, not written out.
"$CTL" inject --trust-domain example.org -f "$T/one-config.yaml" >"$T/one-config.out"
ks_assert_not_grep "$T/one-config.out" 'InjectorConfig' "the InjectorConfig in the input was written out"
ks_assert_grep "$T/one-config.out" 'secretName: shop-dev-ca' "the InjectorConfig in the input was not used"
ks_pass "errors: unreadable files, a syntax error with its line, usage (exit 2), no trust domain, two InjectorConfigs"
