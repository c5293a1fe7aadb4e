/* SPDX-License-Identifier: Apache-2.0 */
#include "common/http.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* tchar (RFC 9110 §5.6.2): the characters of a method or header name. */
static bool tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/*
 * The next line of buf[off..len): its length without the line end in *n,
 * and the offset after the end. RFC 9112 §2.2 lets a recipient take a bare
 * LF as a line end; a CR not followed by LF is malformed. Returns 1, 0 when
 * no line end has arrived yet, or -400.
 */
static int next_line(const char *buf, size_t len, size_t off, size_t *n, size_t *next)
{
	for (size_t i = off; i < len; i++) {
		if (buf[i] == '\n') {
			*n = i - off;
			*next = i + 1;
			return 1;
		}
		if (buf[i] == '\r') {
			if (i + 1 == len)
				return 0;
			if (buf[i + 1] != '\n')
				return -400;
			*n = i - off;
			*next = i + 2;
			return 1;
		}
		if (buf[i] == '\0')
			return -400;
	}
	return 0;
}

static int request_line(const char *l, size_t n, struct ks_http_req *req)
{
	size_t m = 0, t, tlen, plen;

	while (m < n && tchar((unsigned char)l[m]))
		m++;
	if (m == 0 || m > 16 || m >= n || l[m] != ' ')
		return -400;
	if (m == 3 && memcmp(l, "GET", 3) == 0)
		req->method = KS_HTTP_GET;
	else if (m == 4 && memcmp(l, "HEAD", 4) == 0)
		req->method = KS_HTTP_HEAD;
	else if (m == 4 && memcmp(l, "POST", 4) == 0)
		req->method = KS_HTTP_POST;
	else
		req->method = KS_HTTP_OTHER;
	t = m + 1;
	/* origin-form only (RFC 9112 §3.2.1): no proxy requests, no '*'. */
	if (t >= n || l[t] != '/')
		return -400;
	for (tlen = 0; t + tlen < n && l[t + tlen] != ' '; tlen++)
		if ((unsigned char)l[t + tlen] <= 0x20 || (unsigned char)l[t + tlen] >= 0x7f)
			return -400;
	if (t + tlen >= n)
		return -400;
	/* The path ends at the query (buf is not NUL-terminated: no strcspn). */
	for (plen = 0; plen < tlen && l[t + plen] != '?'; plen++)
		;
	if (plen >= sizeof(req->path))
		return -414;
	memcpy(req->path, l + t, plen);
	req->path[plen] = '\0';
	t += tlen + 1;
	/* HTTP-version = "HTTP/" DIGIT "." DIGIT (§2.3): well-formed but not
	 * 1.0 or 1.1 is 505, anything else is malformed. */
	if (n - t != 8 || memcmp(l + t, "HTTP/", 5) != 0 || l[t + 5] < '0' || l[t + 5] > '9' ||
	    l[t + 6] != '.' || l[t + 7] < '0' || l[t + 7] > '9')
		return -400;
	if (l[t + 5] != '1' || (l[t + 7] != '0' && l[t + 7] != '1'))
		return -505;
	req->minor = l[t + 7] - '0';
	return 0;
}

static int header(const char *l, size_t n, uint64_t max_body, struct ks_http_req *req,
		  bool *seen_cl)
{
	size_t c = 0, v, e;
	uint64_t cl = 0;

	/* obs-fold (a line starting with whitespace) is refused (§5.2). */
	while (c < n && tchar((unsigned char)l[c]))
		c++;
	/* No whitespace between the name and the colon (§5.1). */
	if (c == 0 || c >= n || l[c] != ':')
		return -400;
	for (v = c + 1; v < n && (l[v] == ' ' || l[v] == '\t'); v++)
		;
	for (e = n; e > v && (l[e - 1] == ' ' || l[e - 1] == '\t'); e--)
		;
	for (size_t i = v; i < e; i++)
		if (((unsigned char)l[i] < 0x20 && l[i] != '\t') || l[i] == 0x7f)
			return -400;
	if (c == 17 && strncasecmp(l, "transfer-encoding", 17) == 0)
		return -501; /* we take no chunked bodies (§6.1) */
	if (c != 14 || strncasecmp(l, "content-length", 14) != 0)
		return 0;
	if (v == e)
		return -400;
	for (size_t i = v; i < e; i++) {
		if (l[i] < '0' || l[i] > '9')
			return -400;
		if (cl > max_body)
			return -413;
		cl = cl * 10 + (uint64_t)(l[i] - '0');
	}
	/* Two different lengths are how requests get smuggled (§6.3). */
	if (*seen_cl && cl != req->content_length)
		return -400;
	if (cl > max_body)
		return -413;
	*seen_cl = true;
	req->content_length = cl;
	return 0;
}

int ks_http_parse(const char *buf, size_t len, uint64_t max_body, struct ks_http_req *req)
{
	size_t off = 0, n, next;
	bool seen_cl = false;
	unsigned headers = 0;
	int rc;

	memset(req, 0, sizeof(*req));
	if (max_body > KS_HTTP_BODY_LIMIT)
		max_body = KS_HTTP_BODY_LIMIT;
	rc = next_line(buf, len, off, &n, &next);
	if (rc <= 0)
		return rc < 0 ? rc : (len >= KS_HTTP_MAX_HEAD ? -431 : 0);
	if ((rc = request_line(buf, n, req)) < 0)
		return rc;
	off = next;
	for (;;) {
		rc = next_line(buf, len, off, &n, &next);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return len >= KS_HTTP_MAX_HEAD ? -431 : 0;
		if (next > KS_HTTP_MAX_HEAD)
			return -431;
		if (n == 0)
			break;
		if (++headers > KS_HTTP_MAX_HEADERS)
			return -431;
		if ((rc = header(buf + off, n, max_body, req, &seen_cl)) < 0)
			return rc;
		off = next;
	}
	req->head_len = next;
	return 1;
}

const char *ks_http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 202:
		return "Accepted";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}
