/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sidecar's uid across user namespaces. In a user-namespaced pod
 * (Kubernetes `hostUsers: false`) the sidecar's getuid() is, say, 1337,
 * while the host sees uid 101337. Each hook compares its own view:
 *
 *   BPF       bpf_get_current_uid_gid() is the initial user namespace's
 *             view (kernel/bpf/helpers.c: from_kuid(&init_user_ns, ...)),
 *             so the config map gets the host's uid;
 *   iptables  -m owner reads --uid-owner in the user namespace that owns
 *             the network namespace, and refuses a rule written from any
 *             other (net/netfilter/xt_owner.c, owner_check: make_kuid(
 *             net->user_ns, ...), current_user_ns() != net->user_ns is
 *             -EINVAL), so the rules are written from inside that one,
 *             with the uid as it sees it.
 *
 * The sidecar's user namespace is --userns, or else the one that owns
 * --netns (NS_GET_USERNS, Linux 4.9): a Kubernetes pod's network
 * namespace belongs to the pod's user namespace. Its uid_map is read from
 * this process's side, so the outside column is our (the host's) view
 * (user_namespaces(7), "Defining user and group ID mappings").
 */
#include "redirect/redirect_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/magic.h>
#include <linux/nsfs.h>

#include "redirect/uidmap.h"

/* Reads a small /proc file whole; 0 or -errno. */
static int read_text(const char *path, char *buf, size_t buflen)
{
	size_t off = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while (off + 1 < buflen && (n = read(fd, buf + off, buflen - 1 - off)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			n = -errno;
			close(fd);
			return (int)n;
		}
		off += (size_t)n;
	}
	buf[off] = '\0';
	close(fd);
	return 0;
}

int ks_redir_userns_of_self(struct stat *st)
{
	return stat("/proc/self/ns/user", st) < 0 ? -errno : 0;
}

static bool same_ns(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

int ks_redir_userns_open(const char *path)
{
	return ks_redir_open_ns(path, CLONE_NEWUSER, "--userns",
				"not a user namespace (use /proc/PID/ns/user of a process of the "
				"pod)");
}

int ks_redir_netns_owner(int nsfd, const char *netns)
{
	/* The kernel opens it O_CLOEXEC (fs/nsfs.c, open_related_ns). */
	int fd = ioctl(nsfd, NS_GET_USERNS);

	if (fd >= 0)
		return fd;
	/* ENOTTY before 4.9: no way to ask; the caller takes it as ours. */
	if (errno == ENOTTY || errno == EINVAL)
		return -ENOTTY;
	ks_redir_fail("--netns %s: its user namespace cannot be named from here (%s): it is "
		      "not below this process's (does ktls-redirect run in a user namespace of "
		      "its own?)",
		      netns, strerror(errno));
	return -errno;
}

int ks_redir_userns_map(int fd, const char *what, struct ks_uid_map *m)
{
	int ready[2] = {-1, -1}, go[2] = {-1, -1}, cerr = 0, rc, st;
	char path[64], text[8192], err[256];
	pid_t pid;

	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) {
		rc = -errno;
		ks_redir_fail("pipe: %s", strerror(errno));
		goto cleanup;
	}
	/*
	 * A child joins the namespace (setns needs a single-threaded caller,
	 * so not us) and waits; we read /proc/CHILD/uid_map from our own
	 * namespace, which makes the outside column our view, however deep
	 * the namespace is nested (user_namespaces(7)).
	 */
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		ks_redir_fail("fork: %s", strerror(errno));
		goto cleanup;
	}
	if (pid == 0) {
		char c;

		close(go[1]);
		cerr = setns(fd, CLONE_NEWUSER) < 0 ? errno : 0;
		if (write(ready[1], &cerr, sizeof(cerr)) != sizeof(cerr))
			_exit(1);
		/* Until the parent closes its end. */
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(ready[1]);
	ready[1] = -1;
	if (read(ready[0], &cerr, sizeof(cerr)) != sizeof(cerr))
		cerr = ECHILD;
	if (cerr) {
		rc = -cerr;
		ks_redir_fail("cannot enter %s to read its uid_map: %s (needs CAP_SYS_ADMIN over "
			      "it: run as root on the host)",
			      what, strerror(cerr));
	} else {
		snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
		rc = read_text(path, text, sizeof(text));
		if (rc < 0)
			ks_redir_fail("reading the uid_map of %s (%s): %s", what, path,
				      strerror(-rc));
	}
	if (rc == 0) {
		rc = ks_uid_map_parse(text, m, err, sizeof(err));
		if (rc < 0)
			ks_redir_fail("%s: %s", what, err);
	}
	close(go[1]);
	go[1] = -1;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
cleanup:
	for (int i = 0; i < 2; i++) {
		if (ready[i] >= 0)
			close(ready[i]);
		if (go[i] >= 0)
			close(go[i]);
	}
	return rc;
}

int ks_redir_in_initial_userns(char *map, size_t maplen)
{
	struct ks_uid_map *m;
	char text[8192], err[256];
	int rc;

	snprintf(map, maplen, "?");
	rc = read_text("/proc/self/uid_map", text, sizeof(text));
	if (rc < 0)
		return rc;
	m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	rc = ks_uid_map_parse(text, m, err, sizeof(err));
	if (rc == 0) {
		ks_uid_map_format(m, map, maplen);
		rc = ks_uid_map_is_identity(m);
	}
	free(m);
	return rc;
}

int ks_redir_userns_enter(int fd)
{
	if (setns(fd, CLONE_NEWUSER) < 0)
		return -errno;
	/*
	 * As root of that namespace, as nsenter(1) does: a program exec'd
	 * under an unmapped uid loses every capability at execve
	 * (capabilities(7), "Capabilities and execution of programs by
	 * root"). setgroups may be denied there (/proc/PID/setgroups); the
	 * groups we carry are unmapped anyway.
	 */
	(void)setgroups(0, NULL);
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		return -errno;
	return 0;
}

/* One user namespace, by descriptor and identity. */
struct ns_ref {
	int fd; /* -1: ours */
	struct stat st;
	bool own;
};

static int ns_ref_init(struct ns_ref *r, int fd, const struct stat *own)
{
	r->fd = fd;
	if (fd < 0) {
		r->st = *own;
	} else if (fstat(fd, &r->st) < 0) {
		ks_redir_fail("fstat of a user namespace: %s", strerror(errno));
		return -errno;
	}
	r->own = same_ns(&r->st, own);
	return 0;
}

int ks_redir_resolve_uid(struct ks_redirect_opts *o, int nsfd)
{
	struct ks_redir_config *cfg = &o->cfg;
	__u32 pod = cfg->sidecar_uid_pod, host = pod, in_netns = pod;
	struct ns_ref sc = {.fd = -1}, owner = {.fd = -1};
	struct ks_uid_map *map = NULL;
	char what[PATH_MAX + 64], text[256];
	struct stat own;
	int fd, rc;

	rc = ks_redir_userns_of_self(&own);
	if (rc < 0) {
		ks_redir_fail("/proc/self/ns/user: %s", strerror(-rc));
		return rc;
	}
	fd = ks_redir_netns_owner(nsfd, o->netns);
	if (fd < 0 && fd != -ENOTTY)
		return fd;
	if (fd == -ENOTTY && !o->userns)
		fprintf(stderr,
			"%s: note: this kernel cannot tell which user namespace owns --netns "
			"(NS_GET_USERNS, Linux 4.9): --sidecar-uid is taken as the host's uid\n",
			PROG);
	rc = ns_ref_init(&owner, fd, &own);
	if (rc < 0)
		goto cleanup;
	if (o->userns) {
		fd = ks_redir_userns_open(o->userns);
		if (fd < 0) {
			rc = fd;
			goto cleanup;
		}
		rc = ns_ref_init(&sc, fd, &own);
		if (rc < 0)
			goto cleanup;
		snprintf(what, sizeof(what), "--userns %s", o->userns);
	} else {
		sc = owner;
		sc.fd = -1; /* owner's descriptor, closed once */
		snprintf(what, sizeof(what), "the user namespace that owns --netns %s", o->netns);
	}
	map = malloc(sizeof(*map));
	if (!map) {
		rc = -ENOMEM;
		goto cleanup;
	}
	if (!sc.own) {
		rc = ks_redir_userns_map(o->userns ? sc.fd : owner.fd, what, map);
		if (rc < 0)
			goto cleanup;
		if (ks_uid_map_to_outside(map, pod, &host) < 0) {
			ks_uid_map_format(map, text, sizeof(text));
			ks_redir_fail(
			    "--sidecar-uid %u is not mapped in %s (uid_map: %s): no process "
			    "there can run as it; give the uid the sidecar runs as inside "
			    "the pod",
			    pod, what, text);
			rc = -EINVAL;
			goto cleanup;
		}
	}
	/* -m owner reads the uid in the namespace that owns the netns (BPF
	 * has no use for that view, nor a reason to fail on it). */
	if (o->mode == KS_REDIRECT_IPTABLES && !same_ns(&sc.st, &owner.st)) {
		if (owner.own) {
			in_netns = host;
		} else {
			rc = ks_redir_userns_map(owner.fd, "the user namespace that owns --netns",
						 map);
			if (rc < 0)
				goto cleanup;
			if (ks_uid_map_to_inside(map, host, &in_netns) < 0) {
				ks_uid_map_format(map, text, sizeof(text));
				ks_redir_fail(
				    "the sidecar's uid (%u on the host) is not mapped in the "
				    "user namespace that owns --netns %s (uid_map: %s)",
				    host, o->netns, text);
				rc = -EINVAL;
				goto cleanup;
			}
		}
	}
	/* Host root exempt: any process of the pod's cgroup running as root on
	 * the host would bypass the sidecar (as --sidecar-uid 0 would). */
	if (host == 0) {
		ks_redir_fail(
		    "--sidecar-uid %u in %s is root on the host: every host-root process "
		    "in the pod would bypass the sidecar; map the sidecar's uid elsewhere",
		    pod, what);
		rc = -EINVAL;
		goto cleanup;
	}
	o->host_uid = host;
	o->userns_ino = (unsigned long long)sc.st.st_ino;
	cfg->sidecar_uid = o->mode == KS_REDIRECT_BPF ? host : in_netns;
	if (!sc.own)
		printf("%s: --sidecar-uid %u is read in %s (user namespace %llu): uid %u on the "
		       "host%s\n",
		       o->name, pod, what, o->userns_ino, host,
		       o->mode == KS_REDIRECT_BPF ? ", which the BPF hooks exempt" : "");
	else if (o->mode == KS_REDIRECT_IPTABLES && in_netns != pod)
		printf("%s: --netns %s belongs to another user namespace: the rules exempt uid %u "
		       "there (%u on the host)\n",
		       o->name, o->netns, in_netns, host);
	rc = 0;
cleanup:
	free(map);
	if (sc.fd >= 0)
		close(sc.fd);
	if (owner.fd >= 0)
		close(owner.fd);
	return rc;
}
