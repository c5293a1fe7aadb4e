#!/usr/bin/env bash
# ktlsctl inject --serve, the admission webhook, over real HTTPS (curl with
# the test CA), the port read from its log (event=injectd_listen):
#  0. usage: --help names every flag; missing --cert, a bad certificate
#     and a bad InjectorConfig are refused before it listens;
#  1. AdmissionReviews of a Deployment's pod (owner ReplicaSet) and a Job's
#     pod (owner Job) are answered allowed with a base64 JSONPatch; the
#     patch applied to the pod (python3-jsonpatch, not our own apply) gives
#     the offline `ktlsctl inject` output of the same pod byte for byte
#     after sorting keys; the two differ (a Job's pod drains at once);
#  2. malformed JSON (HTTP 400, a refusing review with an empty uid), a review of a Deployment (allowed, not
#     patched), a review of the wrong kind (allowed: false), a body over
#     4 MiB (HTTP 413) and a pod with a bad annotation (allowed: false,
#     code 400, naming pod and annotation) get their answers, and a good
#     request after each is still served; 32 idle connections fill the
#     cap, the 33rd is closed and counted, and requests are served again
#     once they go;
#  3. in a volume laid out as the kubelet writes the chart's (..data), a
#     rotated certificate is served by new handshakes (its serial); a pair
#     whose key does not match is refused and the previous certificate
#     stays; a changed --config is used, a bad one refused; each update
#     reloads only what changed in it;
#  4. /ready, /live and /metrics on the admin port, with counters that
#     moved; SIGTERM with a request in flight: new connections are refused,
#     the request is answered, exit 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
python3 -c 'import jsonpatch' 2>/dev/null || ks_fail "python3-jsonpatch is missing (make deps)"
T=$(ks_tmpdir)
cd "$T"

# A CA and server certificates for 127.0.0.1 (curl checks the name).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
	-subj /CN=injector-test-ca -days 2 2>/dev/null
server_cert() { # NAME SERIAL
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" \
		-subj /CN=ktls-injector 2>/dev/null
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "$2" -days 2 -out "$1.crt" \
		-extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') 2>/dev/null
}
server_cert one 4097  # 0x1001
server_cert two 8194  # 0x2002
server_cert three 12291
# vol/ is laid out as the kubelet writes the chart's projected volume
# (helm/ktls-injector): config.yaml and tls/tls.{crt,key} link through
# ..data to a directory that each update replaces in one rename, then
# removes; every file is new at every update.
mkdir vol
rotate() { # VERSION CERT KEY CONFIG
	local old
	old=$(readlink vol/..data || true)
	mkdir -p "vol/..v$1/tls"
	cp "$2" "vol/..v$1/tls/tls.crt" && cp "$3" "vol/..v$1/tls/tls.key" && cp "$4" "vol/..v$1/config.yaml"
	ln -s "..v$1" vol/..data_tmp && mv -T vol/..data_tmp vol/..data
	[[ -z $old ]] || rm -rf "vol/$old"
}
cat >config.yaml <<'YAML'
apiVersion: ktls-sidecar.io/v1alpha1
kind: InjectorConfig
trustDomain: example.org
YAML
rotate 1 one.crt one.key config.yaml
ln -s ..data/config.yaml vol/config.yaml && ln -s ..data/tls vol/tls

# --- 0. usage
"$KS_CTL" inject --serve --help >help || ks_fail "inject --serve --help did not exit 0"
for f in --serve --cert --key --config --admin --trust-domain --classic --native --image \
	--identity-source --log-level --log-format 'Exit status'; do
	grep -q -- "$f" help || ks_fail "inject --serve --help does not mention $f"
done
ks_expect_exit 2 "--cert FILE and --key FILE are required" "$KS_CTL" inject --serve 127.0.0.1:0
ks_expect_exit 2 "unknown argument '--bogus'" "$KS_CTL" inject --serve 127.0.0.1:0 --bogus
ks_expect_exit 2 "--log-level 'loud'" "$KS_CTL" inject --serve 127.0.0.1:0 --log-level loud
ks_expect_exit 5 "event=injectd_failed reason=\"--key does not match --cert" \
	"$KS_CTL" inject --serve 127.0.0.1:0 --admin none --cert one.crt --key two.key --config config.yaml
ks_expect_exit 5 "event=injectd_failed reason=\"--cert" \
	"$KS_CTL" inject --serve 127.0.0.1:0 --admin none --cert missing.crt --key one.key --config config.yaml
printf 'apiVersion: ktls-sidecar.io/v1alpha1\nkind: InjectorConfig\ntrustDomain: example.org\nbogus: 1\n' >bad.yaml
ks_expect_exit 5 "event=injectd_failed reason=\"--config bad.yaml: .*bogus" \
	"$KS_CTL" inject --serve 127.0.0.1:0 --admin none --cert one.crt --key one.key --config bad.yaml
ks_pass "usage: --help names every flag; bad flags exit 2; a bad pair, a missing cert, a bad config exit 5"

ks_bg "$T/hook.log" "$KS_CTL" inject --serve 127.0.0.1:0 --admin 127.0.0.1:0 \
	--cert vol/tls/tls.crt --key vol/tls/tls.key --config vol/config.yaml >/dev/null
HOOK_PID=$KS_BG_PID
ks_wait_log hook.log 'event=injectd_listen listen=127\.0\.0\.1:[0-9]+ admin=127\.0\.0\.1:[0-9]+'
PORT=$(sed -n 's/.*event=injectd_listen listen=127\.0\.0\.1:\([0-9]*\) .*/\1/p' hook.log)
ADMIN=$(sed -n 's/.*event=injectd_listen .* admin=127\.0\.0\.1:\([0-9]*\) .*/\1/p' hook.log)

# post FILE OUT: the HTTP status on stdout, the body in OUT. No
# "Expect: 100-continue" (the API server never sends it, and curl would
# wait a second for a 100 that does not come).
post() {
	curl -sS --cacert ca.crt -H 'Content-Type: application/json' -H 'Expect:' \
		--data-binary "@$1" -o "$2" -w '%{http_code}' "https://127.0.0.1:$PORT/inject"
}

# review FILE UID OWNER ANNOTATIONS_JSON [KIND] [TOPKIND]: a review of a
# pod as the API server sends it for a controller's pod (generateName).
review() {
	python3 - "$@" <<'PY'
import json, sys
out, uid, owner, ann = sys.argv[1:5]
kind = sys.argv[5] if len(sys.argv) > 5 else "Pod"
top = sys.argv[6] if len(sys.argv) > 6 else "AdmissionReview"
meta = {"generateName": "cart-7d9f8c-", "namespace": "shop", "labels": {"app": "cart"},
        "annotations": json.loads(ann)}
if owner:
    meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": "cart-7d9f8c",
                                "uid": "8d1b5c5e-1b2c-4a51-9f8b-0c9d2b1e7a11",
                                "controller": True, "blockOwnerDeletion": True}]
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
       "spec": {"serviceAccountName": "cart", "restartPolicy": "Always",
                "containers": [{"name": "app", "image": "shop/cart:1.2",
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}]}],
                "volumes": [{"name": "data", "emptyDir": {}}]}}
rev = {"apiVersion": "admission.k8s.io/v1", "kind": top,
       "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": kind},
                   "resource": {"group": "", "version": "v1", "resource": "pods"},
                   "namespace": "shop", "operation": "CREATE",
                   "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                   "object": pod, "oldObject": None, "dryRun": False}}
json.dump(rev, open(out, "w"))
json.dump(pod, open(out + ".pod", "w"))
PY
}

# check_patched REVIEW ANSWER: the answer is allowed with a patch, which
# applied to the review's pod (python3-jsonpatch) gives `ktlsctl inject`
# of the same pod; prints the patched pod, keys sorted.
check_patched() {
	python3 - "$1" "$2" <<'PY' >"$2.patched"
import base64, json, sys, jsonpatch
rev, ans = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
r = ans["response"]
assert ans["apiVersion"] == "admission.k8s.io/v1" and ans["kind"] == "AdmissionReview", ans
assert r["uid"] == rev["request"]["uid"], r
assert r["allowed"] is True and r["patchType"] == "JSONPatch", r
patch = json.loads(base64.b64decode(r["patch"], validate=True))
pod = jsonpatch.apply_patch(rev["request"]["object"], patch)
print(json.dumps(pod, sort_keys=True))
PY
	"$KS_CTL" inject --config vol/config.yaml -o json -f "$1.pod" |
		python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))' >"$2.cli"
	cmp -s "$2.patched" "$2.cli" || {
		diff <(python3 -m json.tool "$2.patched") <(python3 -m json.tool "$2.cli") | head -40 >&2
		ks_fail "$1: the patched pod differs from ktlsctl inject's"
	}
}

# --- 1. a Deployment's pod and a Job's pod
review rs.json 0f6a5c2e-0001 ReplicaSet '{"ktls-sidecar.io/inbound": "8443=8080"}'
review job.json 0f6a5c2e-0002 Job '{"ktls-sidecar.io/inbound": "8443=8080"}'
[[ $(post rs.json rs.ans) == 200 ]] || ks_fail "Deployment's pod: not 200: $(cat rs.ans)"
check_patched rs.json rs.ans
[[ $(post job.json job.ans) == 200 ]] || ks_fail "Job's pod: not 200: $(cat job.ans)"
check_patched job.json job.ans
! cmp -s rs.ans.patched job.ans.patched || ks_fail "a Job's pod was injected like a Deployment's"
grep -q '"ktls-sidecar.io/injected-version"' rs.ans.patched || ks_fail "no injected-version annotation"
ks_assert_grep hook.log 'event=admission result=injected http=200 uid="0f6a5c2e-0001" what="Pod shop/cart-7d9f8c-\* \(ReplicaSet cart-7d9f8c\)" patch_ops=[1-9]' \
	"no log line for the Deployment's pod"
ks_assert_grep hook.log 'event=admission result=injected http=200 uid="0f6a5c2e-0002" .*\(Job cart-7d9f8c\)' \
	"no log line for the Job's pod"
ks_pass "a Deployment's pod and a Job's pod: allowed with a JSONPatch that gives ktlsctl inject's pod byte for byte (sorted keys)"

# --- 2. bad input, and a good request after each
good_again() {
	[[ $(post rs.json again.ans) == 200 ]] || ks_fail "after $1: a good request was not served"
	check_patched rs.json again.ans
	ks_alive "$HOOK_PID" "the webhook exited after $1"
}
printf '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":' >malformed.json
[[ $(post malformed.json m.ans) == 400 ]] || ks_fail "malformed JSON: not 400: $(cat m.ans)"
python3 - m.ans <<'PY' || ks_fail "malformed JSON: answer '$(cat m.ans)'"
import json, sys
r = json.load(open(sys.argv[1]))  # a review, refusing, whatever came in
resp = r["response"]
assert r["kind"] == "AdmissionReview" and resp["uid"] == "" and resp["allowed"] is False, r
assert resp["status"]["code"] == 400 and resp["status"]["message"].startswith("not JSON: "), r
PY
good_again "malformed JSON"

review deploy.json 0f6a5c2e-0003 "" '{"ktls-sidecar.io/inbound": "8443=8080"}' Deployment
[[ $(post deploy.json d.ans) == 200 ]] || ks_fail "a Deployment review: not 200"
python3 - d.ans <<'PY' || ks_fail "a Deployment review: $(cat d.ans)"
import json, sys
r = json.load(open(sys.argv[1]))["response"]
assert r["uid"] == "0f6a5c2e-0003" and r["allowed"] is True and "patch" not in r, r
assert "not core/v1 Pod" in r["status"]["message"], r
PY
review wrongkind.json 0f6a5c2e-0004 "" '{"ktls-sidecar.io/inbound": "8443=8080"}' Pod ConversionReview
[[ $(post wrongkind.json w.ans) == 200 ]] || ks_fail "wrong kind: not 200"
python3 - w.ans <<'PY' || ks_fail "wrong kind: $(cat w.ans)"
import json, sys
r = json.load(open(sys.argv[1]))["response"]
assert r["allowed"] is False and r["status"]["code"] == 400, r
assert "kind ConversionReview" in r["status"]["message"], r
PY
good_again "a wrong kind"

head -c $((4 * 1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >big.json
[[ $(post big.json big.ans) == 413 ]] || ks_fail "a body over 4 MiB: not 413: $(head -c 200 big.ans)"
good_again "an oversized body"

review badann.json 0f6a5c2e-0005 ReplicaSet '{"ktls-sidecar.io/inbound": "80x"}'
[[ $(post badann.json b.ans) == 200 ]] || ks_fail "a bad annotation: not 200"
python3 - b.ans <<'PY' || ks_fail "a bad annotation: $(cat b.ans)"
import json, sys
r = json.load(open(sys.argv[1]))["response"]
assert r["allowed"] is False and r["status"]["code"] == 400 and "patch" not in r, r
m = r["status"]["message"]
assert "Pod shop/cart-7d9f8c-* (ReplicaSet cart-7d9f8c)" in m and "ktls-sidecar.io/inbound" in m, m
PY
good_again "a bad annotation"
ks_pass "malformed JSON (400), a Deployment (allowed, unpatched), a wrong kind (refused), 4 MiB + 1 (413), a bad annotation (refused, named): each answered, and the next request served"

# The connection cap: 32 connections that never start their handshake
# hold every slot; the 33rd is closed at once and counted; once they go,
# requests are served again.
gauge() {
	curl -sS "http://127.0.0.1:$ADMIN/metrics" | sed -n "s/^$1 \([0-9]*\)$/\1/p"
}
wait_gauge() { # METRIC VALUE
	for _ in $(seq 200); do [[ $(gauge "$1") == "$2" ]] && return 0; sleep 0.05; done
	ks_fail "$1 is $(gauge "$1"), not $2"
}
idle=()
for _ in $(seq 32); do
	exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
	idle+=("$fd")
done
wait_gauge 'ktls_injector_connections{listener="https"}' 32
rc=0
post rs.json full.ans >/dev/null 2>&1 || rc=$?
((rc != 0)) || ks_fail "a 33rd connection was served"
[[ $(gauge ktls_injector_connections_refused_total) == 1 ]] || ks_fail "the 33rd connection was not counted"
for fd in "${idle[@]}"; do exec {fd}>&-; done
wait_gauge 'ktls_injector_connections{listener="https"}' 0
good_again "a full house"
ks_pass "32 connections at once: the 33rd closed and counted; served again once they went"

# --- 3. rotation
# wait_count REGEX N: until hook.log has N lines matching REGEX (a reload
# of one file must not be taken for the next one's).
wait_count() {
	for _ in $(seq 200); do
		(($(ks_count hook.log "$1") >= $2)) && return 0
		sleep 0.05
	done
	ks_fail "hook.log: fewer than $2 lines matching /$1/: $(grep -E 'reload' hook.log)"
}
served_serial() {
	timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -CAfile ca.crt </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
wait_serial() { # HEX
	local seen=
	for _ in $(seq 100); do
		seen=$(served_serial)
		[[ $seen =~ ^0*$1$ ]] && return 0
		sleep 0.1
	done
	ks_fail "the webhook serves serial '$seen', not $1"
}
[[ $(served_serial) =~ ^0*1001$ ]] || ks_fail "not serving the first certificate"
rotate 2 two.crt two.key config.yaml
wait_serial 2002
wait_count 'event=cert_reload result=ok' 1
[[ $(post rs.json rot.ans) == 200 ]] || ks_fail "no answer with the new certificate"
# A certificate whose key is not the one beside it: refused, the old one stays.
rotate 3 three.crt two.key config.yaml
wait_count 'event=cert_reload result=refused reason=".*--key does not match --cert' 1
[[ $(served_serial) =~ ^0*2002$ ]] || ks_fail "a refused pair replaced the served certificate"
[[ $(post rs.json rot2.ans) == 200 ]] || ks_fail "no answer after a refused pair"
# The config: classic mode is used at once; a bad config is refused.
printf 'apiVersion: ktls-sidecar.io/v1alpha1\nkind: InjectorConfig\ntrustDomain: example.org\nmode: classic\n' >classic.yaml
rotate 4 three.crt two.key classic.yaml
wait_count 'event=config_reload result=ok' 1
[[ $(post rs.json classic.ans) == 200 ]] || ks_fail "no answer after a config reload"
check_patched rs.json classic.ans # against `ktlsctl inject --config` of the new file
cmp -s classic.ans.patched rs.ans.patched && ks_fail "the reloaded config (mode: classic) is not used"
rotate 5 three.crt two.key bad.yaml
wait_count 'event=config_reload result=refused reason="--config vol/config.yaml: .*bogus' 1
[[ $(post rs.json still.ans) == 200 ]] || ks_fail "no answer after a refused config"
python3 - still.ans classic.ans <<'PY' || ks_fail "a refused config changed the injection"
import json, sys
a, b = (json.load(open(f))["response"]["patch"] for f in sys.argv[1:3])
assert a == b
PY
# Each update reloaded what changed in it, once: the certificate twice
# (2, 3), the config twice (4, 5).
(($(ks_count hook.log 'event=cert_reload') == 2)) || ks_fail "cert reloads: $(grep -E reload hook.log)"
(($(ks_count hook.log 'event=config_reload') == 2)) || ks_fail "config reloads: $(grep -E reload hook.log)"
ks_pass "rotation: a new pair is served (serial 1001 -> 2002), a mismatched pair refused and the old one kept; a new config used, a bad one refused"

# --- 4. the admin port
ready=$(curl -sS "http://127.0.0.1:$ADMIN/ready") || ks_fail "admin /ready failed"
[[ $ready == ready ]] || ks_fail "admin /ready: '$ready'"
[[ $(curl -sS "http://127.0.0.1:$ADMIN/live") == live ]] || ks_fail "admin /live"
[[ $(curl -sS --cacert ca.crt "https://127.0.0.1:$PORT/ready") == ready ]] || ks_fail "HTTPS /ready"
curl -sS "http://127.0.0.1:$ADMIN/metrics" >metrics || ks_fail "admin /metrics failed"
metric() { sed -n "s/^$1 \([0-9.e+]*\)$/\1/p" metrics; }
(($(metric 'ktls_injector_requests_total{result="injected"}') >= 10)) || ks_fail "injected count: $(grep requests_total metrics)"
(($(metric 'ktls_injector_requests_total{result="refused"}') == 2)) || ks_fail "refused count: $(grep requests_total metrics)"
(($(metric 'ktls_injector_requests_total{result="skipped"}') == 1)) || ks_fail "skipped count: $(grep requests_total metrics)"
(($(metric 'ktls_injector_requests_total{result="error"}') == 1)) || ks_fail "error count: $(grep requests_total metrics)"
(($(metric 'ktls_injector_http_errors_total') >= 1)) || ks_fail "the 413 was not counted"
(($(metric 'ktls_injector_cert_reloads_total{result="ok"}') >= 1)) || ks_fail "cert reloads: $(grep cert_reloads metrics)"
(($(metric 'ktls_injector_cert_reloads_total{result="refused"}') >= 1)) || ks_fail "cert reloads: $(grep cert_reloads metrics)"
(($(metric 'ktls_injector_config_reloads_total{result="refused"}') >= 1)) || ks_fail "config reloads: $(grep config_reloads metrics)"
na=$(openssl x509 -noout -enddate -in two.crt | cut -d= -f2)
[[ $(metric ktls_injector_cert_not_after_seconds) == $(date -d "$na" +%s) ]] ||
	ks_fail "cert_not_after_seconds is not the served certificate's ($na)"
grep -Eq '^process_resident_memory_bytes [1-9]' metrics || ks_fail "no process metrics"
# A request the admin port does not serve.
[[ $(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$ADMIN/metrics") == 405 ]] ||
	ks_fail "admin POST /metrics is not 405"
ks_pass "admin: /ready, /live, /metrics with requests, reloads and the served certificate's notAfter"

# SIGTERM with a request in flight (its head and half its body sent):
# the listener closes, the request is finished and answered, then exit 0.
cat >inflight.py <<'PY'
import os, socket, ssl, sys, time
port, body, go = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
ctx = ssl.create_default_context(cafile="ca.crt")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
head = ("POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: %d\r\n\r\n" % len(body)).encode()
s.sendall(head + body[: len(body) // 2])
print("sent", flush=True)
for _ in range(200):
    if os.path.exists(go):
        break
    time.sleep(0.05)
s.sendall(body[len(body) // 2 :])
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n", 1)[0].decode(), flush=True)
PY
ks_bg inflight.out python3 inflight.py "$PORT" rs.json go >/dev/null
INFLIGHT_PID=$KS_BG_PID
ks_wait_log inflight.out '^sent$'
kill -TERM "$HOOK_PID"
ks_wait_log hook.log 'event=drain signal='
rc=0
curl -sS --cacert ca.crt -o /dev/null "https://127.0.0.1:$PORT/ready" 2>/dev/null || rc=$?
((rc == 7)) || ks_fail "a new connection during the drain: curl exit $rc, want 7 (refused)"
ks_alive "$HOOK_PID" "the webhook left with a request in flight"
touch go
wait "$INFLIGHT_PID" || ks_fail "the in-flight client failed: $(cat inflight.out)"
ks_assert_grep inflight.out '^HTTP/1.1 200 OK$' "the in-flight request was not answered"
rc=0
wait "$HOOK_PID" || rc=$?
((rc == 0)) || ks_fail "SIGTERM: exit $rc, want 0"
ks_assert_grep hook.log 'event=drained connections_waited=[1-9]' "no drain on SIGTERM"
ks_pass "SIGTERM: the listener closes, the request in flight is answered, exit 0"
