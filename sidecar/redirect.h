/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KS_REDIRECT_H
#define KS_REDIRECT_H

#include <stdbool.h>
#include <stddef.h>

#include "../bpf/redirect.h"

/* ktls-sidecar redirect install|remove|status ... (argv[0] is "redirect").
 * Exit status: 0 done, 1 failed, 2 usage. */
int ks_redirect_main(int argc, char **argv);

enum ks_redirect_cmd {
	KS_REDIRECT_NONE,
	KS_REDIRECT_INSTALL,
	KS_REDIRECT_REMOVE,
	KS_REDIRECT_STATUS,
};

struct ks_redirect_opts {
	enum ks_redirect_cmd cmd;
	bool help;
	const char *name;   /* pins under /sys/fs/bpf/<name> */
	const char *cgroup; /* install: cgroup v2 directory of the pod */
	const char *netns;  /* install: the pod's network namespace file */
	struct ks_redir_config cfg;
	struct ks_redir_cidr_key cidrs[KS_REDIR_MAX_CIDRS];
	unsigned int n_cidrs;
};

/* Pure helpers (unit-tested). 0, or -EINVAL with the reason in err. */
int ks_redirect_parse(int argc, char **argv, struct ks_redirect_opts *o, char *err, size_t errlen);
int ks_redirect_parse_cidr(const char *s, struct ks_redir_cidr_key *key, char *err, size_t errlen);
/* "10.0.0.0/8" or "fd00::/8"; buf of at least 64 bytes. */
void ks_redirect_format_cidr(const struct ks_redir_cidr_key *key, char *buf, size_t buflen);

#endif
