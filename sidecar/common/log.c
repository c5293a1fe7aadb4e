/* SPDX-License-Identifier: Apache-2.0 */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int ks_log_min = KS_LOG_INFO;

static const char *const ks_level_names[] = {"debug", "info", "warn", "error"};

void ks_log_set_level(enum ks_log_level level)
{
	atomic_store_explicit(&ks_log_min, (int)level, memory_order_relaxed);
}

int ks_log_enabled(enum ks_log_level level)
{
	return (int)level >= atomic_load_explicit(&ks_log_min, memory_order_relaxed);
}

int ks_log_parse_level(const char *s, enum ks_log_level *out)
{
	for (size_t i = 0; i < sizeof(ks_level_names) / sizeof(ks_level_names[0]); i++) {
		if (strcasecmp(s, ks_level_names[i]) == 0) {
			*out = (enum ks_log_level)i;
			return 0;
		}
	}
	return -1;
}

char *ks_log_clean(char *dst, size_t dstlen, const char *src)
{
	size_t i = 0;

	if (dstlen == 0)
		return dst;
	for (; src && src[i] && i + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = (c < 0x20 || c == 0x7f || c == '"' || c == '\\') ? '_' : (char)c;
	}
	dst[i] = '\0';
	return dst;
}

const char *ks_log_field(struct ks_log_field *f, const char *src)
{
	static const char mark[] = "...[truncated:%zu_bytes]";
	size_t len = src ? strlen(src) : 0;
	char tail[sizeof(mark) + 20];
	size_t keep;

	if (len <= KS_LOG_FIELD_MAX)
		return ks_log_clean(f->s, sizeof(f->s), src);
	snprintf(tail, sizeof(tail), mark, len);
	keep = KS_LOG_FIELD_MAX - strlen(tail);
	ks_log_clean(f->s, keep + 1, src);
	memcpy(f->s + keep, tail, strlen(tail) + 1);
	return f->s;
}

void ks_log(enum ks_log_level level, const char *fmt, ...)
{
	static const char cut[] = " line_truncated=1";
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, m;

	if (!ks_log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, ks_level_names[level]);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2) {
		n = (int)(sizeof(line) - sizeof(cut));
		memcpy(line + n, cut, sizeof(cut) - 1);
		n += (int)sizeof(cut) - 1;
	}
	line[n++] = '\n';
	/* One write per line: stderr may be a pipe shared by all workers. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

void ks_cli_vmsg(const char *prog, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}
