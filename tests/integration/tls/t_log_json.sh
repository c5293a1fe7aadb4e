#!/usr/bin/env bash
# --log-format json and --access-log (README, "Logs and certificate
# expiry"):
#  1. a pair with --log-format json carries traffic and meets hostile
#     clients (a URI SAN full of quotes, backslashes, '=' and spaces; a
#     2,029-character SPIFFE ID; raw garbage with control and non-UTF-8
#     bytes). Every line of both logs is one JSON object (python3's strict
#     json.loads on strict UTF-8) with ts, level and event; conn_close has
#     its byte counts as numbers, equal to what was sent; the refusals keep
#     their reasons and the long ID its length marker.
#  2. a pair with --access-log off carries a clean stream: no conn_open and
#     no conn_close in either log. A refused handshake and a connection the
#     client resets (conn_close reason=peer_reset, a warning) are still logged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
"$KS_PKI" issue "$T/ca" hostile 'spiffe://example.org/ns/a/sa/x"y\z=w level=error "}'
"$KS_PKI" issue "$T/ca" long "spiffe://example.org/ns/z/sa/$(printf 'y%.0s' $(seq 2000))"
ks_echo_server "$T/echo.log" echo
BYTES=300000

# check_json LOG...: every line one JSON object with ts, level and event.
check_json() {
	python3 - "$@" <<'PY'
import json, re, sys
for path in sys.argv[1:]:
    n = 0
    with open(path, 'rb') as f:
        for n, raw in enumerate(f, 1):
            try:
                o = json.loads(raw.decode('utf-8'))  # strict: control bytes refused
            except ValueError as e:
                sys.exit(f"{path}:{n}: not JSON ({e}): {raw[:400]!r}")
            if not isinstance(o, dict):
                sys.exit(f"{path}:{n}: not an object: {raw[:400]!r}")
            for k in ('ts', 'level', 'event'):
                if not isinstance(o.get(k), str):
                    sys.exit(f"{path}:{n}: no string {k}: {raw[:400]!r}")
            if not re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', o['ts']):
                sys.exit(f"{path}:{n}: ts {o['ts']!r}")
            if o['level'] not in ('debug', 'info', 'warn', 'error'):
                sys.exit(f"{path}:{n}: level {o['level']!r}")
    if n == 0:
        sys.exit(f"{path}: empty")
    print(f"{path}: {n} lines, all JSON")
PY
}

# jq_events LOG EVENT PYEXPR: the number of EVENT objects in LOG for which
# PYEXPR (over o) holds.
jq_events() {
	python3 - "$@" <<'PY'
import json, sys
path, event, expr = sys.argv[1:4]
objs = [json.loads(l) for l in open(path, encoding='utf-8')]
print(sum(1 for o in objs if o['event'] == event and eval(expr, {}, {'o': o})))
PY
}

# reset_client PORT: an authenticated client that echoes a byte through B,
# then resets the connection (SO_LINGER 0): B's conn_close is peer_reset.
reset_client() {
	python3 - "$1" "$T/ca" <<'PY'
import socket, ssl, struct, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca + '/bundle.crt')
ctx.check_hostname = False
ctx.load_cert_chain(ca + '/client.crt', ca + '/client.key')
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10))
s.sendall(b'x')
assert s.recv(1) == b'x'
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
s.close()
PY
}

# garbage PORT: bytes that are no TLS, with control, quote, backslash and
# non-UTF-8 bytes.
garbage() {
	python3 -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET /\x00\xff\xfe\"\\\n=x level=error \x1b[31m\r\n\r\n")
try:
    s.recv(100)
except OSError:
    pass' "$1"
}

s_client() { # PORT NAME: a TLS client with that certificate
	{ printf 'hello\n'; sleep 0.5; } | timeout 10 openssl s_client -connect "127.0.0.1:$1" \
		-CAfile "$T/ca/bundle.crt" -cert "$T/ca/$2.crt" -key "$T/ca/$2.key" \
		-cert_chain "$T/ca/int.crt" >"$T/s_client.$2.out" 2>&1 || true
}

# 1. JSON
ks_pair "$T" "$KS_ECHO_PORT" --log-format json --allow 'spiffe://example.org/ns/a/sa/*'
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "$BYTES" --timeout 30 >"$T/stream.out" 2>&1 ||
	{ cat "$T/stream.out"; ks_fail "no echo through the JSON-logging pair"; }
s_client "$KS_B_PORT" hostile
s_client "$KS_B_PORT" long
garbage "$KS_B_PORT"
ks_wait_log "$T/a.log" '"event":"conn_close"' 10 || ks_fail "A logged no conn_close"
ks_wait_log "$T/b.log" '"event":"conn_close"' 10 || ks_fail "B logged no conn_close"
for _ in $(seq 100); do
	(($(ks_count "$T/b.log" '"event":"handshake_rejected"') >= 3)) && break
	sleep 0.1
done
check_json "$T/a.log" "$T/b.log" || ks_fail "a log line is not one JSON object with ts, level and event"
for side in a b; do
	n=$(jq_events "$T/$side.log" conn_close \
		"o['level'] == 'info' and o['reason'] == 'done' and o['bytes_to_peer'] == $BYTES and o['bytes_from_peer'] == $BYTES and type(o['duration_ms']) is int and type(o['conn']) is int")
	((n == 1)) || ks_fail "$side: conn_close without numeric byte counts of $BYTES: $(grep '"conn_close"' "$T/$side.log")"
	n=$(jq_events "$T/$side.log" conn_open "o['tls'] == 'TLSv1.3' and type(o['identity_serial']) is str")
	((n == 1)) || ks_fail "$side: no conn_open with tls and identity_serial"
done
n=$(jq_events "$T/b.log" handshake_rejected "o['reason'] == 'no_spiffe_id' and o['level'] == 'warn'")
((n == 1)) || ks_fail "the hostile URI SAN's refusal is missing: $(grep handshake_rejected "$T/b.log")"
n=$(jq_events "$T/b.log" handshake_rejected "o['reason'] == 'identity_not_allowed' and o['peer_id'].endswith('y...[truncated:2029_bytes]')")
((n == 1)) || ks_fail "the long ID's refusal lost its marker: $(grep handshake_rejected "$T/b.log")"
n=$(jq_events "$T/b.log" handshake_rejected "o['reason'] == 'not_tls'")
((n == 1)) || ks_fail "the garbage client's refusal is missing: $(grep handshake_rejected "$T/b.log")"
n=$(jq_events "$T/b.log" route "o['listen'] == '127.0.0.1:$KS_B_PORT'")
((n == 1)) || ks_fail "B's route line lost its listen address"
ks_assert_not_grep "$T/b.log" '^ts=' "a logfmt line in a JSON log"
ks_pass "--log-format json: $(wc -l <"$T/b.log") + $(wc -l <"$T/a.log") lines all parse; conn_close bytes are numbers ($BYTES); hostile refusals keep reason and marker"

# 2. --access-log off
T2=$(ks_tmpdir)
ln -s "$T/ca" "$T2/ca"
ks_pair "$T2" "$KS_ECHO_PORT" --access-log off
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "$BYTES" --timeout 30 >"$T/stream2.out" 2>&1 ||
	{ cat "$T/stream2.out"; ks_fail "no echo through the pair without access log"; }
garbage "$KS_B_PORT"
reset_client "$KS_B_PORT"
ks_wait_log "$T2/b.log" 'event=handshake_rejected .*reason=not_tls' 10 || ks_fail "a refusal was not logged with --access-log off"
ks_wait_log "$T2/b.log" 'level=warn event=conn_close .*reason=peer_reset' 10 ||
	ks_fail "a reset connection was not logged with --access-log off"
for side in a b; do
	ks_assert_not_grep "$T2/$side.log" 'event=conn_open' "$side: conn_open with --access-log off"
	ks_assert_not_grep "$T2/$side.log" 'event=conn_close .*reason=done' "$side: a clean conn_close with --access-log off"
done
ks_pass "--access-log off: no conn_open, no clean conn_close; a refusal and a reset connection still logged"
