/* SPDX-License-Identifier: Apache-2.0 */
#include "redirect/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/parse.h"
#include "common/sbuf.h"

int ks_redirect_manifest_text(const struct ks_redirect_opts *o, bool ipv6, const char *kernel,
			      long long installed_unix, char *buf, size_t buflen)
{
	const struct ks_redir_config *cfg = &o->cfg;
	struct ks_sbuf b = {.p = buf, .cap = buflen};
	bool ipt = o->mode == KS_REDIRECT_IPTABLES;

	if (buflen == 0)
		return -ENOSPC;
	buf[0] = '\0';
	/* The key order is part of the format (sidecar/redirect.h). */
	ks_sb_printf(&b, "mode=%s\nname=%s\ncgroup=%s\nnetns=%s\n", ipt ? "iptables" : "bpf",
		     o->name, ipt || !o->cgroup ? "" : o->cgroup, o->netns ? o->netns : "");
	/* The sidecar compares its getuid(): its own view, not the hooks'. */
	ks_sb_printf(&b, "sidecar_uid=%u\noutbound_port=%u\ninbound_port=%u\napp_ports=",
		     cfg->sidecar_uid_pod, cfg->outbound_port, cfg->inbound_port);
	ks_redirect_sb_ports(&b, cfg->app_ports, cfg->n_app_ports);
	ks_sb_printf(&b, "\nkernel=%s\ninstalled_unix=%lld\nipv6=%s\n", kernel, installed_unix,
		     ipv6 ? "yes" : "no");
	ks_sb_printf(&b, "sidecar_host_uid=%u\nsidecar_userns=%llu\n", o->host_uid, o->userns_ino);
	return ks_sb_result(&b);
}

/* Copies a value into a fixed field; the field's size bounds it. */
#define KS_FIELD(dst, v) snprintf((dst), sizeof(dst), "%s", (v))

/* One key=value line into m; *seen collects the required keys found. */
static void manifest_line(char *line, struct ks_redirect_manifest *m, unsigned *seen)
{
	char *eq = strchr(line, '='), *v;

	if (!eq || line[0] == '#')
		return;
	*eq = '\0';
	v = eq + 1;
	if (strcmp(line, "mode") == 0) {
		KS_FIELD(m->mode, v);
	} else if (strcmp(line, "name") == 0) {
		KS_FIELD(m->name, v);
	} else if (strcmp(line, "cgroup") == 0) {
		KS_FIELD(m->cgroup, v);
	} else if (strcmp(line, "netns") == 0) {
		KS_FIELD(m->netns, v);
	} else if (strcmp(line, "kernel") == 0) {
		KS_FIELD(m->kernel, v);
	} else if (strcmp(line, "sidecar_uid") == 0) {
		unsigned long n = 0;

		/* (uid_t)-1 is "no uid" to the kernel: never a process's uid. */
		if (ks_parse_uint(v, 0xfffffffeUL, &n) == 0)
			*seen |= 1;
		m->sidecar_uid = (uid_t)n;
	} else if (strcmp(line, "outbound_port") == 0) {
		if (ks_parse_port(v, false, &m->outbound_port) == 0)
			*seen |= 2;
	} else if (strcmp(line, "inbound_port") == 0) {
		if (ks_parse_port(v, false, &m->inbound_port) == 0)
			*seen |= 4;
	} else if (strcmp(line, "sidecar_host_uid") == 0) {
		unsigned long n = 0;

		m->host_uid_known = ks_parse_uint(v, 0xfffffffeUL, &n) == 0;
		m->sidecar_host_uid = (uid_t)n;
	} else if (strcmp(line, "sidecar_userns") == 0) {
		unsigned long n = 0;

		/* Unreadable reads as 0, "not recorded": the start-up probe still runs. */
		m->sidecar_userns = ks_parse_uint(v, ULONG_MAX, &n) == 0 ? n : 0;
	} else if (strcmp(line, "ipv6") == 0) {
		/* Anything but yes probes IPv4 only, as a manifest without the key. */
		m->ipv6 = strcmp(v, "yes") == 0;
	} else if (strcmp(line, "app_ports") == 0) {
		m->napp_ports = *v ? 1 : 0;
		for (const char *p = v; *p; p++)
			m->napp_ports += *p == ',';
	}
	/* Later versions may add keys: unknown ones are ignored (redirect.h). */
}

int ks_redirect_manifest_parse(const char *text, const char *where, struct ks_redirect_manifest *m,
			       char *err, size_t errlen)
{
	char line[1024];
	unsigned seen = 0;

	memset(m, 0, sizeof(*m));
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");

		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		line[strcspn(line, "\r")] = '\0';
		manifest_line(line, m, &seen);
		p += n + (p[n] == '\n');
	}
	if (strcmp(m->mode, "bpf") != 0 && strcmp(m->mode, "iptables") != 0) {
		snprintf(err, errlen, "redirect manifest %s: mode '%s' is neither bpf nor iptables",
			 where, m->mode);
		return -EINVAL;
	}
	if (seen != 7) {
		snprintf(err, errlen, "redirect manifest %s lacks a valid %s", where,
			 !(seen & 1)   ? "sidecar_uid"
			 : !(seen & 2) ? "outbound_port"
				       : "inbound_port");
		return -EINVAL;
	}
	return 0;
}

int ks_redirect_manifest_read(const char *path, struct ks_redirect_manifest *m, char *err,
			      size_t errlen)
{
	char text[8192];
	ssize_t n;
	int fd, rc;

	memset(m, 0, sizeof(*m));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen,
			 "cannot read the redirect manifest %s (%s): `ktls-redirect install` did "
			 "not run, failed, or wrote it elsewhere (--manifest)",
			 path, strerror(-rc));
		return rc;
	}
	n = read(fd, text, sizeof(text) - 1);
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read the redirect manifest %s: %s", path,
			 strerror(-rc));
		return rc;
	}
	text[n] = '\0';
	return ks_redirect_manifest_parse(text, path, m, err, errlen);
}
