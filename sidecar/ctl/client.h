/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What ktlsctl's commands share (client.c): the call to a sidecar,
 * messages and exit codes, argument and file helpers. main.c (the sidecar
 * commands), ca.c (the dev CA), agent.c (the built-in control plane) and
 * waitready.c (the postStart hook) use it; it uses none of them.
 */
#ifndef KS_CTL_CLIENT_H
#define KS_CTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "ktls/control/v1/control.pb-c.h"

/* Exit codes (documented in --help). */
enum { EX_OK = 0, EX_ANSWER = 1, EX_USAGE = 2, EX_UNREACHABLE = 3, EX_DENIED = 4, EX_LOCAL = 5 };

extern const char *ktlsctl_prog;

__attribute__((format(printf, 1, 2))) int ktlsctl_usage_error(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void ktlsctl_log(const char *fmt, ...);

/* Which sidecar to call, and whom to trust as one. */
struct ktlsctl_target {
	const char *path;    /* the control socket */
	uint32_t timeout_ms; /* per call */
	/* The uid the sidecar runs as (--sidecar-uid); unset: our own. Root is
	 * always trusted: it could become any sidecar anyway. */
	uid_t sidecar_uid;
	bool sidecar_uid_set;
};

/*
 * One request, one response. Returns an exit code; *resp is set on EX_OK.
 * Before anything is sent, the server end must be the sidecar's uid or root
 * (SO_PEERCRED): a request may carry a private key, and whoever could
 * write the socket's directory could have put an impostor there. Another
 * owner is EX_DENIED.
 */
int ktlsctl_call(const struct ktlsctl_target *to, Ktls__Control__V1__Request *req,
		 Ktls__Control__V1__Response **resp);
/* Prints an error answer; returns the exit code for it. */
int ktlsctl_answer_error(const Ktls__Control__V1__Response *r);
/* "--name VALUE" or "--name=VALUE" at argv[*i] (advancing *i past the value),
 * or NULL. */
const char *ktlsctl_opt_value(int argc, char **argv, int *i, const char *name);
/* Reads a whole file (at most 16 MiB) as a NUL-terminated string, into
 * memory that may hold a key: free it with ks_secret_free. */
int ktlsctl_read_file(const char *path, char **out);
/* A DURATION argument of at least 1 s, in seconds; EX_OK or EX_USAGE (reported). */
int ktlsctl_parse_secs(const char *what, const char *v, long *out);

struct ks_devca;
/* ca.c: opens the dev CA in dir (--ca DIR); EX_OK, EX_USAGE or EX_LOCAL (reported). */
int ktlsctl_ca_open(const char *dir, struct ks_devca **ca);

int ktlsctl_ca_main(int argc, char **argv);
/* The ca subcommands' lines of --help (main.c's and ca --help). */
void ktlsctl_ca_usage(FILE *out);
int ktlsctl_agent_main(const struct ktlsctl_target *to, int argc, char **argv);
/* waitready.c: polls the admin endpoint's /ready (no control socket). */
int ktlsctl_wait_ready_main(int argc, char **argv);
/* Its --help text. */
void ktlsctl_wait_ready_usage(FILE *out);
/* inject.c: adds the sidecar to Kubernetes objects (no control socket). */
int ktlsctl_inject_main(int argc, char **argv);
void ktlsctl_inject_usage(FILE *out);
/* inject_serve.c: `inject --serve`, the admission webhook (sidecar/injectd).
 * main.c sends an inject command line that has --serve there. */
bool ktlsctl_inject_wants_serve(int argc, char **argv);
int ktlsctl_inject_serve_main(int argc, char **argv);
void ktlsctl_inject_serve_usage(FILE *out);

#endif
