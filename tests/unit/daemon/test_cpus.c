/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The default worker count (daemon/cpus.h): the cgroup CPU quota, read by
 * the real code from a copy of /proc/self/{cgroup,mountinfo} and the
 * cgroup files in a temporary directory (the root prefix), and the
 * decision between it and the affinity mask. Layouts: cgroup v2, v1 with
 * cpu,cpuacct on a hybrid host, a container's cgroup namespace, quotas on
 * ancestors, and files that are missing or hold garbage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/cpus.h"

static char root[PATH_MAX];

/* root/rel holds text; the directories on the way are made. */
static void put(const char *rel, const char *text)
{
	char path[PATH_MAX * 2];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			fail_msg("mkdir %s: %s", path, strerror(errno));
		*p = '/';
	}
	f = fopen(path, "w");
	if (!f)
		fail_msg("cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "%s/ks-cpus-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 32];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

/* A pure v2 host (the VM, a modern node): one cgroup2 mount. */
#define MOUNTINFO_V2                                                                               \
	"22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"             \
	"30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "  \
	"rw,nsdelegate,memory_recursiveprot\n"

/* A hybrid host (the build machines): cpu on v1, beside cpuset and a v2 tree. */
#define MOUNTINFO_HYBRID                                                                           \
	"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"                      \
	"34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"               \
	"33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup "            \
	"rw,cpu,cpuacct\n"                                                                         \
	"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"

static void test_v2_quota(void **state)
{
	struct ks_cpu_quota q;
	struct ks_cpus c;

	(void)state;
	put("proc/self/cgroup", "0::/kubepods/pod1/c1\n");
	put("proc/self/mountinfo", MOUNTINFO_V2);
	put("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "50000 100000\n");
	put("sys/fs/cgroup/kubepods/pod1/cpu.max", "max 100000\n");
	ks_cpu_quota_read(root, &q);
	assert_int_equal(q.version, 2);
	assert_true(q.set);
	assert_int_equal(q.quota_us, 50000);
	assert_int_equal(q.period_us, 100000);
	assert_string_equal(q.dir, "/sys/fs/cgroup/kubepods/pod1/c1");
	assert_string_equal(q.note, "");

	/* Half a CPU on a 4-CPU machine: one worker, and the log says why. */
	ks_cpus_decide(0, &q, 4, &c);
	assert_int_equal(c.count, 1);
	assert_string_equal(c.source, "cgroup2");
	assert_false(c.warn);
	assert_non_null(strstr(c.desc, "source=cgroup2 quota_us=50000 period_us=100000 affinity=4 "
				       "cgroup=\"/sys/fs/cgroup/kubepods/pod1/c1\""));
	assert_non_null(strstr(c.desc, "CPU quota 0.50 (cgroup v2 cpu.max) rounded up to 1, fewer "
				       "than the 4 CPUs in the affinity mask"));

	/* 2.5 CPUs round up to 3. */
	put("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "250000 100000\n");
	ks_cpu_quota_read(root, &q);
	ks_cpus_decide(0, &q, 8, &c);
	assert_int_equal(c.count, 3);
	assert_non_null(strstr(c.desc, "CPU quota 2.50"));
}

static void test_v2_max(void **state)
{
	struct ks_cpu_quota q;
	struct ks_cpus c;

	(void)state;
	put("proc/self/cgroup", "0::/a/b\n");
	put("proc/self/mountinfo", MOUNTINFO_V2);
	put("sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/a/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/cgroup.controllers", "cpu memory\n"); /* the root has no cpu.max */
	ks_cpu_quota_read(root, &q);
	assert_int_equal(q.version, 2);
	assert_false(q.set);
	assert_string_equal(q.dir, "/sys/fs/cgroup/a/b");
	assert_string_equal(q.note, "");
	ks_cpus_decide(0, &q, 3, &c);
	assert_int_equal(c.count, 3);
	assert_string_equal(c.source, "affinity");
	assert_false(c.warn);
	assert_non_null(strstr(c.desc, "source=affinity quota_us=max period_us=- affinity=3"));
	assert_non_null(strstr(c.desc, "no CPU quota in cgroup v2 (cpu.max) here or above"));

	/* No cpu.max at all: the controller is not enabled for us. Not an error. */
	put("proc/self/cgroup", "0::/other\n");
	put("sys/fs/cgroup/other/cgroup.procs", "");
	ks_cpu_quota_read(root, &q);
	assert_false(q.set);
	assert_string_equal(q.note, "");
	assert_string_equal(q.dir, "/sys/fs/cgroup/other");
}

/*
 * The build machines: cpu,cpuacct on v1, a v2 tree beside it without the
 * cpu controller. The v1 line wins; cpuset is not "cpu"; the decoy quotas
 * in the other hierarchies are never read.
 */
static void test_v1_cpu_cpuacct(void **state)
{
	struct ks_cpu_quota q;
	struct ks_cpus c;

	(void)state;
	put("proc/self/cgroup", "9:name=systemd:/docker/abc\n"
				"4:cpu,cpuacct:/docker/abc\n"
				"3:cpuset:/docker/abc\n"
				"0::/docker/abc\n");
	put("proc/self/mountinfo", MOUNTINFO_HYBRID);
	put("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n");
	put("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us", "-1\n");
	put("sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
	put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpuset/docker/abc/cpu.cfs_quota_us", "10000\n");
	put("sys/fs/cgroup/cpuset/docker/abc/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/unified/docker/abc/cpu.max", "10000 100000\n");
	ks_cpu_quota_read(root, &q);
	assert_string_equal(q.note, "");
	assert_int_equal(q.version, 1);
	assert_true(q.set);
	assert_int_equal(q.quota_us, 150000);
	assert_int_equal(q.period_us, 100000);
	assert_string_equal(q.dir, "/sys/fs/cgroup/cpu,cpuacct/docker/abc");
	ks_cpus_decide(0, &q, 8, &c);
	assert_int_equal(c.count, 2);
	assert_string_equal(c.source, "cgroup1");
	assert_non_null(
	    strstr(c.desc, "source=cgroup1 quota_us=150000 period_us=100000 affinity=8"));
	assert_non_null(strstr(c.desc, "CPU quota 1.50 (cgroup v1 "
				       "cpu.cfs_quota_us/cpu.cfs_period_us) rounded up to 2"));
}

/*
 * A container's view: the mount's root is its own cgroup (v1 without a
 * cgroup namespace, root field "/docker/abc"), or a cgroup namespace whose
 * path is not under the mount (runc with cgroupns: "/.." or a path that
 * does not exist there). Either way the top of the mount is our cgroup.
 */
static void test_container_views(void **state)
{
	struct ks_cpu_quota q;

	(void)state;
	put("proc/self/cgroup", "4:cpu:/docker/abc\n");
	put("proc/self/mountinfo",
	    "40 31 0:29 /docker/abc /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu\n");
	put("sys/fs/cgroup/cpu x/cpu.cfs_quota_us", "200000\n");
	put("sys/fs/cgroup/cpu x/cpu.cfs_period_us", "100000\n");
	ks_cpu_quota_read(root, &q);
	assert_string_equal(q.note, "");
	assert_true(q.set);
	assert_int_equal(q.quota_us, 200000);
	assert_string_equal(q.dir, "/sys/fs/cgroup/cpu x");

	put("proc/self/cgroup", "0::/system.slice/containerd.service/kubepods-x\n");
	put("proc/self/mountinfo", MOUNTINFO_V2);
	put("sys/fs/cgroup/cpu.max", "30000 100000\n");
	ks_cpu_quota_read(root, &q);
	assert_string_equal(q.note, "");
	assert_true(q.set);
	assert_int_equal(q.quota_us, 30000);
	assert_string_equal(q.dir, "/sys/fs/cgroup");

	put("proc/self/cgroup", "0::/../..\n"); /* /sys: must not climb out of the mount */
	put("sys/cpu.max", "10000 100000\n");
	ks_cpu_quota_read(root, &q);
	assert_true(q.set);
	assert_int_equal(q.quota_us, 30000);
	assert_string_equal(q.dir, "/sys/fs/cgroup");
}

/* A quota on an ancestor limits us too: the tightest on the way up wins. */
static void test_nested_parent_smaller(void **state)
{
	struct ks_cpu_quota q;
	struct ks_cpus c;

	(void)state;
	put("proc/self/cgroup", "0::/a/b/c\n");
	put("proc/self/mountinfo", MOUNTINFO_V2);
	put("sys/fs/cgroup/a/b/c/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/a/b/cpu.max", "300000 100000\n");
	put("sys/fs/cgroup/a/cpu.max", "100000 100000\n");
	ks_cpu_quota_read(root, &q);
	assert_true(q.set);
	assert_int_equal(q.quota_us, 100000);
	assert_int_equal(q.period_us, 100000);
	assert_string_equal(q.dir, "/sys/fs/cgroup/a");
	ks_cpus_decide(0, &q, 4, &c);
	assert_int_equal(c.count, 1);
	assert_non_null(strstr(c.desc, "cgroup=\"/sys/fs/cgroup/a\""));

	/* Compared as rates, not quotas: 60000/50000 (1.2) is looser than
	 * 100000/100000 (1.0) below it. */
	put("sys/fs/cgroup/a/cpu.max", "60000 50000\n");
	put("sys/fs/cgroup/a/b/cpu.max", "100000 100000\n");
	ks_cpu_quota_read(root, &q);
	assert_int_equal(q.quota_us, 100000);
	assert_string_equal(q.dir, "/sys/fs/cgroup/a/b");

	/* v1 likewise. */
	put("proc/self/cgroup", "4:cpu,cpuacct:/p/q\n");
	put("proc/self/mountinfo", MOUNTINFO_HYBRID);
	put("sys/fs/cgroup/cpu,cpuacct/p/q/cpu.cfs_quota_us", "-1\n");
	put("sys/fs/cgroup/cpu,cpuacct/p/q/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu,cpuacct/p/cpu.cfs_quota_us", "25000\n");
	put("sys/fs/cgroup/cpu,cpuacct/p/cpu.cfs_period_us", "50000\n");
	ks_cpu_quota_read(root, &q);
	assert_int_equal(q.version, 1);
	assert_true(q.set);
	assert_int_equal(q.quota_us, 25000);
	assert_int_equal(q.period_us, 50000);
	assert_string_equal(q.dir, "/sys/fs/cgroup/cpu,cpuacct/p");
}

static void test_affinity_smaller(void **state)
{
	struct ks_cpu_quota q = {
	    .version = 2, .set = true, .quota_us = 400000, .period_us = 100000};
	struct ks_cpus c;

	(void)state;
	snprintf(q.dir, sizeof(q.dir), "/sys/fs/cgroup/x");
	ks_cpus_decide(0, &q, 2, &c);
	assert_int_equal(c.count, 2);
	assert_string_equal(c.source, "affinity");
	assert_non_null(
	    strstr(c.desc, "source=affinity quota_us=400000 period_us=100000 affinity=2"));
	assert_non_null(strstr(c.desc,
			       "2 CPUs in the affinity mask; the CPU quota 4.00 (cgroup v2) "
			       "allows 4"));
	/* As many as the quota: the affinity mask, which is exact. */
	ks_cpus_decide(0, &q, 4, &c);
	assert_int_equal(c.count, 4);
	assert_string_equal(c.source, "affinity");
}

static void test_flag_and_caps(void **state)
{
	struct ks_cpu_quota q = {.version = 1, .set = true, .quota_us = 50000, .period_us = 100000};
	struct ks_cpus c;

	(void)state;
	ks_cpus_decide(3, &q, 2, &c);
	assert_int_equal(c.count, 3);
	assert_int_equal(c.automatic, 1);
	assert_string_equal(c.source, "flag");
	assert_non_null(strstr(c.desc, "source=flag auto=1 affinity=2 quota_us=50000"));

	/* 1000 CPUs of quota, 512 allowed: --workers' ceiling. */
	q.quota_us = 100000000;
	ks_cpus_decide(0, &q, 512, &c);
	assert_int_equal(c.count, KS_CPUS_MAX);
	assert_non_null(strstr(c.desc, "capped at 256"));
	memset(&q, 0, sizeof(q));
	ks_cpus_decide(0, &q, 1000, &c);
	assert_int_equal(c.count, KS_CPUS_MAX);
	ks_cpus_decide(0, &q, 0, &c); /* never 0 workers */
	assert_int_equal(c.count, 1);
}

/* decide() on what read() made of it: count = affinity, warn, the reason says what. */
static void expect_no_quota(const char *needle)
{
	struct ks_cpu_quota q;
	struct ks_cpus c;

	ks_cpu_quota_read(root, &q);
	assert_false(q.set);
	if (!strstr(q.note, needle))
		fail_msg("note '%s' lacks '%s'", q.note, needle);
	ks_cpus_decide(0, &q, 2, &c);
	assert_int_equal(c.count, 2);
	assert_string_equal(c.source, "affinity");
	assert_true(c.warn);
	assert_non_null(strstr(c.desc, "; but "));
}

static void test_garbage(void **state)
{
	static const char *const bad_v2[] = {"banana\n",
					     "50000\n",
					     "50000 100000 7\n",
					     "\n",
					     "",
					     "-1 100000\n",
					     "0 100000\n",
					     "50000 0\n",
					     "50000 2000000\n",
					     "max\n",
					     "MAX 100000\n",
					     "50000  100000\n",
					     "0x100 100000\n",
					     "99999999999999999999999 100000\n",
					     "17592186044416 100000\n"};
	char path[PATH_MAX + 64];
	struct ks_cpu_quota q;
	const char *reason;
	struct ks_cpus c;

	(void)state;
	put("proc/self/cgroup", "0::/g\n");
	put("proc/self/mountinfo", MOUNTINFO_V2);
	for (size_t i = 0; i < sizeof(bad_v2) / sizeof(bad_v2[0]); i++) {
		put("sys/fs/cgroup/g/cpu.max", bad_v2[i]);
		expect_no_quota("/sys/fs/cgroup/g/cpu.max holds");
	}
	/* Quotes and control bytes do not break the log line: the reason is
	 * one quoted value to the end of the line. */
	put("sys/fs/cgroup/g/cpu.max", "\"x\" \\ \x1b[31m\n");
	ks_cpu_quota_read(root, &q);
	ks_cpus_decide(0, &q, 2, &c);
	reason = strstr(c.desc, "reason=\"");
	assert_non_null(reason);
	assert_non_null(strstr(reason, "cpu.max holds '_x_ _ _[31m'"));
	assert_ptr_equal(strchr(reason + 8, '"'), c.desc + strlen(c.desc) - 1);
	assert_null(strchr(reason, '\x1b'));
	/* Garbage below, a real quota above: the quota stands, the note too. */
	put("sys/fs/cgroup/g/cpu.max", "banana\n");
	put("sys/fs/cgroup/cpu.max", "50000 100000\n");
	ks_cpu_quota_read(root, &q);
	assert_true(q.set);
	assert_int_equal(q.quota_us, 50000);
	assert_non_null(strstr(q.note, "banana"));
	snprintf(path, sizeof(path), "%s/sys/fs/cgroup/cpu.max", root);
	assert_int_equal(unlink(path), 0);

	/* v1 */
	put("proc/self/cgroup", "4:cpu,cpuacct:/g\n");
	put("proc/self/mountinfo", MOUNTINFO_HYBRID);
	put("sys/fs/cgroup/cpu,cpuacct/g/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu,cpuacct/g/cpu.cfs_quota_us", "12abc\n");
	expect_no_quota("cpu.cfs_quota_us holds '12abc'");
	put("sys/fs/cgroup/cpu,cpuacct/g/cpu.cfs_quota_us", "-2\n");
	expect_no_quota("cpu.cfs_quota_us holds '-2'");
	put("sys/fs/cgroup/cpu,cpuacct/g/cpu.cfs_quota_us", "50000\n");
	put("sys/fs/cgroup/cpu,cpuacct/g/cpu.cfs_period_us", "0\n");
	expect_no_quota("cpu.cfs_period_us holds '0'");

	/* /proc files that make no sense */
	put("proc/self/cgroup", "garbage\n::\n1:cpuset:/x\n");
	expect_no_quota("names no cpu controller");
	put("proc/self/cgroup", "0::/g\n");
	put("proc/self/mountinfo", "x y z\n1 2 3 4 5 6 - cgroup2\n\n");
	expect_no_quota("lists no cgroup2 mount");
	put("proc/self/cgroup", "4:cpu:/g\n");
	put("proc/self/mountinfo", MOUNTINFO_V2);
	expect_no_quota("lists no cgroup mount with the cpu controller");
}

static void test_missing_files(void **state)
{
	char path[PATH_MAX + 64];

	(void)state;
	/* An empty tree: no /proc at all. */
	expect_no_quota("/proc/self/cgroup: No such file or directory");
	put("proc/self/cgroup", "0::/m\n");
	expect_no_quota("/proc/self/mountinfo: No such file or directory");

	/* v1: a quota without its period is no quota, and says so. */
	put("proc/self/cgroup", "4:cpu,cpuacct:/m\n");
	put("proc/self/mountinfo", MOUNTINFO_HYBRID);
	put("sys/fs/cgroup/cpu,cpuacct/m/cpu.cfs_quota_us", "50000\n");
	expect_no_quota("cannot read /sys/fs/cgroup/cpu,cpuacct/m/cpu.cfs_period_us: No such file");

	/* Longer than any cgroup file or path the code holds: said, not cut. */
	{
		char big[700];

		memset(big, '7', sizeof(big) - 2);
		big[sizeof(big) - 2] = '\n';
		big[sizeof(big) - 1] = '\0';
		put("sys/fs/cgroup/cpu,cpuacct/m/cpu.cfs_quota_us", big);
		expect_no_quota("cpu.cfs_quota_us: File too large");
		snprintf(big, sizeof(big), "4:cpu,cpuacct:/%0600d\n", 0);
		put("proc/self/cgroup", big);
		expect_no_quota("a cgroup path in ");
		put("proc/self/cgroup", "4:cpu,cpuacct:/m\n");
	}

	/* Unreadable (a directory where the file should be). */
	snprintf(path, sizeof(path), "%s/sys/fs/cgroup/cpu,cpuacct/m/cpu.cfs_quota_us", root);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0755), 0);
	expect_no_quota("cannot read /sys/fs/cgroup/cpu,cpuacct/m/cpu.cfs_quota_us");

	/* v2 reads cpu.max the same way: unreadable is said, not taken as absent. */
	put("proc/self/cgroup", "0::/m\n");
	put("proc/self/mountinfo", MOUNTINFO_V2);
	put("sys/fs/cgroup/m/cgroup.procs", "");
	snprintf(path, sizeof(path), "%s/sys/fs/cgroup/m/cpu.max", root);
	assert_int_equal(mkdir(path, 0755), 0);
	expect_no_quota("cannot read /sys/fs/cgroup/m/cpu.max: Is a directory");
}

/* This process, for real: whatever the machine, a count in range. */
static void test_this_process(void **state)
{
	struct ks_cpus c;
	int err = 1;

	(void)state;
	assert_true(ks_cpus_affinity(&err) >= 1);
	assert_int_equal(err, 0);
	ks_cpus_resolve(0, &c);
	assert_true(c.count >= 1 && c.count <= KS_CPUS_MAX);
	assert_true(c.count <= c.affinity);
	assert_non_null(strstr(c.desc, "source="));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_v2_quota, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_max, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_cpu_cpuacct, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_container_views, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nested_parent_smaller, setup, teardown),
	    cmocka_unit_test(test_affinity_smaller),
	    cmocka_unit_test(test_flag_and_caps),
	    cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_files, setup, teardown),
	    cmocka_unit_test(test_this_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
