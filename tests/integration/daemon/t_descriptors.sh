#!/usr/bin/env bash
# Descriptors (README, "Descriptors"): the start-up plan against
# RLIMIT_NOFILE, and accept(2) running out of descriptors at run time.
#
# 1. The soft limit is raised to the hard one, and defaults that do not fit
#    are lowered and logged; a --max-connections the limit cannot honour is
#    a start-up error that says what would fit.
# 2. Under `ulimit -n 64`, 100 clients at once: bounded log lines, the
#    sidecar lives, and it serves again once they have left.
# 3. The limit drops under a running sidecar (prlimit) and 100 connections
#    wait in its backlog: accept(2) fails with EMFILE over and over. The
#    listener rests and retries (one log line a second, with a count)
#    instead of spinning a line per failure, and serves once they go.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
ident=(--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt")
command -v prlimit >/dev/null || ks_fail "prlimit (util-linux) is missing"

# The sidecar under a descriptor limit: prlimit sets it and execs, so the
# pid is the sidecar's own.
cat >"$T/limited" <<EOF
#!/bin/sh
exec prlimit --nofile="\$KS_NOFILE" -- "$KS_BIN" "\$@"
EOF
chmod +x "$T/limited"

# 1. The plan.
KS_NOFILE=1024:4096 KS_BIN="$T/limited" ks_sidecar "$T/plan.log" --workers 2 \
	--inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${ident[@]}"
ks_assert_grep "$T/plan.log" 'event=capacity nofile=4096 nofile_was=1024 max_connections=[0-9]+ .*lowered=' \
	"the soft limit was not raised to the hard one, or the lowered defaults not logged"
conns=$(sed -n 's/.*event=capacity .* max_connections=\([0-9]*\) .*/\1/p' "$T/plan.log")
((conns > 100 && 2 * conns < 4096)) || ks_fail "4096 descriptors planned for $conns connections"
kill "$KS_SIDECAR_PID"
set +e
KS_NOFILE=4096:4096 "$T/limited" --max-connections 5000 --control-socket none \
	--inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${ident[@]}" >"$T/over.log" 2>&1
rc=$?
set -e
((rc == 1)) || { cat "$T/over.log"; ks_fail "--max-connections 5000 under 4096 descriptors: exit $rc, want 1"; }
ks_assert_grep "$T/over.log" 'event=start_failed reason="--max-connections 5000 needs up to [0-9]+ descriptors .*RLIMIT_NOFILE is 4096: lower --max-connections to [0-9]+' \
	"an impossible --max-connections was not a clear start-up error"
ks_pass "start-up plan: soft limit raised to hard, $conns connections fit 4096 descriptors; --max-connections 5000 refused with advice"

# 2. ulimit -n 64: the defaults shrink to fit, 100 clients at once are
# refused or served, never a spin.
KS_NOFILE=64:64 KS_BIN="$T/limited" ks_sidecar "$T/b64.log" --workers 2 \
	--inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${ident[@]}"
B_PID=$KS_SIDECAR_PID B_PORT=${KS_PORTS[0]}
ks_sidecar "$T/a64.log" --workers 2 --outbound "127.0.0.1:0=127.0.0.1:$B_PORT,id=$KS_SERVER_ID" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
A_PORT=${KS_PORTS[0]} A_PID=$KS_SIDECAR_PID
"$KS_STREAM" client --connect "127.0.0.1:$A_PORT" --conns 100 --bytes 16K --hold-ms 2000 \
	--half-close --timeout 30 >"$T/flood64.out" 2>&1 || true
ks_alive "$B_PID" "the sidecar under ulimit -n 64 died"
lines=$(wc -l <"$T/b64.log")
echo "ulimit -n 64: $(grep -o 'client summary.*' "$T/flood64.out"); B wrote $lines log lines"
((lines < 400)) || ks_fail "B wrote $lines log lines for 100 clients"
"$KS_STREAM" client --connect "127.0.0.1:$A_PORT" --conns 3 --bytes 1M --seed 3 --half-close \
	--timeout 30 >"$T/after64.out" 2>&1 || true
grep -q 'client summary conns=3 ok=3 failed=0' "$T/after64.out" ||
	{ tail -3 "$T/after64.out"; ks_fail "the sidecar under ulimit -n 64 did not serve once the clients left"; }
ks_pass "ulimit -n 64: 100 clients at once cost $lines log lines; 3 clients served afterwards"
kill "$B_PID" "$A_PID"
wait "$B_PID" "$A_PID" 2>/dev/null || true

# 3. EMFILE at run time. B starts with room, then its limit drops to what it
# holds plus 4: the backlog of silent connections cannot all be accepted.
ks_sidecar "$T/b.log" --workers 2 --first-byte-timeout 1s --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${ident[@]}"
B_PID=$KS_SIDECAR_PID B_PORT=${KS_PORTS[0]}
ks_sidecar "$T/a.log" --workers 2 --outbound "127.0.0.1:0=127.0.0.1:$B_PORT,id=$KS_SERVER_ID" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
A_PORT=${KS_PORTS[0]}
held=$(find "/proc/$B_PID/fd" -mindepth 1 | wc -l)
prlimit --pid "$B_PID" --nofile=$((held + 4)):$((held + 4))
cpu0=$(awk '{print $14 + $15}' "/proc/$B_PID/stat")
cat >"$T/hold.py" <<'PY'
import socket, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
print("holding", len(socks), flush=True)
time.sleep(secs)
PY
python3 "$T/hold.py" "$B_PORT" 100 6 >"$T/hold.out"
cpu1=$(awk '{print $14 + $15}' "/proc/$B_PID/stat")
ks_alive "$B_PID" "the sidecar died when accept(2) ran out of descriptors"
ks_wait_log "$T/b.log" 'event=accept_failed .*detail="Too many open files" paused_ms=[0-9]+ failed_total=[0-9]+' 5 ||
	ks_fail "accept(2) never failed with EMFILE: the test did not test the back-off"
failed=$(sed -n 's/.*event=accept_failed .*failed_total=\([0-9]*\).*/\1/p' "$T/b.log" | sort -n | tail -1)
lines=$(ks_count "$T/b.log" 'event=accept_failed')
echo "EMFILE for 6 s: $lines accept_failed lines (last total $failed), B used $((cpu1 - cpu0)) ticks of CPU"
# 6 s, 2 workers, one line a second each, and the line that opens each second.
((lines <= 20)) || ks_fail "$lines accept_failed lines in 6 s: accept(2) failures must be logged once a second"
ks_assert_not_grep "$T/b.log" 'event=control_accept_failed' "the control API failed to accept with nobody calling it"
"$KS_STREAM" client --connect "127.0.0.1:$A_PORT" --conns 2 --bytes 1M --seed 5 --half-close \
	--timeout 30 >"$T/after.out" 2>&1 || true
grep -q 'client summary conns=2 ok=2 failed=0' "$T/after.out" ||
	{ tail -3 "$T/after.out"; ks_fail "the sidecar did not serve again once the backlog left"; }
ks_pass "EMFILE: listener rested ($lines log lines for $failed failures in 6 s), served 2/2 once the backlog left"
