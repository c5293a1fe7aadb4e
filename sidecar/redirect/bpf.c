/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktls-redirect --mode bpf: loads the programs of bpf/redirect.bpf.c (their
 * skeleton is embedded at build time), attaches each with a bpf_link and
 * pins links and maps under /sys/fs/bpf/<name>, so they stay attached after
 * this process exits; remove detaches and unpins, status reads them back.
 */
#include "redirect/redirect_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/parse.h"
#include "redirect.skel.h"

#define BPFFS "/sys/fs/bpf"

/*
 * The pins, in the order remove detaches them: the connect() rewrite goes
 * first, so no connection is redirected once nothing can answer
 * SO_ORIGINAL_DST for it any more. install attaches in the reverse order.
 */
enum { L_CONNECT4, L_CONNECT6, L_SK_LOOKUP, L_SOCKOPS, L_GETSOCKOPT, L_MAX };
static const char *const link_pins[L_MAX] = {
    "link_connect4", "link_connect6", "link_sk_lookup", "link_sockops", "link_getsockopt",
};
static const char *const link_hooks[L_MAX] = {
    "cgroup/connect4", "cgroup/connect6", "sk_lookup", "sockops", "cgroup/getsockopt",
};

enum { M_CONFIG, M_CIDRS, M_BY_COOKIE, M_BY_PEER, M_LISTENERS, M_STATS, M_MAX };
static const char *const map_pins[M_MAX] = {
    "map_config",	"map_exclude_cidrs", "map_orig_by_cookie",
    "map_orig_by_peer", "map_listeners",     "map_stats",
};

static const char *const stat_names[KS_STAT_MAX] = {
    [KS_STAT_REDIRECTED] = "redirected",
    [KS_STAT_EXEMPT_UID] = "exempt_uid",
    [KS_STAT_EXEMPT_LOOPBACK] = "exempt_loopback",
    [KS_STAT_EXEMPT_PORT] = "exempt_port",
    [KS_STAT_EXEMPT_CIDR] = "exempt_cidr",
    [KS_STAT_TIED] = "tied",
    [KS_STAT_ORIG_ANSWERED] = "original_dst_answered",
    [KS_STAT_LISTENER_ADDED] = "listener_added",
    [KS_STAT_LISTENER_FAILED] = "listener_failed",
    [KS_STAT_LISTENER_LAST_ERR] = "listener_last_errno",
    [KS_STAT_STEERED] = "steered",
    [KS_STAT_STEER_NO_LISTENER] = "steer_refused_no_listener",
    [KS_STAT_STEER_FAILED] = "steer_refused_assign_failed",
    [KS_STAT_PROBE] = "probe_redirected",
    [KS_STAT_REFUSED_NO_RECORD] = "connect_refused_no_record",
};

static int check_privileges(void)
{
	unsigned long long caps;
	int have_bpf, have_net, rc;
	char map[256];

	/*
	 * Inside a user namespace, CapEff lists capabilities over that
	 * namespace only; loading these program types checks CAP_BPF and
	 * CAP_NET_ADMIN over the initial one (kernel/bpf/syscall.c,
	 * bpf_prog_load: bpf_token_capable() without a BPF token is
	 * capable()). Saying so beats the EPERM every probe would give.
	 */
	rc = ks_redir_in_initial_userns(map, sizeof(map));
	if (rc == 0) {
		ks_redir_fail(
		    "permission: ktls-redirect runs in a user namespace (uid_map: %s), and the "
		    "kernel allows cgroup and sk_lookup BPF programs only with CAP_BPF and "
		    "CAP_NET_ADMIN in the host's user namespace, which no capability inside one "
		    "gives: a user-namespaced init container (Kubernetes hostUsers: false) cannot "
		    "load them. Run the BPF install with host privileges (e.g. a node agent), or "
		    "use "
		    "--mode iptables from inside the pod",
		    map);
		return -EPERM;
	}
	if (ks_redir_caps(&caps) < 0) {
		ks_redir_fail("cannot read the capabilities from /proc/self/status");
		return -EPERM;
	}
	have_bpf = (caps >> CAP_BPF & 1) || (caps >> CAP_SYS_ADMIN & 1);
	have_net = caps >> CAP_NET_ADMIN & 1;
	if (have_bpf && have_net)
		return 0;
	ks_redir_fail(
	    "permission: needs CAP_BPF and CAP_NET_ADMIN (missing:%s%s; uid %u); run as root "
	    "or in a privileged init container with those capabilities",
	    have_bpf ? "" : " CAP_BPF", have_net ? "" : " CAP_NET_ADMIN", (unsigned)geteuid());
	return -EPERM;
}

static int check_bpffs(void)
{
	struct statfs st;

	if (statfs(BPFFS, &st) < 0) {
		ks_redir_fail(
		    "%s: %s (a BPF file system must be mounted there: mount -t bpf bpf %s)", BPFFS,
		    strerror(errno), BPFFS);
		return -ENOENT;
	}
	if (st.f_type != BPF_FS_MAGIC) {
		ks_redir_fail(
		    "%s is not a BPF file system, so nothing can be pinned there (mount -t bpf "
		    "bpf %s; in Kubernetes, mount the node's %s into the init container)",
		    BPFFS, BPFFS, BPFFS);
		return -ENOENT;
	}
	return 0;
}

/* Where cgroup v2 is mounted, for the error message; "" if nowhere. */
static void cgroup2_mount(char *buf, size_t buflen)
{
	char line[1024], path[512], type[64];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	snprintf(buf, buflen, "nowhere");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE SOURCE OPTIONS */
		if (!sep || sscanf(line, "%*s %*s %*s %*s %511s", path) != 1 ||
		    sscanf(sep + 3, "%63s", type) != 1)
			continue;
		if (strcmp(type, "cgroup2") == 0) {
			snprintf(buf, buflen, "%s", path);
			break;
		}
	}
	fclose(f);
}

/* The id bpf_link_info reports for a cgroup (kernfs node id). */
static int cgroup_id(const char *path, __u64 *id)
{
	union {
		struct file_handle fh;
		char buf[sizeof(struct file_handle) + sizeof(__u64)];
	} h;
	int mount_id;

	memset(&h, 0, sizeof(h));
	h.fh.handle_bytes = sizeof(__u64);
	if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0)
		return -errno;
	memcpy(id, h.fh.f_handle, sizeof(*id));
	return 0;
}

static int open_cgroup(const char *path)
{
	char mnt[512];
	struct statfs st;
	__u64 id = 0;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	memset(&st, 0, sizeof(st));
	if (fd < 0) {
		ks_redir_fail("--cgroup %s: %s", path, strerror(errno));
		return -ENOENT;
	}
	if (fstatfs(fd, &st) < 0 || st.f_type != CGROUP2_SUPER_MAGIC) {
		cgroup2_mount(mnt, sizeof(mnt));
		ks_redir_fail(
		    "--cgroup %s: not a cgroup v2 directory (%s); BPF cgroup hooks need cgroup "
		    "v2, which is mounted at %s",
		    path, st.f_type == CGROUP_SUPER_MAGIC ? "a cgroup v1 hierarchy" : "not cgroup",
		    mnt);
		close(fd);
		return -EINVAL;
	}
	/* The root cgroup (id 1) holds every process of the node, not a pod. */
	if (cgroup_id(path, &id) == 0 && id == 1) {
		ks_redir_fail(
		    "--cgroup %s is the root of the cgroup v2 hierarchy: that would redirect "
		    "every process on the node; give the pod's own cgroup",
		    path);
		close(fd);
		return -EINVAL;
	}
	return fd;
}

static int check_hooks(void)
{
	static const struct {
		enum bpf_prog_type type;
		const char *name;
		const char *since;
	} types[] = {
	    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup/connect4 and connect6", "4.17"},
	    {BPF_PROG_TYPE_SOCK_OPS, "sockops", "4.13"},
	    {BPF_PROG_TYPE_CGROUP_SOCKOPT, "cgroup/getsockopt", "5.3"},
	    {BPF_PROG_TYPE_SK_LOOKUP, "sk_lookup", "5.9"},
	};
	char rel[128];

	ks_redir_kernel_release(rel, sizeof(rel));
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		int rc = libbpf_probe_bpf_prog_type(types[i].type, NULL);

		if (rc == 1)
			continue;
		ks_redir_fail(
		    "kernel %s: the %s hook is missing (BPF program type %d, Linux %s+)%s%s", rel,
		    types[i].name, types[i].type, types[i].since, rc < 0 ? ": " : "",
		    rc < 0 ? strerror(-rc) : "");
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * After a failed load only (the probes cost a program load each): which
 * helper the kernel lacks for which hook, rather than a verifier log alone.
 */
static void explain_load_failure(int rc)
{
	static const struct {
		enum bpf_prog_type type;
		enum bpf_func_id id;
		const char *name;
	} helpers[] = {
	    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_current_uid_gid,
	     "bpf_get_current_uid_gid in cgroup/connect"},
	    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_socket_cookie,
	     "bpf_get_socket_cookie in cgroup/connect"},
	    {BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_get_socket_cookie,
	     "bpf_get_socket_cookie in sockops"},
	    {BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sock_map_update, "bpf_sock_map_update in sockops"},
	    {BPF_PROG_TYPE_SK_LOOKUP, BPF_FUNC_sk_assign, "bpf_sk_assign in sk_lookup"},
	};
	char rel[128];

	ks_redir_kernel_release(rel, sizeof(rel));
	for (size_t i = 0; i < sizeof(helpers) / sizeof(helpers[0]); i++) {
		if (libbpf_probe_bpf_helper(helpers[i].type, helpers[i].id, NULL) == 0) {
			ks_redir_fail("kernel %s: %s is missing", rel, helpers[i].name);
			return;
		}
	}
	ks_redir_fail(
	    "loading the BPF programs on kernel %s: %s (libbpf's messages above say which; "
	    "Linux 5.9+ is needed)",
	    rel, strerror(-rc));
}

__attribute__((format(printf, 2, 0))) static int libbpf_log(enum libbpf_print_level level,
							    const char *fmt, va_list ap)
{
	/* Warnings carry the verifier log of a program that failed to load. */
	if (level == LIBBPF_DEBUG)
		return 0;
	fprintf(stderr, "libbpf: ");
	return vfprintf(stderr, fmt, ap);
}

/* ------------------------------------------------------------------- pins */

static void pin_path(char *buf, size_t buflen, const char *name, const char *pin)
{
	snprintf(buf, buflen, "%s/%s/%s", BPFFS, name, pin);
}

static int path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Unlinks every pin this loader makes; unknown files are left in place. */
static void unpin_all(const char *name)
{
	char path[PATH_MAX];

	for (int i = 0; i < L_MAX; i++) {
		pin_path(path, sizeof(path), name, link_pins[i]);
		(void)unlink(path);
	}
	for (int i = 0; i < M_MAX; i++) {
		pin_path(path, sizeof(path), name, map_pins[i]);
		(void)unlink(path);
	}
	snprintf(path, sizeof(path), "%s/%s", BPFFS, name);
	(void)rmdir(path);
}

static struct bpf_map *skel_map(struct ks_redirect_bpf *skel, int i)
{
	struct bpf_map *maps[M_MAX] = {
	    [M_CONFIG] = skel->maps.ks_config,
	    [M_CIDRS] = skel->maps.ks_exclude_cidrs,
	    [M_BY_COOKIE] = skel->maps.ks_orig_by_cookie,
	    [M_BY_PEER] = skel->maps.ks_orig_by_peer,
	    [M_LISTENERS] = skel->maps.ks_listeners,
	    [M_STATS] = skel->maps.ks_stats,
	};

	return maps[i];
}

static int configure(struct ks_redirect_bpf *skel, const struct ks_redirect_opts *o)
{
	__u32 zero = 0;
	__u8 one = 1;

	if (bpf_map__update_elem(skel->maps.ks_config, &zero, sizeof(zero), &o->cfg, sizeof(o->cfg),
				 BPF_ANY) < 0) {
		ks_redir_fail("writing the config map: %s", strerror(errno));
		return -errno;
	}
	for (unsigned int i = 0; i < o->n_cidrs; i++) {
		if (bpf_map__update_elem(skel->maps.ks_exclude_cidrs, &o->cidrs[i],
					 sizeof(o->cidrs[i]), &one, sizeof(one), BPF_ANY) < 0) {
			ks_redir_fail("writing the excluded CIDRs: %s", strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static int attach_one(struct ks_redirect_bpf *skel, const struct ks_redirect_opts *o, int which,
		      int cgfd, int nsfd)
{
	struct bpf_program *progs[L_MAX] = {
	    [L_CONNECT4] = skel->progs.ks_connect4,	[L_CONNECT6] = skel->progs.ks_connect6,
	    [L_SK_LOOKUP] = skel->progs.ks_sk_lookup,	[L_SOCKOPS] = skel->progs.ks_sockops,
	    [L_GETSOCKOPT] = skel->progs.ks_getsockopt,
	};
	struct bpf_link **slots[L_MAX] = {
	    [L_CONNECT4] = &skel->links.ks_connect4,	 [L_CONNECT6] = &skel->links.ks_connect6,
	    [L_SK_LOOKUP] = &skel->links.ks_sk_lookup,	 [L_SOCKOPS] = &skel->links.ks_sockops,
	    [L_GETSOCKOPT] = &skel->links.ks_getsockopt,
	};
	const char *target = which == L_SK_LOOKUP ? o->netns : o->cgroup;
	char path[PATH_MAX], rel[128];
	struct bpf_link *link;
	int rc;

	if (which == L_SK_LOOKUP)
		link = bpf_program__attach_netns(progs[which], nsfd);
	else
		link = bpf_program__attach_cgroup(progs[which], cgfd);
	if (!link) {
		rc = -errno;
		ks_redir_kernel_release(rel, sizeof(rel));
		/* EINVAL from BPF_LINK_CREATE: no bpf_link for this hook here. */
		ks_redir_fail(
		    "attaching %s to %s: %s (kernel %s; bpf_link attachment needs Linux %s+)",
		    link_hooks[which], target, strerror(-rc), rel,
		    which == L_SK_LOOKUP ? "5.9" : "5.7");
		return rc;
	}
	*slots[which] = link; /* the skeleton closes it; the pin keeps it */
	pin_path(path, sizeof(path), o->name, link_pins[which]);
	rc = bpf_link__pin(link, path);
	if (rc < 0) {
		ks_redir_fail("pinning the %s link at %s: %s", link_hooks[which], path,
			      strerror(-rc));
		return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ inspection */

struct ks_installed {
	int link_fd[L_MAX];
	int map_fd[M_MAX];
	struct bpf_link_info info[L_MAX];
	int missing; /* pins absent */
};

static void installed_close(struct ks_installed *in)
{
	for (int i = 0; i < L_MAX; i++)
		if (in->link_fd[i] >= 0)
			close(in->link_fd[i]);
	for (int i = 0; i < M_MAX; i++)
		if (in->map_fd[i] >= 0)
			close(in->map_fd[i]);
}

/* Opens every pin that exists; 0, or -errno if one exists but cannot be read. */
static int installed_open(const char *name, struct ks_installed *in)
{
	char path[PATH_MAX];

	memset(in, 0, sizeof(*in));
	for (int i = 0; i < L_MAX; i++)
		in->link_fd[i] = -1;
	for (int i = 0; i < M_MAX; i++)
		in->map_fd[i] = -1;
	for (int i = 0; i < L_MAX; i++) {
		__u32 len = sizeof(in->info[i]);

		pin_path(path, sizeof(path), name, link_pins[i]);
		if (!path_exists(path)) {
			in->missing++;
			continue;
		}
		in->link_fd[i] = bpf_obj_get(path);
		if (in->link_fd[i] < 0 ||
		    bpf_obj_get_info_by_fd(in->link_fd[i], &in->info[i], &len) < 0) {
			ks_redir_fail("reading %s: %s", path, strerror(errno));
			return -errno;
		}
	}
	for (int i = 0; i < M_MAX; i++) {
		pin_path(path, sizeof(path), name, map_pins[i]);
		if (!path_exists(path)) {
			in->missing++;
			continue;
		}
		in->map_fd[i] = bpf_obj_get(path);
		if (in->map_fd[i] < 0) {
			ks_redir_fail("reading %s: %s", path, strerror(errno));
			return -errno;
		}
	}
	return 0;
}

/* A link whose cgroup or netns is gone reports id 0: attached to nothing. */
static int link_attached(const struct bpf_link_info *info)
{
	if (info->type == BPF_LINK_TYPE_CGROUP)
		return info->cgroup.cgroup_id != 0;
	if (info->type == BPF_LINK_TYPE_NETNS)
		return info->netns.netns_ino != 0;
	return 0;
}

/*
 * BPF_MAP_GET_NEXT_KEY with the whole bpf_attr zeroed (libbpf clears only
 * the fields it sets, which memcheck reports as uninitialised).
 */
static int map_next_key(int fd, const void *key, void *next)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = (__u32)fd;
	attr.key = (__u64)(uintptr_t)key;
	attr.next_key = (__u64)(uintptr_t)next;
	return syscall(__NR_bpf, BPF_MAP_GET_NEXT_KEY, &attr, sizeof(attr)) < 0 ? -errno : 0;
}

/* The excluded CIDRs in the pinned trie, in any order. */
static int read_cidrs(int fd, struct ks_redir_cidr_key *keys, unsigned int *n)
{
	/* A prefix longer than 128 is no key: the trie starts from its
	 * leftmost node (kernel/bpf/lpm_trie.c, trie_get_next_key). */
	struct ks_redir_cidr_key key = {.prefixlen = 255}, next;
	int rc;

	*n = 0;
	while ((rc = map_next_key(fd, &key, &next)) == 0) {
		if (*n >= KS_REDIR_MAX_CIDRS)
			return -E2BIG;
		keys[(*n)++] = next;
		key = next;
	}
	return rc == -ENOENT ? 0 : rc;
}

/*
 * install over an existing pin directory: the same pod and settings is a
 * success (an init container runs again after a pod restart); anything else
 * is refused, since the other installation may be serving traffic.
 */
static int check_existing(const struct ks_redirect_opts *o, const char *dir)
{
	struct ks_redir_cidr_key cidrs[KS_REDIR_MAX_CIDRS];
	struct ks_redir_config cfg;
	struct ks_installed in;
	const char *what = NULL;
	struct stat ns;
	unsigned int n;
	__u64 cg_id = 0;
	__u32 zero = 0;
	int rc;

	rc = installed_open(o->name, &in);
	if (rc < 0)
		goto cleanup;
	if (in.missing) {
		ks_redir_fail(
		    "%s holds an incomplete installation (%d pins missing): run `ktls-sidecar "
		    "redirect remove --name %s` first",
		    dir, in.missing, o->name);
		rc = -EEXIST;
		goto cleanup;
	}
	if (cgroup_id(o->cgroup, &cg_id) < 0 || stat(o->netns, &ns) < 0) {
		ks_redir_fail("cannot identify --cgroup %s or --netns %s: %s", o->cgroup, o->netns,
			      strerror(errno));
		rc = -errno;
		goto cleanup;
	}
	for (int i = 0; i < L_MAX && !what; i++) {
		if (!link_attached(&in.info[i]))
			what = "a hook is detached: its cgroup or netns is gone";
		else if (i == L_SK_LOOKUP && in.info[i].netns.netns_ino != ns.st_ino)
			what = "the network namespace";
		else if (i != L_SK_LOOKUP && in.info[i].cgroup.cgroup_id != cg_id)
			what = "the cgroup";
	}
	if (!what && bpf_map_lookup_elem(in.map_fd[M_CONFIG], &zero, &cfg) < 0)
		what = "the config map is unreadable";
	if (!what && memcmp(&cfg, &o->cfg, sizeof(cfg)) != 0)
		what = cfg.abi != KS_REDIR_ABI ? "the version" : "a port or uid setting";
	if (!what && (read_cidrs(in.map_fd[M_CIDRS], cidrs, &n) < 0 || n != o->n_cidrs))
		what = "the excluded CIDRs";
	for (unsigned int i = 0; !what && i < o->n_cidrs; i++) {
		unsigned int j;

		for (j = 0; j < n && memcmp(&cidrs[j], &o->cidrs[i], sizeof(cidrs[j])); j++)
			;
		if (j == n)
			what = "the excluded CIDRs";
	}
	if (what) {
		ks_redir_fail(
		    "%s is already installed under %s, and differs (%s): run `ktls-sidecar "
		    "redirect remove --name %s` first",
		    o->name, dir, what, o->name);
		rc = -EEXIST;
		goto cleanup;
	}
	printf("%s: already installed under %s with the same settings; nothing to do\n", o->name,
	       dir);
	rc = 0;
cleanup:
	installed_close(&in);
	return rc;
}

/*
 * Test seam, never set in production: KS_REDIRECT_TEST_PENDING_MAX=N makes
 * the connect()-to-established map a plain hash of N entries. The real one
 * is an LRU map, whose updates evict instead of failing (they fail only on
 * ENOMEM), so a test could not otherwise see connect4/6 refuse a connection
 * whose destination cannot be recorded. It can only make the redirect
 * refuse more, never let anything around it.
 */
static int test_pending_map(struct ks_redirect_bpf *skel)
{
	const char *v = getenv("KS_REDIRECT_TEST_PENDING_MAX");
	unsigned long n;
	int rc;

	if (!v)
		return 0;
	if (ks_parse_uint(v, KS_REDIR_MAX_PENDING, &n) < 0 || n == 0) {
		ks_redir_fail("KS_REDIRECT_TEST_PENDING_MAX '%s': expected 1-%d", v,
			      KS_REDIR_MAX_PENDING);
		return -EINVAL;
	}
	rc = bpf_map__set_type(skel->maps.ks_orig_by_cookie, BPF_MAP_TYPE_HASH);
	if (rc == 0)
		rc = bpf_map__set_max_entries(skel->maps.ks_orig_by_cookie, (__u32)n);
	if (rc < 0)
		ks_redir_fail("KS_REDIRECT_TEST_PENDING_MAX: %s", strerror(-rc));
	else
		fprintf(stderr, "%s: test only: the pending map is a hash of %lu entries\n", PROG,
			n);
	return rc;
}

int ks_redir_bpf_install(struct ks_redirect_opts *o)
{
	libbpf_set_print(libbpf_log);
	struct ks_redirect_bpf *skel = NULL;
	struct ks_redir_manifest_file mf = {0};
	char dir[PATH_MAX];
	int cgfd = -1, nsfd = -1, made_dir = 0, rc;
	__u64 cg_id = 0;

	rc = check_privileges();
	if (rc < 0)
		return rc;
	rc = check_bpffs();
	if (rc < 0)
		return rc;
	cgfd = open_cgroup(o->cgroup);
	if (cgfd < 0)
		return cgfd;
	nsfd = ks_redir_open_netns(o->netns);
	if (nsfd < 0) {
		rc = nsfd;
		goto cleanup;
	}
	/* The hooks see the host's uid: translate before anything is written. */
	rc = ks_redir_resolve_uid(o, nsfd);
	if (rc < 0)
		goto cleanup;
	/* connect6 covers IPv6 wherever the kernel has it. */
	rc = ks_redir_manifest_prepare(o, access("/proc/sys/net/ipv6", F_OK) == 0, &mf);
	if (rc < 0)
		goto cleanup;
	snprintf(dir, sizeof(dir), "%s/%s", BPFFS, o->name);
	if (path_exists(dir)) {
		rc = check_existing(o, dir);
		goto cleanup;
	}
	rc = check_hooks();
	if (rc < 0)
		goto cleanup;

	skel = ks_redirect_bpf__open();
	if (!skel) {
		rc = -errno;
		ks_redir_fail("opening the embedded BPF object: %s", strerror(-rc));
		goto cleanup;
	}
	rc = test_pending_map(skel);
	if (rc < 0)
		goto cleanup;
	rc = ks_redirect_bpf__load(skel);
	if (rc < 0) {
		explain_load_failure(rc);
		goto cleanup;
	}
	rc = configure(skel, o);
	if (rc < 0)
		goto cleanup;
	if (mkdir(dir, 0700) < 0) {
		rc = -errno;
		ks_redir_fail("mkdir %s: %s", dir, strerror(-rc));
		goto cleanup;
	}
	made_dir = 1;
	for (int i = 0; i < M_MAX; i++) {
		char path[PATH_MAX];

		pin_path(path, sizeof(path), o->name, map_pins[i]);
		rc = bpf_map__pin(skel_map(skel, i), path);
		if (rc < 0) {
			ks_redir_fail("pinning %s: %s", path, strerror(-rc));
			goto cleanup;
		}
	}
	/* Reverse removal order: connect() is rewritten only once the
	 * getsockopt and sockops halves are in place to answer for it. */
	for (int i = L_MAX - 1; i >= 0; i--) {
		rc = attach_one(skel, o, i, cgfd, nsfd);
		if (rc < 0)
			goto cleanup;
	}
	(void)cgroup_id(o->cgroup, &cg_id);
	printf("%s: installed under %s: connect4, connect6, getsockopt, sockops on cgroup %s "
	       "(id %llu); sk_lookup on netns %s\n",
	       o->name, dir, o->cgroup, (unsigned long long)cg_id, o->netns);
	rc = 0;
cleanup:
	rc = ks_redir_manifest_finish(&mf, rc);
	/* On failure nothing stays: unpinned links detach when the skeleton
	 * closes them. */
	if (rc < 0 && made_dir)
		unpin_all(o->name);
	ks_redirect_bpf__destroy(skel);
	if (nsfd >= 0)
		close(nsfd);
	close(cgfd);
	return rc;
}

int ks_redir_bpf_remove(const struct ks_redirect_opts *o)
{
	libbpf_set_print(libbpf_log);
	char dir[PATH_MAX], path[PATH_MAX];
	int rc = 0;

	if (check_privileges() < 0 || check_bpffs() < 0)
		return -EPERM;
	snprintf(dir, sizeof(dir), "%s/%s", BPFFS, o->name);
	if (!path_exists(dir)) {
		printf("%s: not installed (no %s); nothing to do\n", o->name, dir);
		return ks_redir_manifest_remove(o);
	}
	for (int i = 0; i < L_MAX; i++) {
		int fd;

		pin_path(path, sizeof(path), o->name, link_pins[i]);
		if (!path_exists(path))
			continue;
		/*
		 * Detach explicitly (BPF_LINK_DETACH, 5.9) rather than only
		 * unpin: anyone holding an fd to the link (bpftool, a crashed
		 * loader's child) would otherwise keep the hook attached.
		 */
		fd = bpf_obj_get(path);
		if (fd < 0 || bpf_link_detach(fd) < 0) {
			ks_redir_fail("detaching %s (%s): %s", link_hooks[i], path,
				      strerror(errno));
			rc = -errno;
		}
		if (fd >= 0)
			close(fd);
		if (unlink(path) < 0) {
			ks_redir_fail("unpinning %s: %s", path, strerror(errno));
			rc = -errno;
		}
	}
	for (int i = 0; i < M_MAX; i++) {
		pin_path(path, sizeof(path), o->name, map_pins[i]);
		if (unlink(path) < 0 && errno != ENOENT) {
			ks_redir_fail("unpinning %s: %s", path, strerror(errno));
			rc = -errno;
		}
	}
	if (rmdir(dir) < 0) {
		ks_redir_fail(
		    "rmdir %s: %s%s", dir, strerror(errno),
		    errno == ENOTEMPTY ? " (files this loader did not pin are left in place)" : "");
		rc = -errno;
	}
	if (rc == 0)
		printf("%s: removed (hooks detached, %s gone)\n", o->name, dir);
	/* The manifest goes only once nothing is left: while pins remain,
	 * it still describes them. */
	return rc < 0 ? rc : ks_redir_manifest_remove(o);
}

static void print_ports(const char *label, const __u16 *ports, __u16 n)
{
	printf("  %-16s", label);
	if (n == 0)
		printf(" none");
	for (unsigned int i = 0; i < n && i < KS_REDIR_MAX_PORTS; i++)
		printf(" %u", ports[i]);
	printf("\n");
}

int ks_redir_bpf_status(const struct ks_redirect_opts *o)
{
	libbpf_set_print(libbpf_log);
	struct ks_redir_cidr_key cidrs[KS_REDIR_MAX_CIDRS];
	struct ks_redir_config cfg;
	struct ks_installed in;
	char dir[PATH_MAX], rel[128], buf[64];
	unsigned int n;
	int rc, attached = 0;
	__u32 zero = 0;

	if (check_privileges() < 0 || check_bpffs() < 0)
		return -EPERM;
	snprintf(dir, sizeof(dir), "%s/%s", BPFFS, o->name);
	if (!path_exists(dir)) {
		ks_redir_fail("%s: not installed (no %s)", o->name, dir);
		return -ENOENT;
	}
	rc = installed_open(o->name, &in);
	if (rc < 0)
		goto cleanup;
	ks_redir_kernel_release(rel, sizeof(rel));
	printf("%s: pins under %s (kernel %s)\n", o->name, dir, rel);
	for (int i = 0; i < L_MAX; i++) {
		const struct bpf_link_info *info = &in.info[i];

		printf("  %-18s", link_hooks[i]);
		if (in.link_fd[i] < 0) {
			printf(" MISSING (no %s)\n", link_pins[i]);
			continue;
		}
		if (!link_attached(info)) {
			printf(" DETACHED (link %u: its %s is gone)\n", info->id,
			       info->type == BPF_LINK_TYPE_NETNS ? "netns" : "cgroup");
			continue;
		}
		attached++;
		if (info->type == BPF_LINK_TYPE_NETNS)
			printf(" attached  link %u prog %u netns inode %u\n", info->id,
			       info->prog_id, info->netns.netns_ino);
		else
			printf(" attached  link %u prog %u cgroup id %llu\n", info->id,
			       info->prog_id, (unsigned long long)info->cgroup.cgroup_id);
	}
	if (in.map_fd[M_CONFIG] >= 0 &&
	    bpf_map_lookup_elem(in.map_fd[M_CONFIG], &zero, &cfg) == 0) {
		if (cfg.abi != KS_REDIR_ABI)
			printf("  config           from another version (abi %u, this is %u)\n",
			       cfg.abi, KS_REDIR_ABI);
		printf("  outbound         127.0.0.1:%u, [::1]:%u\n", cfg.outbound_port,
		       cfg.outbound_port);
		printf("  inbound port     %u\n", cfg.inbound_port);
		if (cfg.sidecar_uid == cfg.sidecar_uid_pod)
			printf("  sidecar uid      %u (the same inside the pod)\n",
			       cfg.sidecar_uid);
		else
			printf(
			    "  sidecar uid      %u on the host, %u in the pod's user namespace\n",
			    cfg.sidecar_uid, cfg.sidecar_uid_pod);
		print_ports("app ports", cfg.app_ports, cfg.n_app_ports);
		print_ports("excluded ports", cfg.exclude_ports, cfg.n_exclude_ports);
	}
	if (in.map_fd[M_CIDRS] >= 0 && read_cidrs(in.map_fd[M_CIDRS], cidrs, &n) == 0) {
		printf("  excluded CIDRs  ");
		if (n == 0)
			printf(" none");
		for (unsigned int i = 0; i < n; i++) {
			ks_redirect_format_cidr(&cidrs[i], buf, sizeof(buf));
			printf(" %s", buf);
		}
		printf("\n");
	}
	if (in.map_fd[M_LISTENERS] >= 0) {
		/* A sockmap lookup from userspace yields the socket cookie. */
		for (__u32 k = KS_REDIR_LISTENER_V4; k <= KS_REDIR_LISTENER_V6; k++) {
			__u64 cookie;

			printf("  listener %-7s", k == KS_REDIR_LISTENER_V4 ? "ipv4" : "ipv6");
			if (bpf_map_lookup_elem(in.map_fd[M_LISTENERS], &k, &cookie) == 0)
				printf(" registered (socket cookie %llu)\n",
				       (unsigned long long)cookie);
			else
				printf(" none\n");
		}
	}
	if (in.map_fd[M_STATS] >= 0) {
		printf("  counters        ");
		for (__u32 k = 0; k < KS_STAT_MAX; k++) {
			__u64 v = 0;

			(void)bpf_map_lookup_elem(in.map_fd[M_STATS], &k, &v);
			printf(" %s=%llu", stat_names[k], (unsigned long long)v);
		}
		printf("\n");
	}
	ks_redir_manifest_status(o);
	if (attached == L_MAX && in.missing == 0) {
		rc = 0;
	} else {
		ks_redir_fail(
		    "%s: %d of %d hooks attached, %d pins missing: run remove, then install",
		    o->name, attached, L_MAX, in.missing);
		rc = -ENOENT;
	}
cleanup:
	installed_close(&in);
	return rc;
}
