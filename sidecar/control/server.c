/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control socket: accept, authorize by SO_PEERCRED, read length-framed
 * requests (control/frame.h), answer each one (control/ops.c). One request at a time per
 * client: a reply is written in full before the next frame is read, so a
 * client holds at most one frame and one reply in our memory.
 */
#include "control/control.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"
#include "common/ratelimit.h"
#include "dataplane/loop/loop.h"
#include "ktls/control/v1/control.pb-c.h"

/* Callers are local control planes and operators, not a crowd. */
#define KS_CTL_MAX_CLIENTS 32
#define KS_STR_(x)	   #x
#define KS_STR(x)	   KS_STR_(x)
/*
 * After a final answer (denied, frame too large) we half-close and drop
 * whatever the client still sends, for at most this long: closing a Unix
 * socket with unread input resets the peer, which would lose the answer.
 */
#define KS_CTL_LINGER_MS 2000
/*
 * By default, a client that neither sends nor reads for this long is closed: with only
 * KS_CTL_MAX_CLIENTS slots, idle connections must not lock the API out.
 * Requests are one round trip; ktlsctl and the agent never idle this long.
 */
#define KS_CTL_IDLE_MS 30000 /* --control-idle-timeout */
/* How long the listener rests after accept(2) ran out of descriptors. */
#define KS_CTL_ACCEPT_PAUSE_MS 250
/* At most one line a second per kind of refusal; the rest are counted. */
#define KS_CTL_REFUSED_LOG_MS 1000

/* Callers turned away at accept: answered, closed at once, counted. */
enum ks_ctl_refusal { KS_CTL_DENIED, KS_CTL_TOO_MANY, KS_CTL_REFUSAL__COUNT };

struct ks_ctl_client {
	struct ks_watch w;
	struct ks_control *ctl;
	struct ks_ctl_client *prev, *next;
	int fd;
	uid_t uid;
	pid_t pid;
	struct ks_frame_rd rd;
	uint8_t *out;
	size_t out_len, out_off;
	bool close_after;	   /* once out is written */
	uint64_t discard_until_ms; /* closing: input is read and dropped until EOF or then */
	uint64_t active_ms;	   /* last readiness: for KS_CTL_IDLE_MS */
};

struct ks_control {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *name; /* the socket's name in its directory (in path) */
	int dir_fd;	  /* that directory, checked once: see open_dir() */
	int lfd, wake_fd;
	struct ks_loop loop;
	struct ks_watch lw, wake_w;
	pthread_t thread;
	bool thread_started;
	bool bound; /* the socket file is ours to remove */
	atomic_bool stop;
	uid_t *uids;
	size_t nuids;
	uint32_t max_frame;
	uint32_t idle_ms;
	struct ks_ctl_env env;
	struct ks_ctl_client *clients;
	unsigned nclients;
	struct ks_ctl_service svc; /* zero: none */
	bool svc_attached;
	/* accept(2) out of descriptors: the listener rests until then (0: it
	 * does not), so the loop does not spin on a connection it cannot take. */
	uint64_t accept_resume_ms;
	struct ks_ratelimit accept_rl;
	uint64_t refused[KS_CTL_REFUSAL__COUNT];
	struct ks_ratelimit refused_rl[KS_CTL_REFUSAL__COUNT];
};

static void client_free(struct ks_ctl_client *cl)
{
	struct ks_control *ctl = cl->ctl;

	ks_loop_del(&ctl->loop, &cl->w);
	close(cl->fd);
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		ctl->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	ctl->nclients--;
	ks_frame_rd_fini(&cl->rd);
	free(cl->out);
	free(cl);
}

/* Queues a reply; the client stops being read until it has gone out. */
static void client_send(struct ks_ctl_client *cl, uint8_t *out, size_t len, bool close_after)
{
	cl->out = out;
	cl->out_len = len;
	cl->out_off = 0;
	cl->close_after = close_after;
	if (ks_loop_want(&cl->ctl->loop, &cl->w, KS_EV_OUT) < 0)
		client_free(cl);
}

static void client_error(struct ks_ctl_client *cl, int code, const char *msg)
{
	uint8_t *out;
	size_t len;

	if (ks_ctl_error_frame(code, msg, &out, &len) < 0) {
		client_free(cl);
		return;
	}
	client_send(cl, out, len, true);
}

/* A frame over --control-max-frame: refused before any of its body is read. */
static void client_too_large(struct ks_ctl_client *cl)
{
	struct ks_control *ctl = cl->ctl;
	char msg[160];

	snprintf(msg, sizeof(msg),
		 "frame of %u bytes is over the limit of %u (--control-max-frame); closing",
		 cl->rd.len, ctl->max_frame);
	ks_warn("event=control_frame_too_large uid=%u pid=%d bytes=%u limit=%u", (unsigned)cl->uid,
		(int)cl->pid, cl->rd.len, ctl->max_frame);
	client_error(cl, KTLS__CONTROL__V1__CODE__CODE_FRAME_TOO_LARGE, msg);
}

/* Reads until a whole frame is in, then answers it. cl may be freed. */
static void client_read(struct ks_ctl_client *cl)
{
	enum ks_frame_st st = KS_FRAME_MORE;
	uint8_t *out, *p;
	size_t outlen, want;
	ssize_t n;

	while (st == KS_FRAME_MORE) {
		ks_frame_space(&cl->rd, &p, &want);
		n = read(cl->fd, p, want);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			if (ks_frame_partial(&cl->rd))
				ks_warn("event=control_truncated_frame uid=%u pid=%d got=%u "
					"detail=\"connection ended inside a frame\"",
					(unsigned)cl->uid, (int)cl->pid, ks_frame_partial(&cl->rd));
			client_free(cl);
			return;
		}
		st = ks_frame_advance(&cl->rd, (size_t)n);
	}
	if (st == KS_FRAME_TOO_LARGE) {
		client_too_large(cl);
		return;
	}
	if (st != KS_FRAME_READY ||
	    ks_ctl_handle(&cl->ctl->env, cl->rd.body, cl->rd.len, &out, &outlen) < 0) {
		client_free(cl);
		return;
	}
	ks_frame_next(&cl->rd);
	client_send(cl, out, outlen, false);
}

static void client_write(struct ks_ctl_client *cl)
{
	int rc = ks_send_pending(cl->fd, cl->out, cl->out_len, &cl->out_off);

	if (rc == -EAGAIN)
		return; /* KS_EV_OUT stays wanted (client_send) */
	if (rc < 0) {
		client_free(cl);
		return;
	}
	free(cl->out);
	cl->out = NULL;
	if (cl->close_after) {
		shutdown(cl->fd, SHUT_WR);
		cl->discard_until_ms = ks_mono_ms() + KS_CTL_LINGER_MS;
		if (ks_loop_want(&cl->ctl->loop, &cl->w, KS_EV_IN) < 0)
			client_free(cl);
		return;
	}
	if (ks_loop_want(&cl->ctl->loop, &cl->w, KS_EV_IN) < 0)
		client_free(cl);
}

/* Drops input (never parsed) until the client closes. */
static void client_discard(struct ks_ctl_client *cl)
{
	uint8_t buf[4096];
	ssize_t n;

	while ((n = read(cl->fd, buf, sizeof(buf))) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		client_free(cl);
}

static void on_client(struct ks_watch *w, uint32_t ev)
{
	struct ks_ctl_client *cl = w->owner;

	(void)ev;
	cl->active_ms = ks_mono_ms();
	if (cl->discard_until_ms)
		client_discard(cl);
	else if (cl->out)
		client_write(cl);
	else
		client_read(cl);
}

static bool uid_allowed(const struct ks_control *ctl, uid_t uid)
{
	for (size_t i = 0; i < ctl->nuids; i++)
		if (ctl->uids[i] == uid)
			return true;
	return false;
}

/* EMFILE, ENFILE, ENOBUFS, ENOMEM: rest the listener (see accept_resume_ms). */
static void pause_accept(struct ks_control *ctl, int err)
{
	uint64_t now = ks_mono_ms(), suppressed;

	ctl->accept_resume_ms = now + KS_CTL_ACCEPT_PAUSE_MS;
	(void)ks_loop_want(&ctl->loop, &ctl->lw, 0);
	if (ks_ratelimit_ok(&ctl->accept_rl, now, 1000, &suppressed))
		ks_error("event=control_accept_failed detail=\"%s\" paused_ms=%d "
			 "suppressed=%llu",
			 strerror(err), KS_CTL_ACCEPT_PAUSE_MS, (unsigned long long)suppressed);
}

/*
 * Answers a refused caller and closes it at once. The answer is one small
 * frame into an empty socket buffer, so a non-blocking send takes it whole;
 * closing with the caller's request unread does not lose it, because an
 * AF_UNIX reader gets queued data before the reset (unix_stream_read_generic
 * checks the queue first). The log line is rate-limited per kind, and says
 * how many were refused in all.
 */
static void refuse(struct ks_control *ctl, int fd, const struct ucred *cred,
		   enum ks_ctl_refusal why)
{
	static const char *const events[] = {"control_denied",
					     "control_refused reason=too_many_clients"};
	static const char *const msgs[] = {
	    "this uid may not use the control socket (--control-allow-uid)",
	    "too many callers at once (the control socket serves " KS_STR(
		KS_CTL_MAX_CLIENTS) "); try again"};
	static const int codes[] = {KTLS__CONTROL__V1__CODE__CODE_PERMISSION_DENIED,
				    KTLS__CONTROL__V1__CODE__CODE_FAILED_PRECONDITION};
	uint64_t suppressed;
	uint8_t *out;
	size_t len;

	if (ks_ctl_error_frame(codes[why], msgs[why], &out, &len) == 0) {
		(void)!send(fd, out, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		free(out);
	}
	close(fd);
	ctl->refused[why]++;
	if (ks_ratelimit_ok(&ctl->refused_rl[why], ks_mono_ms(), KS_CTL_REFUSED_LOG_MS,
			    &suppressed))
		ks_warn("event=%s uid=%u pid=%d refused_total=%llu suppressed=%llu", events[why],
			(unsigned)cred->uid, (int)cred->pid, (unsigned long long)ctl->refused[why],
			(unsigned long long)suppressed);
}

static void on_accept(struct ks_watch *w, uint32_t ev)
{
	struct ks_control *ctl = w->owner;
	struct ucred cred;
	socklen_t clen;
	struct ks_ctl_client *cl;
	int fd;

	(void)ev;
	while ((fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		clen = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
			ks_error("event=control_accept_failed detail=\"SO_PEERCRED: %s\"",
				 strerror(errno));
			close(fd);
			continue;
		}
		/* Nothing an unauthorized caller sends is ever read, and it
		 * holds no slot: a reconnect loop must not lock the API out. */
		if (!uid_allowed(ctl, cred.uid)) {
			refuse(ctl, fd, &cred, KS_CTL_DENIED);
			continue;
		}
		if (ctl->nclients >= KS_CTL_MAX_CLIENTS) {
			refuse(ctl, fd, &cred, KS_CTL_TOO_MANY);
			continue;
		}
		cl = calloc(1, sizeof(*cl));
		if (!cl || ks_loop_add(&ctl->loop, &cl->w, fd, on_client, cl) < 0) {
			ks_error("event=control_accept_failed detail=\"%s\"", strerror(errno));
			free(cl);
			close(fd);
			continue;
		}
		cl->ctl = ctl;
		cl->fd = fd;
		ks_frame_rd_init(&cl->rd, ctl->max_frame);
		cl->active_ms = ks_mono_ms();
		cl->uid = cred.uid;
		cl->pid = cred.pid;
		cl->next = ctl->clients;
		if (ctl->clients)
			ctl->clients->prev = cl;
		ctl->clients = cl;
		ctl->nclients++;
		ks_debug("event=control_client uid=%u pid=%d", (unsigned)cred.uid, (int)cred.pid);
		if (ks_loop_want(&ctl->loop, &cl->w, KS_EV_IN) < 0)
			client_free(cl);
	}
	if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
		pause_accept(ctl, errno);
}

static void on_wake(struct ks_watch *w, uint32_t ev)
{
	struct ks_control *ctl = w->owner;
	uint64_t v;

	(void)ev;
	(void)!read(ctl->wake_fd, &v, sizeof(v));
}

static void *control_main(void *arg)
{
	struct ks_control *ctl = arg;

	int svc_ms = 1000;

	while (!atomic_load_explicit(&ctl->stop, memory_order_acquire)) {
		uint64_t now;
		int wait = ctl->clients || ctl->accept_resume_ms ? KS_CTL_ACCEPT_PAUSE_MS : 1000;

		ks_loop_run_once(&ctl->loop, svc_ms < wait ? (svc_ms < 0 ? 0 : svc_ms) : wait);
		now = ks_mono_ms();
		if (ctl->svc.tick)
			svc_ms = ctl->svc.tick(ctl->svc.arg, now);
		if (ctl->accept_resume_ms && now >= ctl->accept_resume_ms) {
			ctl->accept_resume_ms = 0;
			if (ks_loop_want(&ctl->loop, &ctl->lw, KS_EV_IN) < 0)
				pause_accept(ctl, ENOMEM);
		}
		for (struct ks_ctl_client *cl = ctl->clients, *next; cl; cl = next) {
			next = cl->next;
			if (cl->discard_until_ms && now >= cl->discard_until_ms) {
				client_free(cl);
			} else if (!cl->discard_until_ms && now - cl->active_ms >= ctl->idle_ms) {
				ks_warn("event=control_idle_closed uid=%u pid=%d idle_ms=%u",
					(unsigned)cl->uid, (int)cl->pid, ctl->idle_ms);
				client_free(cl);
			}
		}
	}
	return NULL;
}

/* "/proc/self/fd/N/name": the socket's path through the checked directory
 * descriptor, so that renaming a directory above it cannot redirect us. */
static int at_path(const struct ks_control *ctl, struct sockaddr_un *sa, char *err, size_t errlen)
{
	int n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", ctl->dir_fd,
			 ctl->name);

	if (n < 0 || (size_t)n >= sizeof(sa->sun_path)) {
		snprintf(err, errlen,
			 "%s: the socket's name is too long to bind through its directory "
			 "(keep it under %zu bytes)",
			 ctl->path, sizeof(sa->sun_path) - 26);
		return -ENAMETOOLONG;
	}
	return 0;
}

/*
 * The socket's directory is the trust boundary: whoever can write it can
 * swap our socket for an impostor's, and callers would hand that impostor
 * their keys. So it must belong to us or root, be writable by no one else,
 * and not be a symlink. It is made (0700) if missing, opened once, checked
 * through the descriptor, and from then on the socket is bound, checked and
 * removed through that descriptor only.
 */
static int open_dir(struct ks_control *ctl, char *err, size_t errlen)
{
	char dir[sizeof(ctl->path)], *slash;
	struct stat st;
	int rc;

	snprintf(dir, sizeof(dir), "%s", ctl->path);
	slash = strrchr(dir, '/');
	if (!slash || !slash[1]) {
		snprintf(err, errlen,
			 "--control-socket '%s': expected an absolute path to a socket", ctl->path);
		return -EINVAL;
	}
	ctl->name = ctl->path + (slash - dir) + 1;
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen,
			 "cannot create %s: %s (set --control-socket to a writable place, or none)",
			 dir, strerror(errno));
		return rc;
	}
	ctl->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ctl->dir_fd < 0) {
		rc = -errno;
		if (errno == ELOOP || errno == ENOTDIR)
			snprintf(err, errlen,
				 "control directory %s is a symlink or not a directory: refusing "
				 "it (another user could point it elsewhere)",
				 dir);
		else
			snprintf(err, errlen, "control directory %s: %s", dir, strerror(errno));
		return rc;
	}
	if (fstat(ctl->dir_fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "control directory %s: %s", dir, strerror(errno));
		return rc;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(err, errlen,
			 "control directory %s belongs to uid %u, not to this uid (%u) or root: "
			 "its owner could replace the control socket; use a directory of ours",
			 dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
			 "control directory %s has mode %04o: group or others can write it and "
			 "could replace the control socket (want 0700 or 0755; in Kubernetes, "
			 "put the socket in a subdirectory of the emptyDir)",
			 dir, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/* Clears a stale socket in the checked directory; a live one is an error. */
static int clear_stale(struct ks_control *ctl, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, rc;

	if (fstatat(ctl->dir_fd, ctl->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", ctl->path);
		return -EEXIST;
	}
	/* A socket someone still listens on belongs to a live sidecar. */
	rc = at_path(ctl, &sa, err, errlen);
	if (rc < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0) {
		/* Two sidecars on one host both default to the same socket:
		 * say how to run them side by side. */
		snprintf(err, errlen,
			 "%s is in use by another process (another sidecar on this host? give "
			 "each its own --control-socket PATH, or --control-socket none to run "
			 "without the control API)",
			 ctl->path);
		return -EADDRINUSE;
	}
	if (unlinkat(ctl->dir_fd, ctl->name, 0) < 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "cannot remove the stale socket %s: %s", ctl->path,
			 strerror(errno));
		return rc;
	}
	return 0;
}

static int listen_socket(struct ks_control *ctl, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	mode_t old;
	int rc;

	rc = at_path(ctl, &sa, err, errlen);
	if (rc < 0)
		return rc;
	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->lfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return rc;
	}
	/* Created 0600 by the umask, with no chmod(2) after: a chmod by path
	 * would follow whatever is at the path by then. Start-up is
	 * single-threaded here, so the umask change is ours alone. */
	old = umask(0177);
	rc = bind(ctl->lfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", ctl->path, strerror(errno));
		return rc;
	}
	ctl->bound = true;
	if (listen(ctl->lfd, 16) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: listen: %s", ctl->path, strerror(errno));
		return rc;
	}
	if (fstatat(ctl->dir_fd, ctl->name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISSOCK(st.st_mode) || (st.st_mode & 077) || st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s is not the 0600 socket just bound (umask or filesystem?)",
			 ctl->path);
		return -EPERM;
	}
	return 0;
}

int ks_control_start(const char *path, const uid_t *uids, size_t nuids,
		     const struct ks_ctl_limits *limits, const struct ks_ctl_env *env,
		     const struct ks_ctl_service *svc, struct ks_control **out, char *err,
		     size_t errlen)
{
	struct ks_control *ctl;
	const char *fb;
	int fberr, rc;

	*out = NULL;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->lfd = ctl->wake_fd = ctl->dir_fd = -1;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path ? path : "");
	ctl->max_frame = limits->max_frame;
	ctl->idle_ms = limits->idle_ms ? limits->idle_ms : KS_CTL_IDLE_MS;
	ctl->env = *env;
	/* Default callers: our own uid and root. */
	ctl->nuids = nuids ? nuids : 2;
	ctl->uids = calloc(ctl->nuids, sizeof(*ctl->uids));
	rc = -ENOMEM;
	if (!ctl->uids)
		goto fail;
	if (nuids) {
		memcpy(ctl->uids, uids, nuids * sizeof(*uids));
	} else {
		ctl->uids[0] = geteuid();
		ctl->uids[1] = 0;
	}
	if (path &&
	    ((rc = open_dir(ctl, err, errlen)) < 0 || (rc = clear_stale(ctl, err, errlen)) < 0 ||
	     (rc = listen_socket(ctl, err, errlen)) < 0))
		goto fail;
	/* epoll: the control loop is low-rate and must work wherever we do. */
	rc = ks_loop_init(&ctl->loop, KS_IO_EPOLL, &fb, &fberr);
	if (rc < 0) {
		snprintf(err, errlen, "control event loop: %s", strerror(-rc));
		goto fail;
	}
	ctl->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctl->wake_fd < 0 ||
	    (path && (ks_loop_add(&ctl->loop, &ctl->lw, ctl->lfd, on_accept, ctl) < 0 ||
		      ks_loop_want(&ctl->loop, &ctl->lw, KS_EV_IN) < 0)) ||
	    ks_loop_add(&ctl->loop, &ctl->wake_w, ctl->wake_fd, on_wake, ctl) < 0 ||
	    ks_loop_want(&ctl->loop, &ctl->wake_w, KS_EV_IN) < 0) {
		rc = errno ? -errno : -ENOMEM;
		snprintf(err, errlen, "control event loop registration failed");
		goto fail;
	}
	if (svc && svc->attach) {
		ctl->svc = *svc;
		rc = svc->attach(svc->arg, &ctl->loop);
		ctl->svc_attached = true;
		if (rc < 0) {
			snprintf(err, errlen, "admin event loop registration failed: %s",
				 strerror(-rc));
			goto fail;
		}
	}
	rc = -pthread_create(&ctl->thread, NULL, control_main, ctl);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start the control thread: %s", strerror(-rc));
		goto fail;
	}
	ctl->thread_started = true;
	*out = ctl;
	return 0;
fail:
	ks_control_stop(ctl);
	return rc;
}

void ks_control_stop(struct ks_control *ctl)
{
	uint64_t one = 1;

	if (!ctl)
		return;
	atomic_store_explicit(&ctl->stop, true, memory_order_release);
	if (ctl->thread_started) {
		(void)!write(ctl->wake_fd, &one, sizeof(one));
		pthread_join(ctl->thread, NULL);
	}
	while (ctl->clients)
		client_free(ctl->clients);
	if (ctl->svc_attached && ctl->svc.detach)
		ctl->svc.detach(ctl->svc.arg, &ctl->loop);
	if (ctl->loop.ops) {
		ks_loop_del(&ctl->loop, &ctl->lw);
		ks_loop_del(&ctl->loop, &ctl->wake_w);
		ks_loop_fini(&ctl->loop);
	}
	if (ctl->lfd >= 0)
		close(ctl->lfd);
	if (ctl->bound)
		unlinkat(ctl->dir_fd, ctl->name, 0);
	if (ctl->dir_fd >= 0)
		close(ctl->dir_fd);
	if (ctl->wake_fd >= 0)
		close(ctl->wake_fd);
	ks_ctl_env_fini(&ctl->env);
	free(ctl->uids);
	free(ctl);
}
