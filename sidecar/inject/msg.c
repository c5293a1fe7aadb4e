/* SPDX-License-Identifier: Apache-2.0 */
/* The area's small shared helpers (cfg.h). */
#include "inject/cfg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ks_inject_fail(struct ks_inject_msg *msg, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

bool ks_inject_in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}
