/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: one logfmt line per event on stderr ("ts=... level=... event=...
 * key=value"). Lines are built in a stack buffer and written with a single
 * write(2) so lines from different workers never interleave.
 */
#ifndef KS_COMMON_LOG_H
#define KS_COMMON_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum ks_log_level { KS_LOG_DEBUG, KS_LOG_INFO, KS_LOG_WARN, KS_LOG_ERROR };

void ks_log_set_level(enum ks_log_level level);
int ks_log_parse_level(const char *s, enum ks_log_level *out);
int ks_log_enabled(enum ks_log_level level);

/* fmt is the body after "ts=.. level=..": normally starting with "event=".
 * A line over 2 KiB is cut and ends with " line_truncated=1" (long values
 * belong in ks_log_field, so this is a bug, but one that says so). */
void ks_log(enum ks_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Copies untrusted text (OpenSSL error strings, file names) into dst so it
 * can be printed inside double quotes: quotes, backslashes and control bytes
 * become '_'. Returns dst.
 */
char *ks_log_clean(char *dst, size_t dstlen, const char *src);

/*
 * A value that may be long as one log field: a peer's SPIFFE ID (up to 2048
 * bytes, SPIFFE-ID.md 2.3), an OpenSSL error, a path. Cleaned like
 * ks_log_clean; past KS_LOG_FIELD_MAX bytes it is cut and ends with a
 * marker saying how long it was ("...[truncated:2029_bytes]"). A line has
 * a few such fields, so its fixed fields (reason, cipher, byte counts,
 * duration) always fit in it.
 */
#define KS_LOG_FIELD_MAX 256
struct ks_log_field {
	char s[KS_LOG_FIELD_MAX + 1];
};
const char *ks_log_field(struct ks_log_field *f, const char *src);

/*
 * For command-line tools (ktlsctl, ktls-redirect): "PROG: message\n" on
 * stderr, the plain form people read in a terminal, not logfmt.
 */
void ks_cli_vmsg(const char *prog, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define ks_debug(...) ks_log(KS_LOG_DEBUG, __VA_ARGS__)
#define ks_info(...)  ks_log(KS_LOG_INFO, __VA_ARGS__)
#define ks_warn(...)  ks_log(KS_LOG_WARN, __VA_ARGS__)
#define ks_error(...) ks_log(KS_LOG_ERROR, __VA_ARGS__)

#endif
