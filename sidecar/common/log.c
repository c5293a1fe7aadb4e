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
static _Atomic int ks_log_fmt = KS_LOG_LOGFMT;
static atomic_bool ks_log_access_on = true;

static const char *const ks_level_names[] = {"debug", "info", "warn", "error"};

void ks_log_set_level(enum ks_log_level level)
{
	atomic_store_explicit(&ks_log_min, (int)level, memory_order_relaxed);
}

int ks_log_enabled(enum ks_log_level level)
{
	return (int)level >= atomic_load_explicit(&ks_log_min, memory_order_relaxed);
}

void ks_log_set_format(enum ks_log_format format)
{
	atomic_store_explicit(&ks_log_fmt, (int)format, memory_order_relaxed);
}

void ks_log_set_access(bool on)
{
	atomic_store_explicit(&ks_log_access_on, on, memory_order_relaxed);
}

bool ks_log_access(void)
{
	return atomic_load_explicit(&ks_log_access_on, memory_order_relaxed);
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

/* The JSON output under construction: out[0, len) of cap bytes. */
struct json_out {
	char *out;
	size_t len, cap;
	bool full; /* a field did not fit: the rest is dropped */
};

static void json_put(struct json_out *j, const char *s, size_t n)
{
	if (j->full || j->len + n > j->cap) {
		j->full = true;
		return;
	}
	memcpy(j->out + j->len, s, n);
	j->len += n;
}

/* The length of a valid UTF-8 sequence at s (RFC 3629 section 4), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t want;

	if (c >= 0xc2 && c <= 0xdf)
		want = 2;
	else if (c >= 0xe0 && c <= 0xef)
		want = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		want = 4;
	else
		return 0;
	/* No overlong forms, no surrogates, nothing past U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < want || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < want; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return want;
}

/* s[0, n) as the inside of a JSON string (RFC 8259 section 7). */
static void json_str(struct json_out *j, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t u;
		char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
			json_put(j, esc, 2);
		} else if (c == '\n' || c == '\t' || c == '\r') {
			esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
			json_put(j, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			json_put(j, esc, 6);
		} else if (c < 0x80) {
			json_put(j, s + i, 1);
		} else if ((u = utf8_len((const unsigned char *)s + i, n - i)) > 0) {
			json_put(j, s + i, u);
			i += u;
			continue;
		} else {
			json_put(j, esc, 6); /* not UTF-8: the byte, read as Latin-1 */
		}
		i++;
	}
}

static bool key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* The length of "key" when in[i, len) starts with "key=", else 0. */
static size_t key_at(const char *in, size_t i, size_t len)
{
	size_t k = i;

	while (k < len && key_char(in[k]))
		k++;
	return k > i && k < len && in[k] == '=' ? k - i : 0;
}

/* Whether a value ends at in[i]: the end of the line, or " key=". */
static bool value_end(const char *in, size_t i, size_t len)
{
	return i >= len || (in[i] == ' ' && key_at(in, i + 1, len) > 0);
}

/* An unquoted plain decimal integer that a double holds exactly. */
static bool json_number(const char *key, size_t klen, const char *v, size_t n)
{
	if (n == 0 || n > 15 || (n > 1 && v[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (v[i] < '0' || v[i] > '9')
			return false;
	return !(klen >= 6 && memcmp(key + klen - 6, "serial", 6) == 0);
}

/* One "key":value member; rolled back whole when it does not fit (false). */
static bool json_member(struct json_out *j, size_t nmembers, const char *key, size_t klen,
			const char *v, size_t n, bool quoted)
{
	size_t mark = j->len;

	json_put(j, nmembers ? ",\"" : "\"", nmembers ? 2 : 1);
	json_str(j, key, klen);
	json_put(j, "\":", 2);
	if (!quoted && json_number(key, klen, v, n)) {
		json_put(j, v, n);
	} else {
		json_put(j, "\"", 1);
		json_str(j, v, n);
		json_put(j, "\"", 1);
	}
	if (j->full)
		j->len = mark;
	return !j->full;
}

size_t ks_log_json(char *out, size_t cap, const char *in, size_t len, bool truncated)
{
	static const char trunc[] = ",\"line_truncated\":1";
	struct json_out j = {.out = out};
	size_t i = 0, nmembers = 0;

	if (cap < 64)
		return 0;
	/* Room always kept for the ending: the marker, '}' and '\n'. */
	j.cap = cap - (sizeof(trunc) - 1) - 2;
	json_put(&j, "{", 1);
	while (i < len && !j.full) {
		size_t kstart, klen, vstart, vend;
		bool quoted;

		while (i < len && in[i] == ' ')
			i++;
		if (i >= len)
			break;
		kstart = i;
		klen = key_at(in, i, len);
		if (klen == 0) {
			/* Not a field (a caller's bug): kept whole, not lost. */
			nmembers += json_member(&j, nmembers, "msg", 3, in + i, len - i, true);
			break;
		}
		vstart = i + klen + 1;
		quoted = vstart < len && in[vstart] == '"';
		if (quoted) {
			/* ks_log_field leaves no '"' inside a value: the closing
			 * one is followed by the next field or the end. An
			 * unterminated value (a cut line) runs to the end. */
			vend = ++vstart;
			while (vend < len && !(in[vend] == '"' && value_end(in, vend + 1, len)))
				vend++;
			i = vend < len ? vend + 1 : len;
		} else {
			vend = vstart;
			while (!value_end(in, vend, len))
				vend++;
			i = vend;
		}
		nmembers += json_member(&j, nmembers, in + kstart, klen, in + vstart, vend - vstart,
					quoted);
	}
	if (j.full)
		truncated = true;
	j.full = false;
	j.cap = cap;
	if (truncated)
		json_put(&j, trunc + (nmembers ? 0 : 1), sizeof(trunc) - 1 - (nmembers ? 0 : 1));
	json_put(&j, "}\n", 2);
	return j.len;
}

void ks_log(enum ks_log_level level, const char *fmt, ...)
{
	static const char cut[] = " line_truncated=1";
	char line[2048];
	/* Worst case: every byte of the line escaped as \u00XX. */
	char json[sizeof(line) * 6 + 64];
	const char *buf = line;
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, m;
	bool over;

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
	over = (size_t)n > sizeof(line) - 2;
	if (atomic_load_explicit(&ks_log_fmt, memory_order_relaxed) == KS_LOG_JSON) {
		/* The cut is marked as a field of its own, not inside a value. */
		n = (int)ks_log_json(json, sizeof(json), line, over ? sizeof(line) - 2 : (size_t)n,
				     over);
		buf = json;
	} else {
		if (over) {
			n = (int)(sizeof(line) - sizeof(cut));
			memcpy(line + n, cut, sizeof(cut) - 1);
			n += (int)sizeof(cut) - 1;
		}
		line[n++] = '\n';
	}
	/* One write per line: stderr may be a pipe shared by all workers. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

void ks_cli_vmsg(const char *prog, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}
