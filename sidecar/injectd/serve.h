/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admission webhook's server, `ktlsctl inject --serve`: HTTPS on
 * --serve (POST /inject, GET /ready) and plain HTTP on --admin (GET /ready,
 * /live, /metrics). The threading model and the bounds are at the top of
 * serve.c; the answers are admission.h's.
 */
#ifndef KS_INJECTD_SERVE_H
#define KS_INJECTD_SERVE_H

#include <stddef.h>
#include <stdint.h>

#define KS_INJECTD_LISTEN_DEFAULT "0.0.0.0:9443"
#define KS_INJECTD_ADMIN_DEFAULT  "0.0.0.0:15020"
/* The body of a POST /inject at most (then 413). The API server refuses
 * request bodies over 3 MiB (k8s.io/apiserver, server.Config's
 * MaxRequestBodyBytes) and etcd stores objects of at most 1.5 MiB (its
 * --max-request-bytes default); a review wraps the pod with a few hundred
 * bytes: 4 MiB holds the review of any pod the API server would store. */
#define KS_INJECTD_MAX_BODY (4u << 20)
/* The whole request (TLS handshake, head and body) must arrive, and its
 * answer leave, within this: the API server gives up on a webhook after
 * its timeoutSeconds (at most 30 s, default 10 s) anyway. */
#define KS_INJECTD_REQUEST_MS 10000
/* Connections at once per listener: each holds a thread and up to
 * KS_INJECTD_MAX_BODY of body (plus its parse, bounded by admission.h's
 * KS_ADM_MAX_VALUES). More are closed at once (HTTPS) or get a 503
 * (admin), and counted. */
#define KS_INJECTD_MAX_CONNS 32
#define KS_INJECTD_MAX_ADMIN 8
/* Command-line settings applied over the InjectorConfig (at start and at
 * every reload): ks_inject_cfg_set keys and values. */
#define KS_INJECTD_MAX_SETS 8

struct ks_injectd_opts {
	const char *listen; /* HTTPS; NULL: KS_INJECTD_LISTEN_DEFAULT */
	const char *admin;  /* plain HTTP; NULL: KS_INJECTD_ADMIN_DEFAULT; "none": none */
	const char *cert, *key;
	const char *config; /* an InjectorConfig file, or NULL */
	struct {
		const char *key, *value;
	} sets[KS_INJECTD_MAX_SETS];
	size_t nsets;
};

/*
 * Loads the certificate, key and configuration, listens, and serves until
 * SIGTERM or SIGINT; then stops accepting, lets the requests in flight
 * finish (each is bounded by KS_INJECTD_REQUEST_MS) and returns 0. Any
 * start-up failure is logged and returned as -errno (-EINVAL: a file or
 * the configuration is bad). Blocks SIGTERM, SIGINT and SIGHUP in the
 * calling thread (a signalfd reads them) and ignores SIGPIPE.
 */
int ks_injectd_run(const struct ks_injectd_opts *o);

#endif
