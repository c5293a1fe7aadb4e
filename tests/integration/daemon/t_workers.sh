#!/usr/bin/env bash
# Workers follow the CPUs the container may use (README, "Worker count"):
# in a cgroup with a CPU quota of half a CPU the sidecar starts 1 worker and
# says why (event=workers ... source=cgroupN), although the machine has 2
# or more CPUs; in one without a quota, as many as its affinity mask; and
# --workers 3 overrides both (source=flag). Checked on the cpu controller
# wherever it is: cgroup v1 on the build machines, v2 in the VM
# (tests/ktls/vm.sh, 3 vCPUs), where make test-ktls (KS_REQUIRE_KTLS=1) makes the
# v2 case required rather than skippable.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

skip() {
	[[ ${KS_REQUIRE_KTLS:-0} == 1 ]] && ks_fail "required in the VM (KS_REQUIRE_KTLS=1), but: $*"
	ks_skip "$*"
}
[[ $(id -u) -eq 0 ]] || skip "needs root (creates cgroups)"
ncpu=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) # the affinity mask's CPUs
((ncpu >= 2)) || skip "this machine gives us 1 CPU: half a CPU would mean 1 worker anyway"
# make test-ktls boots this scenario's guest with 3 vCPUs (KS_VM_CPUS), a
# count the 2-core build machines do not have: the guest must show them.
if [[ -n ${KS_VM_CPUS:-} ]] && ((ncpu != KS_VM_CPUS)); then
	ks_fail "the guest was booted with $KS_VM_CPUS vCPUs, but our affinity mask has $ncpu"
fi

# The cpu controller's mount, as the sidecar finds it (daemon/cpus.c): a v1
# hierarchy when /proc/self/cgroup names it, else the v2 one.
mount_of() { # TYPE [SUPER_OPTION]
	awk -v t="$1" -v o="${2:-}" '{
		for (i = 7; i <= NF; i++) if ($i == "-") {
			if ($(i + 1) == t && (o == "" || ("," $(i + 3) ",") ~ ("," o ","))) { print $5; exit }
			break
		}
	}' /proc/self/mountinfo
}
if grep -Eq '^[0-9]+:([^:]*,)?cpu(,[^:]*)?:' /proc/self/cgroup && [[ -n $(mount_of cgroup cpu) ]]; then
	V=1 TOP=$(mount_of cgroup cpu)
else
	V=2 TOP=$(mount_of cgroup2)
	[[ -n $TOP ]] || skip "no cgroup v1 cpu controller and no cgroup v2 hierarchy mounted"
fi
[[ ${KS_REQUIRE_KTLS:-0} == 1 && $V != 2 ]] && ks_fail "the VM must run the cgroup v2 case, found v$V at $TOP"
echo "cpu controller: cgroup v$V at $TOP; $ncpu CPUs"

# cg_remove DIR: what is left in DIR moves to its parent, then DIR goes.
cg_remove() {
	local pid
	[[ -d $1 ]] || return 0
	while read -r pid; do
		echo "$pid" >"$(dirname "$1")/cgroup.procs" 2>/dev/null || true
	done <"$1/cgroup.procs"
	rmdir "$1" || echo "t_workers: cannot remove cgroup $1" >&2
}
cg_cpu_off() {
	echo -cpu >"$1/cgroup.subtree_control" ||
		echo "t_workers: cannot disable the cpu controller in $1/cgroup.subtree_control" >&2
}
if [[ $V == 2 ]] && ! grep -qw cpu "$TOP/cgroup.subtree_control"; then
	# cpu.max exists only where the parent enables the controller.
	grep -qw cpu "$TOP/cgroup.controllers" || skip "the cpu controller is not available in $TOP"
	echo +cpu >"$TOP/cgroup.subtree_control" ||
		skip "cannot enable the cpu controller in $TOP/cgroup.subtree_control"
	ks_cleanup_add cg_cpu_off "$TOP"
fi

# The quota above our cgroups (the top of the mount): none on a host or in
# the VM, but a container could have one, and it limits us too.
top_count=$ncpu
if [[ $V == 1 && $(cat "$TOP/cpu.cfs_quota_us") != -1 ]]; then
	top_count=$((($(cat "$TOP/cpu.cfs_quota_us") + $(cat "$TOP/cpu.cfs_period_us") - 1) / $(cat "$TOP/cpu.cfs_period_us")))
elif [[ $V == 2 && -r $TOP/cpu.max && $(cut -d' ' -f1 "$TOP/cpu.max") != max ]]; then
	read -r q p <"$TOP/cpu.max"
	top_count=$(((q + p - 1) / p))
fi
((top_count < ncpu)) || top_count=$ncpu

T=$(ks_tmpdir)
HALF=$TOP/ks-test-$$-half FREE=$TOP/ks-test-$$-free
for cg in "$HALF" "$FREE"; do
	mkdir "$cg" || skip "cannot create a cgroup under $TOP"
	ks_cleanup_add cg_remove "$cg"
	# KS_BIN for ks_sidecar: joins the cgroup, then is the sidecar (same pid).
	printf '#!/bin/sh\necho $$ >"%s/cgroup.procs" || exit 99\nexec "%s" "$@"\n' "$cg" "$KS_BIN" >"$T/in-${cg##*-}"
	chmod +x "$T/in-${cg##*-}"
done
if [[ $V == 1 ]]; then
	echo 100000 >"$HALF/cpu.cfs_period_us"
	echo 50000 >"$HALF/cpu.cfs_quota_us"
else
	echo "50000 100000" >"$HALF/cpu.max"
fi

# run NAME WRAPPER [ARGS...]: a sidecar (no identity: it waits for the
# control plane, enough to start its workers) until event=ready; sets
# THREADS to its threads named like it (io_uring's iou-* helpers aside).
real_bin=$KS_BIN
run() {
	local name=$1 comm
	KS_BIN=$2
	shift 2
	ks_sidecar "$T/$name.log" --inbound 127.0.0.1:0=127.0.0.1:9 --drain-timeout 0 "$@"
	KS_BIN=$real_bin
	comm=$(cat "/proc/$KS_SIDECAR_PID/comm")
	THREADS=$(cat /proc/"$KS_SIDECAR_PID"/task/*/comm | grep -cxF "$comm")
	grep -qxF "$KS_SIDECAR_PID" "$cg_of_run/cgroup.procs" ||
		ks_fail "$name: the sidecar (pid $KS_SIDECAR_PID) is not in $cg_of_run"
	kill -TERM "$KS_SIDECAR_PID"
	wait "$KS_SIDECAR_PID" || ks_fail "$name: the sidecar exited $? on SIGTERM"
}

src=cgroup$V
cg_of_run=$HALF
run half "$T/in-half"
ks_assert_grep "$T/half.log" \
	"event=workers count=1 source=$src quota_us=50000 period_us=100000 affinity=$ncpu cgroup=\"$HALF\" reason=\"CPU quota 0.50 \(cgroup v$V [a-z._/]+\) rounded up to 1, fewer than the $ncpu CPUs in the affinity mask\"" \
	"half a CPU: 1 worker, and the reason"
ks_assert_grep "$T/half.log" "event=ready .*workers=1 " "half a CPU: the sidecar reports 1 worker ready"
ks_assert_not_grep "$T/half.log" "level=warn event=workers" "half a CPU: nothing to warn about"
half_threads=$THREADS
ks_pass "quota 50000/100000 on cgroup v$V: 1 worker of $ncpu CPUs, source=$src, reason logged"

run flag "$T/in-half" --workers 3
ks_assert_grep "$T/flag.log" "event=workers count=3 source=flag auto=1 affinity=$ncpu quota_us=50000 period_us=100000 cgroup=\"$HALF\" reason=\"--workers or KTLS_SIDECAR_WORKERS given; the default would be 1: CPU quota 0.50" \
	"--workers 3 overrides the quota"
ks_assert_grep "$T/flag.log" "event=ready .*workers=3 " "--workers 3: 3 workers ready"
# The count is the threads started, not just a number in the log.
((THREADS - half_threads == 2)) ||
	ks_fail "--workers 3 has $THREADS threads, the quota's 1 worker $half_threads: want 2 more"
ks_pass "--workers 3 wins: 3 workers, 2 threads more than with 1, source=flag"

cg_of_run=$FREE
run free "$T/in-free"
if ((top_count < ncpu)); then
	want="count=$top_count source=cgroup$V "
else
	want="count=$ncpu source=affinity quota_us=max period_us=- affinity=$ncpu cgroup=\"$FREE\" reason=\"$ncpu CPUs in the affinity mask; no CPU quota in cgroup v$V"
fi
ks_assert_grep "$T/free.log" "event=workers $want" "no quota: as many workers as the affinity mask"
ks_assert_grep "$T/free.log" "event=ready .*workers=$top_count " "no quota: $top_count workers ready"
ks_pass "no quota: $top_count workers (the affinity mask's $ncpu CPUs)"
# What each start said, for the runner's verbose output.
grep -h 'event=workers' "$T/half.log" "$T/flag.log" "$T/free.log" | sed 's/^/  /'
