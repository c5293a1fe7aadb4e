/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Text into a fixed buffer, one printf at a time: an overflow is remembered
 * (sticky) and checked once at the end, instead of after every call.
 */
#ifndef KS_COMMON_SBUF_H
#define KS_COMMON_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct ks_sbuf {
	char *p;
	size_t len, cap;
	bool overflow;
};

__attribute__((format(printf, 2, 3))) void ks_sb_printf(struct ks_sbuf *b, const char *fmt, ...);
/* The length written, or -ENOSPC if it did not all fit. */
int ks_sb_result(const struct ks_sbuf *b);

#endif
