#!/usr/bin/env bash
# Per-connection warning lines under a flood (README, "Logs under a
# flood"): refused handshakes are logged per reason and per source with a
# burst and then a line a second, the rest counted in event=log_suppressed
# summaries and in the status counters by reason.
#  1. One noisy source (1,000 garbage connections) gets a few lines; a quiet
#     source's one refusal with the same reason right after still has its
#     own line.
#  2. 4,000 sources at once: a bounded number of lines; lines plus the
#     suppressed counts add up to every refusal, and so does the counter.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

[[ -x $KS_CTL ]] || ks_fail "no ktlsctl at $KS_CTL (run make)"
T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
log=$T/sidecar.log
ks_sidecar "$log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" --workers 2 \
	--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt"
port=${KS_PORTS[0]}

# flood FIRST N SPREAD [SECS]: N connections that send garbage (not TLS),
# from addresses 127.x.y.z counted from FIRST, SPREAD of them, paced over
# SECS (default: as fast as it can); prints the seconds it took.
flood() {
	python3 - "$port" "$@" <<'PY'
import socket, sys, time
port, first, n, spread = (int(a) for a in sys.argv[1:5])
pace = float(sys.argv[5]) / n if len(sys.argv) > 5 else 0
t = time.monotonic()
for i in range(n):
    while time.monotonic() < t + i * pace:
        time.sleep(0.001)
    a = first + i % spread
    s = socket.socket()
    s.bind(("127.%d.%d.%d" % (a >> 16 & 255, a >> 8 & 255, a & 255), 0))
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"\x01\x00" + b"garbage!" * 8)
    except OSError:
        pass
    s.close()
print("%.2f" % (time.monotonic() - t))
PY
}
refused() { # the not_tls counter in ktlsctl status
	"$KS_CTL" --socket "$KS_CTL_SOCKET" status | sed -n 's/^refused by .*not_tls \([0-9]*\).*/\1/p'
}
wait_refused() { # N: until the counter says N (every connection handled)
	for _ in $(seq 200); do [[ $(refused) == "$1" ]] && return 0; sleep 0.1; done
	ks_fail "the not_tls counter says $(refused), want $1"
}
lines_from() { grep -c "event=handshake_rejected .*peer=$1:[0-9]* .*reason=not_tls" "$log" || true; }

# 1. one noisy source, then a quiet one
secs=$(flood $((2 << 8 | 0)) 1000 1) # 127.0.2.0
wait_refused 1000
flood $((3 << 8 | 0)) 1 1 >/dev/null # 127.0.3.0
wait_refused 1001
sleep 1.2 # the summaries are due once a second
noisy=$(lines_from 127.0.2.0)
quiet=$(lines_from 127.0.3.0)
echo "one source: 1,000 refusals in $secs s gave $noisy lines; the quiet source's one refusal gave $quiet"
((quiet == 1)) || ks_fail "the quiet source's refusal has $quiet lines, want 1: the noisy one hid it"
# Per worker (2): a burst of 5, then one a second.
((noisy >= 5 && noisy <= 2 * (5 + ${secs%.*} + 2))) ||
	ks_fail "1,000 refusals from one source gave $noisy lines: want a burst of 5, then one a second per worker"
ks_assert_grep "$log" 'event=log_suppressed line=handshake_rejected reason=not_tls suppressed=[1-9][0-9]* sources=1 ' \
	"no summary of the suppressed lines"
ks_pass "one noisy source: $noisy lines for 1,000 refusals; a quiet source's refusal keeps its line"

# 2. 4,000 sources, 1,000 a second (a line each, before)
before=$(grep -c 'event=handshake_rejected' "$log")
sup_before=$(grep -o 'event=log_suppressed line=handshake_rejected reason=not_tls suppressed=[0-9]*' "$log" |
	awk -F= '{ s += $NF } END { print s + 0 }')
secs=$(flood $((1 << 16)) 4000 4000 4) # 127.1.0.0 onwards
wait_refused 5001
sleep 1.2
lines=$(($(grep -c 'event=handshake_rejected' "$log") - before))
sup=$(($(grep -o 'event=log_suppressed line=handshake_rejected reason=not_tls suppressed=[0-9]*' "$log" |
	awk -F= '{ s += $NF } END { print s + 0 }') - sup_before))
rate=$(awk -v l="$lines" -v s="$secs" 'BEGIN { printf "%.0f", l / (s > 0 ? s : 1) }')
echo "4,000 sources: 4,000 refusals in $secs s gave $lines lines ($rate a second) and $sup suppressed"
((lines + sup == 4000)) || ks_fail "$lines lines + $sup suppressed != 4,000 refusals"
# Per worker: a burst of 50, then 20 a second.
((lines <= 2 * (50 + 20 * (${secs%.*} + 2)))) || ks_fail "$lines lines for 4,000 refusals in $secs s"
ks_alive "$KS_SIDECAR_PID" "the sidecar died in the flood"
ks_pass "4,000 sources in $secs s: $lines lines ($rate/s), $sup suppressed and counted, the counter says 5,001"
