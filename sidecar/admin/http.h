/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admin endpoint's HTTP/1.1 request reader (RFC 9112). Deliberately
 * small: the admin surface is a handful of fixed paths, GET or POST, with
 * no request body we use. It reads the request line and the header block,
 * checks them strictly, and refuses everything it does not need (chunked
 * bodies, obs-fold, bare CR, absolute-form targets). README.md, "The admin
 * endpoint", says why this is our own code and not a library's.
 */
#ifndef KS_ADMIN_HTTP_H
#define KS_ADMIN_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* A request head (line and headers) at most this long: then 431. */
#define KS_HTTP_MAX_HEAD 8192
/* A body we accept (and drop) at most this long: then 413. */
#define KS_HTTP_MAX_BODY    1024
#define KS_HTTP_MAX_PATH    256
#define KS_HTTP_MAX_HEADERS 64

enum ks_http_method { KS_HTTP_GET, KS_HTTP_HEAD, KS_HTTP_POST, KS_HTTP_OTHER };

struct ks_http_req {
	enum ks_http_method method;
	char path[KS_HTTP_MAX_PATH]; /* origin-form, without the query */
	int minor;		     /* HTTP/1.minor: 0 or 1 */
	uint64_t content_length;
	size_t head_len; /* bytes of request line and headers, blank line included */
};

/*
 * Parses the request at buf[0..len). Returns 1 when the head is complete
 * (req filled in; the body, content_length bytes, follows at head_len), 0
 * when more bytes are needed, or minus the HTTP status to answer with:
 * -400 malformed, -413 body too large, -414 target too long, -431 head too
 * large, -501 Transfer-Encoding, -505 not HTTP/1.x.
 */
int ks_http_parse(const char *buf, size_t len, struct ks_http_req *req);

const char *ks_http_reason(int status);

#endif
