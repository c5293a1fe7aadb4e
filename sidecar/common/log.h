/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: one logfmt line per event on stderr ("ts=... level=... event=...
 * key=value"). Lines are built in a stack buffer and written with a single
 * write(2) so lines from different workers never interleave.
 */
#ifndef KS_COMMON_LOG_H
#define KS_COMMON_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum ks_log_level { KS_LOG_DEBUG, KS_LOG_INFO, KS_LOG_WARN, KS_LOG_ERROR };

void ks_log_set_level(enum ks_log_level level);
int ks_log_parse_level(const char *s, enum ks_log_level *out);
int ks_log_enabled(enum ks_log_level level);

/*
 * --log-format: LOGFMT writes the line as built; JSON converts each finished
 * line into one JSON object (ks_log_json), still one write(2) per line.
 */
enum ks_log_format { KS_LOG_LOGFMT, KS_LOG_JSON };
void ks_log_set_format(enum ks_log_format format);

/*
 * --access-log: whether the per-connection info lines (conn_open and a
 * clean conn_close, reason=done) are written. Warnings and errors about a
 * connection are not access log and are always written. Default on.
 */
void ks_log_set_access(bool on);
bool ks_log_access(void);

/*
 * The JSON form of one logfmt line in[0, len) ("ts=.. level=.. event=..
 * key=value key="quoted value"), as ks_log builds it: one object with the
 * keys in line order and a '\n', written to out. Values are JSON strings,
 * except an unquoted plain decimal integer of up to 15 digits (exact in a
 * double), which is a number, unless its key ends in "serial" (certificate
 * serials are hex that may look decimal). Quoted values are parsed as
 * ks_log_field leaves them (no '"' or '\' inside; a '"' that is not
 * followed by " key=" or the end is kept as text). Text that is not a
 * key=value field goes into "msg". Control bytes are escaped, valid UTF-8
 * passes, any other byte becomes \u00XX (its Latin-1 reading). truncated
 * (the line was cut) adds "line_truncated":1; so does an out too small for
 * every field, which then ends at the last field that fits. The result is
 * always one valid JSON object. Returns the bytes written, 0 if cap < 64.
 */
size_t ks_log_json(char *out, size_t cap, const char *in, size_t len, bool truncated);

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
