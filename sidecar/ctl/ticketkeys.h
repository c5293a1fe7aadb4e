/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl's session ticket keys (ticketkeys.c): the key file that
 * set-ticket-keys sends as a SetTicketKeys, and gen-ticket-key.
 */
#ifndef KS_CTL_TICKETKEYS_H
#define KS_CTL_TICKETKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "ktls/control/v1/control.pb-c.h"
#include "tls/tickets.h"

#define KTLSCTL_TICKET_NAME_LEN KS_TICKET_NAME_LEN
/* One line of the file: the name, then the secret. */
#define KTLSCTL_TICKET_KEY_LEN (KS_TICKET_NAME_LEN + KS_TICKET_SECRET_LEN)

/* The keys of a file, ready to send: m.keys = ptrs, m.n_keys = n. */
struct ktlsctl_ticket_keys {
	Ktls__Control__V1__TicketKey *keys;
	Ktls__Control__V1__TicketKey **ptrs;
	uint8_t *bytes; /* names and secrets: ks_secret_alloc'ed, wiped when freed */
	size_t n;
};

/*
 * Decodes text (the file: one key a line, 96 hex digits, blank lines and
 * '#' comments skipped). Only the hex is checked here; the lengths, names
 * and secrets are the sidecar's to refuse. Returns 0, or -EINVAL/-ENOMEM
 * with err (it names a line, never its contents).
 */
int ktlsctl_ticket_keys_parse(const char *text, struct ktlsctl_ticket_keys *tk, char *err,
			      size_t errlen);
void ktlsctl_ticket_keys_free(struct ktlsctl_ticket_keys *tk);

/* gen-ticket-key [--help]: one random key line on stdout; an exit code. */
int ktlsctl_gen_ticket_key_main(int argc, char **argv);
/* Both commands' lines of ktlsctl --help (and of gen-ticket-key --help). */
#define KTLSCTL_TICKET_KEYS_USAGE                                                                  \
	"  set-ticket-keys FILE|--clear\n"                                                         \
	"                          the session ticket keys the replicas of one service\n"          \
	"                          share, so that one resumes the tickets of another\n"            \
	"                          (replacing the keys in force). FILE (- for standard\n"          \
	"                          input): one key a line, 96 hex digits, the 16-byte\n"           \
	"                          name (32 digits) then the 32-byte secret (64); '#'\n"           \
	"                          comments. The first key seals new tickets, up to 3\n"           \
	"                          more still open them: rotate by putting a new key\n"            \
	"                          first and keeping the old ones for a ticket lifetime.\n"        \
	"                          --clear: back to keys of the sidecar's own (default)\n"         \
	"  gen-ticket-key          prints a new random key line for set-ticket-keys\n"             \
	"                          (getrandom(2)); no sidecar needed. The line is a\n"             \
	"                          secret: keep it as the file is kept\n"

#endif
