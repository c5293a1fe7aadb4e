/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The record-layer pumps: they move bytes of a FORWARDING connection until
 * both sockets would block, then tell conn.c what to wait for, or that the
 * connection ends. They never free it (conn.h, "Lifetime").
 *
 *   pump_user.c    OpenSSL's userspace record layer, one 16 KiB buffer per
 *                  direction
 *   pump_splice.c  the kernel record layer (and permissive plaintext):
 *                  splice(2) through pipes, zero-copy
 *   ctlrec.c       the non-data records a kTLS socket hands back: alerts,
 *                  session tickets, KeyUpdate
 */
#ifndef KS_DATAPLANE_PUMP_H
#define KS_DATAPLANE_PUMP_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/conn.h"

enum ks_pump_status {
	KS_PUMP_WAIT,  /* nothing more now: wait for wants (may be both ready: a yield) */
	KS_PUMP_CLOSE, /* c->end says how it ends */
};

/* What a connection waits for on each socket (KS_EV_* bits). */
struct ks_wants {
	uint32_t tls, plain;
};

/* woke: the watch whose readiness brought us here (NULL: none, try both). */
enum ks_pump_status ks_pump_user(struct ks_conn *c, const struct ks_watch *woke,
				 struct ks_wants *w);
enum ks_pump_status ks_pump_splice(struct ks_conn *c, struct ks_wants *w);
/*
 * The userspace pump's receive half alone (SSL_read -> app): the kernel
 * path's receive side while an outbound connection reads its server's
 * session ticket through OpenSSL (c->ticket_wait, conn.c). Adds to want
 * and progress.
 */
enum ks_pump_status ks_pump_user_rx(struct ks_conn *c, struct ks_wants *want, bool *progress);

/* --- shared by the pumps (pump.c) --- */

/* Records how c ends (detail printf-style). Returns KS_PUMP_CLOSE. */
__attribute__((format(printf, 4, 5))) enum ks_pump_status ks_pump_close(struct ks_conn *c,
									enum ks_close_reason reason,
									enum ks_side rst,
									const char *fmt, ...);

/* An error on the app's socket: reset the peer side so the failure propagates. */
enum ks_pump_status ks_pump_app_failed(struct ks_conn *c, int err);

/* The peer sent FIN without close_notify: no more reads, logged once. */
void ks_pump_unclean_eof(struct ks_conn *c);

/* Traffic moved: push the idle deadline (re-queued at most once a second). */
void ks_conn_touch(struct ks_conn *c);

enum ks_round {
	KS_ROUND_AGAIN, /* progress, budget left: another pass */
	KS_ROUND_YIELD, /* progress, out of budget: wait for what is ready, after the others */
	KS_ROUND_WAIT,	/* no progress: wait */
	KS_ROUND_CLOSE, /* c->end is set */
};

/*
 * The end of one pass of a pump, shared by both: FIN to the app once the
 * peer's data is flushed (t2p_flushed), the end of the connection once both
 * directions are shut (c->end: "done", or "unclean_eof" for a FIN without
 * close_notify, which may be a truncation, RFC 8446 §6.1), the idle clock,
 * and the budget.
 */
enum ks_round ks_pump_round(struct ks_conn *c, bool t2p_flushed, bool progress, int budget);

/* --- ctlrec.c: the kernel path's non-data records --- */

enum ks_rec_status {
	KS_REC_NONE,	 /* nothing to read yet */
	KS_REC_PROGRESS, /* handled (c->tls_eof may now be set) */
	KS_REC_CLOSE,	 /* c->end is set */
};

/* Reads and handles the non-data record at the head of the receive queue. */
enum ks_rec_status ks_ctlrec_read(struct ks_conn *c);

/* Sends the KeyUpdate the peer asked for (c->ku_reply) and moves TLS_TX on. */
enum ks_rec_status ks_ctlrec_key_update_reply(struct ks_conn *c);

#endif
