/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the data plane is told at start-up: its routes and its limits.
 * Immutable once the workers start, and shared by all of them without a
 * lock. The daemon's configuration (daemon/config.h) holds one of these.
 */
#ifndef KS_DATAPLANE_SETTINGS_H
#define KS_DATAPLANE_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net.h"
#include "dataplane/loop/loop.h"

enum ks_dir { KS_INBOUND, KS_OUTBOUND };
enum ks_ktls_mode { KS_KTLS_AUTO, KS_KTLS_OFF, KS_KTLS_REQUIRE };
/* PERMISSIVE: plaintext inbound goes to the app (counted apart). */
enum ks_inbound_mode { KS_INBOUND_STRICT, KS_INBOUND_PERMISSIVE };

struct ks_route {
	enum ks_dir dir;
	bool transparent; /* outbound: destination from SO_ORIGINAL_DST */
	struct ks_addr listen;
	struct ks_addr target; /* inbound: local app; outbound: remote sidecar */
	/* Outbound REMOTE given as a name: looked up when a connection needs it
	 * (dataplane/resolver.h), target unused; "" for an IP literal. */
	char host[KS_HOST_NAME_MAX];
	uint16_t port; /* with host */
	char listen_str[KS_ADDRSTRLEN];
	char target_str[KS_HOST_NAME_MAX + 8]; /* "name:port" for a host */
	char *expect_id; /* outbound: server SPIFFE ID pattern, NULL = own trust domain */
};

struct ks_dp_config {
	struct ks_route *routes;
	size_t nroutes;
	enum ks_inbound_mode inbound_mode;
	unsigned workers;
	uint32_t first_byte_timeout_ms; /* inbound: connect to the client's first byte */
	uint32_t handshake_timeout_ms;
	uint32_t idle_timeout_ms;
	uint32_t drain_timeout_ms;
	uint32_t dns_refresh_ms; /* an outbound name's answer is used this long (resolver.h) */
	uint32_t drain_delay_ms; /* inbound listeners stay open this long into a drain */
	uint32_t drain_quiet_ms; /* then a worker leaves once it has held nothing this long */
	uint32_t max_connections;
	uint32_t max_handshakes;	    /* pending (not yet forwarding), per direction */
	uint32_t max_handshakes_per_source; /* pending inbound, per source address */
	uint32_t max_pipes; /* splice path: pipes in all workers (dataplane/pipes.h) */
	/* Kernel path: our KeyUpdate after this many records under one key,
	 * below the AEAD limits (RFC 8446 §5.5); 0: never. */
	uint32_t key_update_records;
	enum ks_io_mode io;
	enum ks_ktls_mode ktls;
};

const char *ks_dir_name(enum ks_dir dir);
const char *ks_ktls_mode_name(enum ks_ktls_mode mode);

#endif
