#!/usr/bin/env bash
# make demo: the sidecar's main job on a built-in default, end to end.
#
# Two "pods" on loopback. Pod A's app (curl) talks plaintext HTTP to its
# sidecar; sidecar A originates mutual TLS to sidecar B, which checks A's
# SPIFFE ID and forwards plaintext to pod B's app (an HTTP server). The
# sidecars start with no certificate: the built-in control plane (ktlsctl
# agent, with a throwaway dev CA) asks each for a CSR, signs it and pushes
# the chain and trust bundle over the control API. Then we print what each
# side saw.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

T=$(ks_tmpdir)
KS_CTL=${KS_CTL:-$(dirname "$KS_BIN")/ktlsctl}
# On SIGTERM a sidecar keeps its inbound listeners for --drain-delay (5 s)
# while a Service's endpoints learn that the pod is going (README,
# "Stopping"). The demo has no endpoints: its sidecars drain and leave at
# once when it ends.
export KTLS_SIDECAR_DRAIN_DELAY=0
A_ID=spiffe://demo.local/ns/frontend/sa/web
B_ID=spiffe://demo.local/ns/backend/sa/api

say() { printf '%s\n' "$*"; }
# listen_port LOG: the port a sidecar started with LISTEN port 0 chose (its
# event=route line), once it is ready.
listen_port() {
	ks_wait_log "$1" 'event=ready' 20 || return 1
	sed -n 's/.*event=route .*listen=.*:\([0-9][0-9]*\) target=.*/\1/p' "$1" | head -1
}
field() { # LOG EVENT KEY: value of KEY in the first EVENT line of LOG
	grep -m1 "event=$2 " "$1" | grep -o "$3=\"[^\"]*\"\|$3=[^ ]*" | head -1 | cut -d= -f2- | tr -d '"'
}

say "== ktls-sidecar demo (work dir $T)"
say "-- a throwaway dev CA (root + intermediate): ktlsctl ca init $T/ca --trust-domain demo.local"
"$KS_CTL" ca init "$T/ca" --trust-domain demo.local | sed 's/^/   /'
say "-- the agents get its signer set alone, no root key: ktlsctl ca export-signer $T/ca $T/ca-signer"
"$KS_CTL" ca export-signer "$T/ca" "$T/ca-signer" | sed 's/^/   /'
"$KS_PKI" ca "$T/rogue"
"$KS_PKI" issue "$T/rogue" intruder spiffe://demo.local/ns/frontend/sa/web

mkdir "$T/www"
head -c 16M /dev/urandom >"$T/www/payload.bin"
# Every listener binds port 0 and we read back the port it got: the app
# prints it, the sidecars log it (event=route ... listen=).
# (-u: http.server's "Serving HTTP on ... port N" line must not sit in a buffer)
ks_bg "$T/app.log" python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$T/www" >/dev/null
ks_wait_log "$T/app.log" '^Serving HTTP on 127\.0\.0\.1 port [0-9]+'
app=$(sed -n 's/^Serving HTTP on 127\.0\.0\.1 port \([0-9]*\).*/\1/p' "$T/app.log" | head -1)

ks_bg "$T/b.log" "$KS_BIN" --inbound "127.0.0.1:0=127.0.0.1:$app" \
	--allow 'spiffe://demo.local/ns/frontend/sa/*' --control-socket "$T/b.ctl.sock" \
	--spiffe-id "$B_ID" >/dev/null
b_port=$(listen_port "$T/b.log")
say "-- pod B: app on 127.0.0.1:$app, sidecar B terminates mTLS on 127.0.0.1:$b_port"
ks_bg "$T/a.log" "$KS_BIN" --outbound "127.0.0.1:0=127.0.0.1:$b_port,id=$B_ID" \
	--control-socket "$T/a.ctl.sock" --spiffe-id "$A_ID" >/dev/null
a_port=$(listen_port "$T/a.log")
say "-- pod A: sidecar A listens on 127.0.0.1:$a_port and originates mTLS to B, expecting $B_ID"
say "-- the control plane: one ktlsctl agent per pod (CSR -> dev CA -> SetIdentity, renewal at TTL/2)"
ks_bg "$T/agent-b.log" "$KS_CTL" agent --sidecar "$T/b.ctl.sock" --ca "$T/ca-signer" --id "$B_ID" --ttl 1h >/dev/null
ks_bg "$T/agent-a.log" "$KS_CTL" agent --sidecar "$T/a.ctl.sock" --ca "$T/ca-signer" --id "$A_ID" --ttl 1h >/dev/null
ks_wait_log "$T/b.log" 'event=control_update op=SetIdentity'
ks_wait_log "$T/a.log" 'event=control_update op=SetIdentity'
sed 's/^/   /' "$T/agent-a.log" "$T/agent-b.log"

say "-- pod A's app: curl http://127.0.0.1:$a_port/payload.bin (plain HTTP; the sidecars do the TLS)"
curl -sS --fail -o "$T/got.bin" "http://127.0.0.1:$a_port/payload.bin"
ks_wait_log "$T/a.log" 'event=conn_close' 5
ks_wait_log "$T/b.log" 'event=conn_close' 5

sent=$(sha256sum <"$T/www/payload.bin" | cut -c1-16)
got=$(sha256sum <"$T/got.bin" | cut -c1-16)

say "-- an intruder with a certificate from another CA connects straight to sidecar B"
timeout 10 openssl s_client -connect "127.0.0.1:$b_port" -cert "$T/rogue/intruder.crt" \
	-key "$T/rogue/intruder.key" -cert_chain "$T/rogue/int.crt" </dev/null >/dev/null 2>&1 || true
ks_wait_log "$T/b.log" 'event=handshake_rejected' 5

cat <<REPORT

==================================== what happened ====================================
I/O backend              A: $(field "$T/a.log" io_backend backend)   B: $(field "$T/b.log" io_backend backend)
Sidecar A (outbound) saw peer   $(field "$T/a.log" conn_open peer_id)
Sidecar B (inbound)  saw peer   $(field "$T/b.log" conn_open peer_id)
TLS version / cipher / group    $(field "$T/a.log" conn_open tls) / $(field "$T/a.log" conn_open cipher) / $(field "$T/a.log" conn_open group)
Record layer                    A: $(field "$T/a.log" conn_open record_layer)   B: $(field "$T/b.log" conn_open record_layer)
  because                       $(field "$T/a.log" conn_open record_layer_reason)
Bytes A -> B (request)          $(field "$T/a.log" conn_close bytes_to_peer)
Bytes B -> A (response)         $(field "$T/a.log" conn_close bytes_from_peer)
Bytes through A's own memory    $(field "$T/a.log" conn_close userspace_bytes) (0 + control records on the kernel path)
Payload SHA-256 (first 64 bits) served $sent, received $got $([[ $sent == "$got" ]] && echo "(equal)" || echo "(DIFFERENT)")
Intruder (foreign CA)           refused by B: reason=$(field "$T/b.log" handshake_rejected reason) ($(field "$T/b.log" handshake_rejected detail))
=========================================================================================
Full logs: sidecar A and B log one logfmt line per event; see README.md for the fields.
REPORT
say "-- sidecar B over its control API: ktlsctl --socket $T/b.ctl.sock status"
"$KS_CTL" --socket "$T/b.ctl.sock" status | sed 's/^/   /'
[[ $sent == "$got" ]] || { echo "demo: payload corrupted" >&2; exit 1; }
say "demo: OK"
