#!/usr/bin/env bash
# Memory per idle connection, the sidecars' RSS and the kernel's share, on
# the kernel and the userspace record layer, measured where kTLS exists
# (inside the VM of tests/ktls/vm.sh; it needs root for /proc/slabinfo and
# drop_caches, and changes nothing outside the VM it is meant for).
#
# Every case starts a FRESH pair of sidecars (no transfer before), so new
# connections cannot reuse a heap grown by earlier work. Per case:
#   snapshot 0   the fresh pair, idle, no connection yet
#   snapshot 1   N1 connections held through the pair (ks-stream client)
#   snapshot 2   N2 connections (N2 - N1 more, from a second client)
# each taken VMI_SETTLE seconds after the last connection was opened on B
# (the sidecar trims its heap once no handshake is in flight, worker.c
# maybe_trim, within two 1 s ticks). Cases: record layer kernel | userspace,
# times 0 bytes (the connection never carries a byte) | 1 byte (one byte
# echoed through the chain, then idle: ks-stream --linger-ms).
#
# Reported per connection, as (snapshot 1 - snapshot 0) / N1 and as the
# marginal (snapshot 2 - snapshot 1) / (N2 - N1), which no fixed cost of the
# first connections (code pages faulted in, the worker's arena, OpenSSL's
# lazy tables) can reach:
#   - RSS of A and of B (VmRSS; RssAnon alone in the raw lines);
#   - the kernel's share: the Slab delta of /proc/meminfo (and SUnreclaim),
#     minus the Slab delta of the reference run (the same client straight to
#     the echo server, no sidecar), so what remains is what adding the pair
#     costs the kernel: its two extra TCP connections, the kTLS contexts and
#     crypto transforms, epoll entries, descriptors;
#   - the pipe pages the sidecars hold (tests/tools/held.py), which are page
#     allocations outside Slab: added to the sum when there are any.
# Slab is machine-wide, so the kernel share is the pair's, not A's or B's:
# the two sides hold the same kernel objects (a TLS socket with its TX and RX
# state, a plain socket, their epoll entries), so each is about half of it.
# Slab counts slab pages, not objects: a freed object leaves its slab page
# partly used, and the next case fills it without growing Slab. Each
# snapshot therefore runs after drop_caches, TIME_WAIT is off
# (tcp_max_tw_buckets=0, restored on exit) so closed connections of the
# case before are really gone, and the raw lines also give the bytes of
# live slab objects (/proc/slabinfo active_objs x objsize), which do not
# depend on page packing.
#
# Run it with (TCG is slow: about a minute per 1,000 handshakes):
#   KS_BIN=$PWD/build/ktls-sidecar KS_STREAM=$PWD/build/tests/ks-stream KS_VM_ENV="KS_BIN KS_STREAM" \
#       tests/ktls/vm.sh run 6.12 -- tests/bench/vm-idle-mem.sh
# Environment: VMI_N1 (300), VMI_N2 (1000), VMI_MODES ("auto off"),
#   VMI_BYTES ("0 1"), VMI_SETTLE (5 s), VMI_MALLOC_INFO=1 (after each case,
#   glibc's malloc_info(3) of A and B through gdb, into $KS_VM_OUT or the log),
#   VMI_HEAP=1 (at N2, what holds the resident pages of A's and B's worker
#   heaps: tests/tools/heap_census.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/sidecar.sh"

N1=${VMI_N1:-300}
N2=${VMI_N2:-1000}
SETTLE=${VMI_SETTLE:-5}
((N2 > N1 && N1 > 0)) || ks_fail "need 0 < VMI_N1 < VMI_N2"
[[ ${KS_VM:-0} == 1 ]] || ks_fail "run it inside the kTLS VM (tests/ktls/vm.sh run KERNEL -- $0): it drops caches and sets sysctls"
[[ -r /proc/slabinfo ]] || ks_fail "/proc/slabinfo is not readable (root needed)"
ulimit -n 65536 || ks_fail "cannot raise RLIMIT_NOFILE"

T=$(ks_tmpdir)
ks_pki "$T"
tw=$(cat /proc/sys/net/ipv4/tcp_max_tw_buckets)
ks_cleanup_add sysctl -qw "net.ipv4.tcp_max_tw_buckets=$tw"
sysctl -qw net.ipv4.tcp_max_tw_buckets=0
ks_echo_server "$T/echo.log" echo

# What is under way, as it happens (the VM's console is read at the end).
progress() {
	echo "vm-idle-mem: ${SECONDS}s: $*" >&2
	[[ -z ${KS_VM_OUT:-} ]] || echo "${SECONDS}s: $*" >>"$KS_VM_OUT/vm-idle-mem.progress"
}

# snapshot NAME [PID_A PID_B]: one line of key=value, kernel figures in KiB;
# /proc/slabinfo is kept as $T/slabinfo.NAME (and in $KS_VM_OUT).
snapshot() {
	local name=$1
	shift
	sync
	echo 2 >/proc/sys/vm/drop_caches # reclaimable slab (dentries, inodes) not in use
	sleep 1                          # RCU-freed sockets
	awk '/^(Slab|SUnreclaim|MemAvailable):/ {sub(":", "", $1); printf "%s=%s ", $1, $2}' /proc/meminfo
	cat /proc/slabinfo >"$T/slabinfo.$name"
	[[ -z ${KS_VM_OUT:-} ]] || cp "$T/slabinfo.$name" "$KS_VM_OUT/"
	awk 'NR > 2 {b += $2 * $4} END {printf "SlabObj=%d ", b / 1024}' "$T/slabinfo.$name"
	local side pid h
	for side in A B; do
		pid=${1:-}
		shift || true
		[[ -n $pid ]] || continue
		h=$(python3 "$KS_ROOT/tests/tools/held.py" "$pid")
		awk -v s="$side" '/^AnonHugePages:/ {printf "%s_AnonHuge=%s ", s, $2}' "/proc/$pid/smaps_rollup"
		awk -v s="$side" -v h="$h" '/^(VmRSS|RssAnon):/ {sub(":", "", $1); printf "%s_%s=%s ", s, $1, $2}
			END {split(h, f, " "); printf "%s_fds=%s %s_pipe_ends=%s %s_pipe_pages=%s ", s, f[1], s, f[2], s, f[3]}' \
			"/proc/$pid/status"
	done
	echo
}

# wait_opened LOG N CLIENT_OUT: until LOG has N conn_open lines; fails at
# once when a connection failed (the client says so when it ends).
wait_opened() {
	for _ in $(seq 12000); do
		[[ $(ks_count "$1" 'event=conn_open') -ge $2 ]] && return 0
		grep -q 'status=error' "$3" && ks_fail "a connection failed: $(grep -m3 'status=error' "$3"; grep -hm3 'event=conn_close' "$T/a.log" "$T/b.log")"
		sleep 0.1
	done
	ks_fail "only $(ks_count "$1" 'event=conn_open') of $2 connections opened ($1)"
}

# client OUT CONNS BYTES SEED CONNECT_PORT: idle connections for up to an hour
client() {
	local out=$1 n=$2 bytes=$3 seed=$4 port=$5
	if ((bytes == 0)); then
		"$KS_STREAM" client --connect "127.0.0.1:$port" --conns "$n" --bytes 0 --seed "$seed" \
			--hold-ms 3600000 --timeout 4000 >"$out" 2>"$out.err" &
	else
		"$KS_STREAM" client --connect "127.0.0.1:$port" --conns "$n" --bytes "$bytes" --seed "$seed" \
			--linger-ms 3600000 --timeout 4000 >"$out" 2>"$out.err" &
	fi
	CLIENT_PID=$!
}

# wait_echoed ERRFILE N: until ks-stream says all N connections were echoed
wait_echoed() {
	for _ in $(seq 12000); do
		grep -q "lingering conns=$2 failed=0" "$1" && return 0
		grep -q 'lingering conns=[0-9]* failed=[1-9]' "$1" && ks_fail "$(cat "$1")"
		sleep 0.1
	done
	ks_fail "the echoes did not all come back: $(cat "$1")"
}

raw=$T/raw
: >"$raw"
for bytes in ${VMI_BYTES:-0 1}; do
	# Reference: the client straight to the echo server, no sidecar.
	snapshot "reference.$bytes.0" >"$T/s0"
	client "$T/ref1" "$N1" "$bytes" 0 "$KS_ECHO_PORT"
	c1=$CLIENT_PID
	# No log to count here: ss counts the established connections (both ends).
	for _ in $(seq 6000); do
		[[ $(ss -Htn state established "( dport = :$KS_ECHO_PORT )" | wc -l) -ge $N1 ]] && break
		sleep 0.1
	done
	((bytes == 0)) || wait_echoed "$T/ref1.err" "$N1"
	sleep "$SETTLE"
	snapshot "reference.$bytes.1" >"$T/s1"
	client "$T/ref2" $((N2 - N1)) "$bytes" "$N1" "$KS_ECHO_PORT"
	c2=$CLIENT_PID
	for _ in $(seq 6000); do
		[[ $(ss -Htn state established "( dport = :$KS_ECHO_PORT )" | wc -l) -ge $N2 ]] && break
		sleep 0.1
	done
	((bytes == 0)) || wait_echoed "$T/ref2.err" $((N2 - N1))
	sleep "$SETTLE"
	snapshot "reference.$bytes.2" >"$T/s2"
	kill "$c1" "$c2"
	wait "$c1" "$c2" || true
	for s in 0 1 2; do echo "case=reference bytes=$bytes snap=$s $(cat "$T/s$s")"; done >>"$raw"
	progress "reference, $bytes byte(s): done"

	for mode in ${VMI_MODES:-auto off}; do
		ks_pair "$T" "$KS_ECHO_PORT" --workers 1 --io epoll --ktls "$mode" --log-level info \
			--max-connections $((N2 + 100)) --max-handshakes $((N2 + 100)) \
			--max-handshakes-per-source $((N2 + 100)) --handshake-timeout 600s --first-byte-timeout 600s \
			--idle-timeout 0 --control-socket none
		rl=$([[ $mode == auto ]] && grep -q 'aes128gcm=yes' "$T/a.log" && echo kernel || echo userspace)
		sleep "$SETTLE"
		snapshot "$rl.$bytes.0" "$KS_A_PID" "$KS_B_PID" >"$T/s0"
		client "$T/c1" "$N1" "$bytes" 0 "$KS_A_PORT"
		c1=$CLIENT_PID
		progress "$rl, $bytes byte(s): $N1 connections opening"
		wait_opened "$T/b.log" "$N1" "$T/c1"
		wait_opened "$T/a.log" "$N1" "$T/c1"
		((bytes == 0)) || wait_echoed "$T/c1.err" "$N1"
		sleep "$SETTLE"
		snapshot "$rl.$bytes.1" "$KS_A_PID" "$KS_B_PID" >"$T/s1"
		client "$T/c2" $((N2 - N1)) "$bytes" "$N1" "$KS_A_PORT"
		c2=$CLIENT_PID
		progress "$rl, $bytes byte(s): $N2 connections opening"
		wait_opened "$T/b.log" "$N2" "$T/c2"
		wait_opened "$T/a.log" "$N2" "$T/c2"
		((bytes == 0)) || wait_echoed "$T/c2.err" $((N2 - N1))
		sleep "$SETTLE"
		snapshot "$rl.$bytes.2" "$KS_A_PID" "$KS_B_PID" >"$T/s2"
		grep -c "record_layer=$rl " "$T/a.log" | grep -qx "$N2" ||
			ks_fail "$rl: not all $N2 connections on A ran on the $rl record layer"
		if [[ ${VMI_HEAP:-0} == 1 ]]; then
			for side in A B; do
				pid=$([[ $side == A ]] && echo "$KS_A_PID" || echo "$KS_B_PID")
				python3 "$KS_ROOT/tests/tools/heap_census.py" "$pid" | sed "s/^/heap $rl $bytes $side: /"
				# Would one more malloc_trim(0) now give pages back? (it
				# would if the worker had not trimmed after the last burst)
				rss0=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status")
				gdb -q -batch -p "$pid" -ex 'call (int) malloc_trim(0)' >/dev/null 2>&1 || true
				echo "heap $rl $bytes $side: RssAnon $rss0 KiB, after one more malloc_trim(0) from gdb $(awk '/^RssAnon/ {print $2}' "/proc/$pid/status") KiB"
				python3 "$KS_ROOT/tests/tools/heap_census.py" "$pid" | sed "s/^/heap $rl $bytes $side: after: /"
			done >>"$T/heap"
		fi
		if [[ ${VMI_MALLOC_INFO:-0} == 1 ]]; then
			for side in a b; do
				pid=$([[ $side == a ]] && echo "$KS_A_PID" || echo "$KS_B_PID")
				gdb -q -batch -p "$pid" -ex 'call (int) malloc_info(0, (void *) stderr)' >/dev/null 2>&1 || true
				sleep 1
				sed -n '/^<malloc version/,/^<\/malloc>/p' "$T/$side.log" \
					>"${KS_VM_OUT:-$T}/malloc-info.$rl.$bytes.$side.xml"
			done
		fi
		kill "$c1" "$c2"
		wait "$c1" "$c2" || true
		kill "$KS_A_PID" "$KS_B_PID"
		wait "$KS_A_PID" "$KS_B_PID" || true
		for s in 0 1 2; do echo "case=$rl bytes=$bytes snap=$s $(cat "$T/s$s")"; done >>"$raw"
		progress "$rl, $bytes byte(s): done"
		mv "$T/a.log" "$T/a.$rl.$bytes.log"
		mv "$T/b.log" "$T/b.$rl.$bytes.log"
	done
done

echo "kernel $(uname -r); transparent hugepages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo -); fresh pair per case, 1 worker each, epoll; N1=$N1, N2=$N2; settle ${SETTLE}s"
echo "raw snapshots (KiB; A_/B_ per sidecar, the rest machine-wide):"
cat "$raw"
[[ -z ${KS_VM_OUT:-} ]] || cp "$raw" "$KS_VM_OUT/vm-idle-mem.raw"
[[ ! -s $T/heap ]] || { echo "worker heaps at N2 (tests/tools/heap_census.py):"; cat "$T/heap"; }
echo
# The table: per connection, KiB. "first N1" = (s1 - s0) / N1, "marginal" =
# (s2 - s1) / (N2 - N1). Kernel share = (Slab delta - reference's Slab delta)
# for the pair; pipes = pipe pages held by A + B (4 KiB each).
awk -v n1="$N1" -v n2="$N2" '
function get(k,   i, kv) { for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return kv[2] } return 0 }
{
	split($1, a, "="); split($2, b, "="); split($3, s, "=")
	key = a[2] SUBSEP b[2] SUBSEP s[2]
	n = split("Slab SUnreclaim SlabObj MemAvailable A_VmRSS B_VmRSS A_RssAnon B_RssAnon A_pipe_pages B_pipe_pages", names, " ")
	for (i = 1; i <= n; i++) v[key, names[i]] = get(names[i])
	if (!(a[2] SUBSEP b[2] in seen)) { seen[a[2] SUBSEP b[2]] = 1; order[++no] = a[2] SUBSEP b[2] }
}
function d(c, bb, k, s0, s1, cnt) { return (v[c, bb, s1, k] - v[c, bb, s0, k]) / cnt }
END {
	print "| record layer | bytes per conn | per conn over | RSS A | RSS B | kernel share: Slab (SUnreclaim) | reference Slab (SUnreclaim) | pipe pages A+B | sum A+B+kernel | live slab objects, pair |"
	print "|---|---|---|---|---|---|---|---|---|---|"
	for (o = 1; o <= no; o++) {
		split(order[o], cb, SUBSEP); c = cb[1]; bb = cb[2]
		if (c == "reference") continue
		for (p = 1; p <= 2; p++) {
			s0 = p - 1; s1 = p; cnt = p == 1 ? n1 : n2 - n1
			lbl = p == 1 ? "first " n1 : "next " (n2 - n1)
			ra = d(c, bb, "A_VmRSS", s0, s1, cnt); rb = d(c, bb, "B_VmRSS", s0, s1, cnt)
			kslab = d(c, bb, "Slab", s0, s1, cnt) - d("reference", bb, "Slab", s0, s1, cnt)
			ku = d(c, bb, "SUnreclaim", s0, s1, cnt) - d("reference", bb, "SUnreclaim", s0, s1, cnt)
			ko = d(c, bb, "SlabObj", s0, s1, cnt) - d("reference", bb, "SlabObj", s0, s1, cnt)
			pp = 4 * (d(c, bb, "A_pipe_pages", s0, s1, cnt) + d(c, bb, "B_pipe_pages", s0, s1, cnt))
			printf "| %s | %d | %s | %.1f | %.1f | %.1f (%.1f) | %.1f (%.1f) | %.1f | %.1f | %.1f |\n", c, bb, lbl, ra, rb, kslab, ku,
				d("reference", bb, "Slab", s0, s1, cnt), d("reference", bb, "SUnreclaim", s0, s1, cnt), pp, ra + rb + kslab + pp, ko
		}
	}
}' "$raw"
