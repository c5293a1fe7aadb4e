/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line and environment configuration of the daemon. Every flag
 * --foo-bar can also be given as KTLS_SIDECAR_FOO_BAR; a flag on the
 * command line wins over the environment. Repeatable flags take a
 * whitespace-separated list from the environment. The result is immutable
 * and shared by all threads: the data plane gets cfg.dp, identities are
 * built from cfg.tls.
 */
#ifndef KS_DAEMON_CONFIG_H
#define KS_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "common/log.h"
#include "common/net.h"
#include "common/parse.h"
#include "control/frame.h"
#include "dataplane/settings.h"
#include "tls/identity.h"
#include "tls/policy.h"

struct ks_config {
	struct ks_dp_config dp;
	struct ks_tls_opts tls;
	struct ks_policy policy; /* --allow; empty means "own trust domain" */
	/* --identity-dir: the three files' directory; tls.cert/key/ca are set
	 * from it and identity_layout's names (ks_identity_layouts). */
	char *identity_dir;
	int identity_layout;	   /* enum ks_identity_layout; -1: not given */
	int identity_watch;	   /* --identity-watch on (1) or off (0) */
	/* --workload-api, or SPIFFE_ENDPOINT_SOCKET (workload_api_env): the
	 * SPIFFE Workload API's socket (wapi/wapi.h); NULL: not used. */
	char *workload_api;
	bool workload_api_env;
	char workload_api_path[108]; /* KS_WAPI_PATH_MAX, parsed from it */
	char *redirect_check;	   /* manifest of `redirect install`: prove it works at start */
	char *admin;		   /* --admin LISTEN (admin/admin.h); NULL: none */
	uint32_t stall_timeout_ms; /* /live: a worker loop that has not turned this long */
	enum ks_log_level log_level;
	enum ks_log_format log_format;
	int access_log;	      /* --access-log on (1) or off (0); a choice field is an int */
	int session_resumption; /* --session-resumption on (1) or off (0) */
	uint32_t session_lifetime_ms; /* --session-lifetime (tls/resume.h) */
	char *control_socket; /* NULL: no control API (control_none) */
	bool control_none;
	uid_t *control_uids; /* callers allowed on it (SO_PEERCRED) */
	size_t ncontrol_uids;
	uint32_t control_max_frame;
	uint32_t control_idle_ms;
	/* Given by the user, so never lowered to fit the descriptor limit
	 * (dataplane/capacity.h): a limit that cannot be honoured is an error. */
	bool max_connections_set, max_handshakes_set, max_pipes_set;
	/* Given by the user: longer than --drain-timeout is an error, where the
	 * default is shortened to fit. */
	bool drain_delay_set;
};

/* --identity-layout: the file names a volume or tool writes. */
enum ks_identity_layout {
	KS_LAYOUT_CSI_DRIVER_SPIFFE, /* cert-manager csi-driver-spiffe, also a kubernetes.io/tls
					Secret */
	KS_LAYOUT_SPIFFE_HELPER,     /* spiffe-helper's documented names */
	KS_LAYOUT_FILES,	     /* our own */
	KS_LAYOUT__COUNT
};

struct ks_identity_layout_names {
	const char *name, *cert, *key, *ca;
};
extern const struct ks_identity_layout_names ks_identity_layouts[KS_LAYOUT__COUNT];

/* --drain-delay unless given: time for the pod's removal from the Service
 * endpoints to reach every node's proxy and the clients' resolvers. */
#define KS_DRAIN_DELAY_DEFAULT_MS 5000

/*
 * Parses argv and envp into cfg. Returns 0, 1 when --help or --version was
 * asked (text already printed to stdout), or -EINVAL with a message in err.
 */
int ks_config_parse(struct ks_config *cfg, int argc, char **argv, char **envp, char *err,
		    size_t errlen);
void ks_config_free(struct ks_config *cfg);
void ks_config_usage(FILE *out);

/* "LISTEN=TARGET[,id=SPIFFE_ID]" */
int ks_parse_route(const char *s, enum ks_dir dir, struct ks_route *out, char *err, size_t errlen);

#endif
