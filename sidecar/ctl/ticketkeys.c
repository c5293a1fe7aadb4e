/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl's session ticket keys: the file set-ticket-keys sends
 * (SetTicketKeys, proto/ktls/control/v1/control.proto) and the line
 * gen-ticket-key prints.
 *
 * The file is text, one key a line: 96 hex digits, the key's 16-byte name
 * (32 digits) then its 32-byte secret (64 digits), the way `openssl rand
 * -hex 48` or `ktlsctl gen-ticket-key` prints one. The first key seals new
 * tickets, the others only open them. Blank lines and lines starting with
 * '#' are skipped. Text rather than nginx's binary ssl_session_ticket_key
 * files (one key of 48 or 80 raw bytes each): a Kubernetes Secret or a
 * config tool carries a line of hex as is, and the order of the keys, the
 * one thing a rotation changes, can be read and edited. Here only the hex
 * is checked, so that a key's length, a name given twice, an all-zero
 * secret or too many keys are refused by the sidecar itself, with its
 * reason, and the keys in force stay.
 *
 * What the file holds is secret: it is read into wiped memory
 * (ktlsctl_read_file), decoded into more of it, and never printed.
 */
#include "ctl/ticketkeys.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/secret.h"
#include "ctl/client.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The start of the line that holds s. */
static const char *line_start(const char *text, const char *s)
{
	while (s > text && s[-1] != '\n')
		s--;
	return s;
}

static bool blank(int c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

void ktlsctl_ticket_keys_free(struct ktlsctl_ticket_keys *tk)
{
	ks_secret_free(tk->bytes);
	free(tk->keys);
	free(tk->ptrs);
	memset(tk, 0, sizeof(*tk));
}

int ktlsctl_ticket_keys_parse(const char *text, struct ktlsctl_ticket_keys *tk, char *err,
			      size_t errlen)
{
	const char *p = text;
	size_t lines = 1, off = 0, lineno = 0;

	memset(tk, 0, sizeof(*tk));
	for (const char *c = text; *c; c++)
		lines += *c == '\n';
	/* Every decoded byte takes two characters of text: enough for all. */
	tk->bytes = ks_secret_alloc(strlen(text) / 2 + 1);
	tk->keys = calloc(lines, sizeof(*tk->keys));
	tk->ptrs = calloc(lines, sizeof(*tk->ptrs));
	if (!tk->bytes || !tk->keys || !tk->ptrs) {
		snprintf(err, errlen, "out of memory");
		ktlsctl_ticket_keys_free(tk);
		return -ENOMEM;
	}
	while (*p) {
		const char *end = strchr(p, '\n'), *s = p, *e;
		size_t digits, nlen, start = off;

		if (!end)
			end = p + strlen(p);
		lineno++;
		while (s < end && blank(*s))
			s++;
		e = end;
		while (e > s && blank(e[-1]))
			e--;
		p = *end ? end + 1 : end;
		if (s == e || *s == '#')
			continue;
		digits = (size_t)(e - s);
		for (size_t i = 0; i < digits; i++)
			if (hexval(s[i]) < 0) {
				/* Where, not what: the line is a secret. */
				snprintf(err, errlen,
					 "line %zu, column %zu: not a hex digit (a key is 96 hex "
					 "digits: the name's 32, then the secret's 64)",
					 lineno, (size_t)(s - line_start(text, s)) + i + 1);
				ktlsctl_ticket_keys_free(tk);
				return -EINVAL;
			}
		if (digits % 2) {
			snprintf(err, errlen,
				 "line %zu: an odd number of hex digits (%zu; a key is 96: the "
				 "name's 32, then the secret's 64)",
				 lineno, digits);
			ktlsctl_ticket_keys_free(tk);
			return -EINVAL;
		}
		for (size_t i = 0; i < digits; i += 2)
			tk->bytes[off++] = (uint8_t)(hexval(s[i]) << 4 | hexval(s[i + 1]));
		/* The name is the first 16 bytes (or what there is of them), the
		 * secret the rest: their lengths are the sidecar's to check. */
		nlen =
		    off - start < KTLSCTL_TICKET_NAME_LEN ? off - start : KTLSCTL_TICKET_NAME_LEN;
		ktls__control__v1__ticket_key__init(&tk->keys[tk->n]);
		tk->keys[tk->n].name.data = tk->bytes + start;
		tk->keys[tk->n].name.len = nlen;
		tk->keys[tk->n].secret.data = tk->bytes + start + nlen;
		tk->keys[tk->n].secret.len = off - start - nlen;
		tk->ptrs[tk->n] = &tk->keys[tk->n];
		tk->n++;
	}
	if (!tk->n) {
		snprintf(err, errlen,
			 "no key in it (one a line, 96 hex digits; set-ticket-keys --clear goes "
			 "back to the sidecar's own keys)");
		ktlsctl_ticket_keys_free(tk);
		return -EINVAL;
	}
	return 0;
}

int ktlsctl_gen_ticket_key_main(int argc, char **argv)
{
	static const char digits[] = "0123456789abcdef";
	uint8_t key[KTLSCTL_TICKET_KEY_LEN];
	KS_WIPE_AT_EXIT(key);
	char line[2 * KTLSCTL_TICKET_KEY_LEN + 1];
	KS_WIPE_AT_EXIT(line);
	size_t got = 0, done = 0;

	if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
		fputs(KTLSCTL_TICKET_KEYS_USAGE, stdout);
		return EX_OK;
	}
	if (argc > 0)
		return ktlsctl_usage_error("gen-ticket-key takes no arguments (got '%s')", argv[0]);
	/* getrandom(2) blocks only until the kernel's pool is initialized,
	 * and then never returns short for 48 bytes; loop anyway. */
	while (got < sizeof(key)) {
		ssize_t n = getrandom(key + got, sizeof(key) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ktlsctl_log("getrandom: %s", strerror(errno));
			return EX_LOCAL;
		}
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(key); i++) {
		line[2 * i] = digits[key[i] >> 4];
		line[2 * i + 1] = digits[key[i] & 15];
	}
	line[2 * KTLSCTL_TICKET_KEY_LEN] = '\n';
	/* write(2), not stdio: the secret must not linger in a FILE's buffer. */
	while (done < sizeof(line)) {
		ssize_t n = write(STDOUT_FILENO, line + done, sizeof(line) - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ktlsctl_log("cannot write the key: %s", strerror(errno));
			return EX_LOCAL;
		}
		done += (size_t)n;
	}
	return EX_OK;
}
