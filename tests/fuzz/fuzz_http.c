/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the HTTP request reader (common/http.c) of the admin
 * endpoint and the webhook, which reads whatever any process that reaches
 * their ports sends (with the admin endpoint's body bound). The
 * input is copied to a buffer of exactly its size, so ASan catches any read
 * past it (the reader must not rely on a NUL). Checked properties:
 *   - it never crashes, and returns 1, 0 or one of its documented statuses;
 *   - a complete head lies within the input and the head bound, its path
 *     starts with '/' and holds no byte outside 0x21-0x7e, and its body
 *     length is within the body bound;
 *   - "need more" never happens once the input reaches the head bound;
 *   - the verdict on a complete head does not change when bytes follow it.
 *
 *   make fuzz                          (FUZZ_SECS, default 300)
 *   build/fuzz/fuzz_http tests/fuzz/corpus/http
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/http.h"

#define BODY 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ks_http_req req, again;
	char *buf = malloc(size ? size : 1);
	int rc;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	rc = ks_http_parse(buf, size, BODY, &req);
	switch (rc) {
	case 1:
		if (req.head_len > size || req.head_len > KS_HTTP_MAX_HEAD)
			abort();
		if (req.path[0] != '/' || req.content_length > BODY)
			abort();
		for (const char *p = req.path; *p; p++)
			if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
				abort();
		if (req.minor != 0 && req.minor != 1)
			abort();
		/* The head alone reads the same. */
		if (ks_http_parse(buf, req.head_len, BODY, &again) != 1 ||
		    again.head_len != req.head_len || strcmp(again.path, req.path) != 0)
			abort();
		break;
	case 0:
		if (size >= KS_HTTP_MAX_HEAD)
			abort();
		break;
	case -400:
	case -413:
	case -414:
	case -431:
	case -501:
	case -505:
		break;
	default:
		abort();
	}
	free(buf);
	return 0;
}
