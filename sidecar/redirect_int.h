/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to `ktls-sidecar redirect`: what redirect.c (options, the BPF
 * path, the manifest) and redirect_iptables.c (the iptables path) share.
 */
#ifndef KS_REDIRECT_INT_H
#define KS_REDIRECT_INT_H

#include "redirect.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define PROG "ktls-sidecar redirect"

#ifndef CAP_NET_ADMIN
#define CAP_NET_ADMIN 12
#endif
#ifndef CAP_SYS_ADMIN
#define CAP_SYS_ADMIN 21
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

/* A growing text buffer; overflow is sticky and checked once at the end. */
struct ks_sbuf {
	char *p;
	size_t len, cap;
	bool overflow;
};

__attribute__((format(printf, 2, 3))) void ks_sb_printf(struct ks_sbuf *b, const char *fmt, ...);

/* The manifest for the sidecar, written next to a successful install. */
struct ks_redir_manifest_file {
	const char *name;
	const char *path; /* NULL: --manifest none */
	char tmp[PATH_MAX];
	bool pending; /* tmp written, not renamed yet */
};

int ks_redir_manifest_prepare(const struct ks_redirect_opts *o, struct ks_redir_manifest_file *m);
int ks_redir_manifest_finish(struct ks_redir_manifest_file *m, int rc);
int ks_redir_manifest_remove(const struct ks_redirect_opts *o);
void ks_redir_manifest_status(const struct ks_redirect_opts *o);

/* An error line on stderr, "ktls-sidecar redirect: ...". */
__attribute__((format(printf, 1, 2))) void ks_redir_fail(const char *fmt, ...);
int ks_redir_caps(unsigned long long *caps);
int ks_redir_open_netns(const char *path);
void ks_redir_kernel_release(char *buf, size_t buflen);
unsigned long long ks_redir_settings_digest(const struct ks_redirect_opts *o);
unsigned int ks_redir_out_rule_count(const struct ks_redirect_opts *o, int family);

/* redirect_iptables.c: --mode iptables. Exit codes as the commands'. */
int ks_redir_ipt_install(const struct ks_redirect_opts *o);
int ks_redir_ipt_remove(const struct ks_redirect_opts *o);
int ks_redir_ipt_status(const struct ks_redirect_opts *o);

#endif
