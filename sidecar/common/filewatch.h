/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watching a set of files that something else rotates (a certificate, its
 * key, a bundle): inotify(7) on the directories that hold them, not on the
 * files, because the writers we follow replace files rather than edit them:
 *
 *  - the kubelet's atomic writer (Secrets, projected and CSI volumes such as
 *    cert-manager's csi-driver-spiffe) writes a new hidden directory
 *    ..YYYY_MM_DD_hh_mm_ss.N, points a ..data_tmp symlink at it and renames
 *    that over ..data; the visible names (tls.crt) are symlinks through
 *    ..data and never change themselves;
 *  - rename-replace (write NAME.tmp, rename over NAME): the watched inode of
 *    a file would be the old one, the directory sees IN_MOVED_TO NAME;
 *  - rewrites in place (spiffe-helper, cp, a shell redirect): IN_MODIFY and
 *    IN_CLOSE_WRITE on NAME in its directory.
 *
 * For each path it watches the directory of every link on the way to the
 * file (the visible name's directory, and the directory a symlink chain
 * ends in, e.g. the current ..YYYY directory), and counts an event as "ours"
 * only when it names one of those links, or the first component of a
 * relative symlink target (..data). Anything else in those directories is
 * ignored. After a change has been quiet for settle_ms, poll reports it once
 * and re-arms the watches on the layout as it is now (the ..YYYY directory
 * has changed); only then does the caller read the files, so a change made
 * while it reads is reported again.
 *
 * It says "the set may have changed", nothing more: whether the files now
 * form a complete, consistent set is the caller's question (a writer may
 * be half way through), as is what to do when they do not.
 *
 * Threading: none of its own, and no global state. A watch belongs to one
 * thread, which calls every function on it; poll never blocks. A caller
 * with an event loop waits on ks_filewatch_fd (readable when events are
 * pending) with at most ks_filewatch_timeout_ms; one with a periodic tick
 * (the daemon's main thread) just polls on every tick.
 */
#ifndef KS_COMMON_FILEWATCH_H
#define KS_COMMON_FILEWATCH_H

#include <stddef.h>
#include <stdint.h>

struct ks_filewatch;

/* Links followed per path, and the watched (directory, name) pairs in all. */
#define KS_FILEWATCH_MAX_HOPS  8
#define KS_FILEWATCH_MAX_PAIRS 64

/*
 * Watches paths[0..n) (copied). Each path's own directory must exist and be
 * watchable; the file need not exist yet. settle_ms: how long the set must
 * have been quiet before a change is reported. 0 or -errno with a message
 * in err (-ENOSPC: the inotify watch limit, fs.inotify.max_user_watches,
 * or more than KS_FILEWATCH_MAX_PAIRS pairs).
 */
int ks_filewatch_open(const char *const *paths, size_t n, uint32_t settle_ms,
		      struct ks_filewatch **out, char *err, size_t errlen);

/* The inotify descriptor (non-blocking, close-on-exec), for poll(2). */
int ks_filewatch_fd(const struct ks_filewatch *w);

/*
 * Reads the pending events at monotonic time now_ms without blocking.
 * Returns 1 when a change to the set has been quiet for settle_ms: it is
 * reported once, and the watches now follow the current layout; 0 when
 * there is nothing to report (yet); -errno when reading or re-arming failed
 * (err says what; the next poll tries again).
 */
int ks_filewatch_poll(struct ks_filewatch *w, uint64_t now_ms, char *err, size_t errlen);

/* Milliseconds until a pending change settles, or -1 when none is pending. */
int ks_filewatch_timeout_ms(const struct ks_filewatch *w, uint64_t now_ms);

/* The (directory, name) pairs watched now, for logs and tests. */
size_t ks_filewatch_npairs(const struct ks_filewatch *w);

void ks_filewatch_close(struct ks_filewatch *w);

#endif
