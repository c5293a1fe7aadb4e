/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: SPIFFE ID parsing and pattern matching (tls/spiffe.c),
 * what every handshake's authorization rests on. The input is a pattern and
 * an ID separated by the first NUL. Checked properties:
 *   - validation never reads past the string and never crashes;
 *   - a valid ID is a valid pattern, and matches itself;
 *   - a match implies the ID is valid and the pattern is valid;
 *   - a match of a pattern without '*' is string equality;
 *   - an ID is in the trust domain that ks_spiffe_trust_domain extracts,
 *     and that domain is a prefix of the ID after "spiffe://".
 *
 *   make fuzz                            (FUZZ_SECS, default 300)
 *   build/fuzz/fuzz_spiffe tests/fuzz/corpus/spiffe
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/spiffe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_id(const char *id)
{
	char td[KS_SPIFFE_TD_MAX + 1];
	const char *why;

	if (ks_spiffe_validate(id, &why) < 0)
		return;
	if (ks_spiffe_pattern_validate(id, &why) < 0)
		abort(); /* every ID is a pattern that matches only itself */
	if (!ks_spiffe_match(id, id))
		abort();
	if (ks_spiffe_trust_domain(id, td, sizeof(td)) < 0)
		abort();
	if (strncmp(id + strlen("spiffe://"), td, strlen(td)) != 0 ||
	    id[strlen("spiffe://") + strlen(td)] != '/')
		abort();
	if (!ks_spiffe_in_trust_domain(id, td))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 2), *pattern, *id;
	const char *why;
	bool valid_pattern, valid_id, match;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = '\0';
	pattern = buf;
	id = buf + strlen(buf) + 1; /* "" when there is no NUL */
	check_id(pattern);
	check_id(id);
	valid_pattern = ks_spiffe_pattern_validate(pattern, &why) == 0;
	valid_id = ks_spiffe_validate(id, &why) == 0;
	match = ks_spiffe_match(pattern, id);
	if (match && (!valid_id || !valid_pattern))
		abort();
	if (valid_pattern && valid_id && !strchr(pattern, '*') &&
	    match != (strcmp(pattern, id) == 0))
		abort();
	free(buf);
	return 0;
}
