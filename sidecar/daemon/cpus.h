/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The default worker count: the CPUs this process may use. That is the
 * smaller of the CPU quota of its cgroup (rounded up) and the CPUs in its
 * affinity mask (sched_getaffinity(2), which a cpuset cgroup narrows too).
 * A container with a limit of half a CPU on a 64-CPU node gets one worker,
 * not 64 threads taking turns in the quota.
 *
 * The quota is read from the cgroup the cpu controller puts us in: v1
 * cpu.cfs_quota_us / cpu.cfs_period_us (Documentation/scheduler/
 * sched-bwc.rst) when the controller is on a v1 hierarchy, else v2
 * cpu.max (Documentation/admin-guide/cgroup-v2.rst, "CPU Interface
 * Files"). A quota on an ancestor limits us too, so the walk goes up to
 * the top of the mount and keeps the smallest. Where the cgroup and its
 * mount are comes from /proc/self/cgroup and /proc/self/mountinfo, never
 * from an assumed /sys/fs/cgroup layout.
 *
 * Nothing here fails: what cannot be read or understood is taken as "no
 * quota" and said in the reason, so the sidecar always starts.
 */
#ifndef KS_DAEMON_CPUS_H
#define KS_DAEMON_CPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KS_CPUS_MAX 256 /* --workers' ceiling */

/* The tightest CPU quota on the way from our cgroup up to its mount's root. */
struct ks_cpu_quota {
	int version;	    /* the cpu controller's hierarchy: 1, 2, or 0 (none found) */
	bool set;	    /* a quota limits us (not "max" / -1 everywhere) */
	uint64_t quota_us;  /* when set: the quota ... */
	uint64_t period_us; /* ... per this period, at dir */
	char dir[512];	    /* the cgroup directory that sets it; when !set, where the walk began */
	char note[512];	    /* what could not be read or parsed (taken as no quota), or "" */
};

/*
 * Reads our cgroup's CPU quota. root prefixes every path read
 * (/proc/self/cgroup, /proc/self/mountinfo, the mount points they name):
 * "" for the real system, a directory holding a copy of that tree in the
 * unit tests. dir in the result has no prefix.
 */
void ks_cpu_quota_read(const char *root, struct ks_cpu_quota *q);

/*
 * CPUs in sched_getaffinity(0). If that fails (*err = -errno), the online
 * CPUs. At least 1.
 */
unsigned ks_cpus_affinity(int *err);

/* The decision, and what to log about it. */
struct ks_cpus {
	unsigned count;	    /* workers: 1..KS_CPUS_MAX */
	const char *source; /* "flag", "cgroup1", "cgroup2" or "affinity" */
	unsigned affinity;
	unsigned automatic; /* what the default would be (== count unless source is flag) */
	bool warn;	    /* something could not be read: log at warn */
	struct ks_cpu_quota quota;
	/* "source=... cgroup=\"...\" quota_us=... period_us=... affinity=N
	 * reason=\"...\"": logfmt fields, cleaned for the log. */
	char desc[1536];
};

/*
 * given: --workers, 0 for the default. affinity: ks_cpus_affinity(). q:
 * ks_cpu_quota_read(). Pure: the unit tests give it any combination.
 */
void ks_cpus_decide(unsigned given, const struct ks_cpu_quota *q, unsigned affinity,
		    struct ks_cpus *out);

/* All of it for this process: the real files and the real affinity mask. */
void ks_cpus_resolve(unsigned given, struct ks_cpus *out);

#endif
