/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The redirect manifest (format: redirect/redirect.h): written by
 * `ktls-redirect install`, read by the sidecar's start-up check and by the
 * loader's remove and status. One writer and one parser, here, with no
 * dependency on libbpf, so the unprivileged daemon links it too.
 */
#ifndef KS_REDIRECT_MANIFEST_H
#define KS_REDIRECT_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "redirect/redirect.h"

/* What `redirect install` wrote for the sidecar. */
struct ks_redirect_manifest {
	char mode[16]; /* bpf | iptables */
	char name[80];
	char cgroup[512];
	char netns[512];
	char kernel[128];
	uid_t sidecar_uid;	/* as the sidecar sees it */
	uid_t sidecar_host_uid; /* as the host sees it, if host_uid_known */
	bool host_uid_known;
	unsigned long long sidecar_userns; /* the user namespace of sidecar_uid; 0: not recorded */
	uint16_t outbound_port, inbound_port;
	size_t napp_ports;
	bool ipv6; /* the app's IPv6 connections are redirected too */
};

/* The manifest's text for o: the length written, or -ENOSPC. */
int ks_redirect_manifest_text(const struct ks_redirect_opts *o, bool ipv6, const char *kernel,
			      long long installed_unix, char *buf, size_t buflen);

/*
 * Parses a manifest's text (where names it in messages). Fills what it
 * finds even when the result is an error, so a reader can still tell whose
 * manifest it is. 0, or -EINVAL with the reason in err.
 */
int ks_redirect_manifest_parse(const char *text, const char *where, struct ks_redirect_manifest *m,
			       char *err, size_t errlen);

/* Reads and parses the file; -errno with the reason in err. */
int ks_redirect_manifest_read(const char *path, struct ks_redirect_manifest *m, char *err,
			      size_t errlen);

#endif
