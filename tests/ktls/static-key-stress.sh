#!/bin/bash
# tests/ktls/static-key-stress.sh [N] - run in a guest (vm.sh run K -- this):
# flips the kernel's CFS bandwidth static key N times (default 300) by
# setting and clearing cpu.max on a cgroup, while another CPU spins. Each
# flip live-patches every site of the key (arch/x86/kernel/alternative.c),
# several of them in the scheduler, which every vCPU runs. Under QEMU 7.2's
# multi-threaded TCG this kills a 2- or 3-vCPU guest within seconds
# ("Oops: int3"): 300 flips killed 6 guests of 6 on 7.3 with 3 vCPUs. With
# KS_VM_TCG_THREAD=single it completes. See
# tests/ktls/README.md, "Live text patching under multi-threaded TCG".
set -euo pipefail
n=${1:-300}
top=/sys/fs/cgroup
[[ -w $top/cgroup.subtree_control ]] || { echo "static-key-stress: no writable cgroup v2 at $top" >&2; exit 2; }
grep -qw cpu "$top/cgroup.subtree_control" || echo +cpu >"$top/cgroup.subtree_control"
cg=$top/ks-static-key-stress
mkdir -p "$cg"
spin() { while :; do :; done; }
spin &
pid=$!
trap 'kill $pid 2>/dev/null; rmdir "$cg" 2>/dev/null || true' EXIT
for ((i = 0; i < n; i++)); do
	echo "50000 100000" >"$cg/cpu.max" # 0 -> 1 users of the key: patched in
	echo max >"$cg/cpu.max"            # 1 -> 0: patched out
	sleep "0.0$((RANDOM % 5))"
done
echo "static-key-stress: $n flips, the guest survived"
