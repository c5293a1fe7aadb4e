/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parts of gRPC (doc/PROTOCOL-HTTP2.md in grpc/grpc) a Workload API
 * client needs, without HTTP/2 itself (client.c drives nghttp2):
 *
 *  - the Length-Prefixed-Message framing of a stream's DATA: a 1-byte
 *    Compressed-Flag, a 4-byte big-endian Message-Length, the message;
 *  - the response's status: HTTP :status 200 and content-type
 *    application/grpc in the headers, grpc-status (and grpc-message) in the
 *    trailers, or all of it in one trailers-only HEADERS frame.
 *
 * We never ask for compression (no grpc-accept-encoding), so a compressed
 * message is a protocol error, as is one above the decoder's limit.
 */
#ifndef KS_WAPI_GRPC_H
#define KS_WAPI_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KS_GRPC_PREFIX 5
/* gRPC's own default for a received message. A response carries a few
 * certificates and keys per SVID: kilobytes. */
#define KS_GRPC_MAX_MSG (4u << 20)

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
void ks_grpc_prefix(uint8_t out[KS_GRPC_PREFIX], uint32_t len);

/*
 * Reassembles messages from a stream's DATA, which HTTP/2 cuts anywhere.
 * One per stream; feed it every chunk in order.
 */
struct ks_grpc_dec {
	uint8_t hdr[KS_GRPC_PREFIX];
	size_t nhdr;   /* bytes of hdr filled */
	uint8_t *msg;  /* the message being filled, once hdr is complete */
	uint32_t len;  /* its length */
	uint32_t nmsg; /* bytes of it filled */
	uint32_t max;  /* largest message accepted */
	bool failed;   /* sticky: the stream is unusable */
};

void ks_grpc_dec_init(struct ks_grpc_dec *d, uint32_t max);
void ks_grpc_dec_fini(struct ks_grpc_dec *d);

/*
 * Called with each complete message (borrowed: valid during the call).
 * A negative return stops the feed and is returned by it.
 */
typedef int (*ks_grpc_msg_fn)(void *arg, const uint8_t *msg, size_t len);

/*
 * Consumes len bytes. Returns 0; the callback's negative value; -EPROTO
 * (compressed message) or -EMSGSIZE (over max) with err; -ENOMEM. After
 * any error the decoder refuses everything (-EPROTO).
 */
int ks_grpc_dec_feed(struct ks_grpc_dec *d, const uint8_t *in, size_t len, ks_grpc_msg_fn fn,
		     void *arg, char *err, size_t errlen);
/* Whether the stream ended between messages (a cut message is an error). */
bool ks_grpc_dec_idle(const struct ks_grpc_dec *d);

/*
 * A response's status, from its header fields, as they come (headers and
 * trailers alike).
 */
struct ks_grpc_status {
	int http_status;      /* :status, 0 until seen */
	bool content_type_ok; /* content-type application/grpc[+proto|;...] */
	bool content_type_seen;
	int grpc_status;	/* -1 until seen */
	char grpc_message[256]; /* percent-decoded, printable */
};

void ks_grpc_status_init(struct ks_grpc_status *s);
/* Takes one header field (HPACK-decoded name and value). */
void ks_grpc_status_header(struct ks_grpc_status *s, const char *name, size_t nlen,
			   const char *value, size_t vlen);
/* The canonical name of a gRPC status code ("UNAVAILABLE"); "UNKNOWN" if out of range. */
const char *ks_grpc_code_name(int code);

#endif
