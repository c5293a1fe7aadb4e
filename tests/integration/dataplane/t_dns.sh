#!/usr/bin/env bash
# Names in outbound routes (README, "Names in outbound routes"): a route to a
# name that does not resolve at start-up is a warning, not an exit; a
# connection through it is refused (reset, reason=resolve_failed); once the
# name resolves, new connections go through, with no restart; when it goes
# away again, connections are refused again after the cache lifetime.
#
# The sidecar gets its own /etc/hosts, and an nsswitch.conf of "files" only
# (no DNS: nothing here depends on the network), bind-mounted in a mount
# namespace of its own that dies with it: nothing is mounted on the host.
# The file is rewritten in place (same inode) to make the name appear or go;
# glibc reads /etc/hosts on each lookup. Last, a second sidecar's DNS server
# never answers: a connection waiting for that lookup is refused at
# --handshake-timeout, and SIGTERM does not wait for the lookup.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ $(id -u) == 0 ]] || ks_skip "needs root (a mount namespace for /etc/hosts)"
unshare -m --propagation private true 2>/dev/null || ks_skip "unshare -m is not permitted here"

T=$(ks_tmpdir)
ks_pki "$T"
name=ks-upstream-$$.test

# in_ns DIR: DIR/in-ns runs a command with DIR/hosts, DIR/nsswitch.conf and
# DIR/resolv.conf (those that DIR has) bind-mounted over /etc's. unshare
# execs in place: the pid the test holds is the sidecar's.
in_ns() {
	local d=$1
	cat >"$d/in-ns" <<EOF
#!/bin/sh
exec unshare -m --propagation private sh -c \
	'for f in hosts nsswitch.conf resolv.conf; do [ -e "\$1/\$f" ] || continue; mount --bind "\$1/\$f" "/etc/\$f" || exit 1; done; shift; exec "\$@"' \
	sh "$d" "$KS_BIN" "\$@"
EOF
	chmod +x "$d/in-ns"
}
mkdir "$T/ns1"
printf '127.0.0.1 localhost\n' >"$T/ns1/hosts"
printf 'hosts: files\n' >"$T/ns1/nsswitch.conf"
in_ns "$T/ns1"
hosts=$T/ns1/hosts

# talk PORT LINE: sends LINE through the outbound listener, prints the
# answer, or <the error> when the connection fails.
talk() {
	python3 - "$1" "$2" <<'PY'
import socket, sys
buf = b""
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    s.sendall(sys.argv[2].encode() + b"\n")
    while not buf.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            buf += b"<eof>"
            break
        buf += d
except OSError as e:
    buf += ("<%s>" % e).encode()
print(buf.decode(errors="replace").strip())
PY
}

ks_s_server "$T/s_server.log" -rev -Verify 2 -verify_return_error -CAfile "$T/ca/bundle.crt" \
	-cert "$T/ca/server.crt" -key "$T/ca/server.key" -cert_chain "$T/ca/int.crt"
remote=$KS_S_SERVER_PORT

log=$T/sidecar.log
KS_BIN=$T/ns1/in-ns ks_sidecar "$log" --cert "$T/ca/client.crt" --key "$T/ca/client.key" \
	--ca "$T/ca/bundle.crt" --dns-refresh 1s --outbound "127.0.0.1:0=$name:$remote,id=$KS_SERVER_ID"
pid=$KS_SIDECAR_PID out=${KS_PORTS[0]}

# 1. Start-up: a warning, and the sidecar runs.
ks_assert_grep "$log" "event=route_unresolved name=$name reason=\"cannot resolve $name: " \
	"no start-up warning for the unresolvable name"
ks_assert_grep "$log" "event=route dir=outbound listen=127.0.0.1:$out target=$name:$remote " \
	"the route is not logged with its name"
ks_alive "$pid" "the sidecar exited over an unresolvable name"
ks_pass "unresolvable name at start-up: warning, sidecar ready"

# 2. A connection to it: reset, reason=resolve_failed, nothing sent.
ans=$(talk "$out" "early")
[[ $ans == *"reset"* ]] || ks_fail "the app's connection was not reset: '$ans'"
ks_wait_log "$log" "event=handshake_rejected .*dir=outbound listen=127.0.0.1:$out peer=$name:$remote .*reason=resolve_failed detail=\"cannot resolve $name: " 5
[[ $(ks_count "$log" 'event=conn_open') == 0 ]] ||
	ks_fail "a connection opened though the name did not resolve"
ks_pass "connection to an unresolved name: reset, reason=resolve_failed"

# 3. The name appears (::1 first: nothing listens there, so the connection
# moves on to the next address): new connections go through, no restart.
printf '127.0.0.1 localhost\n::1 %s\n127.0.0.1 %s\n' "$name" "$name" >"$hosts"
ans=
for _ in $(seq 100); do
	ans=$(talk "$out" "hello name")
	[[ $ans == "eman olleh" ]] && break
	sleep 0.1
done
[[ $ans == "eman olleh" ]] || ks_fail "the route did not start working once the name resolved: '$ans'"
ks_assert_grep "$log" "event=route_resolved name=$name addrs=" "the name's resolution is not logged"
ks_assert_grep "$log" "event=conn_open .*dir=outbound listen=127.0.0.1:$out peer=127.0.0.1:$remote peer_id=$KS_SERVER_ID" \
	"the connection did not go to the name's address"
ks_alive "$pid" "the sidecar exited"
[[ $(ks_count "$log" 'event=ready') == 1 ]] || ks_fail "the sidecar restarted"
if grep -q "event=route_resolved name=$name addrs=::1,127.0.0.1" "$log"; then
	echo "(::1 came first and was refused: the next address was tried)"
fi
ks_pass "the name resolves: the route works, same process"

# 4. The name goes away: after the cache lifetime (1s), refused again.
printf '127.0.0.1 localhost\n' >"$hosts"
before=$(ks_count "$log" 'reason=resolve_failed')
for _ in $(seq 100); do
	ans=$(talk "$out" "late")
	(($(ks_count "$log" 'reason=resolve_failed') > before)) && break
	sleep 0.1
done
(($(ks_count "$log" 'reason=resolve_failed') > before)) ||
	ks_fail "connections still went through after the name went away: '$ans'"
[[ $(ks_count "$log" "event=route_unresolved name=$name") == 2 ]] ||
	ks_fail "the name's loss is not logged once: $(grep route_unresolved "$log")"
ks_alive "$pid" "the sidecar exited"
ks_pass "the name goes away: refused again after --dns-refresh"

# 5. A lookup that hangs (a DNS server that never answers): the connection
# waiting for it is refused at --handshake-timeout, and a stop does not wait
# for the lookup (glibc gives it 30 s). At start-up nothing listens at the
# server's address, so that lookup fails at once (ICMP port unreachable).
if [[ ! -e /etc/resolv.conf ]]; then
	echo "(no /etc/resolv.conf to mount over: the hung lookup is not tested)"
	exit 0
fi
dns=127.83.$((RANDOM % 250 + 1)).1
mkdir "$T/ns2"
printf '127.0.0.1 localhost\n' >"$T/ns2/hosts"
printf 'hosts: files dns\n' >"$T/ns2/nsswitch.conf"
printf 'nameserver %s\noptions timeout:30 attempts:1\n' "$dns" >"$T/ns2/resolv.conf"
in_ns "$T/ns2"
log2=$T/sidecar2.log
KS_BIN=$T/ns2/in-ns ks_sidecar "$log2" --cert "$T/ca/client.crt" --key "$T/ca/client.key" \
	--ca "$T/ca/bundle.crt" --dns-refresh 1s --handshake-timeout 1s \
	--outbound "127.0.0.1:0=$name:$remote,id=$KS_SERVER_ID"
pid2=$KS_SIDECAR_PID out2=${KS_PORTS[0]}
ks_assert_grep "$log2" "event=route_unresolved name=$name" "no start-up warning (second sidecar)"
ks_bg "$T/dns.log" python3 -u -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("listening", flush=True)
time.sleep(3600)' "$dns" >/dev/null
ks_wait_log "$T/dns.log" '^listening' 5 || ks_skip "cannot bind a UDP socket on $dns:53"
hang='reason=resolve_failed detail="no answer from the lookup within --handshake-timeout"'
for _ in $(seq 50); do
	talk "$out2" "x" >/dev/null
	grep -q -- "$hang" "$log2" && break
	sleep 0.1
done
ks_assert_grep "$log2" "event=handshake_rejected .*peer=$name:$remote .*$hang" \
	"a connection waiting for a hung lookup was not refused at --handshake-timeout"
ks_alive "$pid2" "the sidecar exited"
kill -TERM "$pid2"
for _ in $(seq 200); do _ks_alive "$pid2" || break; sleep 0.05; done
! _ks_alive "$pid2" || ks_fail "SIGTERM waited for a hung lookup (still running after 10 s)"
ks_assert_grep "$log2" "event=stopped" "the sidecar did not stop cleanly"
ks_pass "hung lookup: refused at --handshake-timeout; stopping does not wait for it"
