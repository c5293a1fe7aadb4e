/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fail closed, loudly: with --redirect-check, the sidecar proves at start-up
 * that the pod's traffic redirection (`ktls-redirect install`, BPF
 * or iptables) really reaches it, and refuses to start otherwise, naming
 * what is missing. Silent redirect failures cost users of other meshes hours.
 *
 * Threading: the main thread runs the check after the workers listen. The
 * probe connection arrives at a worker like any other; the worker recognizes
 * it by its source port (probe_port), answers through probe_result and
 * closes it. Both are atomics in struct ks_shared.
 */
#ifndef KS_DAEMON_REDIRECT_CHECK_H
#define KS_DAEMON_REDIRECT_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "redirect/manifest.h"

struct ks_config;
struct ks_shared;
struct ks_route;

enum ks_probe_result {
	KS_PROBE_NONE,	  /* nothing arrived (yet) */
	KS_PROBE_OK,	  /* arrived, original destination is the probe address */
	KS_PROBE_NO_ORIG, /* arrived, but getsockopt(SO_ORIGINAL_DST) failed */
};

/*
 * The whole check: manifest, this process against it (uid, routes, kernel),
 * then a real connect to the probe address. 0, or -errno with what is
 * missing in err.
 */
int ks_redirect_check(struct ks_shared *sh, const struct ks_config *cfg, uint32_t timeout_ms,
		      char *err, size_t errlen);

/*
 * Worker side, installed as the data plane's accept hook (ks_accept_hook):
 * if fd, accepted on route from peer, is the start-up probe, records what
 * it carried, closes fd and returns true.
 */
bool ks_redirect_probe_take(struct ks_shared *sh, const struct ks_route *route, int fd,
			    const struct sockaddr *peer);

#endif
