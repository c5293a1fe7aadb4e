#!/usr/bin/env bash
# Two sidecars on one host (README, "Running it" and "Logs and certificate
# expiry"), in a mount and network namespace of the test's own (a tmpfs on
# /run, its own loopback), so the host's /run and ports are untouched:
#  1. both with the default control socket: the second exits 1, and its
#     start_failed line says what is wrong and both ways out
#     (--control-socket PATH, --control-socket none);
#  2. the README's one-machine example, its commands taken from README.md
#     and run as written (fixed ports, its own control sockets): both start
#     and a stream gets through A to B to the app on 127.0.0.1:8080.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ $(id -u) == 0 ]] || ks_skip "needs root (a mount namespace with a tmpfs on /run)"
{ command -v unshare && command -v nsenter; } >/dev/null || ks_skip "no unshare/nsenter"
T=$(ks_tmpdir)
ks_pki "$T"

# The namespaces: held by a process of their own; everything below enters them.
ks_bg "$T/ns.log" unshare -m -n --propagation private bash -c \
	'ip link set lo up && mount -t tmpfs -o mode=755 ks-run /run && echo ready && exec sleep 600' >/dev/null
holder=$KS_BG_PID
ks_wait_log "$T/ns.log" '^ready$' 10 || ks_fail "could not make the namespaces: $(cat "$T/ns.log")"
IN_NS=(nsenter -t "$holder" -m -n --)
identity=(--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt")

# 1. The default control socket, twice.
ks_bg "$T/first.log" env -u KTLS_SIDECAR_CONTROL_SOCKET "${IN_NS[@]}" "$KS_BIN" \
	--inbound 127.0.0.1:0=127.0.0.1:1 "${identity[@]}" >/dev/null
first=$KS_BG_PID
ks_wait_log "$T/first.log" 'event=ready' 20 || ks_fail "the first sidecar did not start"
ks_assert_grep "$T/first.log" 'event=control_api socket=/run/ktls-sidecar/control.sock ' \
	"the first sidecar is not on the default control socket"
rc=0
timeout 20 env -u KTLS_SIDECAR_CONTROL_SOCKET "${IN_NS[@]}" "$KS_BIN" \
	--inbound 127.0.0.1:0=127.0.0.1:1 "${identity[@]}" >"$T/second.log" 2>&1 || rc=$?
((rc == 1)) || { cat "$T/second.log"; ks_fail "the second sidecar on the default socket exited $rc, want 1"; }
line=$(grep 'event=start_failed' "$T/second.log") || { cat "$T/second.log"; ks_fail "no start_failed line"; }
for f in 'control_socket=/run/ktls-sidecar/control.sock ' 'control.sock is in use by another process' \
	'--control-socket PATH' '--control-socket none'; do
	[[ $line == *"$f"* ]] || ks_fail "the refusal does not say '$f': $line"
done
ks_alive "$first" "the first sidecar died of the second"
kill "$first"
wait "$first" 2>/dev/null || true
ks_pass "two sidecars on the default control socket: the second exits 1 naming --control-socket PATH and none"

# 2. The README's one-machine example, as written.
R=$T/readme
mkdir "$R"
"$KS_PKI" issue "$T/ca" b spiffe://example.org/ns/backend/sa/api
"$KS_PKI" issue "$T/ca" a spiffe://example.org/ns/frontend/sa/web
cp "$T/ca/a.crt" "$T/ca/a.key" "$T/ca/b.crt" "$T/ca/b.key" "$T/ca/bundle.crt" "$R/"
mapfile -t cmds < <(python3 - "$KS_ROOT/README.md" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = [b for b in re.findall(r'```sh\n(.*?)```', text, re.S) if '/run/ktls-sidecar/b.sock' in b]
if len(blocks) != 1:
    sys.exit(f"want one README block with the one-machine example, found {len(blocks)}")
for cmd in blocks[0].replace('\\\n', ' ').splitlines():
    cmd = cmd.strip()
    if cmd and not cmd.startswith('#'):
        print(cmd)
PY
)
((${#cmds[@]} == 2)) || ks_fail "the README's one-machine block has ${#cmds[@]} commands, want 2: ${cmds[*]}"
ks_bg "$T/app.log" "${IN_NS[@]}" "$KS_STREAM" server --listen 127.0.0.1:8080 --mode echo >/dev/null
n=0
for cmd in "${cmds[@]}"; do
	[[ $cmd == 'ktls-sidecar '*' &' ]] || ks_fail "not a sidecar started in the background: $cmd"
	cmd=${cmd#ktls-sidecar }
	cmd=${cmd% &}
	n=$((n + 1))
	# shellcheck disable=SC2016 # $0 and $1 belong to the inner bash
	ks_bg "$T/readme.$n.log" env -u KTLS_SIDECAR_CONTROL_SOCKET "${IN_NS[@]}" \
		bash -c 'cd "$0" && eval "exec \"\$1\" $2"' "$R" "$KS_BIN" "$cmd" >/dev/null
	ks_wait_log "$T/readme.$n.log" 'event=(ready|start_failed)' 20 || ks_fail "no start: $cmd"
	ks_assert_grep "$T/readme.$n.log" 'event=ready' "the README's command did not start: $cmd"
done
"${IN_NS[@]}" "$KS_STREAM" client --connect 127.0.0.1:9000 --bytes 100K --timeout 20 >"$T/stream.out" 2>&1 ||
	{ cat "$T/stream.out" "$T"/readme.*.log; ks_fail "no echo through the README's one-machine example"; }
ks_wait_log "$T/readme.1.log" 'event=conn_close .*reason=done .*bytes_to_peer=102400 ' 10 ||
	ks_fail "B did not log the stream"
ks_assert_grep "$T/readme.2.log" 'event=control_api socket=/run/ktls-sidecar/a.sock ' "A is not on its own socket"
ks_pass "the README's one-machine example runs as written: two sidecars, two control sockets, 100 KiB through A and B"
