#!/usr/bin/env bash
# Identity files that rotate by themselves (--identity-watch, on by default):
#  B reads a kubelet-style volume (--identity-dir, csi-driver-spiffe names:
#    tls.crt, tls.key, ca.crt as symlinks through ..data, swapped to a new
#    ..YYYY directory): each swap is taken, new handshakes present the new
#    serial, and handshakes under load through A -> B never fail across
#    several swaps (SHA-256-checked streams);
#  a set that stays wrong (a key that does not match, a PEM cut short, a
#    certificate for another ID, an expired one) is logged once, counted,
#    and the identity in force stays, still served;
#  C reads plain --cert/--key/--ca files: rewritten in place, replaced by a
#    rename, and torn (the key written 500 ms before its certificate) - no
#    mismatched pair is taken and nothing is logged for a write that
#    completes; SIGHUP still reloads.
# Waits have generous bounds; nothing here measures time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

command -v curl >/dev/null || ks_skip "curl not installed"
T=$(ks_tmpdir)
ks_pki "$T"
# Serials in hex as openssl prints them: 4242 = 1092, 4343 = 10F7, ...
for n in 2 3 4 5 6 7 8; do
	"$KS_PKI" issue "$T/ca" "s$n" "$KS_SERVER_ID" --serial "$((4242 + (n - 2) * 101))" &
done
"$KS_PKI" issue "$T/ca" expired "$KS_SERVER_ID" --expired &
"$KS_PKI" issue "$T/ca" stranger spiffe://test.local/ns/other/sa/stranger &
wait
hex() { printf '%X' "$((4242 + ($1 - 2) * 101))"; }

# gen DIR NAME CRT KEY: the kubelet's atomic writer (pkg/volume/util/
# atomic_writer.go): a new ..NAME directory, a ..data_tmp symlink to it
# renamed over ..data, the old directory removed.
gen() {
	local v=$1 name=$2 crt=$3 key=$4 old=
	[[ -L $v/..data ]] && old=$(readlink "$v/..data")
	mkdir "$v/..$name"
	cp "$crt" "$v/..$name/tls.crt"
	cp "$key" "$v/..$name/tls.key"
	cp "$T/ca/bundle.crt" "$v/..$name/ca.crt"
	ln -s "..$name" "$v/..data_tmp"
	mv -T "$v/..data_tmp" "$v/..data"
	[[ -z $old ]] || rm -rf "${v:?}/$old"
}
V=$T/volume
mkdir "$V"
gen "$V" 2026_12_01_00_00_00.1 "$T/ca/server.crt" "$T/ca/server.key"
for f in tls.crt tls.key ca.crt; do ln -s "..data/$f" "$V/$f"; done

ks_echo_server "$T/echo.log" echo
ks_sidecar "$T/b.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 2 \
	--identity-dir "$V" --spiffe-id "$KS_SERVER_ID" --admin 127.0.0.1:0
B_PORT=${KS_PORTS[0]} B_PID=$KS_SIDECAR_PID
ks_assert_grep "$T/b.log" 'event=identity_watch files=3 ' "B does not say it watches its files"
ks_sidecar "$T/a.log" --outbound "127.0.0.1:0=127.0.0.1:$B_PORT,id=$KS_SERVER_ID" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
A_PORT=${KS_PORTS[0]}

reloaded() { # LOG HEX: the watch took the certificate with serial HEX
	ks_wait_log "$1" "event=identity_reloaded source=files .*serial=0*$2 " 10 ||
		ks_fail "the watch did not take serial $2"
}

# (a, g) a ..data swap in the csi-driver-spiffe layout; (d) new handshakes see it.
old=$(openssl x509 -in "$T/ca/server.crt" -noout -serial | cut -d= -f2)
ks_wait_served_serial "$T/ca" "$B_PORT" "$old"
gen "$V" 2026_12_01_01_00_00.2 "$T/ca/s2.crt" "$T/ca/s2.key"
reloaded "$T/b.log" "$(hex 2)"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 2)"
ks_pass "kubelet ..data swap (csi-driver-spiffe layout): new handshakes present the new serial"

# (e) Three swaps while clients keep handshaking through A -> B: every
# connection completes with its echo intact (SHA-256, both directions).
ks_load_start "$T" "$A_PORT"
for n in 3 4 5; do
	sleep 0.3
	gen "$V" "2026_12_01_0${n}_00_00.$n" "$T/ca/s$n.crt" "$T/ca/s$n.key"
	reloaded "$T/b.log" "$(hex "$n")"
done
sleep 0.3
ks_load_stop "the swaps"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 5)"
ks_pass "3 swaps under load: $KS_LOAD_OKS connections in $KS_LOAD_RUNS runs, all intact, none failed"

# (f) and the rejections: each set that stays wrong is logged once after
# the retries, counted, and the serial in force stays.
REJ='event=identity_reload_rejected source=files'
rejected() { # TAG NAME CRT KEY REASON_REGEX
	local before tag=$1 n line re
	shift
	before=$(ks_count "$T/b.log" "$REJ")
	gen "$V" "bad_$tag" "$2" "$3"
	for _ in $(seq 100); do
		(($(ks_count "$T/b.log" "$REJ") > before)) && break
		sleep 0.1
	done
	line=$(grep -E "$REJ" "$T/b.log" | tail -1)
	re="reason=\"[^\"]*($4)[^\"]*\" .*kept_serial=0*$(hex 5)( |\$)"
	[[ $line =~ $re ]] ||
		ks_fail "$1: not rejected with /$4/ keeping $(hex 5): ${line:-nothing logged}"
	ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 5)"
	# Once: the retries are over, nothing more until the next change.
	sleep 0.5
	n=$(($(ks_count "$T/b.log" "$REJ") - before))
	((n == 1)) || ks_fail "$1: logged $n times, want once"
	ks_pass "$1: rejected once after the retries, serial $(hex 5) still served"
}
rejected mismatch "key mismatch (f)" "$T/ca/s6.crt" "$T/ca/s5.key" 'does not match'
head -c 500 "$T/ca/s6.crt" >"$T/truncated.crt"
rejected truncated "truncated PEM" "$T/truncated.crt" "$T/ca/s6.key" 'PEM|certificate'
rejected stranger "another SPIFFE ID" "$T/ca/stranger.crt" "$T/ca/stranger.key" 'spiffe-id|SPIFFE ID|stranger'
rejected expired "expired certificate" "$T/ca/expired.crt" "$T/ca/expired.key" 'expired'
ks_assert_not_grep "$T/b.log" 'event=identity_reloaded .*serial=0*'"$(hex 6)"' ' \
	"a rejected certificate was taken"
# And a good set after them is taken again.
gen "$V" 2026_12_01_06_00_00.6 "$T/ca/s6.crt" "$T/ca/s6.key"
reloaded "$T/b.log" "$(hex 6)"
ks_wait_served_serial "$T/ca" "$B_PORT" "$(hex 6)"

admin=$(ks_admin_port "$T/b.log")
curl -s --max-time 5 "http://127.0.0.1:$admin/metrics" >"$T/metrics"
ks_assert_grep "$T/metrics" '^ktls_sidecar_identity_updates_total\{source="files",result="accepted"\} 5$' \
	"accepted updates from the files not counted (5)"
ks_assert_grep "$T/metrics" '^ktls_sidecar_identity_updates_total\{source="files",result="rejected"\} 4$' \
	"rejected updates from the files not counted (4)"
ks_pass "/metrics: 5 accepted and 4 rejected updates with source=\"files\""

# C: plain --cert/--key/--ca files, written the other ways.
P=$T/plain
mkdir "$P"
cp "$T/ca/server.crt" "$P/c.crt"
cp "$T/ca/server.key" "$P/c.key"
cp "$T/ca/bundle.crt" "$P/ca.crt"
ks_sidecar "$T/c.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--cert "$P/c.crt" --key "$P/c.key" --ca "$P/ca.crt"
C_PORT=${KS_PORTS[0]} C_PID=$KS_SIDECAR_PID

# (b) rewritten in place (truncate and write, as cat or spiffe-helper do).
cat "$T/ca/s2.crt" >"$P/c.crt"
cat "$T/ca/s2.key" >"$P/c.key"
reloaded "$T/c.log" "$(hex 2)"
ks_wait_served_serial "$T/ca" "$C_PORT" "$(hex 2)"
ks_pass "files rewritten in place: taken"

# Replaced by a rename, key first.
cp "$T/ca/s3.key" "$P/.c.key.tmp" && mv "$P/.c.key.tmp" "$P/c.key"
cp "$T/ca/s3.crt" "$P/.c.crt.tmp" && mv "$P/.c.crt.tmp" "$P/c.crt"
reloaded "$T/c.log" "$(hex 3)"
ks_wait_served_serial "$T/ca" "$C_PORT" "$(hex 3)"
ks_pass "files replaced by rename: taken"

# (c) torn: the key 500 ms before its certificate. The mismatched pair in
# between is tried and not taken, and since the set completes within the
# retries nothing is logged; then the new serial.
cat "$T/ca/s4.key" >"$P/c.key"
sleep 0.5
ks_wait_served_serial "$T/ca" "$C_PORT" "$(hex 3)" # the old pair, whole, while the key is new
cat "$T/ca/s4.crt" >"$P/c.crt"
reloaded "$T/c.log" "$(hex 4)"
ks_wait_served_serial "$T/ca" "$C_PORT" "$(hex 4)"
sleep 2.5 # past the retries that a still-torn set would end with
ks_assert_not_grep "$T/c.log" 'event=identity_reload_rejected' "a torn write that completed was logged"
[[ $(ks_count "$T/c.log" 'event=identity_reloaded ') == 3 ]] ||
	ks_fail "C reloaded $(ks_count "$T/c.log" 'event=identity_reloaded ') times, want 3 (one per completed set)"
ks_pass "torn write (key 500 ms before the certificate): no mismatched pair, nothing logged, then the new serial"

# (h) SIGHUP still reloads, through the same path.
kill -HUP "$C_PID"
ks_wait_log "$T/c.log" "event=identity_reloaded source=sighup .*serial=0*$(hex 4) " 10 ||
	ks_fail "SIGHUP did not reload"
ks_pass "SIGHUP reloads (source=sighup)"
ks_alive "$B_PID" "B exited"
