/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control API's wire framing, shared by the server (control/server.c)
 * and its clients (ktlsctl): a 4-byte big-endian length, then that many
 * bytes of a protobuf message (proto/ktls/control/v1/control.proto).
 *
 * Requests may carry a private key (SetIdentity) or ticket key secrets
 * (SetTicketKeys), so what holds them is wiped when freed: the frame
 * reader's body, the packed request, and the messages decoded with
 * ks_pb_secret_allocator.
 */
#ifndef KS_CONTROL_FRAME_H
#define KS_CONTROL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define KS_CTL_HDR 4

/* Where a sidecar serves the API unless told otherwise (--control-socket). */
#define KS_CONTROL_SOCKET_DEFAULT "/run/ktls-sidecar/control.sock"

/* Writes the 4-byte header for a payload of len bytes. */
static inline void ks_ctl_frame_put(uint8_t *hdr, uint32_t len)
{
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
}

/* The frame length in a 4-byte header. */
static inline uint32_t ks_ctl_frame_len(const uint8_t *hdr)
{
	return (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
}

/*
 * Packs m as one frame into *out (*outlen bytes, header included), in
 * memory from ks_secret_alloc when secret (free it with ks_secret_free),
 * else from malloc. Returns 0 or -ENOMEM.
 */
int ks_ctl_frame_pack(const ProtobufCMessage *m, bool secret, uint8_t **out, size_t *outlen);

/*
 * Reads frames from a byte stream without ever reading past the end of one:
 * the caller asks where the next bytes go (ks_frame_space), reads at most
 * that many there, and reports them (ks_frame_advance). A frame longer
 * than max is refused as soon as its header is in, before any body byte is
 * buffered.
 */
struct ks_frame_rd {
	uint32_t max;
	uint8_t hdr[KS_CTL_HDR];
	uint32_t hdr_got;
	uint8_t *body; /* ks_secret_alloc'ed */
	uint32_t len, got;
};

enum ks_frame_st {
	KS_FRAME_MORE,	    /* keep reading */
	KS_FRAME_READY,	    /* body[0..len) is one whole frame's payload */
	KS_FRAME_TOO_LARGE, /* len > max: nothing more should be read */
	KS_FRAME_NOMEM,
};

void ks_frame_rd_init(struct ks_frame_rd *r, uint32_t max);
void ks_frame_space(struct ks_frame_rd *r, uint8_t **p, size_t *n);
enum ks_frame_st ks_frame_advance(struct ks_frame_rd *r, size_t n);
/* Bytes of an unfinished frame received so far (0 between frames). */
uint32_t ks_frame_partial(const struct ks_frame_rd *r);
/* Drops the frame just handled (wiping it) and starts the next one. */
void ks_frame_next(struct ks_frame_rd *r);
void ks_frame_rd_fini(struct ks_frame_rd *r);

/* protobuf-c allocations wiped when freed (ks_secret_alloc). */
extern ProtobufCAllocator ks_pb_secret_allocator;

/*
 * Checks that an existing control socket is mode 0600 (no group or other
 * access). Returns 0 or -errno with the reason in err; the server checks
 * the socket it made, ktlsctl the one it is about to use.
 */
int ks_control_check_socket(const char *path, char *err, size_t errlen);

#endif
