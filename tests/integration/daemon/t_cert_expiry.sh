#!/usr/bin/env bash
# Certificate expiry is visible before it bites (README, "Logs and
# certificate expiry"), with certificates whose lifetime is 100 seconds:
#  1. started with one that is 70% through its life: a warning
#     event=identity_expiring at once, once (not again on later checks), and
#     no error;
#  2. SIGHUP to one 93% through: an error event=identity_expiring_soon for
#     the new serial at once, then event=identity_expired when it runs out;
#  3. SIGHUP to a fresh one (the renewal): nothing more is logged for it;
#  4. a late one pushed over the control API (another thread): its warning
#     comes within a check or two.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

T=$(ks_tmpdir)
ks_pki "$T"
ca=$T/ca
# issue NAME FROM TO: a server identity valid from FROM to TO (date -d).
issue() { "$KS_PKI" issue "$ca" "$1" "$KS_SERVER_ID" --valid "$2" "$3"; }
serial() { openssl x509 -in "$ca/$1.crt" -noout -serial | sed 's/^serial=//'; }
issue late '-70 seconds' '+30 seconds'
ks_echo_server "$T/echo.log" echo
log=$T/b.log
ks_sidecar "$log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" \
	--cert "$ca/late.crt" --key "$ca/late.key" --ca "$ca/bundle.crt"

# 1. 70% of the lifetime at start: a warning with the certificate's numbers.
s=$(serial late)
ks_wait_log "$log" 'event=identity_expiring ' 5 || ks_fail "no warning for a certificate 70% through its life"
line=$(grep 'event=identity_expiring ' "$log")
for f in '^ts=[^ ]+ level=warn ' "id=$KS_SERVER_ID " "serial=$s " 'not_before=20[0-9-]+T[0-9:]+Z ' \
	'not_after=20[0-9-]+T[0-9:]+Z ' 'remaining_s=(2[0-9]|30) ' 'lifetime_s=100 ' \
	'lifetime_used_pct=(70|7[0-9]) ' 'reason="two thirds of the certificate.s lifetime have passed'; do
	[[ $line =~ $f ]] || ks_fail "the warning lacks /$f/: $line"
done
sleep 2.5 # two more checks (one a second): the warning is not repeated
(($(ks_count "$log" 'event=identity_expiring') == 1)) || ks_fail "the warning was repeated: $(grep event=identity_expiring "$log")"
ks_assert_not_grep "$log" 'level=error' "an error for a certificate only 70% through"
ks_pass "70% through at start: one event=identity_expiring warning (serial, not_after, remaining_s), not repeated"

# 2. SIGHUP to a certificate 93% through: an error at once, then expired.
issue later '-93 seconds' '+7 seconds'
cp "$ca/later.crt" "$ca/late.crt"
cp "$ca/later.key" "$ca/late.key"
s2=$(serial later)
kill -HUP "$KS_SIDECAR_PID"
ks_wait_log "$log" "event=identity_reloaded .*serial=$s2" 5 || ks_fail "the reload was not taken"
ks_wait_log "$log" 'event=identity_expiring_soon ' 5 || ks_fail "no error for a certificate 93% through its life"
ks_assert_grep "$log" "level=error event=identity_expiring_soon .*serial=$s2 .*remaining_s=[0-7] " \
	"the error does not name the new certificate"
ks_wait_log "$log" 'event=identity_expired ' 10 || ks_fail "no event=identity_expired when it ran out"
ks_assert_grep "$log" "level=error event=identity_expired .*serial=$s2 .*remaining_s=(0|-[0-9]+) " \
	"the expiry line does not name the certificate"
(($(ks_count "$log" "event=identity_expiring .*serial=$s2") == 0)) ||
	ks_fail "a warning for a certificate already past 90%: only the highest threshold is logged"
ks_pass "SIGHUP to a certificate 93% through: event=identity_expiring_soon (error) at once, event=identity_expired at its end"

# 3. The renewal: a fresh certificate logs nothing more.
"$KS_PKI" issue "$ca" late "$KS_SERVER_ID"
s3=$(serial late)
before=$(ks_count "$log" 'event=identity_expir')
kill -HUP "$KS_SIDECAR_PID"
ks_wait_log "$log" "event=identity_reloaded .*serial=$s3" 5 || ks_fail "the renewal was not taken"
sleep 2
(($(ks_count "$log" 'event=identity_expir') == before)) || ks_fail "expiry lines after a renewal: $(grep event=identity_expir "$log" | tail -2)"
ks_pass "a renewed certificate: no expiry line"

# 4. A late certificate pushed over the control API: the main thread sees it.
issue pushed '-80 seconds' '+20 seconds'
s4=$(serial pushed)
"$KS_CTL" --socket "$KS_CTL_SOCKET" push-identity --cert "$ca/pushed.crt" --key "$ca/pushed.key" >/dev/null
ks_wait_log "$log" "level=warn event=identity_expiring .*serial=$s4 " 5 ||
	ks_fail "no warning for a late certificate pushed over the control API"
ks_pass "a late certificate pushed over the control API: its warning within a check"
