/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to ktls-redirect: what its files share. main.c dispatches to the
 * BPF path (bpf.c) or the iptables path (iptables.c); both use the system
 * helpers (sys.c) and write the manifest (manifest_file.c).
 */
#ifndef KS_REDIRECT_REDIRECT_INT_H
#define KS_REDIRECT_REDIRECT_INT_H

#include "redirect/redirect.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define PROG "ktls-redirect"

#ifndef CAP_NET_ADMIN
#define CAP_NET_ADMIN 12
#endif
#ifndef CAP_SYS_ADMIN
#define CAP_SYS_ADMIN 21
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

/* The manifest for the sidecar, written next to a successful install. */
struct ks_redir_manifest_file {
	const char *name;
	const char *path; /* NULL: --manifest none */
	char tmp[PATH_MAX];
	bool pending; /* tmp written, not renamed yet */
};

/* ipv6: whether the install redirects IPv6 too (the manifest's ipv6 key). */
int ks_redir_manifest_prepare(const struct ks_redirect_opts *o, bool ipv6,
			      struct ks_redir_manifest_file *m);
int ks_redir_manifest_finish(struct ks_redir_manifest_file *m, int rc);
int ks_redir_manifest_remove(const struct ks_redirect_opts *o);
void ks_redir_manifest_status(const struct ks_redirect_opts *o);

/* An error line on stderr, "ktls-redirect: ...". */
__attribute__((format(printf, 1, 2))) void ks_redir_fail(const char *fmt, ...);
int ks_redir_caps(unsigned long long *caps);
/* Opens the namespace file path, checked to be of nstype (CLONE_NEW*);
 * -errno with the error said as "FLAG PATH: ...", hint for the wrong kind. */
int ks_redir_open_ns(const char *path, int nstype, const char *flag, const char *hint);
int ks_redir_open_netns(const char *path);
void ks_redir_kernel_release(char *buf, size_t buflen);

/*
 * userns.c: the sidecar's uid across user namespaces. 0 or -errno (the
 * message already printed), unless said otherwise.
 *
 * ks_redir_resolve_uid: install, once --netns is open as nsfd: fills
 * o->cfg.sidecar_uid (the hooks' view, per mode), o->host_uid and
 * o->userns_ino from --userns or the user namespace that owns --netns.
 */
struct stat;
struct ks_uid_map;
int ks_redir_resolve_uid(struct ks_redirect_opts *o, int nsfd);
/* The user namespace that owns a netns: an fd, -ENOTTY (kernel < 4.9: take it as ours), or -errno.
 */
int ks_redir_netns_owner(int nsfd, const char *netns);
int ks_redir_userns_open(const char *path);
int ks_redir_userns_of_self(struct stat *st);
/* The uid_map of the user namespace fd, as this process sees it; what names it in messages. */
int ks_redir_userns_map(int fd, const char *what, struct ks_uid_map *m);
/* 1 in the initial user namespace, 0 in another (map: its uid_map, for messages), or -errno. */
int ks_redir_in_initial_userns(char *map, size_t maplen);
/* In a forked child only: join the user namespace fd as its root. */
int ks_redir_userns_enter(int fd);

/* bpf.c: --mode bpf; iptables.c: --mode iptables. 0 or -errno (the message already printed). */
int ks_redir_bpf_install(struct ks_redirect_opts *o);
int ks_redir_bpf_remove(const struct ks_redirect_opts *o);
int ks_redir_bpf_status(const struct ks_redirect_opts *o);
int ks_redir_ipt_install(struct ks_redirect_opts *o);
int ks_redir_ipt_remove(const struct ks_redirect_opts *o);
int ks_redir_ipt_status(const struct ks_redirect_opts *o);

#endif
