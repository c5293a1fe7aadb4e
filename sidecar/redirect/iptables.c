/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktls-redirect --mode iptables: nat REDIRECT rules equivalent to the
 * BPF path, for kernels or policies where the BPF hooks are not allowed.
 * The rules go into the pod's network namespace through iptables-restore
 * (atomic), in chains of our own; the jumps carry a digest of the settings
 * so that install is idempotent and status can tell a complete set apart.
 */
#include "redirect/redirect_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "redirect/uidmap.h"

unsigned int ks_redir_out_rule_count(const struct ks_redirect_opts *o, int family)
{
	/* the probe, uid, loopback, REDIRECT */
	unsigned int n = 4 + o->cfg.n_exclude_ports;

	for (unsigned int i = 0; i < o->n_cidrs; i++)
		if (ks_redirect_cidr_is_v4(&o->cidrs[i]) == (family == AF_INET))
			n++;
	return n;
}

/*
 * One family's rules, for `iptables-restore --noflush` (one transaction:
 * all of it or nothing). Each rule in our chains reads as iptables-save
 * prints it, so the two can be compared by eye. The order in KS_<name>_OUT
 * is the BPF program's: the probe before anything, then the exemptions,
 * then the REDIRECT. The jumps are inserted first in OUTPUT and PREROUTING:
 * an earlier ACCEPT in the nat table would otherwise skip them, and
 * skipping a REDIRECT means plaintext around the sidecar.
 */
int ks_redirect_iptables_rules(const struct ks_redirect_opts *o, int family, char *buf,
			       size_t buflen)
{
	const struct ks_redir_config *cfg = &o->cfg;
	struct ks_sbuf b = {.p = buf, .cap = buflen};
	bool v4 = family == AF_INET;
	char c[64];

	if (buflen == 0)
		return -ENOSPC;
	buf[0] = '\0';
	ks_sb_printf(&b, "*nat\n:KS_%s_OUT - [0:0]\n:KS_%s_IN - [0:0]\n", o->name, o->name);
	/* The start-up probe of each family, whoever connects (the sidecar too). */
	ks_sb_printf(&b, "-A KS_%s_OUT -d %s -p tcp -m tcp --dport %u -j REDIRECT --to-ports %u\n",
		     o->name, v4 ? KS_REDIR_PROBE_ADDR "/32" : KS_REDIR_PROBE_ADDR6 "/128",
		     KS_REDIR_PROBE_PORT, cfg->outbound_port);
	ks_sb_printf(&b, "-A KS_%s_OUT -m owner --uid-owner %u -j RETURN\n", o->name,
		     cfg->sidecar_uid);
	ks_sb_printf(&b, "-A KS_%s_OUT -d %s -j RETURN\n", o->name, v4 ? "127.0.0.0/8" : "::1/128");
	for (unsigned int i = 0; i < cfg->n_exclude_ports && i < KS_REDIR_MAX_PORTS; i++)
		ks_sb_printf(&b, "-A KS_%s_OUT -p tcp -m tcp --dport %u -j RETURN\n", o->name,
			     cfg->exclude_ports[i]);
	for (unsigned int i = 0; i < o->n_cidrs; i++) {
		/* IPv4-mapped destinations leave as IPv4: the IPv4 rules see them. */
		if (ks_redirect_cidr_is_v4(&o->cidrs[i]) != v4)
			continue;
		ks_redirect_format_cidr(&o->cidrs[i], c, sizeof(c));
		ks_sb_printf(&b, "-A KS_%s_OUT -d %s -j RETURN\n", o->name, c);
	}
	ks_sb_printf(&b, "-A KS_%s_OUT -p tcp -j REDIRECT --to-ports %u\n", o->name,
		     cfg->outbound_port);
	for (unsigned int i = 0; i < cfg->n_app_ports && i < KS_REDIR_MAX_PORTS; i++)
		ks_sb_printf(&b, "-A KS_%s_IN -p tcp -m tcp --dport %u -j REDIRECT --to-ports %u\n",
			     o->name, cfg->app_ports[i], cfg->inbound_port);
	/* The comment carries the settings' digest and the rule counts, for
	 * install (same settings?) and status (every rule there?). */
	snprintf(c, sizeof(c), "cfg=%016llx:rules=%u+%u", ks_redir_settings_digest(o),
		 ks_redir_out_rule_count(o, family), (unsigned int)cfg->n_app_ports);
	ks_sb_printf(&b, "-I OUTPUT 1 -p tcp -m comment --comment ks-redirect:%s:%s -j KS_%s_OUT\n",
		     o->name, c, o->name);
	ks_sb_printf(&b,
		     "-I PREROUTING 1 ! -i lo -p tcp -m comment --comment ks-redirect:%s:%s -j "
		     "KS_%s_IN\nCOMMIT\n",
		     o->name, c, o->name);
	return ks_sb_result(&b);
}

/* ------------------------------------------------------------- iptables */

/* A helper program's result: exit status, all of stdout, the start of stderr. */
struct run_result {
	int status; /* exit status, or 128 + the signal that killed it */
	char *out;  /* NUL-terminated, malloc'd */
	size_t out_len;
	char err[2048];
};

#define RUN_TIMEOUT_MS 60000
#define RUN_OUT_MAX    (16u << 20)

static void run_result_free(struct run_result *r)
{
	free(r->out);
	r->out = NULL;
}

static int append_out(struct run_result *r, size_t *cap, const char *data, size_t n)
{
	if (r->out_len + n + 1 > *cap) {
		size_t ncap = *cap ? *cap * 2 : 16384;
		char *p;

		while (ncap < r->out_len + n + 1)
			ncap *= 2;
		if (ncap > RUN_OUT_MAX)
			return -EFBIG;
		p = realloc(r->out, ncap);
		if (!p)
			return -ENOMEM;
		r->out = p;
		*cap = ncap;
	}
	memcpy(r->out + r->out_len, data, n);
	r->out_len += n;
	r->out[r->out_len] = '\0';
	return 0;
}

/* dup2, except that an fd already in place must lose O_CLOEXEC by hand. */
static int move_fd(int fd, int to)
{
	if (fd == to)
		return fcntl(fd, F_SETFD, 0);
	return dup2(fd, to);
}

/* The three pipes to a helper program, and how far its input and output got. */
struct run_io {
	int in, out, err; /* our ends; -1 once closed */
	const char *input;
	size_t in_len, in_off, out_cap, err_len;
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * Forks argv[0] with stdin, stdout and stderr on pipes, in the network
 * namespace nsfd (or ours, -1), as root of the user namespace usernsfd
 * (or ours, -1). Returns the pid, or -errno (reported).
 */
static pid_t spawn(int nsfd, int usernsfd, char *const argv[], struct run_io *io)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		pid = -errno;
		ks_redir_fail("pipe: %s", strerror(errno));
		goto cleanup;
	}
	pid = fork();
	if (pid < 0) {
		pid = -errno;
		ks_redir_fail("fork: %s", strerror(errno));
		goto cleanup;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here (plus strerror). */
		if (move_fd(in[0], 0) < 0 || move_fd(out[1], 1) < 0 || move_fd(err[1], 2) < 0)
			_exit(126);
		/* An ignored signal stays ignored across exec: give it back. */
		signal(SIGPIPE, SIG_DFL);
		/* The user namespace first: the netns's owner, where -m owner
		 * rules may be written (xt_owner.c, owner_check). */
		if (usernsfd >= 0 && ks_redir_userns_enter(usernsfd) < 0) {
			dprintf(2, "entering the user namespace of --netns as its root: %s\n",
				strerror(errno));
			_exit(126);
		}
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0) {
			dprintf(2, "setns into --netns: %s\n", strerror(errno));
			_exit(126);
		}
		execv(argv[0], argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	io->in = in[1];
	io->out = out[0];
	io->err = err[0];
	in[1] = out[0] = err[0] = -1;
	if (io->in_len == 0)
		close_fd(&io->in);
	else
		(void)fcntl(io->in, F_SETFL, O_NONBLOCK);
cleanup:
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&err[i]);
	}
	return pid;
}

/* Moves what the pipes are ready for; 0, or -errno (output too large). */
static int io_step(struct run_io *io, struct run_result *r, const struct pollfd *pfd, int pin,
		   int pout, int perr)
{
	char buf[16384];
	ssize_t n;
	int rc = 0;

	if (pin >= 0 && pfd[pin].revents) {
		n = write(io->in, io->input + io->in_off, io->in_len - io->in_off);
		if (n > 0)
			io->in_off += (size_t)n;
		/* EPIPE: it stopped reading; its exit status will say why. */
		if ((n < 0 && errno != EAGAIN && errno != EINTR) || io->in_off == io->in_len)
			close_fd(&io->in);
	}
	if (pout >= 0 && pfd[pout].revents) {
		n = read(io->out, buf, sizeof(buf));
		if (n > 0)
			rc = append_out(r, &io->out_cap, buf, (size_t)n);
		if (n == 0 || (n < 0 && errno != EINTR))
			close_fd(&io->out);
	}
	if (perr >= 0 && pfd[perr].revents) {
		n = read(io->err, buf, sizeof(buf));
		if (n > 0 && io->err_len < sizeof(r->err) - 1) {
			size_t take = (size_t)n;

			if (take > sizeof(r->err) - 1 - io->err_len)
				take = sizeof(r->err) - 1 - io->err_len;
			memcpy(r->err + io->err_len, buf, take);
			io->err_len += take;
		}
		if (n == 0 || (n < 0 && errno != EINTR))
			close_fd(&io->err);
	}
	return rc;
}

/* Feeds input and collects output until both outputs close or the deadline. */
static int io_pump(struct run_io *io, struct run_result *r, const char *tool, pid_t pid)
{
	uint64_t deadline = ks_mono_ms() + RUN_TIMEOUT_MS;
	int rc = 0;

	while ((io->out >= 0 || io->err >= 0) && rc == 0) {
		struct pollfd pfd[3];
		int n = 0, pin = -1, pout = -1, perr = -1;

		if (io->in >= 0) {
			pin = n;
			pfd[n++] = (struct pollfd){.fd = io->in, .events = POLLOUT};
		}
		if (io->out >= 0) {
			pout = n;
			pfd[n++] = (struct pollfd){.fd = io->out, .events = POLLIN};
		}
		if (io->err >= 0) {
			perr = n;
			pfd[n++] = (struct pollfd){.fd = io->err, .events = POLLIN};
		}
		if (ks_mono_ms() >= deadline) {
			ks_redir_fail("%s did not finish in %d s: killed", tool,
				      RUN_TIMEOUT_MS / 1000);
			rc = -ETIMEDOUT;
			break;
		}
		n = poll(pfd, (nfds_t)n, 1000);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n > 0)
			rc = io_step(io, r, pfd, pin, pout, perr);
	}
	if (rc < 0)
		kill(pid, SIGKILL);
	return rc;
}

/*
 * Runs argv[0] (in the network namespace nsfd and user namespace usernsfd,
 * or ours: -1) with input on its stdin, and collects its exit status,
 * stdout and the start of stderr into r. Returns 0 when it ran (whatever
 * its status), or -errno.
 */
static int run_tool(int nsfd, int usernsfd, char *const argv[], const char *input,
		    struct run_result *r)
{
	struct run_io io = {.in = -1, .out = -1, .err = -1, .input = input};
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe;
	int st = 0, rc;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	io.in_len = input ? strlen(input) : 0;
	/* A tool that exits without reading its input must not kill us. */
	sigaction(SIGPIPE, &ign, &old_pipe);
	pid = spawn(nsfd, usernsfd, argv, &io);
	rc = pid < 0 ? (int)pid : io_pump(&io, r, argv[0], pid);
	while (pid > 0 && waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			rc = rc ? rc : -ECHILD;
			break;
		}
	}
	sigaction(SIGPIPE, &old_pipe, NULL);
	if (rc == 0)
		r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (rc == 0 && !r->out)
		rc = append_out(r, &io.out_cap, "", 0);
	if (rc == -EFBIG || rc == -ENOMEM)
		ks_redir_fail("%s: output too large (%s)", argv[0], strerror(-rc));
	r->err[io.err_len] = '\0';
	close_fd(&io.in);
	close_fd(&io.out);
	close_fd(&io.err);
	if (rc < 0)
		run_result_free(r);
	return rc;
}

/* PATH, then the sbin directories a non-root PATH often lacks. */
static int find_tool(const char *name, char *buf, size_t buflen)
{
	const char *env = getenv("PATH");
	char path[4096];
	char *save = NULL;

	snprintf(path, sizeof(path), "%s:/usr/sbin:/sbin:/usr/bin:/bin",
		 env && *env ? env : "/usr/local/sbin:/usr/local/bin");
	for (char *dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		if (dir[0] != '/')
			continue; /* a relative PATH entry is a trap for a root tool */
		snprintf(buf, buflen, "%s/%s", dir, name);
		if (access(buf, X_OK) == 0)
			return 0;
	}
	buf[0] = '\0';
	return -ENOENT;
}

enum { IPT_V4, IPT_V6, IPT_NFAM };
static const struct {
	int af;
	const char *label, *restore, *save;
} ipt_fam[IPT_NFAM] = {
    [IPT_V4] = {AF_INET, "IPv4", "iptables-restore", "iptables-save"},
    [IPT_V6] = {AF_INET6, "IPv6", "ip6tables-restore", "ip6tables-save"},
};

struct ipt_env {
	int nsfd;		     /* the pod's netns, or -1 when we are in it already */
	int ownfd;		     /* --netns, open (for the checks) */
	int usernsfd;		     /* the user namespace that owns it, or -1 when it is ours */
	struct ks_uid_map owner_map; /* usernsfd's uid_map, as we see it */
	bool usable[IPT_NFAM];
	char restore[IPT_NFAM][PATH_MAX], save[IPT_NFAM][PATH_MAX];
};

static void ipt_env_close(struct ipt_env *e)
{
	if (e->ownfd >= 0)
		close(e->ownfd);
	if (e->usernsfd >= 0)
		close(e->usernsfd);
	e->ownfd = e->nsfd = e->usernsfd = -1;
}

/*
 * The user namespace that owns --netns, when it is not ours (a
 * user-namespaced pod): the tools must run in it as its root, since
 * xt_owner refuses -m owner rules from any other (owner_check), and an
 * unmapped uid loses its capabilities at exec. 0, or -errno (reported).
 */
static int ipt_userns(const struct ks_redirect_opts *o, struct ipt_env *e)
{
	struct stat own, st;
	char text[256];
	__u32 root;
	int fd, rc;

	fd = ks_redir_netns_owner(e->ownfd, o->netns);
	if (fd == -ENOTTY)
		return 0;
	if (fd < 0)
		return fd;
	rc = ks_redir_userns_of_self(&own);
	if (rc < 0 || fstat(fd, &st) < 0) {
		ks_redir_fail("identifying the user namespaces: %s",
			      strerror(rc < 0 ? -rc : errno));
		close(fd);
		return -EIO;
	}
	if (st.st_dev == own.st_dev && st.st_ino == own.st_ino) {
		close(fd);
		return 0;
	}
	e->usernsfd = fd;
	rc = ks_redir_userns_map(fd, "the user namespace that owns --netns", &e->owner_map);
	if (rc < 0)
		return rc;
	if (ks_uid_map_to_outside(&e->owner_map, 0, &root) < 0) {
		ks_uid_map_format(&e->owner_map, text, sizeof(text));
		ks_redir_fail(
		    "--netns %s belongs to a user namespace without a root (uid_map: %s): "
		    "iptables must run there as its root to write -m owner rules",
		    o->netns, text);
		return -EINVAL;
	}
	return 0;
}

/*
 * iptables mode needs CAP_NET_ADMIN to change netfilter tables
 * (iptables-legacy also opens a raw socket: CAP_NET_RAW), and CAP_SYS_ADMIN
 * to enter another network namespace. An init container already in the
 * pod's namespace (--netns /proc/self/ns/net) needs no setns, so no
 * CAP_SYS_ADMIN: that is what such containers are usually given.
 */
static int check_ipt_privileges(bool enter_netns)
{
	unsigned long long caps;
	int have_net, have_sys;

	if (ks_redir_caps(&caps) < 0) {
		ks_redir_fail("cannot read the capabilities from /proc/self/status");
		return -EPERM;
	}
	have_net = caps >> CAP_NET_ADMIN & 1;
	have_sys = !enter_netns || (caps >> CAP_SYS_ADMIN & 1);
	if (have_net && have_sys)
		return 0;
	ks_redir_fail(
	    "permission: iptables mode needs CAP_NET_ADMIN%s (missing:%s%s; uid %u); run as "
	    "root, or in an init container with NET_ADMIN (and NET_RAW for iptables-legacy)",
	    enter_netns ? ", and CAP_SYS_ADMIN to enter --netns" : "",
	    have_net ? "" : " CAP_NET_ADMIN", have_sys ? "" : " CAP_SYS_ADMIN",
	    (unsigned)geteuid());
	return -EPERM;
}

static int ipt_setup(const struct ks_redirect_opts *o, struct ipt_env *e)
{
	struct stat ns, self;
	int rc;

	memset(e, 0, sizeof(*e));
	e->nsfd = e->ownfd = e->usernsfd = -1;
	e->ownfd = ks_redir_open_netns(o->netns);
	if (e->ownfd < 0)
		return e->ownfd;
	/* Already in the pod's namespace: no setns, no CAP_SYS_ADMIN. */
	if (fstat(e->ownfd, &ns) == 0 && stat("/proc/self/ns/net", &self) == 0 &&
	    ns.st_dev == self.st_dev && ns.st_ino == self.st_ino)
		e->nsfd = -1;
	else
		e->nsfd = e->ownfd;
	rc = check_ipt_privileges(e->nsfd >= 0);
	if (rc < 0)
		goto fail;
	rc = ipt_userns(o, e);
	if (rc < 0)
		goto fail;
	if (find_tool(ipt_fam[IPT_V4].restore, e->restore[IPT_V4], PATH_MAX) < 0 ||
	    find_tool(ipt_fam[IPT_V4].save, e->save[IPT_V4], PATH_MAX) < 0) {
		ks_redir_fail(
		    "iptables is not installed: no iptables-restore and iptables-save in PATH "
		    "(install the iptables package, or use --mode bpf)");
		rc = -ENOENT;
		goto fail;
	}
	e->usable[IPT_V4] = true;
	/* Without IPv6 in the kernel there is no IPv6 traffic to redirect. */
	if (access("/proc/sys/net/ipv6", F_OK) < 0) {
		fprintf(stderr, "%s: note: IPv6 is disabled in this kernel: IPv4 rules only\n",
			PROG);
	} else if (o->ipv4_only) {
		fprintf(stderr,
			"%s: note: --ipv4-only: the app's IPv6 connections are NOT redirected\n",
			PROG);
	} else if (find_tool(ipt_fam[IPT_V6].restore, e->restore[IPT_V6], PATH_MAX) < 0 ||
		   find_tool(ipt_fam[IPT_V6].save, e->save[IPT_V6], PATH_MAX) < 0) {
		/*
		 * Fail closed: IPv4 rules alone would let every IPv6 connection
		 * of the app leave in plaintext, around the sidecar. remove and
		 * status go on with IPv4, so that what exists can be seen and
		 * taken away.
		 */
		if (o->cmd == KS_REDIRECT_INSTALL) {
			ks_redir_fail(
			    "IPv6 is enabled in this kernel, but ip6tables-restore or "
			    "ip6tables-save is not in PATH: the app's IPv6 connections would "
			    "bypass the sidecar. Install ip6tables (the iptables package), or "
			    "pass --ipv4-only to redirect IPv4 only, knowingly");
			rc = -ENOENT;
			goto fail;
		}
		fprintf(stderr,
			"%s: note: ip6tables-restore or ip6tables-save not found in PATH: IPv6 "
			"rules are not looked at\n",
			PROG);
	} else {
		e->usable[IPT_V6] = true;
	}
	return 0;
fail:
	ipt_env_close(e);
	return rc;
}

/* Why an iptables tool failed, from its stderr: the usual causes by name. */
static void ipt_explain(const char *tool, const struct run_result *r, const char *netns)
{
	const char *hint = "";

	if (strstr(r->err, "insmod") || strstr(r->err, "Table does not exist") ||
	    strstr(r->err, "can't initialize"))
		hint = "\n  the kernel has no nat table: it needs nf_nat with iptable_nat and "
		       "ip6table_nat (iptables-legacy) or nft_chain_nat (iptables-nft); "
		       "modprobe them on the node, or use --mode bpf";
	else if (strstr(r->err, "Permission denied") || strstr(r->err, "Operation not permitted"))
		hint = "\n  not permitted: needs root, or CAP_NET_ADMIN (and CAP_NET_RAW for "
		       "iptables-legacy)";
	else if (strstr(r->err, "No chain/target/match") || strstr(r->err, "Couldn't load"))
		hint = "\n  a netfilter module is missing: REDIRECT (xt_REDIRECT or nft_redir), "
		       "owner (xt_owner), comment (xt_comment)";
	ks_redir_fail("%s in netns %s failed (exit %d): %s%s", tool, netns, r->status,
		      r->err[0] ? r->err : "no message", hint);
}

/* Our pieces in one family's nat table, as iptables-save shows them. */
struct ipt_state {
	bool chain_out, chain_in;	  /* declared */
	unsigned int n_out, n_in;	  /* rules in them */
	unsigned int jumps_out, jumps_in; /* jumps to them, from anywhere */
	bool out_from_output, in_from_prerouting;
	char cfg_out[40], cfg_in[40];	/* "cfg=...:rules=N+M" of each jump */
	long long uid_owner;		/* the exemption's --uid-owner; -1: none */
	unsigned int want_out, want_in; /* the counts that comment records */
	char *lines;			/* every line about us, for status */
	size_t lines_len, lines_cap;
};

static void ipt_state_free(struct ipt_state *s)
{
	free(s->lines);
	memset(s, 0, sizeof(*s));
}

static bool ipt_present(const struct ipt_state *s)
{
	return s->chain_out || s->chain_in || s->jumps_out || s->jumps_in;
}

/* Whether line (an iptables-save rule) ends in "-j CHAIN". */
static bool jumps_to(const char *line, size_t len, const char *chain)
{
	size_t clen = strlen(chain);

	return len >= clen + 4 && strncmp(line + len - clen - 4, " -j ", 4) == 0 &&
	       strncmp(line + len - clen, chain, clen) == 0;
}

static void keep_line(struct ipt_state *s, const char *line, size_t len)
{
	char *p;

	if (s->lines_len + len + 2 > s->lines_cap) {
		size_t cap = (s->lines_cap ? s->lines_cap * 2 : 1024) + len + 2;

		p = realloc(s->lines, cap);
		if (!p)
			return; /* only the listing loses a line */
		s->lines = p;
		s->lines_cap = cap;
	}
	memcpy(s->lines + s->lines_len, line, len);
	s->lines_len += len;
	s->lines[s->lines_len++] = '\n';
	s->lines[s->lines_len] = '\0';
}

/* The "cfg=...:rules=N+M" part of a jump's comment, whichever way it is quoted. */
static void note_jump(const char *line, char *cfg, size_t cfglen)
{
	const char *c = strstr(line, "cfg=");
	size_t n = 0;

	if (!c)
		return;
	while (c[n] && c[n] != '"' && c[n] != ' ' && c[n] != '\n' && n + 1 < cfglen)
		n++;
	snprintf(cfg, cfglen, "%.*s", (int)n, c);
}

static void ipt_parse(const char *name, const char *save, struct ipt_state *s)
{
	char out[64], in[64], decl_out[72], decl_in[72], add_out[72], add_in[72];

	memset(s, 0, sizeof(*s));
	s->uid_owner = -1;
	snprintf(out, sizeof(out), "KS_%s_OUT", name);
	snprintf(in, sizeof(in), "KS_%s_IN", name);
	snprintf(decl_out, sizeof(decl_out), ":%s ", out);
	snprintf(decl_in, sizeof(decl_in), ":%s ", in);
	snprintf(add_out, sizeof(add_out), "-A %s ", out);
	snprintf(add_in, sizeof(add_in), "-A %s ", in);
	for (const char *line = save; *line;) {
		const char *end = strchrnul(line, '\n');
		size_t len = (size_t)(end - line);
		bool ours = true;

		if (strncmp(line, decl_out, strlen(decl_out)) == 0) {
			s->chain_out = true;
		} else if (strncmp(line, decl_in, strlen(decl_in)) == 0) {
			s->chain_in = true;
		} else if (strncmp(line, add_out, strlen(add_out)) == 0) {
			const char *u = strstr(line, " --uid-owner ");
			unsigned int uid;

			s->n_out++;
			if (u && u < end && s->uid_owner < 0 &&
			    sscanf(u, " --uid-owner %u", &uid) == 1)
				s->uid_owner = uid;
		} else if (strncmp(line, add_in, strlen(add_in)) == 0) {
			s->n_in++;
		} else if (strncmp(line, "-A ", 3) == 0 && jumps_to(line, len, out)) {
			s->jumps_out++;
			if (strncmp(line, "-A OUTPUT ", 10) == 0) {
				s->out_from_output = true;
				note_jump(line, s->cfg_out, sizeof(s->cfg_out));
			}
		} else if (strncmp(line, "-A ", 3) == 0 && jumps_to(line, len, in)) {
			s->jumps_in++;
			if (strncmp(line, "-A PREROUTING ", 14) == 0) {
				s->in_from_prerouting = true;
				note_jump(line, s->cfg_in, sizeof(s->cfg_in));
			}
		} else {
			ours = false;
		}
		if (ours)
			keep_line(s, line, len);
		line = *end ? end + 1 : end;
	}
	if (sscanf(s->cfg_out, "cfg=%*16[0-9a-f]:rules=%u+%u", &s->want_out, &s->want_in) != 2)
		s->want_out = s->want_in = 0;
}

/* What is wrong with a present installation, in words; "" when complete. */
static void ipt_check(const struct ipt_state *s, const char *name, char *why, size_t whylen)
{
	struct ks_sbuf b = {.p = why, .cap = whylen};

	why[0] = '\0';
	if (!s->chain_out)
		ks_sb_printf(&b, "; no chain KS_%s_OUT", name);
	if (!s->chain_in)
		ks_sb_printf(&b, "; no chain KS_%s_IN", name);
	if (!s->out_from_output || s->jumps_out != 1)
		ks_sb_printf(&b, "; %u jumps to KS_%s_OUT (want one, from OUTPUT)", s->jumps_out,
			     name);
	if (!s->in_from_prerouting || s->jumps_in != 1)
		ks_sb_printf(&b, "; %u jumps to KS_%s_IN (want one, from PREROUTING)", s->jumps_in,
			     name);
	if (!s->cfg_out[0] || strcmp(s->cfg_out, s->cfg_in) != 0)
		ks_sb_printf(&b, "; the jumps' ks-redirect comments are missing or differ");
	else if (s->n_out != s->want_out || s->n_in != s->want_in)
		ks_sb_printf(&b, "; %u+%u rules in KS_%s_OUT and _IN, the comment says %u+%u",
			     s->n_out, s->n_in, name, s->want_out, s->want_in);
	if (b.len)
		memmove(why, why + 2, strlen(why + 2) + 1);
}

static int ipt_read(const struct ks_redirect_opts *o, const struct ipt_env *e, int f,
		    struct ipt_state *s)
{
	char *argv[] = {(char *)e->save[f], (char *)"-t", (char *)"nat", NULL};
	struct run_result r;
	int rc;

	memset(s, 0, sizeof(*s));
	rc = run_tool(e->nsfd, e->usernsfd, argv, NULL, &r);
	if (rc < 0)
		return rc;
	if (r.status != 0) {
		ipt_explain(ipt_fam[f].save, &r, o->netns);
		run_result_free(&r);
		return -EIO;
	}
	ipt_parse(o->name, r.out, s);
	run_result_free(&r);
	return 0;
}

static int ipt_restore(const struct ks_redirect_opts *o, const struct ipt_env *e, int f,
		       const char *rules)
{
	/* -w: wait for the xtables lock (iptables-legacy), which every
	 * namespace on the node shares, rather than fail. */
	char *argv[] = {(char *)e->restore[f], (char *)"--noflush", (char *)"-w", (char *)"10",
			NULL};
	struct run_result r;
	int rc;

	rc = run_tool(e->nsfd, e->usernsfd, argv, rules, &r);
	if (rc < 0)
		return rc;
	if (r.status != 0) {
		ipt_explain(ipt_fam[f].restore, &r, o->netns);
		rc = -EIO;
	}
	run_result_free(&r);
	return rc;
}

/*
 * Deletes every jump to our chains, then the chains, in one restore: from
 * what iptables-save shows, so a partial installation goes too. 1 if
 * something was removed, 0 if nothing was there, or -errno.
 */
static int ipt_delete(const struct ks_redirect_opts *o, const struct ipt_env *e, int f)
{
	struct ipt_state s;
	struct ks_sbuf b = {0};
	char out[64], in[64];
	int rc;

	rc = ipt_read(o, e, f, &s);
	if (rc < 0)
		return rc;
	if (!ipt_present(&s)) {
		ipt_state_free(&s);
		return 0;
	}
	snprintf(out, sizeof(out), "KS_%s_OUT", o->name);
	snprintf(in, sizeof(in), "KS_%s_IN", o->name);
	b.cap = s.lines_len + 256;
	b.p = malloc(b.cap);
	if (!b.p) {
		ipt_state_free(&s);
		return -ENOMEM;
	}
	ks_sb_printf(&b, "*nat\n");
	for (const char *line = s.lines ? s.lines : ""; *line;) {
		const char *end = strchrnul(line, '\n');
		size_t len = (size_t)(end - line);

		/* "-A CHAIN spec -j KS_..." deletes as "-D CHAIN spec -j KS_...". */
		if (strncmp(line, "-A ", 3) == 0 &&
		    (jumps_to(line, len, out) || jumps_to(line, len, in)))
			ks_sb_printf(&b, "-D %.*s\n", (int)(len - 3), line + 3);
		line = *end ? end + 1 : end;
	}
	if (s.chain_out)
		ks_sb_printf(&b, "-F %s\n-X %s\n", out, out);
	if (s.chain_in)
		ks_sb_printf(&b, "-F %s\n-X %s\n", in, in);
	ks_sb_printf(&b, "COMMIT\n");
	rc = b.overflow ? -ENOSPC : ipt_restore(o, e, f, b.p);
	free(b.p);
	ipt_state_free(&s);
	return rc < 0 ? rc : 1;
}

int ks_redir_ipt_install(struct ks_redirect_opts *o)
{
	struct ipt_state st[IPT_NFAM] = {0};
	struct ks_redir_manifest_file mf = {0};
	struct ipt_env e;
	char rules[16384], why[512];
	bool installed[IPT_NFAM] = {false};
	int present = 0, same = 0, usable = 0, rc;
	char want[40];

	rc = ipt_setup(o, &e);
	if (rc < 0)
		return rc;
	/* --uid-owner in the view of the netns's user namespace. */
	rc = ks_redir_resolve_uid(o, e.ownfd);
	if (rc < 0)
		goto cleanup;
	rc = ks_redir_manifest_prepare(o, e.usable[IPT_V6], &mf);
	if (rc < 0)
		goto cleanup;
	for (int f = 0; f < IPT_NFAM; f++) {
		if (!e.usable[f])
			continue;
		usable++;
		rc = ipt_read(o, &e, f, &st[f]);
		if (rc < 0)
			goto cleanup;
		if (!ipt_present(&st[f]))
			continue;
		present++;
		/* The digest and counts this install would write. */
		snprintf(want, sizeof(want), "cfg=%016llx:rules=%u+%u", ks_redir_settings_digest(o),
			 ks_redir_out_rule_count(o, ipt_fam[f].af),
			 (unsigned int)o->cfg.n_app_ports);
		ipt_check(&st[f], o->name, why, sizeof(why));
		if (why[0]) {
			ks_redir_fail("%s: an incomplete installation is in netns %s (%s: %s): run "
				      "`ktls-redirect remove --mode iptables --name %s --netns %s` "
				      "first",
				      o->name, o->netns, ipt_fam[f].label, why, o->name, o->netns);
			rc = -EEXIST;
			goto cleanup;
		}
		if (strcmp(st[f].cfg_out, want) == 0)
			same++;
	}
	if (present) {
		if (present == usable && same == usable) {
			printf("%s: already installed in netns %s with the same settings; nothing "
			       "to do\n",
			       o->name, o->netns);
			rc = 0;
		} else {
			ks_redir_fail("%s is already installed in netns %s, and differs (%s): run "
				      "`ktls-redirect remove --mode iptables --name %s --netns %s` "
				      "first",
				      o->name, o->netns,
				      present != usable ? "installed for one address family only"
							: "its settings",
				      o->name, o->netns);
			rc = -EEXIST;
		}
		goto cleanup;
	}
	for (int f = 0; f < IPT_NFAM; f++) {
		if (!e.usable[f])
			continue;
		rc = ks_redirect_iptables_rules(o, ipt_fam[f].af, rules, sizeof(rules));
		if (rc < 0) {
			ks_redir_fail("the %s rules do not fit in %zu bytes", ipt_fam[f].label,
				      sizeof(rules));
			goto cleanup;
		}
		rc = ipt_restore(o, &e, f, rules);
		if (rc < 0)
			goto cleanup;
		installed[f] = true;
		/* Read back: what status and the next install will parse. */
		ipt_state_free(&st[f]);
		rc = ipt_read(o, &e, f, &st[f]);
		if (rc < 0)
			goto cleanup;
		ipt_check(&st[f], o->name, why, sizeof(why));
		if (why[0]) {
			ks_redir_fail(
			    "%s: after iptables-restore, the %s rules read back incomplete: %s",
			    o->name, ipt_fam[f].label, why);
			rc = -EIO;
			goto cleanup;
		}
		printf("%s: %s installed in netns %s: nat OUTPUT -> KS_%s_OUT (%u rules), "
		       "PREROUTING -> KS_%s_IN (%u app port%s)\n",
		       o->name, ipt_fam[f].label, o->netns, o->name, st[f].n_out, o->name,
		       st[f].n_in, st[f].n_in == 1 ? "" : "s");
	}
	rc = 0;
cleanup:
	rc = ks_redir_manifest_finish(&mf, rc);
	/* On failure nothing stays: the families done so far are undone. */
	for (int f = 0; f < IPT_NFAM; f++) {
		if (rc < 0 && installed[f])
			(void)ipt_delete(o, &e, f);
		ipt_state_free(&st[f]);
	}
	ipt_env_close(&e);
	return rc;
}

int ks_redir_ipt_remove(const struct ks_redirect_opts *o)
{
	struct ipt_env e;
	int rc, any = 0, err = 0;

	rc = ipt_setup(o, &e);
	if (rc < 0)
		return rc;
	for (int f = 0; f < IPT_NFAM; f++) {
		if (!e.usable[f])
			continue;
		rc = ipt_delete(o, &e, f);
		if (rc < 0)
			err = rc;
		else if (rc > 0)
			any = 1;
		if (rc > 0)
			printf(
			    "%s: %s jumps and chains KS_%s_OUT, KS_%s_IN removed from netns %s\n",
			    o->name, ipt_fam[f].label, o->name, o->name, o->netns);
	}
	if (!any && !err)
		printf("%s: not installed in netns %s; nothing to do\n", o->name, o->netns);
	rc = ks_redir_manifest_remove(o);
	ipt_env_close(&e);
	return err ? err : rc;
}

/* status: the exempt uid as the rule has it, and as the host sees it. */
static void print_uid(const struct ipt_env *e, const struct ipt_state *s)
{
	__u32 host;

	if (s->uid_owner < 0)
		return;
	if (e->usernsfd < 0)
		printf("    sidecar uid: %lld (the netns belongs to this user namespace)\n",
		       s->uid_owner);
	else if (ks_uid_map_to_outside(&e->owner_map, (__u32)s->uid_owner, &host) == 0)
		printf("    sidecar uid: %lld in the netns's user namespace, %u on the host\n",
		       s->uid_owner, host);
	else
		printf("    sidecar uid: %lld in the netns's user namespace, not mapped on the "
		       "host\n",
		       s->uid_owner);
}

int ks_redir_ipt_status(const struct ks_redirect_opts *o)
{
	struct ipt_env e;
	char rel[128], why[512];
	int rc, complete = 0, usable = 0;

	rc = ipt_setup(o, &e);
	if (rc < 0)
		return rc;
	ks_redir_kernel_release(rel, sizeof(rel));
	printf("%s: iptables nat rules in netns %s (kernel %s)\n", o->name, o->netns, rel);
	for (int f = 0; f < IPT_NFAM; f++) {
		struct ipt_state s;

		if (!e.usable[f]) {
			printf("  %s: not checked (no %s)\n", ipt_fam[f].label, ipt_fam[f].save);
			continue;
		}
		usable++;
		rc = ipt_read(o, &e, f, &s);
		if (rc < 0)
			goto cleanup;
		printf("  %s (%s -t nat):\n", ipt_fam[f].label, ipt_fam[f].save);
		for (const char *line = s.lines ? s.lines : ""; *line;) {
			const char *end = strchrnul(line, '\n');

			printf("    %.*s\n", (int)(end - line), line);
			line = *end ? end + 1 : end;
		}
		if (!ipt_present(&s)) {
			printf("    MISSING: no chain or jump of %s\n", o->name);
		} else {
			ipt_check(&s, o->name, why, sizeof(why));
			if (why[0]) {
				printf("    INCOMPLETE: %s\n", why);
			} else {
				printf("    complete: %u rules in KS_%s_OUT, %u in KS_%s_IN\n",
				       s.n_out, o->name, s.n_in, o->name);
				print_uid(&e, &s);
				complete++;
			}
		}
		ipt_state_free(&s);
	}
	ks_redir_manifest_status(o);
	if (complete == usable) {
		rc = 0;
	} else {
		ks_redir_fail(
		    "%s: %d of %d address families fully installed: run remove, then install",
		    o->name, complete, usable);
		rc = -ENOENT;
	}
cleanup:
	ipt_env_close(&e);
	return rc;
}
