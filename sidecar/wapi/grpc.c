/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC message framing and status (grpc.h). No I/O and no HTTP/2: a pure
 * decoder, tested on its own (tests/unit/wapi/test_grpc.c).
 */
#include "wapi/grpc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void ks_grpc_prefix(uint8_t out[KS_GRPC_PREFIX], uint32_t len)
{
	out[0] = 0; /* Compressed-Flag: not compressed */
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

void ks_grpc_dec_init(struct ks_grpc_dec *d, uint32_t max)
{
	memset(d, 0, sizeof(*d));
	d->max = max;
}

void ks_grpc_dec_fini(struct ks_grpc_dec *d)
{
	free(d->msg);
	d->msg = NULL;
}

static int fail(struct ks_grpc_dec *d, int rc)
{
	d->failed = true;
	free(d->msg);
	d->msg = NULL;
	return rc;
}

int ks_grpc_dec_feed(struct ks_grpc_dec *d, const uint8_t *in, size_t len, ks_grpc_msg_fn fn,
		     void *arg, char *err, size_t errlen)
{
	int rc;

	if (d->failed) {
		snprintf(err, errlen, "the stream failed earlier");
		return -EPROTO;
	}
	while (len > 0) {
		if (d->nhdr < KS_GRPC_PREFIX) {
			size_t take = KS_GRPC_PREFIX - d->nhdr;

			if (take > len)
				take = len;
			memcpy(d->hdr + d->nhdr, in, take);
			d->nhdr += take;
			in += take;
			len -= take;
			if (d->nhdr < KS_GRPC_PREFIX)
				break;
			if (d->hdr[0] != 0) {
				snprintf(err, errlen,
					 "a compressed message (flag %u), which we never asked for",
					 d->hdr[0]);
				return fail(d, -EPROTO);
			}
			d->len = (uint32_t)d->hdr[1] << 24 | (uint32_t)d->hdr[2] << 16 |
				 (uint32_t)d->hdr[3] << 8 | d->hdr[4];
			if (d->len > d->max) {
				snprintf(err, errlen, "a message of %u bytes, over the limit of %u",
					 d->len, d->max);
				return fail(d, -EMSGSIZE);
			}
			d->nmsg = 0;
			/* +1: malloc(0) may return NULL */
			if (!(d->msg = malloc((size_t)d->len + 1))) {
				snprintf(err, errlen, "out of memory");
				return fail(d, -ENOMEM);
			}
		}
		if (d->nmsg < d->len) {
			size_t take = d->len - d->nmsg;

			if (take > len)
				take = len;
			memcpy(d->msg + d->nmsg, in, take);
			d->nmsg += (uint32_t)take;
			in += take;
			len -= take;
		}
		if (d->nmsg == d->len) {
			uint8_t *m = d->msg;

			d->msg = NULL;
			d->nhdr = 0;
			rc = fn(arg, m, d->len);
			free(m);
			if (rc < 0) {
				snprintf(err, errlen, "the message was not taken");
				return fail(d, rc);
			}
		}
	}
	return 0;
}

bool ks_grpc_dec_idle(const struct ks_grpc_dec *d)
{
	return !d->failed && d->nhdr == 0;
}

void ks_grpc_status_init(struct ks_grpc_status *s)
{
	memset(s, 0, sizeof(*s));
	s->grpc_status = -1;
}

static bool is(const char *name, size_t nlen, const char *want)
{
	return nlen == strlen(want) && memcmp(name, want, nlen) == 0;
}

static int parse_int(const char *v, size_t vlen, int max)
{
	int n = 0;

	if (vlen == 0 || vlen > 9)
		return -1;
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	return n <= max ? n : -1;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void ks_grpc_status_header(struct ks_grpc_status *s, const char *name, size_t nlen,
			   const char *value, size_t vlen)
{
	if (is(name, nlen, ":status")) {
		s->http_status = parse_int(value, vlen, 999);
	} else if (is(name, nlen, "content-type")) {
		/* "application/grpc" [("+proto" / "+json" / {custom})] with
		 * optional parameters; only protobuf is ours. */
		static const char base[] = "application/grpc";
		size_t b = sizeof(base) - 1;

		s->content_type_seen = true;
		s->content_type_ok = vlen >= b && strncasecmp(value, base, b) == 0 &&
				     (vlen == b || value[b] == ';' ||
				      (vlen >= b + 6 && strncasecmp(value + b, "+proto", 6) == 0 &&
				       (vlen == b + 6 || value[b + 6] == ';')));
	} else if (is(name, nlen, "grpc-status")) {
		s->grpc_status = parse_int(value, vlen, 255);
		if (s->grpc_status < 0)
			s->grpc_status = 2; /* UNKNOWN: an unparsable status is a failure */
	} else if (is(name, nlen, "grpc-message")) {
		/* Percent-encoded (PROTOCOL-HTTP2.md); kept printable for the log. */
		size_t o = 0;

		for (size_t i = 0; i < vlen && o + 1 < sizeof(s->grpc_message); i++) {
			int c = (unsigned char)value[i];

			if (c == '%' && i + 2 < vlen && hexval(value[i + 1]) >= 0 &&
			    hexval(value[i + 2]) >= 0) {
				c = hexval(value[i + 1]) << 4 | hexval(value[i + 2]);
				i += 2;
			}
			s->grpc_message[o++] = (char)(c >= 0x20 && c < 0x7f ? c : '?');
		}
		s->grpc_message[o] = '\0';
	}
}

const char *ks_grpc_code_name(int code)
{
	static const char *const names[] = {
	    "OK",
	    "CANCELLED",
	    "UNKNOWN",
	    "INVALID_ARGUMENT",
	    "DEADLINE_EXCEEDED",
	    "NOT_FOUND",
	    "ALREADY_EXISTS",
	    "PERMISSION_DENIED",
	    "RESOURCE_EXHAUSTED",
	    "FAILED_PRECONDITION",
	    "ABORTED",
	    "OUT_OF_RANGE",
	    "UNIMPLEMENTED",
	    "INTERNAL",
	    "UNAVAILABLE",
	    "DATA_LOSS",
	    "UNAUTHENTICATED",
	};

	return code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]) ? names[code]
									    : "UNKNOWN";
}
