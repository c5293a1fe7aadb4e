/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SPIFFE Workload API client (SPIFFE_Workload_API.md, X.509-SVID
 * profile): one FetchX509SVID server stream, held open on the agent's Unix
 * socket, each response applied as a whole (svid.h).
 *
 * gRPC is spoken directly: HTTP/2 from libnghttp2 (its session API, fed by
 * our own nonblocking socket I/O), the messages from protobuf-c, the gRPC
 * framing and status in grpc.h. README.md, "The SPIFFE Workload API", says
 * why not gRPC's C core.
 *
 * Threading: the client has a thread of its own (ks_wapi_start). It blocks
 * in poll(2) on the socket and an eventfd (the stop), so it neither waits
 * behind the control API's requests nor makes them wait behind a TLS
 * context build, and the main thread's tick is not tied to a socket. What
 * it shares with the rest is the identity slot, through the slot's
 * update_mu and one pointer swap (tls/identity.h), and its counters.
 */
#ifndef KS_WAPI_WAPI_H
#define KS_WAPI_WAPI_H

#include <stdbool.h>
#include <stddef.h>

#include "tls/identity.h"

/* The agent's socket path, at most sun_path's size. */
#define KS_WAPI_PATH_MAX 108

/*
 * An endpoint address as SPIFFE_Workload_Endpoint.md §4 writes it,
 * "unix:///path" or "unix:/path", into an absolute socket path. A bare
 * absolute path is taken too when bare_ok (our flag; the environment
 * variable must be a URI). Other schemes (tcp:) are refused: the sidecar
 * only speaks to an agent on its own node. 0, or -EINVAL with err.
 */
int ks_wapi_addr_parse(const char *in, bool bare_ok, char path[KS_WAPI_PATH_MAX], char *err,
		       size_t errlen);

struct ks_wapi;

/*
 * Starts the client's thread on path. It connects, streams, and reconnects
 * with backoff until ks_wapi_stop; nothing it meets is fatal, so only
 * setup can fail (-errno with err). tls and slot outlive the client.
 */
int ks_wapi_start(const char *path, const struct ks_tls_opts *tls, struct ks_identity_slot *slot,
		  struct ks_wapi **out, char *err, size_t errlen);
/* Stops and joins the thread; NULL is fine. */
void ks_wapi_stop(struct ks_wapi *w);

/* Backoff before reconnect attempt n (0-based), jittered into [d/2, d]
 * with r in [0, 1): d = min(KS_WAPI_BACKOFF_MIN_MS << n, ..._MAX_MS). */
#define KS_WAPI_BACKOFF_MIN_MS 200
#define KS_WAPI_BACKOFF_MAX_MS 5000
unsigned ks_wapi_backoff_ms(unsigned n, double r);

#endif
