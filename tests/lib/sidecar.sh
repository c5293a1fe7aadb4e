# shellcheck shell=bash
# Sidecar-specific helpers for integration tests, on top of common.sh.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib/sidecar.sh"
#
# ks_pki DIR          a CA (root + intermediate) and the usual identities:
#                     DIR/ca/{client,server}.{crt,key} (SPIFFE IDs below),
#                     DIR/ca/bundle.crt; DIR/ca/int.crt for s_client chains.
# ks_sidecar LOG ARGS starts ktls-sidecar with ARGS, waits for event=ready,
#                     sets KS_SIDECAR_PID, KS_PORTS (the routes' listening
#                     ports, in order: give LISTEN port 0 and read it here)
#                     and KS_CTL_SOCKET (its control socket, for $KS_CTL,
#                     the ktlsctl binary).
# ks_s_server LOG ARGS starts `openssl s_server -accept 127.0.0.1:0 ARGS`,
#                     sets KS_S_SERVER_PORT and KS_S_SERVER_PID.
# ks_closed_port      sets KS_CLOSED_PORT: a port held bound and not
#                     listening for the test's life, so a connect is refused.
# ks_http_server LOG [DIR] starts python's http.server on a port of its own
#                     choosing (serving DIR, default the current directory),
#                     sets KS_HTTP_PORT and KS_HTTP_PID.
# ks_py_server LOG SCRIPT [ARGS] runs `python3 SCRIPT ARGS`, a test's own
#                     server: it binds 127.0.0.1 port 0, listens, then prints
#                     "listening on PORT" (flushed). Sets KS_PY_PORT, KS_PY_PID.
# ks_count LOG REGEX  number of lines in LOG matching REGEX.
# ks_admin_port LOG   the port of the sidecar's --admin listener, from its
#                     event=admin line (give --admin port 0).
# ks_metric PORT SERIES  the value of one series of the admin endpoint's
#                     /metrics, e.g. 'ktls_sidecar_workers' or
#                     'ktls_sidecar_tls_ticket_keys{source="own"}'; empty
#                     when the series is absent.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KS_CLIENT_ID=spiffe://example.org/ns/a/sa/client
KS_SERVER_ID=spiffe://example.org/ns/b/sa/server
export KS_CLIENT_ID KS_SERVER_ID

[[ -x $KS_BIN ]] || { echo "no sidecar binary at $KS_BIN (run make)" >&2; exit 1; }

# Tests start many sidecars side by side: none may take the default control
# socket under /run. ks_sidecar gives each start its own (LOG's name, a
# counter, .ctl.sock; in KS_CTL_SOCKET); a sidecar started any other way has
# no control API unless the test asks for one (--control-socket wins).
export KTLS_SIDECAR_CONTROL_SOCKET=none
# Nor may each stop wait out a drain delay (--drain-delay, 5 s by default,
# for Service endpoints that tests do not have) and quiet time
# (--drain-quiet, 1 s): a stopping sidecar leaves once it holds no
# connection. Scenarios about the drain give both themselves (flags win).
export KTLS_SIDECAR_DRAIN_DELAY=0 KTLS_SIDECAR_DRAIN_QUIET=0
KS_CTL=${KS_CTL:-$(dirname "$KS_BIN")/ktlsctl}

# Tests run the binaries as other uids too (65534, 1337, a user namespace's
# root). A clone under a 0700 directory (mktemp -d) refuses them that, so
# then the binaries run from a copy in a directory anyone can reach (the
# sidecar finds ktls-redirect next to itself: it is copied too).
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null &&
	! setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$KS_BIN" 2>/dev/null; then
	KS_CONNRATE=${KS_CONNRATE:-$(dirname "$KS_BIN")/bench/ks_connrate} # the build's, run as root
	_ks_bins=$(mktemp -d "${TMPDIR:-/tmp}/ks-bins.XXXXXX")
	chmod 755 "$_ks_bins"
	ks_cleanup_add rm -rf -- "$_ks_bins"
	for _b in "$KS_BIN" "$(dirname "$KS_BIN")/ktls-redirect" "$KS_CTL" "${KS_STREAM:-}"; do
		[[ -n $_b && -e $_b ]] && cp -p "$_b" "$_ks_bins/"
	done
	[[ -n ${KS_STREAM:-} ]] && KS_STREAM=$_ks_bins/$(basename "$KS_STREAM")
	KS_CTL=$_ks_bins/$(basename "$KS_CTL")
	KS_BIN=$_ks_bins/$(basename "$KS_BIN")
fi

# ks_unprivileged DIR: sidecars that run as uid/gid 65534, as in a pod.
# Makes DIR (a ks_pki directory) readable to that uid, test keys included,
# and writes DIR/unprivileged: $KS_BIN dropped to 65534 when started as root
# (the descriptor limit root raised stays), run as is otherwise. Use it as
# KS_BIN for ks_pair.
ks_unprivileged() {
	local d=$1
	chmod 755 "$d" "$d/ca"
	chmod 644 "$d"/ca/*.key
	cat >"$d/unprivileged" <<EOF
#!/bin/sh
if [ "\$(id -u)" = 0 ]; then
	exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$KS_BIN" "\$@"
fi
exec "$KS_BIN" "\$@"
EOF
	chmod +x "$d/unprivileged"
}

ks_pki() {
	local d=$1
	"$KS_PKI" ca "$d/ca"
	"$KS_PKI" issue "$d/ca" client "$KS_CLIENT_ID"
	"$KS_PKI" issue "$d/ca" server "$KS_SERVER_ID"
}

# Sanitized builds are slower: give them more time for start-up.
# With KS_VALGRIND_DIR set (make valgrind) the sidecar runs under memcheck
# and run-integration.sh fails the test on any error or definite leak.
# valgrind 3.19 holds its big lock across io_uring_enter (it does not know
# the call can block), so under memcheck the epoll backend is forced.
ks_sidecar() {
	local log=$1
	shift
	# A log about to be overwritten by a restart still says what ran.
	[[ -s $log ]] && _ks_layers_of "$log" >>"$_KS_STATE/layers"
	# Unique per start: a sidecar that is still draining keeps its socket.
	_KS_CTL_N=$((${_KS_CTL_N:-0} + 1))
	KS_CTL_SOCKET=${log%.log}.$_KS_CTL_N.ctl.sock
	if [[ -n ${KS_VALGRIND_DIR:-} ]]; then
		KTLS_SIDECAR_CONTROL_SOCKET=$KS_CTL_SOCKET ks_bg "$log" valgrind -q --leak-check=full \
			--errors-for-leak-kinds=definite --log-file="$KS_VALGRIND_DIR/vg.%p" "$KS_BIN" "$@" \
			--io epoll >/dev/null
	else
		KTLS_SIDECAR_CONTROL_SOCKET=$KS_CTL_SOCKET ks_bg "$log" "$KS_BIN" "$@" >/dev/null
	fi
	KS_SIDECAR_PID=$KS_BG_PID
	# (either --log-format: event=ready, or "event":"ready")
	if ! ks_wait_log "$log" 'event("?:"|=)ready' "${KS_START_TIMEOUT:-20}"; then
		ks_fail "sidecar did not become ready: $*"
	fi
	# The ports it listens on, as it resolved them (port 0 = its choice).
	# shellcheck disable=SC2207 # numbers only: word splitting is the point
	KS_PORTS=($(sed -n -e 's/.*event=route .*listen=.*:\([0-9][0-9]*\) target=.*/\1/p' \
		-e 's/.*"event":"route",.*"listen":"[^"]*:\([0-9][0-9]*\)","target".*/\1/p' "$log"))
}

# What a scenario exercised, for the runner's summary (run-integration.sh):
# the record layers of the connections the sidecars opened, from their
# `event=conn_open` lines in every log the test kept in its directories
# (and in logs a restart overwrote, harvested by ks_sidecar). common.sh's
# exit trap calls it before the cleanup removes the logs.
_ks_layers_of() {
	grep -rhoI 'event=conn_open .*record_layer=[a-z]*' "$@" 2>/dev/null | sed 's/.*record_layer=//'
}
_ks_report_path() {
	local layers dirs=()
	[[ -s $_KS_STATE/tmpdirs ]] && mapfile -t dirs <"$_KS_STATE/tmpdirs"
	layers=$({ cat "$_KS_STATE/layers" 2>/dev/null; ((${#dirs[@]})) && _ks_layers_of "${dirs[@]}"; } |
		sort -u | paste -sd, -)
	echo "PATH: record_layer=${layers:-none}"
}

ks_s_server() {
	local log=$1
	shift
	ks_bg "$log" openssl s_server -accept 127.0.0.1:0 "$@" >/dev/null
	KS_S_SERVER_PID=$KS_BG_PID
	ks_wait_log "$log" '^ACCEPT 127\.0\.0\.1:[0-9]+' || ks_fail "openssl s_server did not start: $*"
	KS_S_SERVER_PORT=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
}

ks_closed_port() {
	local pf
	pf=$(mktemp "${TMPDIR:-/tmp}/ks-port.XXXXXX")
	rm -f "$pf"
	# Bound, never listening: connects are refused, and no one else gets the port.
	ks_bg /dev/null python3 -c 'import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(86400)' "$pf" >/dev/null
	for _ in $(seq 200); do [[ -s $pf ]] && break; sleep 0.05; done
	[[ -s $pf ]] || ks_fail "could not hold a closed port"
	KS_CLOSED_PORT=$(cat "$pf")
	rm -f "$pf"
}

# ks_served_serial CA_DIR PORT: the serial (hex) of the certificate that a
# new mTLS client (CA_DIR's client identity, from ks_pki) is shown on
# 127.0.0.1:PORT; empty if the handshake fails.
ks_served_serial() {
	timeout 10 openssl s_client -connect "127.0.0.1:$2" -CAfile "$1/bundle.crt" \
		-cert "$1/client.crt" -key "$1/client.key" -cert_chain "$1/int.crt" \
		</dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}

# ks_wait_served_serial CA_DIR PORT HEX: waits (a generous 10 s or more:
# not a timing assertion) until new handshakes on PORT present serial HEX.
ks_wait_served_serial() {
	local seen=
	for _ in $(seq 100); do
		seen=$(ks_served_serial "$1" "$2")
		[[ $seen =~ ^0*$3$ ]] && return 0
		sleep 0.1
	done
	ks_fail "port $2 presents serial '$seen', not $3"
}

ks_count() {
	grep -Ec -- "$2" "$1" 2>/dev/null || true
}

ks_admin_port() {
	sed -n 's/.*event=admin listen=[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$1" | tail -n 1
}

ks_metric() {
	curl -s --max-time 10 "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1 == s { print $2 }'
}

# ks_alive PID MSG: fails the test if PID has exited (a peer's misbehaviour
# must never end the process).
ks_alive() {
	kill -0 "$1" 2>/dev/null || ks_fail "$2"
}

# ks_echo_server LOG MODE [ARGS...]: starts a ks-stream server on a free port
# of its own choosing; sets KS_ECHO_PORT and KS_ECHO_PID.
ks_echo_server() {
	local log=$1 mode=$2
	shift 2
	local pf
	pf=$(mktemp "${TMPDIR:-/tmp}/ks-port.XXXXXX")
	rm -f "$pf"
	ks_bg "$log" "$KS_STREAM" server --listen 127.0.0.1:0 --mode "$mode" --ready-file "$pf" "$@" >/dev/null
	KS_ECHO_PID=$KS_BG_PID
	for _ in $(seq 200); do [[ -s $pf ]] && break; sleep 0.05; done
	[[ -s $pf ]] || ks_fail "ks-stream server did not start"
	KS_ECHO_PORT=$(cat "$pf")
	rm -f "$pf"
}

ks_http_server() {
	local log=$1 dir=${2:-.}
	# -u: the "Serving HTTP on HOST port N" line must reach LOG at once.
	ks_bg "$log" python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$dir" >/dev/null
	KS_HTTP_PID=$KS_BG_PID
	ks_wait_log "$log" '^Serving HTTP on 127\.0\.0\.1 port [0-9]+' || ks_fail "http.server did not start"
	KS_HTTP_PORT=$(sed -n 's/^Serving HTTP on 127\.0\.0\.1 port \([0-9]*\).*/\1/p' "$log" | head -1)
}

ks_py_server() {
	local log=$1
	shift
	ks_bg "$log" python3 "$@" >/dev/null
	KS_PY_PID=$KS_BG_PID
	ks_wait_log "$log" '^listening on [0-9]+$' || ks_fail "python server did not start: $*"
	KS_PY_PORT=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$log" | head -1)
}

# ks_pair T APP_PORT [EXTRA ARGS for both sidecars...]: starts B (inbound to
# 127.0.0.1:APP_PORT) and A (outbound to B, expecting B's ID) with the
# identities of ks_pki T. Sets KS_A_PORT, KS_A_PID, KS_B_PORT, KS_B_PID;
# logs go to T/a.log and T/b.log.
ks_pair() {
	local t=$1 app=$2
	shift 2
	ks_sidecar "$t/b.log" --inbound "127.0.0.1:0=127.0.0.1:$app" \
		--cert "$t/ca/server.crt" --key "$t/ca/server.key" --ca "$t/ca/bundle.crt" "$@"
	KS_B_PID=$KS_SIDECAR_PID KS_B_PORT=${KS_PORTS[0]}
	ks_sidecar "$t/a.log" --outbound "127.0.0.1:0=127.0.0.1:$KS_B_PORT,id=$KS_SERVER_ID" \
		--cert "$t/ca/client.crt" --key "$t/ca/client.key" --ca "$t/ca/bundle.crt" "$@"
	KS_A_PID=$KS_SIDECAR_PID KS_A_PORT=${KS_PORTS[0]}
}

# ks_kernel_tls: true when this kernel can offload TLS (the kTLS VM), by
# asking the sidecar's own probe.
ks_kernel_tls() {
	if [[ -z ${_KS_KTLS_CACHED:-} ]]; then
		local t
		t=$(mktemp -d)
		"$KS_PKI" ca "$t/ca" && "$KS_PKI" issue "$t/ca" p spiffe://probe.test/p
		timeout 20 "$KS_BIN" --inbound "127.0.0.1:1=127.0.0.1:2" --cert "$t/ca/p.crt" \
			--key "$t/ca/p.key" --ca "$t/ca/bundle.crt" --workers 1 >"$t/log" 2>&1 &
		local pid=$!
		for _ in $(seq 100); do grep -q 'event=ktls_probe' "$t/log" && break; sleep 0.05; done
		kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
		if grep -q 'event=ktls_probe .*aes128gcm=yes' "$t/log"; then _KS_KTLS_CACHED=yes; else _KS_KTLS_CACHED=no; fi
		if grep -q 'event=ktls_probe .*rekey=yes' "$t/log"; then _KS_REKEY_CACHED=yes; else _KS_REKEY_CACHED=no; fi
		# In the kTLS VM (make test-ktls) a kernel that cannot offload is a
		# broken harness, not a reason to test the userspace path instead.
		if [[ $_KS_KTLS_CACHED == no && ${KS_REQUIRE_KTLS:-0} == 1 ]]; then
			cat "$t/log" >&2
			rm -rf "$t"
			ks_fail "KS_REQUIRE_KTLS=1 but this kernel cannot offload TLS"
		fi
		rm -rf "$t"
	fi
	[[ $_KS_KTLS_CACHED == yes ]]
}

# ks_kernel_rekey: true when this kernel's kTLS takes a new key on a live
# socket (TLS 1.3 KeyUpdate, Linux 6.14+), by the sidecar's own probe. On a
# 6.14+ kernel with kTLS a probe that says no is a failure, not a skip.
ks_kernel_rekey() {
	ks_kernel_tls || return 1
	local v maj min
	v=$(uname -r)
	maj=${v%%.*} min=${v#*.}
	min=${min%%[!0-9]*}
	if [[ $_KS_REKEY_CACHED == no ]] && ((maj > 6 || (maj == 6 && min >= 14))); then
		ks_fail "kernel $v (6.14+) has kTLS but the sidecar's probe says it cannot rekey"
	fi
	[[ $_KS_REKEY_CACHED == yes ]]
}

# ks_tls_stat FIELD: a counter from /proc/net/tls_stat (0 without kTLS).
ks_tls_stat() {
	local v
	v=$(awk -v f="$1" '$1 == f {print $2}' /proc/net/tls_stat 2>/dev/null || true)
	echo "${v:-0}"
}

# ks_load_start DIR PORT: clients through 127.0.0.1:PORT in the background,
# run after run (ks-stream, 8 connections of 256K each, SHA-256-checked
# echo), until ks_load_stop. Each run's output is DIR/load.N.
ks_load_start() {
	local dir=$1 port=$2
	: >"$dir/load.fail"
	rm -f "$dir/load.stop"
	(
		i=0
		while [[ ! -e $dir/load.stop ]]; do
			i=$((i + 1))
			if ! "$KS_STREAM" client --connect "127.0.0.1:$port" --conns 8 --bytes 256K \
				--seed "$((i * 8))" --half-close --timeout 60 >"$dir/load.$i" 2>&1; then
				echo "$i" >>"$dir/load.fail"
			fi
			echo "$i" >"$dir/load.runs"
		done
	) &
	_ks_load_pid=$!
	_ks_load_dir=$dir
	ks_cleanup_add bash -c "touch '$dir/load.stop'; kill $_ks_load_pid 2>/dev/null; true"
}

# ks_load_stop WHAT: ends the load and fails unless every connection of at
# least two runs completed intact; WHAT names what the load overlapped
# ("the swaps"). Sets KS_LOAD_RUNS and KS_LOAD_OKS.
ks_load_stop() {
	local what=$1 dir=$_ks_load_dir
	touch "$dir/load.stop"
	wait "$_ks_load_pid"
	KS_LOAD_RUNS=$(cat "$dir/load.runs")
	if [[ -s $dir/load.fail ]]; then
		cat "$dir/load.$(head -1 "$dir/load.fail")" >&2
		ks_fail "connections failed during $what (runs $(paste -sd, "$dir/load.fail"))"
	fi
	((KS_LOAD_RUNS >= 2)) || ks_fail "only $KS_LOAD_RUNS load run(s) overlapped $what"
	KS_LOAD_OKS=$(cat "$dir"/load.[0-9]* | grep -c 'status=ok' || true)
	((KS_LOAD_OKS == KS_LOAD_RUNS * 8)) || ks_fail "$KS_LOAD_OKS connections ok of $((KS_LOAD_RUNS * 8))"
}
