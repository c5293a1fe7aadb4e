/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line and environment configuration. Every flag --foo-bar can also
 * be given as KTLS_SIDECAR_FOO_BAR; a flag on the command line wins over the
 * environment. Repeatable flags take a whitespace-separated list from the
 * environment. The result is immutable and shared by all threads.
 */
#ifndef KS_CONFIG_H
#define KS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "log.h"
#include "net.h"
#include "policy.h"

enum ks_dir { KS_INBOUND, KS_OUTBOUND };
enum ks_io_mode { KS_IO_AUTO, KS_IO_URING, KS_IO_EPOLL };
enum ks_ktls_mode { KS_KTLS_AUTO, KS_KTLS_OFF, KS_KTLS_REQUIRE };

struct ks_route {
	enum ks_dir dir;
	bool transparent; /* outbound: destination from SO_ORIGINAL_DST */
	struct ks_addr listen;
	struct ks_addr target; /* inbound: local app; outbound: remote sidecar */
	char listen_str[KS_ADDRSTRLEN];
	char target_str[KS_ADDRSTRLEN];
	char *expect_id; /* outbound: server SPIFFE ID pattern, NULL = own trust domain */
};

struct ks_config {
	struct ks_route *routes;
	size_t nroutes;
	char *cert, *key, *ca; /* all NULL: the control plane pushes the identity */
	char *spiffe_id;       /* NULL: whatever the certificate says */
	struct ks_policy policy;
	bool inbound_permissive; /* plaintext inbound goes to the app (counted apart) */
	char *redirect_check;	 /* manifest of `redirect install`: prove it works at start */
	unsigned workers;
	uint32_t handshake_timeout_ms;
	uint32_t idle_timeout_ms;
	uint32_t drain_timeout_ms;
	uint32_t max_connections;
	enum ks_io_mode io;
	enum ks_ktls_mode ktls;
	int tls_min_version; /* TLS1_2_VERSION or TLS1_3_VERSION */
	char *ciphersuites;  /* TLS 1.3 suites, OpenSSL syntax; NULL = all three AEADs */
	enum ks_log_level log_level;
	char *control_socket; /* NULL: no control API (control_none) */
	bool control_none;
	uid_t *control_uids; /* callers allowed on it (SO_PEERCRED) */
	size_t ncontrol_uids;
	uint32_t control_max_frame;
	uint32_t control_idle_ms;
};

#define KS_CONTROL_SOCKET_DEFAULT "/run/ktls-sidecar/control.sock"

/*
 * Parses argv and envp into cfg. Returns 0, 1 when --help or --version was
 * asked (text already printed to out), or -EINVAL with a message in err.
 */
int ks_config_parse(struct ks_config *cfg, int argc, char **argv, char **envp, char *err,
		    size_t errlen);
void ks_config_free(struct ks_config *cfg);
void ks_config_usage(FILE *out);

int ks_parse_duration_ms(const char *s, uint32_t *out);
/* Decimal digits only (no sign, no space), at most max. 0 or -EINVAL. */
int ks_parse_uint(const char *s, unsigned long max, unsigned long *out);
const char *ks_ktls_mode_name(enum ks_ktls_mode mode);
/* A byte count with an optional K, M or G suffix (powers of 1024). */
int ks_parse_size(const char *s, uint64_t *out);
/* "LISTEN=TARGET[,id=SPIFFE_ID]" */
int ks_parse_route(const char *s, enum ks_dir dir, struct ks_route *out, char *err, size_t errlen);

#endif
