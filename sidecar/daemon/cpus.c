/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/cpus.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/parse.h"

/*
 * The kernel's own bounds (kernel/sched/core.c, tg_set_cfs_bandwidth): a
 * period of at most 1 s, a quota of at most MAX_BW = 2^44 - 1 us. A value
 * beyond them (or 0) cannot have come from the kernel and is garbage;
 * within them, quota * period fits in 64 bits, so two quotas compare
 * exactly (q1 / p1 < q2 / p2 as q1 * p2 < q2 * p1).
 */
#define KS_PERIOD_MAX_US 1000000UL
#define KS_QUOTA_MAX_US	 ((1UL << 44) - 1)

/* Appends "; "-separated text to q->note (the first problems, if many). */
static void note(struct ks_cpu_quota *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(struct ks_cpu_quota *q, const char *fmt, ...)
{
	size_t len = strlen(q->note);
	va_list ap;

	if (len + 3 >= sizeof(q->note))
		return;
	if (len)
		len += (size_t)snprintf(q->note + len, sizeof(q->note) - len, "; ");
	va_start(ap, fmt);
	vsnprintf(q->note + len, sizeof(q->note) - len, fmt, ap);
	va_end(ap);
}

/* a + b + c into out; -ENAMETOOLONG if it does not fit. */
static int join(char *out, size_t n, const char *a, const char *b, const char *c)
{
	int len = snprintf(out, n, "%s%s%s", a, b, c);

	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

/* Whether tok is one of the sep-separated words of list. */
static bool has_word(const char *list, const char *tok, char sep)
{
	size_t n = strlen(tok);

	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, sep);
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == n && strncmp(p, tok, n) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

/*
 * A cgroup file's one line, without its newline. 0, or -errno; -EFBIG
 * when it does not fit in buf (no cpu file is that long).
 */
static int read_line(const char *path, char *buf, size_t n)
{
	ssize_t len;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	len = read(fd, buf, n);
	if (len < 0) {
		len = -errno;
		close(fd);
		return (int)len;
	}
	close(fd);
	if ((size_t)len >= n)
		return -EFBIG;
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/*
 * Opens root + name (a /proc/self file) for reading, its path in path.
 * 0, or -errno, noted.
 */
static int open_proc(const char *root, const char *name, char path[512], FILE **f,
		     struct ks_cpu_quota *q)
{
	if (join(path, 512, root, name, "") < 0) {
		note(q, "path too long: %s%s", root, name);
		return -ENAMETOOLONG;
	}
	*f = fopen(path, "re");
	if (!*f) {
		int err = -errno;

		note(q, "cannot read %s: %s", path, strerror(-err));
		return err;
	}
	return 0;
}

/*
 * /proc/self/cgroup: "ID:CONTROLLERS:PATH" per hierarchy (cgroups(7)).
 * v1: the line whose controllers include "cpu" (often "cpu,cpuacct"); v2:
 * "0::PATH". Either may be absent (then "").
 */
static int own_cgroups(const char *root, char *v1, char *v2, size_t n, struct ks_cpu_quota *q)
{
	char path[512], *line = NULL;
	size_t cap = 0;
	FILE *f;
	int rc;

	v1[0] = v2[0] = '\0';
	rc = open_proc(root, "/proc/self/cgroup", path, &f, q);
	if (rc < 0)
		return rc;
	while (getline(&line, &cap, f) > 0) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		line[strcspn(line, "\n")] = '\0';
		*c1 = *c2 = '\0';
		if (strlen(c2 + 1) >= n)
			note(q, "a cgroup path in %s is too long (%zu bytes)", path,
			     strlen(c2 + 1));
		else if (strcmp(line, "0") == 0 && c1[1] == '\0')
			memcpy(v2, c2 + 1, strlen(c2 + 1) + 1);
		else if (has_word(c1 + 1, "cpu", ','))
			memcpy(v1, c2 + 1, strlen(c2 + 1) + 1);
	}
	free(line);
	fclose(f);
	return 0;
}

/* mountinfo escapes blanks, tabs, newlines and backslashes as \ooo (proc(5)). */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Whether the cgroup path cg is at or below dir (both absolute). */
static bool at_or_below(const char *cg, const char *dir)
{
	size_t n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return true;
	return strncmp(cg, dir, n) == 0 && (cg[n] == '\0' || cg[n] == '/');
}

struct cg_mount {
	char root[512];	 /* the directory of the hierarchy mounted (mountinfo field 4) */
	char point[512]; /* where (field 5) */
};

/*
 * The mount of our cpu hierarchy in /proc/self/mountinfo: v1, a "cgroup"
 * mount with the "cpu" super option; v2, the "cgroup2" mount. Of several,
 * the first whose root holds cg (a bind mount of another cgroup would not).
 */
static int find_mount(const char *root, int version, const char *cg, struct cg_mount *m,
		      struct ks_cpu_quota *q)
{
	char path[512], *line = NULL;
	bool found = false, fits = false;
	size_t cap = 0;
	FILE *f;
	int rc;

	rc = open_proc(root, "/proc/self/mountinfo", path, &f, q);
	if (rc < 0)
		return rc;
	while (!fits && getline(&line, &cap, f) > 0) {
		char *field[64], *save = NULL, *tok;
		int nf = 0, dash = -1;

		for (tok = strtok_r(line, " \n", &save); tok && nf < 64;
		     tok = strtok_r(NULL, " \n", &save)) {
			if (dash < 0 && nf >= 6 && strcmp(tok, "-") == 0)
				dash = nf;
			field[nf++] = tok;
		}
		/* "ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - TYPE SOURCE SUPER" */
		if (dash < 0 || dash + 3 >= nf)
			continue;
		if (version == 1 ? strcmp(field[dash + 1], "cgroup") != 0 ||
				       !has_word(field[dash + 3], "cpu", ',')
				 : strcmp(field[dash + 1], "cgroup2") != 0)
			continue;
		unescape(field[3]);
		unescape(field[4]);
		fits = at_or_below(cg, field[3]);
		if (found && !fits)
			continue;
		snprintf(m->root, sizeof(m->root), "%s", field[3]);
		snprintf(m->point, sizeof(m->point), "%s", field[4]);
		found = true;
	}
	free(line);
	fclose(f);
	if (!found) {
		note(q, "%s lists no cgroup%s mount%s", path, version == 1 ? "" : "2",
		     version == 1 ? " with the cpu controller" : "");
		return -ENOENT;
	}
	return 0;
}

/* A quota of quota_us per period_us at dir: kept if it is the tightest yet. */
static void consider(struct ks_cpu_quota *q, const char *dir, unsigned long quota,
		     unsigned long period)
{
	if (q->set && (uint64_t)quota * q->period_us >= q->quota_us * (uint64_t)period)
		return;
	q->set = true;
	q->quota_us = quota;
	q->period_us = period;
	snprintf(q->dir, sizeof(q->dir), "%.*s", (int)sizeof(q->dir) - 1, dir);
}

static bool in_range(const char *s, unsigned long max, unsigned long *out)
{
	return ks_parse_uint(s, max, out) == 0 && *out > 0;
}

/*
 * The line of cpu file name at path (the level dir) into buf. 0, or -errno:
 * without the file a level has no quota, which is not noted unless
 * required (v1's period, needed by the quota found); other failures are,
 * and a required file's say the quota is dropped. Too long a path is not a
 * level the kernel could have made, and is passed over.
 */
static int read_quota(const char *path, const char *dir, const char *name, bool required, char *buf,
		      size_t n, struct ks_cpu_quota *q)
{
	char file[600];
	int rc;

	if (join(file, sizeof(file), path, "/", name) < 0)
		return -ENAMETOOLONG;
	rc = read_line(file, buf, n);
	if (rc == -ENOENT && !required)
		return rc;
	if (rc < 0)
		note(q, "cannot read %s/%s: %s%s", dir, name, strerror(-rc),
		     required ? " (quota taken as none)" : "");
	return rc;
}

/*
 * v2 cpu.max: "max PERIOD" or "QUOTA PERIOD". It exists only where the
 * parent enabled the cpu controller (cgroup.subtree_control), and never in
 * the root: no file is no quota at this level.
 */
static void level_v2(const char *path, const char *dir, struct ks_cpu_quota *q)
{
	char buf[128], *sp;
	unsigned long quota = 0, period = 0;
	bool ok = false, is_max = false;

	if (read_quota(path, dir, "cpu.max", false, buf, sizeof(buf), q) < 0)
		return;
	/* "max" or QUOTA, one blank, PERIOD; anything else is not the kernel's. */
	sp = strchr(buf, ' ');
	if (sp) {
		*sp = '\0';
		ok = in_range(sp + 1, KS_PERIOD_MAX_US, &period);
		is_max = strcmp(buf, "max") == 0;
		ok = ok && (is_max || in_range(buf, KS_QUOTA_MAX_US, &quota));
		*sp = ' ';
	}
	if (!ok) {
		note(q,
		     "%s/cpu.max holds '%.40s', not 'max PERIOD' or 'QUOTA PERIOD' (taken as no "
		     "quota)",
		     dir, buf);
		return;
	}
	if (!is_max)
		consider(q, dir, quota, period);
}

/*
 * v1 cpu.cfs_quota_us: -1 is no quota, else microseconds per
 * cpu.cfs_period_us. Without CONFIG_CFS_BANDWIDTH neither file exists.
 */
static void level_v1(const char *path, const char *dir, struct ks_cpu_quota *q)
{
	char buf[128], pbuf[128];
	unsigned long quota, period;

	if (read_quota(path, dir, "cpu.cfs_quota_us", false, buf, sizeof(buf), q) < 0)
		return;
	if (strcmp(buf, "-1") == 0)
		return;
	if (!in_range(buf, KS_QUOTA_MAX_US, &quota)) {
		note(
		    q,
		    "%s/cpu.cfs_quota_us holds '%.40s', not -1 or microseconds (taken as no quota)",
		    dir, buf);
		return;
	}
	if (read_quota(path, dir, "cpu.cfs_period_us", true, pbuf, sizeof(pbuf), q) < 0)
		return;
	if (!in_range(pbuf, KS_PERIOD_MAX_US, &period)) {
		note(q,
		     "%s/cpu.cfs_period_us holds '%.40s', not microseconds (quota taken as none)",
		     dir, pbuf);
		return;
	}
	consider(q, dir, quota, period);
}

/*
 * From our cgroup up to the top of the mount, keeping the tightest quota.
 * cg is our path in the hierarchy; below the mount it is cg less the
 * mount's root. A path that is not below it, or does not exist there, is
 * what a cgroup namespace shows when the mount was made outside it (runc
 * with cgroupns: /proc/self/cgroup says "/" or "/../.."): the mount's top
 * is then our cgroup.
 */
static void walk(const char *root, int version, const struct cg_mount *m, const char *cg,
		 struct ks_cpu_quota *q)
{
	char rel[512] = "", dir[sizeof(q->dir)], path[1024];
	struct stat st;

	/* "/.." never names a cgroup below the mount, and must not climb out of it. */
	if (at_or_below(cg, m->root) && !strstr(cg, "/.."))
		snprintf(rel, sizeof(rel), "%s",
			 cg + (strcmp(m->root, "/") == 0 ? 0 : strlen(m->root)));
	while (strlen(rel) > 0 && rel[strlen(rel) - 1] == '/')
		rel[strlen(rel) - 1] = '\0';
	if (join(path, sizeof(path), root, m->point, rel) < 0 || stat(path, &st) < 0 ||
	    !S_ISDIR(st.st_mode))
		rel[0] = '\0';
	for (;;) {
		char *slash;

		if (join(dir, sizeof(dir), m->point, rel, "") < 0 ||
		    join(path, sizeof(path), root, dir, "") < 0) {
			note(q, "path too long: %s%s", m->point, rel);
			return;
		}
		if (!q->dir[0])
			memcpy(q->dir, dir, sizeof(dir));
		if (version == 1)
			level_v1(path, dir, q);
		else
			level_v2(path, dir, q);
		slash = strrchr(rel, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
}

void ks_cpu_quota_read(const char *root, struct ks_cpu_quota *q)
{
	char v1[512], v2[512];
	struct cg_mount m;

	memset(q, 0, sizeof(*q));
	if (own_cgroups(root, v1, v2, sizeof(v1), q) < 0)
		return;
	/* Hybrid hosts list both; the cpu controller is where a v1 line names it. */
	if (v1[0] && find_mount(root, 1, v1, &m, q) == 0) {
		q->version = 1;
		walk(root, 1, &m, v1, q);
		return;
	}
	if (v2[0] && find_mount(root, 2, v2, &m, q) == 0) {
		q->version = 2;
		walk(root, 2, &m, v2, q);
		return;
	}
	if (!v1[0] && !v2[0])
		note(q, "%s/proc/self/cgroup names no cpu controller and no cgroup v2 hierarchy",
		     root);
}

unsigned ks_cpus_affinity(int *err)
{
	long online;

	*err = 0;
	/* The set must cover every CPU the kernel has (EINVAL otherwise). */
	for (int ncpu = CPU_SETSIZE; ncpu <= (1 << 18); ncpu *= 2) {
		cpu_set_t *set = CPU_ALLOC(ncpu);
		size_t size = CPU_ALLOC_SIZE(ncpu);
		int n;

		if (!set) {
			*err = -ENOMEM;
			break;
		}
		CPU_ZERO_S(size, set);
		if (sched_getaffinity(0, size, set) == 0) {
			n = CPU_COUNT_S(size, set);
			CPU_FREE(set);
			return n > 0 ? (unsigned)n : 1;
		}
		*err = -errno;
		CPU_FREE(set);
		if (*err != -EINVAL)
			break;
	}
	online = sysconf(_SC_NPROCESSORS_ONLN);
	return online > 0 ? (unsigned)online : 1;
}

void ks_cpus_decide(unsigned given, const struct ks_cpu_quota *q, unsigned affinity,
		    struct ks_cpus *out)
{
	char why[1024], quota[32] = "max", period[32] = "-", clean[1024];
	struct ks_log_field dir;
	uint64_t need = 0, hundredths = 0;
	size_t len;

	memset(out, 0, sizeof(*out));
	out->quota = *q;
	out->affinity = affinity ? affinity : 1;
	out->automatic = out->affinity;
	out->source = "affinity";
	if (q->set) {
		need = (q->quota_us + q->period_us - 1) / q->period_us;
		hundredths = (q->quota_us * 100 + q->period_us / 2) / q->period_us;
		snprintf(quota, sizeof(quota), "%llu", (unsigned long long)q->quota_us);
		snprintf(period, sizeof(period), "%llu", (unsigned long long)q->period_us);
	}
	if (q->set && need < out->affinity) {
		out->automatic = (unsigned)need;
		out->source = q->version == 1 ? "cgroup1" : "cgroup2";
		len = (size_t)snprintf(
		    why, sizeof(why),
		    "CPU quota %llu.%02llu (cgroup v%d %s) rounded up to %u, "
		    "fewer than the %u CPUs in the affinity mask",
		    (unsigned long long)(hundredths / 100), (unsigned long long)(hundredths % 100),
		    q->version, q->version == 1 ? "cpu.cfs_quota_us/cpu.cfs_period_us" : "cpu.max",
		    out->automatic, out->affinity);
	} else if (q->set) {
		len = (size_t)snprintf(why, sizeof(why),
				       "%u CPUs in the affinity mask; the CPU quota %llu.%02llu "
				       "(cgroup v%d) allows %llu",
				       out->affinity, (unsigned long long)(hundredths / 100),
				       (unsigned long long)(hundredths % 100), q->version,
				       (unsigned long long)need);
	} else {
		const char *where = q->version == 1
					? "in cgroup v1 (cpu.cfs_quota_us) here or above"
				    : q->version == 2 ? "in cgroup v2 (cpu.max) here or above"
						      : "found (no cgroup of the cpu controller)";

		len = (size_t)snprintf(why, sizeof(why),
				       "%u CPUs in the affinity mask; no CPU quota %s",
				       out->affinity, where);
	}
	if (out->automatic > KS_CPUS_MAX) {
		out->automatic = KS_CPUS_MAX;
		len +=
		    (size_t)snprintf(why + len, sizeof(why) - len, ", capped at %d", KS_CPUS_MAX);
	}
	if (q->note[0] && len < sizeof(why)) {
		out->warn = true;
		len += (size_t)snprintf(why + len, sizeof(why) - len, "; but %s", q->note);
	}
	out->count = given ? given : out->automatic;
	ks_log_field(&dir, q->dir[0] ? q->dir : "-");
	ks_log_clean(clean, sizeof(clean), why);
	if (given)
		snprintf(out->desc, sizeof(out->desc),
			 "source=flag auto=%u affinity=%u quota_us=%s period_us=%s cgroup=\"%s\" "
			 "reason=\"--workers or KTLS_SIDECAR_WORKERS given; the default would be "
			 "%u: %s\"",
			 out->automatic, out->affinity, quota, period, dir.s, out->automatic,
			 clean);
	else
		snprintf(out->desc, sizeof(out->desc),
			 "source=%s quota_us=%s period_us=%s affinity=%u cgroup=\"%s\" "
			 "reason=\"%s\"",
			 out->source, quota, period, out->affinity, dir.s, clean);
	if (given)
		out->source = "flag";
}

void ks_cpus_resolve(unsigned given, struct ks_cpus *out)
{
	struct ks_cpu_quota q;
	unsigned affinity;
	int err;

	ks_cpu_quota_read("", &q);
	affinity = ks_cpus_affinity(&err);
	if (err < 0)
		note(&q, "sched_getaffinity: %s, so the online CPUs were counted", strerror(-err));
	ks_cpus_decide(given, &q, affinity, out);
}
