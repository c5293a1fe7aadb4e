#!/usr/bin/env bash
# The OCI image (`make image`, `make image-save`), checked from the image
# itself, with the build folder's container storage (image/podman.sh):
#  1. make image builds it (or reuses it: the stamp holds its ID) and make
#     image-save writes the archive; the tag is the chart's appVersion
#     (read here with a YAML parser), and make really reads it from the
#     chart (another Chart.yaml gives another version, none is an error);
#  2. podman image inspect: user 1337:1337, linux/amd64, the OCI labels;
#  3. the filesystem of its one layer (from the saved archive): only the
#     expected files (the three binaries, libraries, loader, passwd, group,
#     nsswitch.conf, licences), no shell, everything root's, nothing
#     setuid or writable by others, every symlink resolves inside; the
#     same check catches a planted /bin/sh, a setuid binary, a file owned
#     by 1337 and a group-writable library in a copy of the rootfs;
#  4. containers of it (runc, no network): the three binaries run; /bin/sh
#     is not there to run; a sidecar from it, with a read-only root, runs
#     as 1337 with containers.conf's descriptor limit; `ktlsctl wait-ready` inside it exits 1 with "503 ... no
#     identity" (default --admin), and after push-identity over the control
#     socket exits 0, asking for "localhost" (getaddrinfo in the image);
#  5. the archive is a valid OCI image layout (every blob's digest and
#     size), named docker.io/library/ktls-sidecar:VERSION for containerd;
#     the checker rejects a corrupted blob; podman loads it into empty
#     storage with the same image ID, and runs it.
# Prints the image's size and its file list. Leaves no container and no
# cgroup behind, and changes no netfilter rule.
set -euo pipefail
# The build folder the binaries are in (before sidecar.sh may copy them).
BUILD_DIR=$(cd "$(dirname "${KS_BIN:-$(dirname "$0")/../../../build/ktls-sidecar}")" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

# make asan runs every scenario against build/asan: an image of sanitized
# binaries is not a product, and their reports could not leave the
# container. make test runs this scenario on the plain build.
if [[ -n ${KS_SANITIZED:-} && ${KS_SANITIZED:-0} != 0 ]]; then
	echo "PASS: nothing checked under KS_SANITIZED=$KS_SANITIZED: the image is made from the plain build (make test)"
	exit 0
fi
for tool in podman buildah runc python3; do
	command -v "$tool" >/dev/null || ks_fail "$tool is missing (make deps installs it)"
done

T=$(ks_tmpdir)
# podman's overlay driver mounts its storage's overlay/ directory on itself,
# and a podman command that fails can leave that mount behind; nothing of
# ours stays mounted (run before the removal of $T).
unmount_under() {
	findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r | xargs -r -n 1 umount
}
ks_cleanup_add unmount_under "$T"
ctr() { "$KS_ROOT/image/podman.sh" "$BUILD_DIR" "$@"; }
netfilter() { { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } | sed '/^#/d; s/\[[0-9]*:[0-9]*\]//g'; }
netfilter >"$T/nf.before"

# --- 1. build (or reuse), save; the version is the chart's
VERSION=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["appVersion"])' \
	"$KS_ROOT/helm/ktls-sidecar/Chart.yaml")
[[ -n $VERSION ]] || ks_fail "no appVersion in the chart"
IMAGE=localhost/ktls-sidecar:$VERSION
ARCHIVE=$BUILD_DIR/ktls-sidecar-$VERSION.oci.tar
start=$EPOCHREALTIME
ks_make BUILD="$BUILD_DIR" image image-save >"$T/make.out" 2>&1 ||
	{ cat "$T/make.out"; ks_fail "make image image-save failed"; }
secs=$(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")
[[ -s $BUILD_DIR/image/image-id && -s $ARCHIVE ]] || ks_fail "make image left no stamp or no archive"
ID=$(cat "$BUILD_DIR/image/image-id")
[[ $(ctr podman image inspect --format '{{.Id}}' "$IMAGE") == "$ID" ]] ||
	ks_fail "$IMAGE is not the image the stamp names ($ID)"
# The Makefile's version is the chart's, not a copy of it.
sed "s/^appVersion:.*/appVersion: \"9.8.7-test\"/" "$KS_ROOT/helm/ktls-sidecar/Chart.yaml" >"$T/Chart.yaml"
[[ $(ks_make BUILD="$BUILD_DIR" CHART_YAML="$T/Chart.yaml" image-version) == 9.8.7-test ]] ||
	ks_fail "make does not take the version from the chart's appVersion"
grep -v '^appVersion:' "$KS_ROOT/helm/ktls-sidecar/Chart.yaml" >"$T/Chart-none.yaml"
ks_expect_exit 2 "no appVersion in $T/Chart-none.yaml" \
	ks_make BUILD="$BUILD_DIR" CHART_YAML="$T/Chart-none.yaml" image-version
ks_pass "make image image-save (${secs}s): $IMAGE ($ID); the tag follows the chart's appVersion"

# --- 2. inspect
ctr podman image inspect "$IMAGE" >"$T/inspect.json"
python3 - "$T/inspect.json" "$VERSION" "$IMAGE" <<'EOF' || ks_fail "podman image inspect: see above"
import json, sys
img = json.load(open(sys.argv[1]))[0]
version, name = sys.argv[2], sys.argv[3]
labels = img["Config"].get("Labels") or {}
want = {
    "user": (img["Config"].get("User"), "1337:1337"),
    "architecture": (img["Architecture"], "amd64"),
    "os": (img["Os"], "linux"),
    "entrypoint": (img["Config"].get("Entrypoint"), ["/usr/bin/ktls-sidecar"]),
    "label version": (labels.get("org.opencontainers.image.version"), version),
    "label licenses": (labels.get("org.opencontainers.image.licenses"), "Apache-2.0"),
    "label title": (labels.get("org.opencontainers.image.title"), "ktls-sidecar"),
    "tag": (name in img["RepoTags"], True),
    "layers": (len(img["RootFS"]["Layers"]), 1),
}
bad = ["%s: %r, want %r" % (k, got, w) for k, (got, w) in want.items() if got != w]
if len(labels.get("org.opencontainers.image.revision", "")) != 40:
    bad.append("label revision: %r, want a commit" % labels.get("org.opencontainers.image.revision"))
for b in bad:
    print("  " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
SIZE=$(ctr podman image inspect --format '{{.Size}}' "$IMAGE")
ks_pass "inspect: user 1337:1337, linux/amd64, one layer, OCI labels (version $VERSION, Apache-2.0, revision)"

# --- 3. the filesystem, from the saved archive's layer
mkdir "$T/oci"
tar -C "$T/oci" -xf "$ARCHIVE"
LAYER=$T/oci/blobs/sha256/$(python3 -c '
import json, sys
d = sys.argv[1]
m = json.load(open(d + "/index.json"))["manifests"][0]["digest"][7:]
print(json.load(open(d + "/blobs/sha256/" + m))["layers"][0]["digest"][7:])' "$T/oci")
cat >"$T/fscheck.py" <<'EOF'
# fscheck.py list|check TAR: the image's files, or what is wrong with them.
import posixpath, re, stat, sys, tarfile

SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox", "toybox"}
ALLOWED = [r"usr/bin/(ktls-sidecar|ktlsctl|ktls-redirect)", r"usr/lib/x86_64-linux-gnu/[^/]+\.so(\.[0-9.]+)?",
           r"usr/sbin/xtables-nft-multi", r"usr/lib/x86_64-linux-gnu/xtables/libxt_[A-Za-z]+\.so",
           r"usr/lib/x86_64-linux-gnu/lib[a-z0-9_+-]+-[0-9.]+\.so", r"etc/(passwd|group|nsswitch\.conf)",
           r"usr/share/doc/[^/]+/copyright"]
EXEC_OK = [r"usr/bin/[^/]+", r"usr/sbin/xtables-nft-multi", r"usr/lib/x86_64-linux-gnu/(ld-linux-x86-64\.so\.2|libc\.so\.6)"]

tar = tarfile.open(sys.argv[2])
ents = {}
for m in tar.getmembers():
    n = m.name.lstrip("./").rstrip("/")
    if n and not posixpath.basename(n).startswith(".wh."):
        ents[n] = m

if sys.argv[1] == "list":
    for n in sorted(ents):
        m = ents[n]
        print("%s %d:%d %9d /%s%s" % (stat.filemode(m.mode | {tarfile.DIRTYPE: stat.S_IFDIR,
              tarfile.SYMTYPE: stat.S_IFLNK}.get(m.type, stat.S_IFREG)), m.uid, m.gid, m.size, n,
              " -> " + m.linkname if m.issym() else ""))
    sys.exit(0)

def resolve(path, depth=0):
    """The entry PATH names inside the image, following symlinks there."""
    parts, cur = path.strip("/").split("/"), ""
    for i, p in enumerate(parts):
        cur = posixpath.normpath(posixpath.join(cur, p)).lstrip("/")
        m = ents.get(cur)
        if m is None or depth > 20:
            return None
        if m.issym():
            t = m.linkname if m.linkname.startswith("/") else posixpath.join(posixpath.dirname(cur), m.linkname)
            cur = resolve(t, depth + 1)
            if cur is None:
                return None
    return cur

bad = []
for n, m in sorted(ents.items()):
    base = posixpath.basename(n)
    if base in SHELLS or re.fullmatch(r"(ba|da|z|k|mk|tc|c)?sh(\.[a-z]+)?", base):
        bad.append("a shell: /" + n)
    if m.uid != 0 or m.gid != 0:
        bad.append("owner %d:%d, not root: /%s" % (m.uid, m.gid, n))
    if m.mode & (stat.S_ISUID | stat.S_ISGID):
        bad.append("setuid/setgid: /" + n)
    if m.isdir():
        want = 0o1777 if n == "tmp" else 0o755
        if m.mode & 0o7777 != want:
            bad.append("directory mode %o, want %o: /%s" % (m.mode & 0o7777, want, n))
    elif m.isfile():
        if not any(re.fullmatch(p, n) for p in ALLOWED):
            bad.append("unexpected file: /" + n)
        if m.mode & 0o022:
            bad.append("writable by group or others (%o): /%s" % (m.mode & 0o7777, n))
        if m.mode & 0o111 and not any(re.fullmatch(p, n) for p in EXEC_OK):
            bad.append("executable outside /usr/bin: /" + n)
    elif m.issym():
        if resolve(n) is None:
            bad.append("dangling symlink: /%s -> %s" % (n, m.linkname))
    else:
        bad.append("neither file, directory nor symlink: /" + n)
for need in ["usr/bin/ktls-sidecar", "usr/bin/ktlsctl", "usr/bin/ktls-redirect", "lib64/ld-linux-x86-64.so.2",
             "usr/sbin/iptables-restore", "usr/sbin/iptables-save", "usr/sbin/ip6tables-restore",
             "usr/sbin/ip6tables-save",
             "etc/passwd", "etc/group", "etc/nsswitch.conf", "tmp"]:
    if resolve(need) is None:
        bad.append("missing: /" + need)
def text(n):
    r = resolve(n)
    return tar.extractfile(ents[r]).read().decode() if r and ents[r].isfile() else ""
if not re.search(r"^ktls:x:1337:1337:", text("etc/passwd"), re.M):
    bad.append("/etc/passwd has no ktls user with uid 1337")
if not re.search(r"^ktls:x:1337:", text("etc/group"), re.M):
    bad.append("/etc/group has no group 1337")
if not re.search(r"^hosts:\s+files dns$", text("etc/nsswitch.conf"), re.M):
    bad.append("/etc/nsswitch.conf does not say 'hosts: files dns'")
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
EOF
python3 "$T/fscheck.py" list "$LAYER" >"$T/files" || ks_fail "cannot list the layer"
python3 "$T/fscheck.py" check "$LAYER" >"$T/fscheck.out" ||
	{ cat "$T/fscheck.out"; ks_fail "the image's filesystem: $(wc -l <"$T/fscheck.out") problem(s)"; }
# Negative controls: the same check on a copy of the rootfs with plants.
cp -a "$BUILD_DIR/image/rootfs" "$T/planted"
install -d -m 0755 "$T/planted/bin"
install -m 0755 "$(readlink -f /bin/sh)" "$T/planted/bin/sh"
chmod 4755 "$T/planted/usr/bin/ktlsctl"
chown 1337:1337 "$T/planted/usr/bin/ktls-sidecar"
chmod g+w "$T/planted/usr/lib/x86_64-linux-gnu/libssl.so.3"
tar -C "$T/planted" -cf "$T/planted.tar" .
python3 "$T/fscheck.py" check "$T/planted.tar" >"$T/planted.out" && ks_fail "the check passed a rootfs with /bin/sh"
for want in 'a shell: /bin/sh' 'unexpected file: /bin/sh' 'setuid/setgid: /usr/bin/ktlsctl' \
	'owner 1337:1337, not root: /usr/bin/ktls-sidecar' 'writable by group or others .*libssl.so.3'; do
	grep -Eq -- "^$want" "$T/planted.out" || { cat "$T/planted.out"; ks_fail "the check missed: $want"; }
done
# The unplanted copy passes: the plants, not the copy, made the difference.
tar -C "$BUILD_DIR/image/rootfs" -cf "$T/rootfs.tar" .
python3 "$T/fscheck.py" check "$T/rootfs.tar" >"$T/rootfs.out" ||
	{ cat "$T/rootfs.out"; ks_fail "the check fails the unplanted rootfs"; }
ks_pass "filesystem: $(wc -l <"$T/files") entries, only the expected ones, no shell, root's, none setuid or writable by others; a planted /bin/sh, setuid, owner and g+w are each caught"

# --- 4. containers
CG=ks-image-$$ NAME=ks-image-$$
cg_cleanup() { # the containers' cgroup parent, in every hierarchy
	local d left
	# conmon may still be leaving its cgroup when a run has just failed.
	for _ in $(seq 50); do
		left=0
		for d in /sys/fs/cgroup/*/"$CG" /sys/fs/cgroup/"$CG"; do
			[[ -d $d ]] || continue
			find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || left=1
		done
		((left)) || return 0
		sleep 0.1
	done
	echo "t_image: cgroup $CG is still in use: $(ls -d /sys/fs/cgroup/*/"$CG")" >&2
}
ks_cleanup_add cg_cleanup
run() { ctr podman run --rm --network none --cgroup-parent "/$CG" "$@"; }
run "$IMAGE" --version >"$T/v.sidecar" 2>&1 || { cat "$T/v.sidecar"; ks_fail "ktls-sidecar --version failed in the image"; }
grep -q '^ktls-sidecar .*OpenSSL 3' "$T/v.sidecar" || ks_fail "ktls-sidecar --version: $(cat "$T/v.sidecar")"
run --entrypoint /usr/bin/ktlsctl "$IMAGE" --version >"$T/v.ctl" 2>&1 || { cat "$T/v.ctl"; ks_fail "ktlsctl --version failed in the image"; }
grep -q '^ktlsctl ' "$T/v.ctl" || ks_fail "ktlsctl --version: $(cat "$T/v.ctl")"
run --entrypoint /usr/bin/ktls-redirect "$IMAGE" --help >"$T/v.redirect" 2>&1 ||
	{ cat "$T/v.redirect"; ks_fail "ktls-redirect --help failed in the image"; }
grep -q '^Usage: ktls-redirect install' "$T/v.redirect" || ks_fail "ktls-redirect --help: $(cat "$T/v.redirect")"
rc=0
run --entrypoint /bin/sh "$IMAGE" -c true >"$T/sh.out" 2>&1 || rc=$?
[[ $rc == 127 ]] && grep -q '/bin/sh.*no such file' "$T/sh.out" ||
	{ cat "$T/sh.out"; ks_fail "/bin/sh in the image: exit $rc, want 127 (not found)"; }
ks_pass "podman run: ktls-sidecar --version ($(cat "$T/v.sidecar")), ktlsctl --version, ktls-redirect --help; /bin/sh: exit 127, not found"

# A sidecar as the chart runs it: read-only root, the control socket in a
# directory of its own (the chart's emptyDir), the identity pushed over it.
ks_pki "$T"
mkdir -m 0755 "$T/pki"
cp "$T/ca/server.crt" "$T/ca/server.key" "$T/ca/bundle.crt" "$T/pki/"
chown -R 1337:1337 "$T/pki"
install -d -m 0700 -o 1337 -g 1337 "$T/run"
rm_ctr() { ctr podman rm --force --ignore --time 0 "$NAME" >/dev/null 2>&1; }
ks_cleanup_add rm_ctr
ctr podman run --detach --name "$NAME" --network none --cgroup-parent "/$CG" --read-only \
	-v "$T/run:/run/ktls-sidecar" -v "$T/pki:/pki:ro" "$IMAGE" \
	--inbound 127.0.0.1:15006=127.0.0.1:8080 --admin 127.0.0.1:15020 \
	--control-socket /run/ktls-sidecar/control.sock --spiffe-id "$KS_SERVER_ID" >"$T/run.out" 2>&1 ||
	{ cat "$T/run.out"; ks_fail "the sidecar container did not start"; }
for _ in $(seq 100); do
	ctr podman logs "$NAME" >"$T/sidecar.log" 2>&1 || true
	grep -q 'event=ready' "$T/sidecar.log" && break
	sleep 0.1
done
ks_assert_grep "$T/sidecar.log" 'event=ready' "the sidecar in the image did not become ready"
# tests/podman/containers.conf's ulimit reached the container (podman's
# own default would be the host's hard limit).
ks_assert_grep "$T/sidecar.log" 'event=capacity nofile=16384 nofile_was=16384 ' \
	"the container's descriptor limit is not containers.conf's nofile=16384"
# The kernel's view (real, effective, saved, fs ids), and the names that
# the image's /etc/passwd and /etc/group give them.
PID=$(ctr podman inspect --format '{{.State.Pid}}' "$NAME")
grep -E '^(Uid|Gid):' "/proc/$PID/status" >"$T/ids"
[[ $(awk '{print $2, $3, $4, $5}' "$T/ids" | sort -u) == "1337 1337 1337 1337" ]] ||
	{ cat "$T/ids"; ks_fail "the sidecar does not run as 1337:1337"; }
ctr podman top "$NAME" user group >"$T/top" || ks_fail "podman top failed"
[[ $(awk 'NR == 2 {print $1, $2}' "$T/top") == "ktls ktls" ]] ||
	{ cat "$T/top"; ks_fail "uid/gid 1337 have no name in the image"; }
ks_expect_exit 1 'not ready after 1s \([0-9]+ tr[a-z]+\): 503 not ready: no identity yet' \
	ctr podman exec "$NAME" /usr/bin/ktlsctl wait-ready --timeout 1s --interval 200ms
ctr podman exec "$NAME" /usr/bin/ktlsctl --socket /run/ktls-sidecar/control.sock push-identity \
	--cert /pki/server.crt --key /pki/server.key --bundle /pki/bundle.crt >"$T/push.out" 2>&1 ||
	{ cat "$T/push.out"; ks_fail "push-identity in the container failed"; }
ctr podman exec "$NAME" /usr/bin/ktlsctl wait-ready --admin localhost:15020 --timeout 10s >"$T/wait.out" 2>&1 ||
	{ cat "$T/wait.out"; ks_fail "wait-ready in the container did not see the sidecar ready"; }
grep -q '^ready after .*: 200 ' "$T/wait.out" || ks_fail "wait-ready: $(cat "$T/wait.out")"
rm_ctr
ks_pass "a sidecar from the image (read-only root, nofile 16384 from containers.conf) runs as 1337:1337; wait-ready in it: 503 no identity (exit 1), then 200 via localhost after push-identity ($(cat "$T/wait.out"))"

# The chart's redirect init container (redirect.enabled) runs this image's
# ktls-redirect, which runs the image's iptables: its rendered command and
# security context, as podman options, in a network namespace of the test's
# own (a pod's), which takes the rules and goes at the end.
source "$KS_ROOT/tests/lib/helm.sh"
"$HELM" template demo "$KS_ROOT/helm/ktls-sidecar" $KS_POST --set trustDomain=example.org \
	--set workload.image=app:1 --set redirect.enabled=true >"$T/redirect.yaml" || ks_fail "helm template failed"
python3 - "$T/redirect.yaml" >"$T/redirect.args" <<'PY' || ks_fail "no redirect init container rendered"
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if not d or d["kind"] != "Deployment":
        continue
    for c in d["spec"]["template"]["spec"]["initContainers"]:
        if c["name"] != "ktls-redirect":
            continue
        sc = c["securityContext"]
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["allowPrivilegeEscalation"], sc
        print("--user=%d:%d" % (sc["runAsUser"], sc["runAsGroup"]))
        print("--cap-drop=ALL")
        for cap in sc["capabilities"]["add"]:
            print("--cap-add=" + cap)
        print("--security-opt=no-new-privileges")
        if sc.get("readOnlyRootFilesystem"):
            print("--read-only")
        print("--entrypoint=" + c["command"][0])
        print("--")  # the image, then the arguments
        for a in c["args"]:
            print(a)
        sys.exit(0)
sys.exit(1)
PY
mapfile -t ropts < <(sed '/^--$/,$d' "$T/redirect.args")
mapfile -t rargs < <(sed '1,/^--$/d' "$T/redirect.args")
NS=ks-image-$$
ip netns add "$NS" || ks_fail "cannot create network namespace $NS"
ks_cleanup_add ip netns del "$NS"
ip -n "$NS" link set lo up
mkdir -m 0755 "$T/xt" "$T/krun"
ctr podman run --rm --network "ns:/run/netns/$NS" --cgroup-parent "/$CG" "${ropts[@]}" \
	-v "$T/xt:/run" -v "$T/krun:/run/ktls-sidecar" "$IMAGE" "${rargs[@]}" >"$T/redirect.out" 2>&1 ||
	{ cat "$T/redirect.args" "$T/redirect.out"; ks_fail "the chart's redirect init container failed in the image"; }
for fam in iptables ip6tables; do
	ip netns exec "$NS" "$fam-save" -t nat >"$T/nat.$fam" 2>&1 || ks_fail "$fam-save in $NS failed"
	ks_assert_grep "$T/nat.$fam" '-A KS_ktls_OUT -m owner --uid-owner 1337 -j RETURN' \
		"$fam: the sidecar's uid is not exempted in the pod's namespace"
	ks_assert_grep "$T/nat.$fam" '-A KS_ktls_IN .*--dport 8080 -j REDIRECT --to-ports 15006' \
		"$fam: the app's port is not steered to the sidecar"
done
ks_assert_grep "$T/krun/redirect.conf" '^mode=iptables$' "no manifest for the sidecar's --redirect-check"
ks_pass "the chart's redirect init container ($(tr '\n' ' ' <"$T/redirect.args" | sed 's/ -- .*//')) ran in the image: IPv4 and IPv6 rules in the pod's namespace, the manifest written"

# --- 5. the archive
python3 "$KS_ROOT/image/oci-archive.py" check "$ARCHIVE" >"$T/archive.out" 2>&1 ||
	{ cat "$T/archive.out"; ks_fail "make image-save's archive is not a valid OCI layout"; }
grep -q "\"io.containerd.image.name\": \"docker.io/library/ktls-sidecar:$VERSION\"" "$T/archive.out" ||
	{ cat "$T/archive.out"; ks_fail "the archive does not name the image for containerd"; }
grep -q 'linux/amd64, user 1337:1337, 1 layer' "$T/archive.out" || ks_fail "archive: $(cat "$T/archive.out")"
# The checker rejects a blob that is not what its digest says.
cp -a "$T/oci" "$T/oci-bad"
printf 'x' | dd of="$T/oci-bad/blobs/sha256/${LAYER##*/}" bs=1 seek=100 conv=notrunc status=none
tar -C "$T/oci-bad" -cf "$T/bad.tar" .
ks_expect_exit 1 "does not hash to its name" python3 "$KS_ROOT/image/oci-archive.py" check "$T/bad.tar"
# podman reads it back into empty storage: the same image, and it runs.
"$KS_ROOT/image/podman.sh" "$T/load" podman load --quiet -i "$ARCHIVE" >"$T/load.out" 2>&1 ||
	{ cat "$T/load.out"; ks_fail "podman load of the archive failed"; }
"$KS_ROOT/image/podman.sh" "$T/load" podman image inspect --format '{{.Id}} {{.RepoTags}}' "$ID" \
	>"$T/loaded.id" 2>&1 || { cat "$T/loaded.id" "$T/load.out"; ks_fail "podman load did not give image $ID"; }
grep -q "docker.io/library/ktls-sidecar:$VERSION" "$T/loaded.id" ||
	ks_fail "the loaded image is not named docker.io/library/ktls-sidecar:$VERSION: $(cat "$T/loaded.id")"
# By the short name that the chart writes.
"$KS_ROOT/image/podman.sh" "$T/load" podman run --rm --network none --cgroup-parent "/$CG" \
	--entrypoint /usr/bin/ktlsctl "ktls-sidecar:$VERSION" --version >"$T/loaded.out" 2>&1 ||
	{ cat "$T/loaded.out"; ks_fail "the loaded image does not run"; }
ks_pass "archive $(basename "$ARCHIVE") ($(stat -c %s "$ARCHIVE") bytes): a valid OCI layout, named docker.io/library/ktls-sidecar:$VERSION; a corrupted blob is rejected; podman load gives $ID, which runs as ktls-sidecar:$VERSION"

netfilter >"$T/nf.after"
diff "$T/nf.before" "$T/nf.after" >&2 || ks_fail "netfilter rules changed"

echo "image $IMAGE: $SIZE bytes unpacked, archive $(stat -c %s "$ARCHIVE") bytes; files:"
sed 's/^/  /' "$T/files"
