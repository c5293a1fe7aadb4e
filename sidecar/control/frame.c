/* SPDX-License-Identifier: Apache-2.0 */
#include "control/frame.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/secret.h"

int ks_ctl_frame_pack(const ProtobufCMessage *m, bool secret, uint8_t **out, size_t *outlen)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf;

	if (n > UINT32_MAX)
		return -E2BIG;
	buf = secret ? ks_secret_alloc(KS_CTL_HDR + n) : malloc(KS_CTL_HDR + n);
	if (!buf)
		return -ENOMEM;
	ks_ctl_frame_put(buf, (uint32_t)n);
	protobuf_c_message_pack(m, buf + KS_CTL_HDR);
	*out = buf;
	*outlen = KS_CTL_HDR + n;
	return 0;
}

void ks_frame_rd_init(struct ks_frame_rd *r, uint32_t max)
{
	memset(r, 0, sizeof(*r));
	r->max = max;
}

void ks_frame_space(struct ks_frame_rd *r, uint8_t **p, size_t *n)
{
	if (r->hdr_got < KS_CTL_HDR) {
		*p = r->hdr + r->hdr_got;
		*n = KS_CTL_HDR - r->hdr_got;
	} else {
		*p = r->body + r->got;
		*n = r->len - r->got;
	}
}

enum ks_frame_st ks_frame_advance(struct ks_frame_rd *r, size_t n)
{
	if (r->hdr_got < KS_CTL_HDR) {
		r->hdr_got += (uint32_t)n;
		if (r->hdr_got < KS_CTL_HDR)
			return KS_FRAME_MORE;
		r->len = ks_ctl_frame_len(r->hdr);
		if (r->len > r->max)
			return KS_FRAME_TOO_LARGE;
		r->body = ks_secret_alloc(r->len ? r->len : 1);
		if (!r->body)
			return KS_FRAME_NOMEM;
		r->got = 0;
	} else {
		r->got += (uint32_t)n;
	}
	return r->got == r->len ? KS_FRAME_READY : KS_FRAME_MORE;
}

uint32_t ks_frame_partial(const struct ks_frame_rd *r)
{
	return r->hdr_got < KS_CTL_HDR ? r->hdr_got : KS_CTL_HDR + r->got;
}

void ks_frame_next(struct ks_frame_rd *r)
{
	ks_secret_free(r->body);
	r->body = NULL;
	r->hdr_got = r->len = r->got = 0;
}

void ks_frame_rd_fini(struct ks_frame_rd *r)
{
	ks_frame_next(r);
}

static void *pb_alloc(void *data, size_t size)
{
	(void)data;
	return ks_secret_alloc(size);
}

static void pb_free(void *data, void *p)
{
	(void)data;
	ks_secret_free(p);
}

ProtobufCAllocator ks_pb_secret_allocator = {.alloc = pb_alloc, .free = pb_free};

int ks_control_check_socket(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		int e = errno;

		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s is not a socket", path);
		return -ENOTSOCK;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen,
			 "%s has mode %04o: group or others could drive the sidecar (want 0600)",
			 path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}
