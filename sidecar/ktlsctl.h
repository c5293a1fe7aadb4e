/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl internals shared by its two files: ktlsctl.c (the commands that
 * talk to a sidecar) and ktlsctl_agent.c (the dev CA and the agent).
 */
#ifndef KS_KTLSCTL_H
#define KS_KTLSCTL_H

#include <stddef.h>
#include <stdint.h>

#include "ktls/control/v1/control.pb-c.h"

/* Exit codes (documented in --help). */
enum { EX_OK = 0, EX_ANSWER = 1, EX_USAGE = 2, EX_UNREACHABLE = 3, EX_DENIED = 4, EX_LOCAL = 5 };

extern const char *ktlsctl_prog;

__attribute__((format(printf, 1, 2))) int ktlsctl_usage_error(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void ktlsctl_log(const char *fmt, ...);

/* One request, one response. Returns an exit code; *resp is set on EX_OK.
 * quiet: report failures to reach the sidecar through ktlsctl_log only. */
int ktlsctl_call(const char *path, uint32_t timeout_ms, Ktls__Control__V1__Request *req,
		 Ktls__Control__V1__Response **resp);
/* Prints an error answer; returns the exit code for it. */
int ktlsctl_answer_error(const Ktls__Control__V1__Response *r);
/* "--name VALUE" or "--name=VALUE" at argv[*i] (advancing *i past the value),
 * or NULL. */
const char *ktlsctl_opt_value(int argc, char **argv, int *i, const char *name);
/* Reads a whole file (at most 16 MiB) as a NUL-terminated string. */
int ktlsctl_read_file(const char *path, char **out);

int ktlsctl_ca_main(int argc, char **argv);
int ktlsctl_agent_main(const char *default_socket, uint32_t timeout_ms, int argc, char **argv);

#endif
