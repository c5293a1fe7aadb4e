#!/usr/bin/env bash
# The command line as a user meets it: --help, --version, exit codes, clear
# errors for bad flags and bad files, configuration from the environment,
# and a clean stop on SIGTERM.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
id=(--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt")

# run_rc WANT_RC OUTFILE ARGS...: runs the sidecar to completion.
run_rc() {
	local want=$1 out=$2 rc
	shift 2
	set +e
	timeout 20 "$KS_BIN" "$@" >"$out" 2>&1
	rc=$?
	set -e
	[[ $rc -eq $want ]] || { cat "$out"; ks_fail "'$*' exited $rc, want $want"; }
}

run_rc 0 "$T/help" --help
for flag in --inbound --outbound --outbound-transparent --cert --key --ca --allow --workers \
	--handshake-timeout --idle-timeout --drain-timeout --max-connections --io --tls-min-version --log-level \
	KTLS_SIDECAR_INBOUND KTLS_SIDECAR_IDLE_TIMEOUT SIGHUP; do
	grep -q -- "$flag" "$T/help" || ks_fail "--help does not document $flag"
done
run_rc 0 "$T/version" --version
grep -q '^ktls-sidecar .*OpenSSL 3' "$T/version" || ks_fail "--version output: $(cat "$T/version")"
ks_pass "--help documents every flag and its variable; --version"

run_rc 2 "$T/e1" --frobnicate
grep -q "^ktls-sidecar: unknown option '--frobnicate'" "$T/e1" || ks_fail "bad flag message: $(cat "$T/e1")"
run_rc 2 "$T/e2" "${id[@]}"
grep -q 'no route' "$T/e2" || ks_fail "missing route message: $(cat "$T/e2")"
run_rc 2 "$T/e3" --inbound 127.0.0.1:1=nowhere.invalid:80 "${id[@]}"
grep -q "cannot resolve" "$T/e3" || ks_fail "unresolvable upstream message: $(cat "$T/e3")"
KTLS_SIDECAR_WORKRES=2 run_rc 2 "$T/e4" --inbound 127.0.0.1:1=127.0.0.1:2 "${id[@]}"
grep -q 'unknown environment variable KTLS_SIDECAR_WORKRES' "$T/e4" || ks_fail "misspelt env var not reported: $(cat "$T/e4")"
ks_pass "usage errors exit 2 with a specific message"

# (port 0: these two fail on the identity, before listening anywhere)
run_rc 1 "$T/f1" --inbound "127.0.0.1:0=127.0.0.1:2" --cert "$T/nope.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
grep -q 'event=start_failed .*cannot open certificate file .*nope.crt: No such file or directory' "$T/f1" ||
	ks_fail "missing cert file message: $(cat "$T/f1")"
run_rc 1 "$T/f2" --inbound "127.0.0.1:0=127.0.0.1:2" --cert "$T/ca/server.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
grep -q 'event=start_failed .*private key does not match the certificate' "$T/f2" ||
	ks_fail "key mismatch message: $(cat "$T/f2")"
# A port held by a process without SO_REUSEPORT (which chose it itself).
ks_http_server "$T/holder.log"
p=$KS_HTTP_PORT
run_rc 1 "$T/f3" --inbound "127.0.0.1:$p=127.0.0.1:2" "${id[@]}"
grep -q "event=start_failed listen=127.0.0.1:$p reason=\"cannot listen: Address already in use (another process holds the port" "$T/f3" ||
	ks_fail "busy port message: $(cat "$T/f3")"
ks_pass "start-up failures exit 1 and say what is wrong"

# No other process may join the sidecar's listening ports: with SO_REUSEPORT
# listeners, any process of the same uid could bind them at any time and
# take a share of the connections (the app's outbound plaintext too).
ks_echo_server "$T/echo0.log" echo
ks_sidecar "$T/held.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --outbound "127.0.0.1:0=127.0.0.1:1" \
	--workers 2 "${id[@]}"
for port in "${KS_PORTS[@]}"; do
	python3 - "$port" >"$T/hijack.$port" 2>&1 <<'PY' || ks_fail "a process joined port $port: $(cat "$T/hijack.$port")"
import errno, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(16)
except OSError as e:
    sys.exit(0 if e.errno == errno.EADDRINUSE else 2)
print("bound and listening next to the sidecar")
sys.exit(1)
PY
done
kill "$KS_SIDECAR_PID"
ks_pass "no process can join the sidecar's ports (SO_REUSEPORT bind: EADDRINUSE)"

# Everything from the environment; then SIGTERM stops it cleanly (exit 0).
ks_echo_server "$T/echo.log" echo
KTLS_SIDECAR_INBOUND="127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" KTLS_SIDECAR_CERT=$T/ca/server.crt \
	KTLS_SIDECAR_KEY=$T/ca/server.key KTLS_SIDECAR_CA=$T/ca/bundle.crt KTLS_SIDECAR_WORKERS=1 \
	KTLS_SIDECAR_IO=epoll KTLS_SIDECAR_LOG_LEVEL=debug \
	"$KS_BIN" >"$T/env.log" 2>&1 &
env_pid=$!
ks_wait_log "$T/env.log" 'event=ready .*workers=1' 10
ks_assert_grep "$T/env.log" 'event=io_backend backend=epoll' "KTLS_SIDECAR_IO not applied"
# The port it chose for the inbound route (not started by ks_sidecar: read the log).
p=$(sed -n 's/.*event=route .*listen=.*:\([0-9][0-9]*\) target=.*/\1/p' "$T/env.log")
[[ -n $p ]] || ks_fail "no event=route in the env-configured sidecar's log"
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$p,id=$KS_SERVER_ID" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
a=${KS_PORTS[0]}
"$KS_STREAM" client --connect "127.0.0.1:$a" --bytes 1M --half-close >/dev/null 2>&1 ||
	ks_fail "no traffic through the env-configured sidecar"
kill -TERM "$env_pid"
wait "$env_pid" || ks_fail "SIGTERM exit status $?, want 0"
ks_assert_grep "$T/env.log" 'event=stopped' "no stop log line"
ks_pass "configured from KTLS_SIDECAR_*; SIGTERM stops it with exit 0"
