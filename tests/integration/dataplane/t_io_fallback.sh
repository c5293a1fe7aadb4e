#!/usr/bin/env bash
# When io_uring_setup fails (as under the default seccomp profiles of many
# container runtimes) --io=auto falls back to epoll and says why, and
# --io=uring refuses to start with a clear error. The failure is real: the
# kernel's own switch, kernel.io_uring_disabled=2 (Linux 6.6+), restored at exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

knob=/proc/sys/kernel/io_uring_disabled
[[ -e $knob ]] || ks_skip "kernel has no kernel.io_uring_disabled (needs 6.6+)"
[[ -w $knob ]] || ks_skip "kernel.io_uring_disabled is not writable (not root?)"
old=$(cat "$knob")
ks_cleanup_add sh -c "echo $old > $knob"

T=$(ks_tmpdir)
ks_pki "$T"
ks_echo_server "$T/echo.log" echo
common=(--cert "$T/ca/server.crt" --key "$T/ca/server.key" --ca "$T/ca/bundle.crt" --workers 2)

# Baseline: io_uring works here, so auto picks it.
ks_sidecar "$T/auto0.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${common[@]}"
ks_assert_grep "$T/auto0.log" 'event=io_backend backend=io_uring' "auto did not pick io_uring when available"
kill "$KS_SIDECAR_PID"

echo 2 >"$knob"
ks_sidecar "$T/auto.log" --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${common[@]}"
p=${KS_PORTS[0]}
ks_assert_grep "$T/auto.log" 'level=warn event=io_backend backend=epoll reason="io_uring_setup failed: Operation not permitted"' \
	"auto did not fall back to epoll with the reason"
# ...and it really serves traffic on epoll.
ks_sidecar "$T/a.log" --io epoll --outbound "127.0.0.1:0=127.0.0.1:$p,id=$KS_SERVER_ID" \
	--cert "$T/ca/client.crt" --key "$T/ca/client.key" --ca "$T/ca/bundle.crt"
a=${KS_PORTS[0]}
"$KS_STREAM" client --connect "127.0.0.1:$a" --bytes 4M --half-close --timeout 60 >"$T/c.out" 2>&1 ||
	{ cat "$T/c.out"; ks_fail "traffic through the epoll fallback failed"; }
ks_pass "auto falls back to epoll (EPERM), logged with the reason, and forwards"

# Port 0: it must fail before it listens anywhere.
set +e
timeout 20 "$KS_BIN" --io uring --inbound "127.0.0.1:0=127.0.0.1:$KS_ECHO_PORT" "${common[@]}" >"$T/uring.log" 2>&1
rc=$?
set -e
[[ $rc -eq 1 ]] || ks_fail "--io=uring without io_uring exited $rc, want 1"
ks_assert_grep "$T/uring.log" 'event=start_failed .*cannot create io_uring event loop: Operation not permitted' \
	"--io=uring failure is not explained"
ks_pass "--io=uring refuses to start without io_uring, with a clear error"
