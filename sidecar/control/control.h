/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control API (proto/ktls/control/v1/control.proto) on a Unix socket.
 *
 * Threading: one control thread with its own event loop serves the socket;
 * workers never run control code, so a slow or hostile caller cannot stall
 * forwarding. Everything the control thread changes reaches the workers
 * through the hand-offs they already use: the identity slot (an atomic
 * generation swap, tls/identity.h), the session ticket keys (their ring's
 * mutex, tls/tickets.h) and the drain (env->drain). Reads (status) are of
 * atomic counters, immutable configuration and the ticket keys' names.
 *
 * Framing (control/frame.h): a 4-byte big-endian length, then that many
 * bytes of a Request; the reply is framed the same way. Callers are
 * authorized once, at accept, by SO_PEERCRED uid.
 */
#ifndef KS_CONTROL_CONTROL_H
#define KS_CONTROL_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include "control/frame.h"

struct ks_control;
struct ks_loop;
struct ks_dp_config;
struct ks_identity_slot;
struct ks_shared;
struct ks_tls_opts;
struct ks_worker;

/*
 * Another service the control thread runs on its loop (the admin endpoint,
 * admin/admin.h), so that it too is never served by a worker. attach runs
 * on the calling thread before the control thread starts, tick on the
 * control thread, detach after it has stopped. tick returns the ms until it
 * wants to run again.
 */
struct ks_ctl_service {
	int (*attach)(void *arg, struct ks_loop *loop);
	int (*tick)(void *arg, uint64_t now_ms);
	void (*detach)(void *arg, struct ks_loop *loop);
	void *arg;
};

/* What the request handler may read and do. */
struct ks_ctl_env {
	struct ks_shared *sh;		/* NULL in unit tests and the fuzzer */
	const struct ks_dp_config *dp;	/* the routes (SetPolicy destinations) */
	const struct ks_tls_opts *tls;	/* how identities are built */
	struct ks_identity_slot *ident; /* NULL: updates answer FAILED_PRECONDITION */
	struct ks_worker *workers;
	unsigned nworkers;
	/* --unknown-destination refuse: fail closed is the operator's call,
	 * and a control plane that does not know the field cannot undo it. */
	bool refuse_unknown_dest;
	/* Starts a drain as SIGTERM would, with this timeout (0: the default),
	 * and the process exits 0 when it is over. The one way to start a
	 * drain from another thread: any thread may call it, it sends no
	 * signal, and sh->drain is set when it returns. Returns 0, 1 when a
	 * drain was already under way (it keeps its timeout), or -errno. */
	int (*drain)(struct ks_ctl_env *env, uint32_t timeout_ms);

	/* The key of the last CreateCsr, until a SetIdentity uses it. Owned by
	 * the control thread; it never leaves this process. */
	EVP_PKEY *csr_key;
};

/* Frees what the handler accumulated in env (the pending CSR key). */
void ks_ctl_env_fini(struct ks_ctl_env *env);

/*
 * Handles one request (the frame's payload) and returns the framed response
 * in *out (malloc'ed, *outlen bytes including the header). Returns 0, or
 * -ENOMEM with nothing to send.
 */
int ks_ctl_handle(struct ks_ctl_env *env, const uint8_t *req, size_t len, uint8_t **out,
		  size_t *outlen);

/* A framed error response that is not the answer to a parsed request
 * (permission denied at accept, frame too large): id 0. */
int ks_ctl_error_frame(int code, const char *message, uint8_t **out, size_t *outlen);

/* Per-socket limits: largest frame; idle time before a client is closed (0: 30 s). */
struct ks_ctl_limits {
	uint32_t max_frame;
	uint32_t idle_ms;
};

/*
 * Creates the socket (mode 0600, directory 0700 if created) and starts the
 * control thread. path NULL: no socket, the thread serves only svc (which
 * may be NULL otherwise). env is copied. A directory that group or others can
 * write, that another uid than ours or root owns, or that is a symlink is
 * refused (-EPERM, or -ELOOP/-ENOTDIR): its owner could swap the socket.
 * Returns 0 or -errno with a reason in err.
 */
int ks_control_start(const char *path, const uid_t *uids, size_t nuids,
		     const struct ks_ctl_limits *limits, const struct ks_ctl_env *env,
		     const struct ks_ctl_service *svc, struct ks_control **out, char *err,
		     size_t errlen);
/* Stops the thread, closes every client and removes the socket. */
void ks_control_stop(struct ks_control *ctl);

#endif
