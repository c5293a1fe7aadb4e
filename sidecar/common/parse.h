/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one parser for the numbers people type: flags, environment variables,
 * the redirect manifest, ktlsctl arguments. One set of rules everywhere:
 * ASCII decimal digits only (no sign, no leading blank, no hex, no
 * exponent, no "nan" or "inf"), the whole string consumed, and a value that
 * does not fit is an error rather than a wrap or a clamp.
 *
 * Each returns 0, -EINVAL for text that is not of the form, or -ERANGE for
 * a well-formed value beyond the limit.
 */
#ifndef KS_COMMON_PARSE_H
#define KS_COMMON_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* "0".."max". */
int ks_parse_uint(const char *s, unsigned long max, unsigned long *out);

/* A TCP port, 1-65535; 0 too when allow_zero ("pick one for me"). */
int ks_parse_port(const char *s, bool allow_zero, uint16_t *out);

/*
 * A byte count: digits with an optional K, M or G (powers of 1024, either
 * case), at most max.
 */
int ks_parse_size(const char *s, uint64_t max, uint64_t *out);

/*
 * A duration: digits, an optional fraction (".5"), then a unit: ms, s, m or
 * h; no unit means seconds. "250ms", "1.5s", "2m", "1h". At most
 * UINT32_MAX milliseconds; a fraction finer than a millisecond is dropped.
 */
int ks_parse_duration_ms(const char *s, uint32_t *out);

#endif
