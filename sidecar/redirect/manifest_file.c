/* SPDX-License-Identifier: Apache-2.0 */
/* The manifest file for the sidecar: written by install, deleted by remove, shown by status. */
#include "redirect/redirect_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "redirect/manifest.h"

/*
 * The manifest is written next to its final name first and renamed into
 * place only once the install succeeded: the sidecar never reads half a
 * file, nor one describing an install that failed, and a directory we
 * cannot write fails the install before anything is attached.
 */

int ks_redir_manifest_prepare(const struct ks_redirect_opts *o, bool ipv6,
			      struct ks_redir_manifest_file *m)
{
	char dir[PATH_MAX], text[2048], rel[128];
	char *slash;
	size_t off = 0;
	int fd = -1, len, rc;

	memset(m, 0, sizeof(*m));
	m->name = o->name;
	m->path = o->manifest;
	if (!m->path)
		return 0;
	snprintf(dir, sizeof(dir), "%s", m->path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	if (mkdir(dir, 0755) == 0) {
		/* The unprivileged sidecar must get in, whatever our umask. */
		(void)chmod(dir, 0755);
	} else if (errno != EEXIST) {
		rc = -errno;
		ks_redir_fail("--manifest %s: cannot create %s: %s", m->path, dir, strerror(-rc));
		return rc;
	}
	ks_redir_kernel_release(rel, sizeof(rel));
	len = ks_redirect_manifest_text(o, ipv6, rel, (long long)time(NULL), text, sizeof(text));
	if (len < 0) {
		ks_redir_fail("--manifest %s: the text does not fit in %zu bytes", m->path,
			      sizeof(text));
		return len;
	}
	snprintf(m->tmp, sizeof(m->tmp), "%s.tmp.%ld", m->path, (long)getpid());
	fd = open(m->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		rc = -errno;
		ks_redir_fail("--manifest %s: cannot write %s: %s", m->path, m->tmp, strerror(-rc));
		return rc;
	}
	m->pending = true;
	rc = fchmod(fd, 0644) < 0 ? -errno : 0;
	while (rc == 0 && off < (size_t)len) {
		ssize_t w = write(fd, text + off, (size_t)len - off);

		if (w < 0 && errno != EINTR)
			rc = -errno;
		else if (w > 0)
			off += (size_t)w;
	}
	/* Renamed over the old file only once the data is on disk. */
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0) {
		ks_redir_fail("--manifest %s: writing %s: %s", m->path, m->tmp, strerror(-rc));
		(void)unlink(m->tmp);
		m->pending = false;
	}
	return rc;
}

/* rc of the install so far in, rc out: renames the manifest into place on
 * success, throws it away on failure. */
int ks_redir_manifest_finish(struct ks_redir_manifest_file *m, int rc)
{
	if (!m->pending)
		return rc;
	m->pending = false;
	if (rc < 0) {
		(void)unlink(m->tmp);
		return rc;
	}
	if (rename(m->tmp, m->path) < 0) {
		rc = -errno;
		ks_redir_fail("--manifest %s: rename from %s: %s", m->path, m->tmp, strerror(-rc));
		(void)unlink(m->tmp);
		return rc;
	}
	printf("%s: manifest written to %s\n", m->name, m->path);
	return 0;
}

/*
 * Whether the manifest describes this installation (same name and mode):
 * at a shared default path it may be another pod's, or the other mode's.
 * 1 yes, 0 no (who it is for in name/mode), -ENOENT absent, or -errno.
 */
static int manifest_ours(const struct ks_redirect_opts *o, struct ks_redirect_manifest *m)
{
	char err[256];
	int rc;

	rc = ks_redirect_manifest_read(o->manifest, m, err, sizeof(err));
	if (rc < 0 && rc != -EINVAL)
		return rc;
	/* A manifest we cannot fully read may still name its owner. */
	if (!m->name[0])
		snprintf(m->name, sizeof(m->name), "?");
	if (!m->mode[0])
		snprintf(m->mode, sizeof(m->mode), "?");
	return strcmp(m->name, o->name) == 0 &&
	       strcmp(m->mode, o->mode == KS_REDIRECT_IPTABLES ? "iptables" : "bpf") == 0;
}

/* remove: the manifest goes only if it is this installation's. */
int ks_redir_manifest_remove(const struct ks_redirect_opts *o)
{
	struct ks_redirect_manifest m;
	int rc;

	if (!o->manifest)
		return 0;
	rc = manifest_ours(o, &m);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		ks_redir_fail("--manifest %s: %s", o->manifest, strerror(-rc));
		return rc;
	}
	if (rc == 0) {
		printf("%s: the manifest %s is another installation's (%s, mode %s): left in "
		       "place\n",
		       o->name, o->manifest, m.name, m.mode);
		return 0;
	}
	if (unlink(o->manifest) < 0) {
		ks_redir_fail("--manifest %s: %s", o->manifest, strerror(errno));
		return -errno;
	}
	printf("%s: manifest %s deleted\n", o->name, o->manifest);
	return 0;
}

/* status: one line on the manifest; it does not change the exit status. */
void ks_redir_manifest_status(const struct ks_redirect_opts *o)
{
	struct ks_redirect_manifest m;
	int rc;

	if (!o->manifest) {
		printf("  manifest         none\n");
		return;
	}
	rc = manifest_ours(o, &m);
	if (rc == 1 && m.host_uid_known)
		printf("  manifest         %s (sidecar uid %u, %u on the host; user namespace "
		       "%llu)\n",
		       o->manifest, (unsigned)m.sidecar_uid, (unsigned)m.sidecar_host_uid,
		       m.sidecar_userns);
	else if (rc == 1)
		printf("  manifest         %s (sidecar uid %u)\n", o->manifest,
		       (unsigned)m.sidecar_uid);
	else if (rc == 0)
		printf("  manifest         %s is another installation's (%s, mode %s)\n",
		       o->manifest, m.name, m.mode);
	else
		printf("  manifest         %s: %s\n", o->manifest, strerror(-rc));
}
