#!/usr/bin/env bash
# Session ticket keys shared between the replicas of one service (issue 18;
# SetTicketKeys, `ktlsctl set-ticket-keys`). Two inbound sidecars B1 and B2
# are two replicas; a TLS 1.3 ticket B1 issued (openssl s_client -sess_out)
# is offered to B2 (-sess_in):
#   - with keys of their own (the default), B2 cannot open it: a full
#     handshake ("New"), and B2 logs resumption_refused reason=unknown_key;
#   - once both have the same pushed keys, B2 resumes it ("Reused", its
#     conn_open says resumed=yes), and a rotation that keeps the old key
#     second still resumes it;
#   - bad pushes (a key of the wrong length, a name twice, an all-zero
#     secret, five keys) are refused with exit 1 and REASON_BAD_TICKET_KEY,
#     malformed files locally with exit 5, and the keys in force stay:
#     cross-replica resumption still works;
#   - --clear goes back to keys of B2's own: cross-replica resumption stops;
#   - a sidecar with --session-resumption off refuses the push
#     (CODE_FAILED_PRECONDITION) and shows no keys.
# Status shows the key names (hex) and whose they are; no log line and no
# ktlsctl output carries a secret. /metrics counts the keys in force by
# whose they are (ktls_sidecar_tls_ticket_keys{source=own|pushed}) and the
# rotations of keys of our own (B4, --session-lifetime 1s).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
ks_pki "$T"
mkdir "$T/www"
echo "replica says hello" >"$T/www/hello.txt"
ks_http_server "$T/http.log" "$T/www"

B=(--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" --workers 1
	--admin 127.0.0.1:0)
ks_sidecar "$T/b1.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_HTTP_PORT" "${B[@]}"
b1_port=${KS_PORTS[0]} b1_sock=$KS_CTL_SOCKET b1_admin=$(ks_admin_port "$T/b1.log")
ks_sidecar "$T/b2.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_HTTP_PORT" "${B[@]}"
b2_port=${KS_PORTS[0]} b2_sock=$KS_CTL_SOCKET b2_admin=$(ks_admin_port "$T/b2.log")
socks=([1]="$b1_sock" [2]="$b2_sock") admins=([1]="$b1_admin" [2]="$b2_admin")

# keys_metrics ADMIN_PORT OWN PUSHED ROTATIONS WHO: /metrics counts OWN keys
# of our own in force, PUSHED pushed ones, and ROTATIONS rotations (none failed).
keys_metrics() {
	local got
	got="$(ks_metric "$1" 'ktls_sidecar_tls_ticket_keys{source="own"}') $(ks_metric "$1" 'ktls_sidecar_tls_ticket_keys{source="pushed"}')"
	got="$got $(ks_metric "$1" ktls_sidecar_tls_ticket_key_rotations_total)"
	got="$got $(ks_metric "$1" ktls_sidecar_tls_ticket_key_rotation_failures_total)"
	[[ $got == "$2 $3 $4 0" ]] ||
		ks_fail "$5's /metrics: own, pushed, rotations, rotation failures are '$got', want '$2 $3 $4 0'"
}
ctl1() { "$KS_CTL" --socket "$b1_sock" "$@"; }
ctl2() { "$KS_CTL" --socket "$b2_sock" "$@"; }

# get PORT [s_client args]: one HTTP GET through a replica; sets HOW to how
# the session began ("New" or "Reused"). HTTP/1.0: the server closes after
# the answer, so s_client (-ign_eof) has read the tickets by then.
n_get=0
get() {
	local port=$1 out
	shift
	n_get=$((n_get + 1))
	out=$T/get.$n_get.out
	printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$port" \
		-cert "$T/ca/client.crt" -key "$T/ca/client.key" -cert_chain "$T/ca/int.crt" \
		-CAfile "$T/ca/bundle.crt" -ign_eof "$@" >"$out" 2>&1 || true
	grep -q 'replica says hello' "$out" || { cat "$out" >&2; ks_fail "GET $n_get through port $port failed"; }
	HOW=$(sed -n 's/^\(New\|Reused\), TLSv1\.3, .*/\1/p' "$out" | head -1)
}

# cross FROM_PORT TO_PORT: a fresh ticket of FROM's, offered to TO; sets HOW.
cross() {
	local sess=$T/sess.$((n_get + 1))
	get "$1" -sess_out "$sess"
	[[ $HOW == New ]] || ks_fail "GET $n_get to port $1 without a ticket was '$HOW', not New"
	[[ -s $sess ]] || ks_fail "s_client kept no session from port $1 (no ticket?)"
	get "$2" -sess_in "$sess"
}

# wait_count LOG REGEX N: the log's lines matching REGEX reach N, and no more.
wait_count() {
	for _ in $(seq 200); do (($(ks_count "$1" "$2") >= $3)) && break; sleep 0.05; done
	local n
	n=$(ks_count "$1" "$2")
	((n == $3)) || ks_fail "$(basename "$1"): $n line(s) matching /$2/, want $3"
}
RESUMED='event=conn_open .*resumed=yes'
UNKNOWN='event=resumption_refused .*reason=unknown_key'

# --- keys of their own: a replica resumes its own tickets, not the other's --
cross "$b1_port" "$b1_port"
[[ $HOW == Reused ]] || ks_fail "B1 did not resume its own ticket"
wait_count "$T/b1.log" "$RESUMED" 1
cross "$b1_port" "$b2_port"
[[ $HOW == New ]] || ks_fail "B2 resumed B1's ticket with keys of its own"
wait_count "$T/b2.log" "$UNKNOWN" 1
wait_count "$T/b2.log" "$RESUMED" 0
ctl2 status >"$T/st2"
ks_assert_grep "$T/st2" '^ticket keys +1, our own' "B2's status does not show one key of its own"
ks_assert_grep "$T/st2" '^ +name [0-9a-f]{32} \(seals new tickets\)$' "B2's status does not name its key"
keys_metrics "$b2_admin" 1 0 0 B2
ks_pass "keys of their own: B1 resumes its ticket, B2 refuses it (unknown_key) and does a full handshake; /metrics: 1 key of its own"

# --- the same pushed keys on both: B2 resumes B1's tickets, and back -----------
(
	umask 077
	"$KS_CTL" gen-ticket-key >"$T/k1"
	"$KS_CTL" gen-ticket-key >"$T/k2"
	"$KS_CTL" gen-ticket-key >"$T/k3"
)
[[ $(cat "$T/k1") =~ ^[0-9a-f]{96}$ ]] || ks_fail "gen-ticket-key printed '$(cat "$T/k1")'"
cmp -s "$T/k1" "$T/k2" && ks_fail "gen-ticket-key printed the same key twice"
{ echo "# web replicas: the first key seals"; cat "$T/k1" "$T/k2"; } >"$T/keys"
name1=$(cut -c1-32 "$T/k1") name2=$(cut -c1-32 "$T/k2") name3=$(cut -c1-32 "$T/k3")
ctl1 set-ticket-keys "$T/keys" >"$T/push1"
ctl2 set-ticket-keys - <"$T/keys" >"$T/push2" # - : standard input
ks_assert_grep "$T/push1" "^2 pushed ticket key\(s\) in force \($name1,$name2\); $name1 seals" "push to B1 not confirmed"
ks_assert_grep "$T/push2" "^2 pushed ticket key\(s\) in force" "push to B2 not confirmed"
for b in 1 2; do
	"$KS_CTL" --socket "${socks[$b]}" status >"$T/st$b"
	ks_assert_grep "$T/st$b" '^ticket keys +2, pushed' "B$b's status does not say its keys are pushed"
	ks_assert_grep "$T/st$b" "^ +name $name1 \(seals new tickets\)$" "B$b's status lacks the sealing key"
	ks_assert_grep "$T/st$b" "^ +name $name2$" "B$b's status lacks the second key"
	ks_assert_grep "$T/b$b.log" "event=control_update op=SetTicketKeys ticket_keys=pushed keys=2 names=$name1,$name2" \
		"B$b did not log the push by key names"
	keys_metrics "${admins[$b]}" 0 2 0 "B$b"
done
cross "$b1_port" "$b2_port"
[[ $HOW == Reused ]] || ks_fail "B2 did not resume B1's ticket with the same keys"
wait_count "$T/b2.log" "$RESUMED" 1
wait_count "$T/b2.log" "$UNKNOWN" 1
cross "$b2_port" "$b1_port"
[[ $HOW == Reused ]] || ks_fail "B1 did not resume B2's ticket with the same keys"
wait_count "$T/b1.log" "$RESUMED" 2
ks_pass "the same pushed keys: B2 resumes B1's ticket (resumed=yes) and B1 resumes B2's"

# A rotation as the control plane does it: a new key first, the old one
# kept second. A ticket sealed under the old key still resumes.
sess_old=$T/sess.old
get "$b1_port" -sess_out "$sess_old"
[[ $HOW == New ]] || ks_fail "a GET through B1 resumed without a ticket"
cat "$T/k3" "$T/k1" >"$T/keys.rotated"
ctl2 set-ticket-keys "$T/keys.rotated" >/dev/null
get "$b2_port" -sess_in "$sess_old"
[[ $HOW == Reused ]] || ks_fail "a ticket under the retired key did not resume after the rotation"
wait_count "$T/b2.log" "$RESUMED" 2
ctl1 set-ticket-keys "$T/keys.rotated" >/dev/null
ctl2 status >"$T/st2"
ks_assert_grep "$T/st2" "^ +name $name3 \(seals new tickets\)$" "B2's status does not show the rotation"
ks_pass "rotation (new key first, old one second): a ticket under the old key still resumes"

# --- bad pushes: refused, the keys in force stay ------------------------------
line1=$(cat "$T/k1")
printf '%s\n' "${line1:0:94}" >"$T/bad.short"                 # a 31-byte secret
printf '%s\n' "$line1" "$(cat "$T/k2")" "$line1" >"$T/bad.dup" # a name twice
printf '%s%064d\n' "$name1" 0 >"$T/bad.zero"                   # an all-zero secret
for _ in 1 2 3 4 5; do "$KS_CTL" gen-ticket-key; done >"$T/bad.five"
printf '%s\n' "${line1:0:40}zz${line1:42}" >"$T/bad.hex"
printf '%s\n' "${line1}0" >"$T/bad.odd"
: >"$T/bad.empty"
ks_expect_exit 1 'REJECTED \(REASON_BAD_TICKET_KEY\).*nothing changed: ticket key 1: name of 16 bytes and secret of 31 bytes; want exactly 16 and 32' \
	ctl2 set-ticket-keys "$T/bad.short"
ks_expect_exit 1 'REASON_BAD_TICKET_KEY.*ticket keys 1 and 3 have the same name' ctl2 set-ticket-keys "$T/bad.dup"
ks_expect_exit 1 'REASON_BAD_TICKET_KEY.*the secret is all zeros' ctl2 set-ticket-keys "$T/bad.zero"
ks_expect_exit 1 'REASON_BAD_TICKET_KEY.*5 ticket keys: at most 4' ctl2 set-ticket-keys "$T/bad.five"
ks_expect_exit 5 'bad.hex: line 1, column 41: not a hex digit' ctl2 set-ticket-keys "$T/bad.hex"
ks_expect_exit 5 'odd number of hex digits \(97' ctl2 set-ticket-keys "$T/bad.odd"
ks_expect_exit 5 'no key in it' ctl2 set-ticket-keys "$T/bad.empty"
ks_expect_exit 5 'cannot read' ctl2 set-ticket-keys "$T/nonexistent"
ks_expect_exit 2 'one argument: FILE or --clear' ctl2 set-ticket-keys
ks_expect_exit 2 'one argument' ctl2 set-ticket-keys "$T/keys" "$T/keys"
ks_expect_exit 2 'gen-ticket-key takes no arguments' "$KS_CTL" gen-ticket-key "$T/keys"
"$KS_CTL" --help >"$T/help"
ks_assert_grep "$T/help" '^  set-ticket-keys FILE\|--clear$' "--help lacks set-ticket-keys"
ks_assert_grep "$T/help" '^  gen-ticket-key ' "--help lacks gen-ticket-key"
wait_count "$T/b2.log" 'event=control_update_rejected op=SetTicketKeys' 4
ctl2 status >"$T/st2"
ks_assert_grep "$T/st2" '^ticket keys +2, pushed' "a refused push changed B2's keys"
ks_assert_grep "$T/st2" "^ +name $name3 \(seals new tickets\)$" "a refused push changed B2's sealing key"
keys_metrics "$b2_admin" 0 2 0 B2
cross "$b1_port" "$b2_port"
[[ $HOW == Reused ]] || ks_fail "cross-replica resumption broke after refused pushes"
wait_count "$T/b2.log" "$RESUMED" 3
ks_pass "4 bad pushes refused by the sidecar (exit 1), 3 bad files and a missing one by ktlsctl (exit 5): the keys in force stay, B2 still resumes B1's tickets"

# --- --clear: back to keys of B2's own ---------------------------------------
ctl2 set-ticket-keys --clear >"$T/clear"
ks_assert_grep "$T/clear" '^ticket keys of our own again' "--clear not confirmed"
ctl2 status >"$T/st2"
ks_assert_grep "$T/st2" '^ticket keys +1, our own' "B2's status does not show keys of its own after --clear"
ks_assert_not_grep "$T/st2" "$name1|$name3" "B2 still shows a pushed key after --clear"
keys_metrics "$b2_admin" 1 0 0 B2
cross "$b1_port" "$b2_port"
[[ $HOW == New ]] || ks_fail "B2 resumed B1's ticket after --clear"
wait_count "$T/b2.log" "$UNKNOWN" 2
wait_count "$T/b2.log" "$RESUMED" 3
ks_pass "--clear: B2 is back on keys of its own and refuses B1's tickets (unknown_key)"

# --- --session-resumption off: nothing to push to -----------------------------
ks_sidecar "$T/b3.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_HTTP_PORT" "${B[@]}" --session-resumption off
b3_sock=$KS_CTL_SOCKET
ks_expect_exit 1 'CODE_FAILED_PRECONDITION: SetTicketKeys rejected, nothing changed: session resumption is off' \
	"$KS_CTL" --socket "$b3_sock" set-ticket-keys "$T/keys"
"$KS_CTL" --socket "$b3_sock" status >"$T/st3"
ks_assert_grep "$T/st3" '^ticket keys +none \(--session-resumption off\)' "B3's status shows ticket keys"
keys_metrics "$(ks_admin_port "$T/b3.log")" 0 0 0 B3
ks_pass "--session-resumption off: SetTicketKeys is refused (FAILED_PRECONDITION), status shows no keys, /metrics counts none"

# --- rotation of keys of our own: one a --session-lifetime ---------------------
# Rotation is lazy (tls/tickets.c): the first ticket sealed after a period
# makes the new key. With a period of 1 s, a ticket sealed 2 s after the
# first one is sealed under a new key: one rotation more, at least. (The
# first ticket may already rotate on a slow machine, when start-up took
# over a second: hence a count before and after, not an absolute one.)
ks_sidecar "$T/b4.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_HTTP_PORT" "${B[@]}" --session-lifetime 1s
b4_port=${KS_PORTS[0]} b4_admin=$(ks_admin_port "$T/b4.log")
get "$b4_port" -sess_out "$T/sess.b4"
rot0=$(ks_metric "$b4_admin" ktls_sidecar_tls_ticket_key_rotations_total)
[[ $rot0 =~ ^[0-9]+$ ]] || ks_fail "B4's /metrics has no rotations_total ('$rot0')"
sleep 2
get "$b4_port"
rot=$(ks_metric "$b4_admin" ktls_sidecar_tls_ticket_key_rotations_total)
[[ $rot =~ ^[0-9]+$ ]] && ((rot > rot0)) ||
	ks_fail "B4 sealed a ticket 2 periods on, but rotations_total went from $rot0 to '$rot'"
[[ $(ks_metric "$b4_admin" ktls_sidecar_tls_ticket_key_rotation_failures_total) == 0 ]] ||
	ks_fail "B4 counts failed rotations"
keys_metrics "$b2_admin" 1 0 0 B2 # B2's own key is an hour from its first rotation
ks_pass "keys of our own rotate every --session-lifetime: B4 (1 s) counts $((rot - rot0)) more after 2 s, none failed"

# --- no secret anywhere it could leak ------------------------------------------
for f in "$T"/b1.log "$T"/b2.log "$T"/b3.log "$T"/st* "$T"/push* "$T"/clear; do
	for k in "$T/k1" "$T/k2" "$T/k3"; do
		line=$(cat "$k")
		if grep -qiF -- "${line:32}" "$f"; then ks_fail "$(basename "$f") holds the secret of $(basename "$k")"; fi
	done
done
ks_pass "no log, status or ktlsctl answer holds a secret (names only)"
