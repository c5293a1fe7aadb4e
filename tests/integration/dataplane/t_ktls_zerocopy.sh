#!/usr/bin/env bash
# Proof of zero-copy. The sidecar counts every payload byte that passes
# through its own memory (recv, send, SSL_read, SSL_write, control records):
# userspace_bytes in its conn_close line. strace, on the epoll backend, sums
# the bytes of every data syscall the sidecar makes (read, write, recvfrom,
# sendto, recvmsg, sendmsg); splice is left out, because splice moves pages,
# not bytes through our memory. The two must agree, and on the kernel path
# both must stay under 1 KiB per MiB forwarded. Prints bytes-through-
# userspace per MiB for the path this kernel gives us. The same counter is
# the admin endpoint's ktls_sidecar_userspace_bytes_total: it must agree.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

command -v strace >/dev/null || ks_skip "strace is not installed"
T=$(ks_tmpdir)
ks_pki "$T"
MIB=${KS_ZC_MIB:-16}
kernel=no
ks_kernel_tls && kernel=yes

ks_echo_server "$T/echo.log" echo
ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --io epoll --admin 127.0.0.1:0
strace -f -qq -e trace=read,write,recvfrom,sendto,recvmsg,sendmsg,readv,writev,splice \
	-o "$T/strace.out" -p "$KS_A_PID" &
st=$!
# strace attaches to the threads one by one: start only when it traces them
# all (a fixed second was not always enough under ASan on a busy machine,
# and the first syscalls of the transfer went uncounted).
traced() {
	local t
	for t in /proc/"$KS_A_PID"/task/*; do
		[[ $(awk '/^TracerPid:/ {print $2}' "$t/status" 2>/dev/null) == "$st" ]] || return 1
	done
}
for _ in $(seq 200); do
	traced && break
	sleep 0.05
done
traced || ks_fail "strace did not attach to every thread of sidecar A within 10 s"
"$KS_STREAM" client --connect "127.0.0.1:$KS_A_PORT" --bytes "${MIB}M" --half-close \
	--timeout 600 >"$T/cli.out" 2>&1 || { cat "$T/cli.out"; ks_fail "transfer failed"; }
ks_wait_log "$T/a.log" 'event=conn_close' 10
kill -INT "$st"; wait "$st" || true

close=$(grep 'event=conn_close' "$T/a.log")
# The same counter, aggregated, in the status line (SIGUSR1).
kill -USR1 "$KS_A_PID"
ks_wait_log "$T/a.log" 'event=status' 10
status=$(grep 'event=status' "$T/a.log")
ub=$(sed -n 's/.*userspace_bytes=\([0-9]*\).*/\1/p' <<<"$close")
rl=$(sed -n 's/.*record_layer=\([a-z]*\).*/\1/p' <<<"$close")
# Sum the results of data syscalls; splice calls are counted apart. A call
# that another thread's call interrupts in strace's output ends on a line of
# its own, "<... recvfrom resumed> ...) = N": count those too (the main
# thread reads its identity watch's inotify descriptor while data moves).
read -r sys_bytes splices <<<"$(awk '
	/( splice\(|<\.\.\. splice resumed>)/ { if ($(NF-1) == "=" && $NF ~ /^[0-9]+$/) s++ ; next }
	/(read|write|recvfrom|sendto|recvmsg|sendmsg|readv|writev)(\(| resumed>)/ {
		if ($(NF-1) == "=" && $NF ~ /^[0-9]+$/) b += $NF
	}
	END { printf "%d %d\n", b, s }' "$T/strace.out")"
fwd=$((2 * MIB)) # MiB forwarded: MIB up and MIB back
st_ub=$(sed -n "s/.* ${rl}_userspace_bytes=\([0-9]*\).*/\1/p" <<<"$status")
[[ $st_ub == "$ub" ]] || ks_fail "status line says $rl userspace bytes $st_ub, conn_close says $ub: $status"
# /metrics: the zero-copy proof as a metric, and the bytes as they moved.
admin=$(ks_admin_port "$T/a.log")
curl -s --max-time 10 "http://127.0.0.1:$admin/metrics" >"$T/metrics" || ks_fail "no /metrics from A"
metric() { awk -v k="$1" '$1 == k { print $2 }' "$T/metrics"; }
m_ub=$(metric "ktls_sidecar_userspace_bytes_total{record_layer=\"$rl\"}")
[[ $m_ub == "$ub" ]] || ks_fail "/metrics says $rl userspace bytes '$m_ub', conn_close says $ub"
m_to=$(metric 'ktls_sidecar_bytes_total{direction="outbound",flow="to_peer"}')
[[ $m_to == $((MIB * 1048576)) ]] || ks_fail "/metrics bytes to_peer '$m_to', want $((MIB * 1048576))"
[[ $(metric "ktls_sidecar_connections_total{direction=\"outbound\",record_layer=\"$rl\"}") == 1 ]] ||
	ks_fail "/metrics does not count the connection on the $rl path"
tls_on=false
[[ $kernel == yes ]] && tls_on=true
[[ $(metric "ktls_sidecar_kernel_tls_info{tx=\"$tls_on\",rx=\"$tls_on\",rekey=\"$( (ks_kernel_rekey && echo true) || echo false)\"}") == 1 ]] ||
	ks_fail "/metrics kernel_tls_info disagrees with this kernel: $(grep kernel_tls_info "$T/metrics")"

echo "record layer: $rl; forwarded $fwd MiB; sidecar counted $ub B; strace saw $sys_bytes B in data syscalls and $splices splice calls"
echo "bytes through userspace per MiB forwarded ($rl path): counter $((ub / fwd)), strace $((sys_bytes / fwd))"

if [[ $kernel == yes ]]; then
	[[ $rl == kernel ]] || ks_fail "the connection did not run on the kernel path"
	[[ $((ub / fwd)) -lt 1024 ]] || ks_fail "kernel path: $((ub / fwd)) B/MiB through userspace (counter)"
	# The handshake itself goes through OpenSSL: allow 16 KiB for it.
	[[ $(((sys_bytes - 16384) / fwd)) -lt 1024 ]] || ks_fail "kernel path: strace saw $((sys_bytes / fwd)) B/MiB in data syscalls"
	[[ $splices -gt 0 ]] || ks_fail "kernel path: no splice calls seen"
	ks_pass "zero-copy: $((ub / fwd)) B/MiB by the counter, $((sys_bytes / fwd)) B/MiB by strace"
else
	[[ $rl == userspace ]] || ks_fail "expected the userspace path here"
	# userspace: every byte is read and written once each way (2 per byte)
	[[ $ub -ge $((2 * fwd * 1048576)) ]] || ks_fail "counter $ub is below 2 bytes per byte forwarded"
	# strace sees ciphertext (record overhead) plus the handshake: slightly more.
	[[ $sys_bytes -ge $ub && $sys_bytes -le $((ub + ub / 50 + 65536)) ]] ||
		ks_fail "counter ($ub) and strace ($sys_bytes) disagree"
	ks_pass "userspace path: counter and strace agree ($((ub / fwd)) vs $((sys_bytes / fwd)) B/MiB)"
fi
