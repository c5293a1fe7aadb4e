#!/usr/bin/env bash
# The chart's file identity sources, run for real: for identity.source=files
# (a Secret, the kubelet's volume) and identity.source=csi-driver-spiffe
# (cert-manager's CSI volume), the rendered sidecar command line runs
# against a directory laid out as that volume is (the rendered Secret's
# items, or tls.crt/tls.key/ca.crt; the kubelet's atomic-writer layout:
# files as symlinks through ..data to a ..<timestamp> directory), with only
# the pod's paths and ports mapped to this machine:
#   - the admin port's /ready (the chart's probes) answers 200;
#   - a real mTLS client (Python's ssl) is shown the chart's SPIFFE ID
#     (spiffe://example.org/ns/shop/sa/demo) and the first serial, and its
#     bytes come back from the app;
#   - the volume is rotated (a new ..<timestamp> directory, ..data swapped
#     to it, as the kubelet and csi-lib's atomic writer do) and new
#     handshakes present the new serial, with no signal sent;
#   - `ktlsctl status` and /metrics show what the README says they show
#     (the identity, identity_updates_total{source="files"}, the expiry).
# The SPIRE source (--workload-api) is checked in the render only
# (t_helm_render.sh): its client is another branch's work, and here is no
# Workload API server to run it against.
# Waits have generous bounds; nothing here measures time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
command -v curl >/dev/null || ks_skip "curl not installed"
PY=/usr/bin/python3 # Debian's, where python3-yaml is installed (make deps)
$PY -c 'import yaml' 2>/dev/null || ks_fail "python3-yaml is missing (make deps)"
source "$KS_ROOT/tests/lib/helm.sh"
CHART=$KS_ROOT/helm/ktls-sidecar
T=$(ks_tmpdir)
ID=spiffe://example.org/ns/shop/sa/demo

"$KS_PKI" ca "$T/ca"
"$KS_PKI" issue "$T/ca" client spiffe://example.org/ns/shop/sa/client &
"$KS_PKI" issue "$T/ca" v1 "$ID" --serial 4242 &
"$KS_PKI" issue "$T/ca" v2 "$ID" --serial 4343 &
wait
ks_echo_server "$T/echo.log" echo

# atomic_write VOL NAME CRT KEY: the identity as the kubelet's atomic writer
# (pkg/volume/util/atomic_writer.go) leaves it: the files in a new
# VOL/..NAME, a ..data_tmp symlink to it renamed over ..data, the old
# directory removed; VOL's names are symlinks through ..data, made once.
# The names are VOL/.names (the rendered items, or csi-driver-spiffe's).
atomic_write() {
	local v=$1 name=$2 crt=$3 key=$4 old="" f src names
	[[ -L $v/..data ]] && old=$(readlink "$v/..data")
	mkdir "$v/..$name"
	read -r -a names <"$v/.names"
	for f in "${names[@]}"; do
		case $f in
		*crt | svid.pem | cert.pem) src=$crt ;;
		*key | svid_key.pem | key.pem) src=$key ;;
		esac
		[[ $f == ca.crt || $f == svid_bundle.pem || $f == ca.pem ]] && src=$T/ca/bundle.crt
		cp "$src" "$v/..$name/$f"
		chmod 0440 "$v/..$name/$f"
	done
	ln -s "..$name" "$v/..data_tmp"
	mv -T "$v/..data_tmp" "$v/..data"
	[[ -z $old ]] || rm -rf "${v:?}/$old"
	for f in "${names[@]}"; do [[ -L $v/$f ]] || ln -s "..data/$f" "$v/$f"; done
}

# tls_peer PORT MSG: an mTLS client; prints the server's URI SANs, its
# serial (hex), then what came back.
tls_peer() {
	timeout 20 "$PY" "$KS_ROOT/tests/tools/tls_echo.py" --serial 127.0.0.1 "$1" "$T/ca/bundle.crt" "$T/ca/client.crt" "$T/ca/client.key" "$2"
}

# run_source NAME HELM-ARGS...: render, lay out the volume, run, check, rotate.
run_source() {
	local name=$1 d=$T/$1
	shift
	mkdir -p "$d/vol" && mkdir -m 0777 "$d/run" # the volume; the control socket's emptyDir
	"$HELM" template demo "$CHART" --namespace shop $KS_POST --set trustDomain=example.org \
		--set workload.image=registry.example/app:1 "$@" >"$d/render.yaml" || ks_fail "$name: render failed"
	# The sidecar's argv with the pod's paths and ports mapped here, and the
	# names the volume holds (the Secret's items; csi-driver-spiffe's files).
	$PY - "$d" "$KS_BIN" "$KS_ECHO_PORT" "$KS_ROOT/tests/tools/k8s" <<'PY' || ks_fail "$name: the render is not what this test expects"
import sys, yaml
d, sbin, app, k8s = sys.argv[1:]
sys.path.insert(0, k8s)
import kubelet
docs = [x for x in yaml.safe_load_all(open(d + "/render.yaml")) if x]
pod = next(x for x in docs if x["kind"] == "Deployment")["spec"]["template"]["spec"]
conts = pod.get("initContainers", []) + pod["containers"]
assert [c["name"] for c in conts] == ["ktls-sidecar", "app"], [c["name"] for c in conts]
sc = conts[0]
mnt = next(m for m in sc["volumeMounts"] if m["name"] == "ktls-identity")["mountPath"]
vol = next(v for v in pod["volumes"] if v["name"] == "ktls-identity")
if "secret" in vol:
    names = [i["path"] for i in vol["secret"]["items"]]
else:
    assert vol["csi"]["driver"] == "spiffe.csi.cert-manager.io", vol
    names = ["tls.crt", "tls.key", "ca.crt"]  # what csi-driver-spiffe writes (ca.crt with its CA bundle)
open(d + "/vol/.names", "w").write(" ".join(names) + "\n")
argv = []
for a in kubelet.argv(sc, {"namespace": "shop"}, pod):
    a = a.replace("/usr/bin/ktls-sidecar", sbin).replace(mnt, d + "/vol").replace("/run/ktls-sidecar", d + "/run")
    a = a.replace("0.0.0.0:8443", "127.0.0.1:0").replace("127.0.0.1:8080", "127.0.0.1:" + app)
    argv.append(a.replace("--admin=0.0.0.0:15020", "--admin=127.0.0.1:0"))
open(d + "/argv", "w").write("\0".join(argv))
print(f"  {d.rsplit('/', 1)[1]}: the volume at {mnt} holds {' '.join(names)}; sidecar args: "
      + " ".join(a for a in sc["args"] if a.startswith(("--identity", "--spiffe-id"))))
PY
	atomic_write "$d/vol" 2026_12_01_00_00_00.000000001 "$T/ca/v1.crt" "$T/ca/v1.key"
	local argv
	mapfile -d '' argv <"$d/argv"
	ks_bg "$d/sidecar.log" "${argv[@]}" >/dev/null
	local pid=$KS_BG_PID port admin sock out
	ks_wait_log "$d/sidecar.log" 'event=ready' 20 || { cat "$d/sidecar.log"; ks_fail "$name: the rendered sidecar never became ready"; }
	port=$(sed -n 's/.*event=route .*listen=.*:\([0-9][0-9]*\) target=.*/\1/p' "$d/sidecar.log")
	admin=$(ks_admin_port "$d/sidecar.log")
	[[ $port =~ ^[0-9]+$ && $admin =~ ^[0-9]+$ ]] || ks_fail "$name: no listening or admin port in the log ('$port', '$admin')"
	out=$(curl -s -o "$d/ready.out" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$admin/ready" || true)
	[[ $out == 200 ]] || ks_fail "$name: /ready answers $out: $(cat "$d/ready.out")"
	tls_peer "$port" "hello $name" >"$d/tls1.out" 2>&1 || { cat "$d/tls1.out"; ks_fail "$name: no mTLS through the rendered sidecar"; }
	[[ $(sed -n 1p "$d/tls1.out") == "$ID" ]] || ks_fail "$name: the sidecar presents '$(sed -n 1p "$d/tls1.out")', not $ID"
	[[ $(sed -n 2p "$d/tls1.out") == 1092 ]] || ks_fail "$name: serial $(sed -n 2p "$d/tls1.out"), want 1092 (4242)"
	[[ $(sed -n 3p "$d/tls1.out") == "hello $name" ]] || ks_fail "$name: no echo: $(cat "$d/tls1.out")"
	ks_pass "$name: the rendered sidecar on its volume: /ready 200, mTLS as $ID (serial 4242), echo intact"

	# Rotation, no signal: a new ..<timestamp> directory, ..data swapped.
	atomic_write "$d/vol" 2026_12_01_01_00_00.000000002 "$T/ca/v2.crt" "$T/ca/v2.key"
	ks_wait_log "$d/sidecar.log" 'event=identity_reloaded source=files .*serial=0*10F7 ' 10 ||
		{ cat "$d/sidecar.log"; ks_fail "$name: the rotated volume was not taken"; }
	tls_peer "$port" "again $name" >"$d/tls2.out" 2>&1 || { cat "$d/tls2.out"; ks_fail "$name: no mTLS after the rotation"; }
	[[ $(sed -n 2p "$d/tls2.out") == 10F7 && $(sed -n 1p "$d/tls2.out") == "$ID" ]] ||
		ks_fail "$name: after the rotation new handshakes see $(paste -sd' ' "$d/tls2.out"), want $ID serial 10F7 (4343)"
	# What the README says an operator sees.
	sock=$(printf '%s\n' "${argv[@]}" | sed -n 's/^--control-socket=//p')
	"$KS_CTL" --socket "$sock" status >"$d/status.out" 2>&1 || { cat "$d/status.out"; ks_fail "$name: ktlsctl status failed"; }
	grep -q -- "$ID" "$d/status.out" || { cat "$d/status.out"; ks_fail "$name: ktlsctl status does not show $ID"; }
	grep -qi '10F7\|4343' "$d/status.out" || { cat "$d/status.out"; ks_fail "$name: ktlsctl status does not show the new serial"; }
	curl -s --max-time 5 "http://127.0.0.1:$admin/metrics" >"$d/metrics.out" || ks_fail "$name: no /metrics"
	grep -Eq '^ktls_sidecar_identity_updates_total\{source="files",result="accepted"\} [1-9]' "$d/metrics.out" ||
		{ grep identity "$d/metrics.out"; ks_fail "$name: /metrics does not count the rotation"; }
	grep -Eq '^ktls_sidecar_identity_cert_expiration_timestamp_seconds [0-9]' "$d/metrics.out" ||
		ks_fail "$name: /metrics has no certificate expiry"
	echo "  $name: ktlsctl status:"
	sed 's/^/    /' "$d/status.out" | head -12
	grep -E '^ktls_sidecar_identity_(cert_expiration|updates_total\{source="files")' "$d/metrics.out" | sed 's/^/    /'
	ks_alive "$pid" "$name: the sidecar died"
	ks_pass "$name: rotated like the kubelet (..data swap), no signal: new handshakes present serial 4343; ktlsctl status and /metrics show it"
}

run_source files --set identity.source=files --set identity.files.secretName=web-tls
run_source csi-driver-spiffe --set identity.source=csi-driver-spiffe
