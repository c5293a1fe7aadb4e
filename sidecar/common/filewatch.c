/* SPDX-License-Identifier: Apache-2.0 */
/* Watching a rotated set of files: see filewatch.h. */
#include "common/filewatch.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

/*
 * What changes a file's content or which file a name means, seen from its
 * directory (inotify(7)): a name created, moved in or out, deleted, written
 * (IN_MODIFY while a writer is at it, so the settle waits for it to finish;
 * IN_CLOSE_WRITE when it is done); and the directory itself going away. No
 * IN_ACCESS or IN_OPEN: our own reads must not wake us.
 */
#define KS_FW_MASK                                                                                 \
	(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE |        \
	 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

#define KS_FW_STR_(x) #x
#define KS_FW_STR(x)  KS_FW_STR_(x)

struct ks_fw_pair {
	int wd;	    /* the directory's watch */
	char *name; /* a name in it that is ours */
};

struct ks_fw_pairs {
	struct ks_fw_pair v[KS_FILEWATCH_MAX_PAIRS];
	size_t n;
};

struct ks_filewatch {
	int fd;
	char **paths;
	size_t npaths;
	uint32_t settle_ms;
	struct ks_fw_pairs pairs;
	bool pending;	  /* an event of ours not yet reported */
	uint64_t last_ms; /* when the last one was read */
};

static void pairs_free(struct ks_fw_pairs *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].name);
	p->n = 0;
}

static bool pairs_has_wd(const struct ks_fw_pairs *p, int wd)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].wd == wd)
			return true;
	return false;
}

/* Adds (wd, name[0..len)) unless it is there already; 0 or -errno. */
static int pairs_add(struct ks_fw_pairs *p, int wd, const char *name, size_t len)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].wd == wd && strlen(p->v[i].name) == len &&
		    memcmp(p->v[i].name, name, len) == 0)
			return 0;
	if (p->n == KS_FILEWATCH_MAX_PAIRS)
		return -ENOSPC;
	p->v[p->n].name = strndup(name, len);
	if (!p->v[p->n].name)
		return -ENOMEM;
	p->v[p->n++].wd = wd;
	return 0;
}

/*
 * Watches the directories on the way from path to its file, adding the
 * pairs to out. The first directory must be watchable; past a symlink, one
 * that is not (a ..YYYY directory removed while we looked) ends the walk,
 * and the next change re-arms.
 */
static int watch_path(struct ks_filewatch *w, const char *path, struct ks_fw_pairs *out, char *err,
		      size_t errlen)
{
	char cur[PATH_MAX], dir[PATH_MAX], tgt[PATH_MAX];
	int rc;

	if (snprintf(cur, sizeof(cur), "%s", path) >= (int)sizeof(cur)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	for (int hop = 0; hop < KS_FILEWATCH_MAX_HOPS; hop++) {
		const char *slash = strrchr(cur, '/'), *base;
		ssize_t n;
		int wd;

		if (!slash) {
			snprintf(dir, sizeof(dir), ".");
			base = cur;
		} else {
			snprintf(dir, sizeof(dir), "%.*s", slash == cur ? 1 : (int)(slash - cur),
				 cur);
			base = slash + 1;
		}
		if (!*base) {
			snprintf(err, errlen, "%s: names a directory, not a file", path);
			return -EISDIR;
		}
		wd = inotify_add_watch(w->fd, dir, KS_FW_MASK);
		if (wd < 0) {
			rc = -errno;
			if (hop > 0)
				return 0;
			snprintf(err, errlen, "cannot watch %s (for %s): %s%s", dir, path,
				 strerror(-rc),
				 rc == -ENOSPC ? " (the inotify limit, fs.inotify.max_user_watches)"
					       : "");
			return rc;
		}
		if ((rc = pairs_add(out, wd, base, strlen(base))) < 0)
			goto full;
		n = readlink(cur, tgt, sizeof(tgt) - 1);
		if (n <= 0)
			return 0; /* not a symlink (EINVAL), or not there yet (ENOENT) */
		tgt[n] = '\0';
		if (tgt[0] == '/') {
			snprintf(cur, sizeof(cur), "%s", tgt);
			continue;
		}
		/* ..data/tls.crt: the swap renames ..data, in this directory. */
		const char *sep = strchr(tgt, '/');
		size_t first = sep ? (size_t)(sep - tgt) : 0;

		if (first && !(first == 1 && tgt[0] == '.') &&
		    !(first == 2 && tgt[0] == '.' && tgt[1] == '.') &&
		    (rc = pairs_add(out, wd, tgt, first)) < 0)
			goto full;
		if (snprintf(cur, sizeof(cur), "%s/%s", dir, tgt) >= (int)sizeof(cur))
			return 0;
	}
	return 0;
full:
	snprintf(err, errlen, "watching %s: %s", path,
		 rc == -ENOSPC ? "more than " KS_FW_STR(KS_FILEWATCH_MAX_PAIRS) " directory entries"
			       : strerror(-rc));
	return rc;
}

/*
 * (Re-)arms the watches on the files' layout as it is now. Directories
 * still on the way keep their watch (inotify_add_watch on a watched inode
 * returns its wd), so no event of theirs is lost; the others are removed.
 * On failure the previous watches stay as they were.
 */
static int arm(struct ks_filewatch *w, char *err, size_t errlen)
{
	struct ks_fw_pairs *next = calloc(1, sizeof(*next));
	int rc = 0;

	if (!next) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < w->npaths; i++)
		if ((rc = watch_path(w, w->paths[i], next, err, errlen)) < 0)
			goto cleanup;
	for (size_t i = 0; i < w->pairs.n; i++) {
		int wd = w->pairs.v[i].wd;

		/* Once per wd; EINVAL when the directory is gone already. */
		if (!pairs_has_wd(next, wd)) {
			bool seen = false;

			for (size_t j = 0; j < i && !seen; j++)
				seen = w->pairs.v[j].wd == wd;
			if (!seen)
				(void)inotify_rm_watch(w->fd, wd);
		}
	}
	pairs_free(&w->pairs);
	w->pairs = *next;
	next->n = 0;
cleanup:
	pairs_free(next);
	free(next);
	return rc;
}

int ks_filewatch_open(const char *const *paths, size_t n, uint32_t settle_ms,
		      struct ks_filewatch **out, char *err, size_t errlen)
{
	struct ks_filewatch *w = calloc(1, sizeof(*w));
	int rc;

	*out = NULL;
	if (w)
		w->fd = -1;
	if (!w || !(w->paths = calloc(n ? n : 1, sizeof(char *)))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto cleanup;
	}
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "inotify_init1: %s%s", strerror(-rc),
			 rc == -EMFILE ? " (the inotify instance limit, "
					 "fs.inotify.max_user_instances)"
				       : "");
		goto cleanup;
	}
	w->settle_ms = settle_ms;
	for (; w->npaths < n; w->npaths++) {
		if (!(w->paths[w->npaths] = strdup(paths[w->npaths]))) {
			rc = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto cleanup;
		}
	}
	if ((rc = arm(w, err, errlen)) < 0)
		goto cleanup;
	*out = w;
	return 0;
cleanup:
	ks_filewatch_close(w);
	return rc;
}

int ks_filewatch_fd(const struct ks_filewatch *w)
{
	return w->fd;
}

/* Whether an event may change what one of our paths reads. */
static bool ours(const struct ks_filewatch *w, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW)
		return true; /* events were lost: ours may have been among them */
	if (ev->mask & IN_IGNORED)
		return false; /* a watch ended; what ended it was reported itself */
	if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))
		return pairs_has_wd(&w->pairs, ev->wd);
	if (!ev->len)
		return false;
	for (size_t i = 0; i < w->pairs.n; i++)
		if (w->pairs.v[i].wd == ev->wd && strcmp(w->pairs.v[i].name, ev->name) == 0)
			return true;
	return false;
}

int ks_filewatch_poll(struct ks_filewatch *w, uint64_t now_ms, char *err, size_t errlen)
{
	/* inotify(7): a buffer of this alignment, large enough for one event
	 * with a NAME_MAX name, never gets EINVAL. */
	char buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	int rc;

	for (;;) {
		ssize_t n = read(w->fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			snprintf(err, errlen, "reading inotify events: %s", strerror(-rc));
			return rc;
		}
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ours(w, ev)) {
				w->pending = true;
				w->last_ms = now_ms;
			}
			p += sizeof(*ev) + ev->len;
		}
	}
	if (!w->pending || now_ms - w->last_ms < w->settle_ms)
		return 0;
	if ((rc = arm(w, err, errlen)) < 0) {
		w->last_ms = now_ms; /* try again after another settle */
		return rc;
	}
	w->pending = false;
	return 1;
}

int ks_filewatch_timeout_ms(const struct ks_filewatch *w, uint64_t now_ms)
{
	uint64_t quiet;

	if (!w->pending)
		return -1;
	quiet = now_ms - w->last_ms;
	return quiet >= w->settle_ms ? 0 : (int)(w->settle_ms - quiet);
}

size_t ks_filewatch_npairs(const struct ks_filewatch *w)
{
	return w->pairs.n;
}

void ks_filewatch_close(struct ks_filewatch *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd); /* ends every watch */
	pairs_free(&w->pairs);
	for (size_t i = 0; i < w->npaths; i++)
		free(w->paths[i]);
	free(w->paths);
	free(w);
}
