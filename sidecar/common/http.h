/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP/1.1 request reader (RFC 9112) of the sidecar's admin endpoint
 * and of the injection webhook (both listeners of `ktlsctl inject --serve`).
 * Deliberately small: each serves a handful of fixed paths, GET or POST,
 * with a Content-Length body at most (the webhook's AdmissionReview). It
 * reads the request line and the header block,
 * checks them strictly, and refuses everything it does not need (chunked
 * bodies, obs-fold, bare CR, absolute-form targets). README.md, "The admin
 * endpoint", says why this is our own code and not a library's.
 */
#ifndef KS_COMMON_HTTP_H
#define KS_COMMON_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* A request head (line and headers) at most this long: then 431. */
#define KS_HTTP_MAX_HEAD 8192
/* The largest max_body: 1 GiB (no overflow while a length is read). */
#define KS_HTTP_BODY_LIMIT  (1ull << 30)
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
 * Parses the request at buf[0..len). A Content-Length over max_body (the
 * caller's bound, at most KS_HTTP_BODY_LIMIT) is -413. Returns 1 when the head is complete
 * (req filled in; the body, content_length bytes, follows at head_len), 0
 * when more bytes are needed, or minus the HTTP status to answer with:
 * -400 malformed, -413 body too large, -414 target too long, -431 head too
 * large, -501 Transfer-Encoding, -505 not HTTP/1.x.
 */
int ks_http_parse(const char *buf, size_t len, uint64_t max_body, struct ks_http_req *req);

const char *ks_http_reason(int status);

#endif
