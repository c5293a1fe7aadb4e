/* SPDX-License-Identifier: Apache-2.0 */
#include "common/parse.h"

#include <errno.h>
#include <string.h>

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Leading digits of s into *v (saturating at UINT64_MAX with *over set);
 * returns where they end. No digit at all leaves *end == s.
 */
static const char *digits(const char *s, uint64_t *v, bool *over)
{
	*v = 0;
	*over = false;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (*v > (UINT64_MAX - d) / 10)
			*over = true;
		else
			*v = *v * 10 + d;
	}
	return s;
}

int ks_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	const char *end;
	uint64_t v;
	bool over;

	if (!s)
		return -EINVAL;
	end = digits(s, &v, &over);
	if (end == s || *end)
		return -EINVAL;
	if (over || v > max)
		return -ERANGE;
	*out = (unsigned long)v;
	return 0;
}

int ks_parse_port(const char *s, bool allow_zero, uint16_t *out)
{
	unsigned long v;
	int rc = ks_parse_uint(s, 65535, &v);

	if (rc < 0)
		return rc;
	if (v == 0 && !allow_zero)
		return -ERANGE;
	*out = (uint16_t)v;
	return 0;
}

int ks_parse_size(const char *s, uint64_t max, uint64_t *out)
{
	const char *end;
	unsigned shift = 0;
	uint64_t v;
	bool over;

	if (!s)
		return -EINVAL;
	end = digits(s, &v, &over);
	if (end == s)
		return -EINVAL;
	switch (*end) {
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case '\0':
		break;
	default:
		return -EINVAL;
	}
	if (shift && end[1])
		return -EINVAL;
	if (over || v > (UINT64_MAX >> shift) || (v << shift) > max)
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int ks_parse_duration_ms(const char *s, uint32_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60000}, {"h", 3600000}};
	const char *end, *frac = NULL;
	uint64_t whole, part = 0, scale = 1, ms;
	bool over;
	size_t i;

	if (!s)
		return -EINVAL;
	end = digits(s, &whole, &over);
	if (end == s)
		return -EINVAL;
	if (*end == '.') {
		frac = end + 1;
		/* At most 9 fraction digits matter below a millisecond of an hour. */
		for (end = frac; is_digit(*end); end++) {
			if (end - frac < 9) {
				part = part * 10 + (uint64_t)(*end - '0');
				scale *= 10;
			}
		}
		if (end == frac)
			return -EINVAL;
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].unit) == 0)
			break;
	if (i == sizeof(units) / sizeof(units[0]))
		return -EINVAL;
	if (over || whole > UINT32_MAX)
		return -ERANGE;
	ms = whole * units[i].ms; /* < 2^32 * 3.6e6 < 2^64 */
	if (frac)
		ms += part * units[i].ms / scale;
	if (ms > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)ms;
	return 0;
}
