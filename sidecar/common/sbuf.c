/* SPDX-License-Identifier: Apache-2.0 */
#include "common/sbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

void ks_sb_printf(struct ks_sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->overflow = true;
		return;
	}
	b->len += (size_t)n;
}

int ks_sb_result(const struct ks_sbuf *b)
{
	return b->overflow ? -ENOSPC : (int)b->len;
}
