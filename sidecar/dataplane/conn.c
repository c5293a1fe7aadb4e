/* SPDX-License-Identifier: Apache-2.0 */
/* The connection state machine, and the one place a connection ends (conn.h). */
#include "dataplane/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "bpf/redirect.h"
#include "common/log.h"
#include "dataplane/admission.h"
#include "dataplane/loglimit.h"
#include "dataplane/offload.h"
#include "dataplane/pool.h"
#include "dataplane/pump.h"
#include "dataplane/resolver.h"
#include "dataplane/worker.h"
#include "tls/identity.h"
#include "tls/ktls_io.h"
#include "tls/record.h"

static const char *const ks_state_names[] = {"sniff",	    "connecting", "handshake", "upstream",
					     "established", "forwarding", "resolving"};

/* Outbound to a name: the addresses a lookup gave, and the next to try. */
struct ks_conn_res {
	struct ks_list link; /* on wk->resolving while KS_ST_RESOLVING */
	struct ks_conn *c;
	unsigned next;
	struct ks_res_answer ans;
};

static void conn_res_free(struct ks_conn *c)
{
	if (c->res)
		ks_list_del(&c->res->link);
	free(c->res);
}

const char *ks_rl_name(enum ks_record_layer rl)
{
	static const char *const names[KS_RL__COUNT] = {"userspace", "kernel", "plaintext"};

	return (unsigned)rl < KS_RL__COUNT ? names[rl] : "?";
}

static const char *dir_name(const struct ks_conn *c)
{
	return ks_dir_name(c->route->dir);
}

static void on_ready(struct ks_watch *w, uint32_t ev);
static void forward(struct ks_conn *c, const struct ks_watch *woke);
static void connect_app(struct ks_conn *c);
static void start_handshake(struct ks_conn *c);
static void first_byte_seen(struct ks_conn *c);
static int maybe_end_ticket_wait(struct ks_conn *c);

static void conn_free(struct ks_conn *c)
{
	struct ks_worker *wk = c->wk;

	if (c->st == KS_ST_FORWARDING) {
		struct ks_path_stats *ps = &wk->path[c->rl];

		ks_stat_add(&wk->stats.closed[c->route->dir][c->rl], 1);
		atomic_fetch_add_explicit(&ps->conns, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&ps->bytes, c->bytes_to_peer + c->bytes_from_peer,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&ps->ubytes, c->ubytes, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&wk->rejected, 1, memory_order_relaxed);
		if ((unsigned)c->tls.reject < KS_REJ__COUNT) {
			atomic_fetch_add_explicit(&wk->rejected_by[c->tls.reject], 1,
						  memory_order_relaxed);
			ks_stat_add(&wk->stats.hs_failed[c->route->dir][c->tls.reject], 1);
		}
	}
	if (c->pending)
		ks_adm_pending_del(&wk->adm, c->route->dir, c->src_key);
	if (c->slot)
		atomic_fetch_sub_explicit(&wk->sh->nforwarding, 1, memory_order_relaxed);
	ks_list_del(&c->link);
	wk->nconn--;
	ks_loop_del(&wk->loop, &c->tls_w);
	ks_loop_del(&wk->loop, &c->plain_w);
	if (c->tls_fd >= 0)
		close(c->tls_fd);
	if (c->plain_fd >= 0)
		close(c->plain_fd);
	SSL_free(c->ssl);
	ks_list_del(&c->pipe_link);
	ks_pipe_give(&wk->pipes, c->p2t_pipe);
	ks_pipe_give(&wk->pipes, c->t2p_pipe);
	if (c->p2t)
		ks_buf_put(wk, c->p2t);
	if (c->t2p)
		ks_buf_put(wk, c->t2p);
	ks_tls_peer_fini(&c->tls);
	ks_identity_put(c->ident);
	conn_res_free(c);
	atomic_fetch_sub_explicit(&wk->sh->nconns, 1, memory_order_relaxed);
	free(c);
}

/* The peer's SPIFFE ID as a log field: cut with a marker when long. */
static const char *peer_id(const struct ks_conn *c, struct ks_log_field *f)
{
	return c->tls.peer_id ? ks_log_field(f, c->tls.peer_id) : "-";
}

static void log_reject(struct ks_conn *c, const char *detail)
{
	struct ks_log_field id, clean;

	if (!ks_loglimit_conn(c, "handshake_rejected", ks_reject_name(c->tls.reject)))
		return;
	ks_warn("event=handshake_rejected conn=%llu dir=%s listen=%s peer=%s peer_id=%s "
		"reason=%s detail=\"%s\"",
		(unsigned long long)c->id, dir_name(c), c->route->listen_str, c->peer_str,
		peer_id(c, &id), ks_reject_name(c->tls.reject), ks_log_field(&clean, detail));
}

/* Refuses a connection that never reached FORWARDING. */
static void reject(struct ks_conn *c, enum ks_reject why, const char *detail)
{
	c->tls.reject = why;
	log_reject(c, detail);
	conn_free(c);
}

static void log_close(struct ks_conn *c, enum ks_close_reason why, const char *detail)
{
	const char *reason = ks_close_reason_name(why);
	bool done = why == KS_CLOSE_DONE;
	struct ks_log_field id, clean;

	/* A clean end is an info line, one per connection, like an access
	 * log (--access-log off drops it); the warnings are limited. */
	if (done && !ks_log_access())
		return;
	if (!done && !ks_loglimit_conn(c, "conn_close", reason))
		return;
	ks_log(done ? KS_LOG_INFO : KS_LOG_WARN,
	       "event=conn_close conn=%llu dir=%s peer=%s peer_id=%s reason=%s detail=\"%s\" "
	       "bytes_to_peer=%llu bytes_from_peer=%llu record_layer=%s userspace_bytes=%llu "
	       "key_updates=%u duration_ms=%llu",
	       (unsigned long long)c->id, dir_name(c), c->peer_str, peer_id(c, &id), reason,
	       ks_log_field(&clean, detail ? detail : ""), (unsigned long long)c->bytes_to_peer,
	       (unsigned long long)c->bytes_from_peer, ks_rl_name(c->rl),
	       (unsigned long long)c->ubytes, c->key_updates,
	       (unsigned long long)(c->wk->now_ms - c->start_ms));
}

/* The metric of a forwarding connection's end (its log line may be limited). */
static void count_close(struct ks_conn *c, enum ks_close_reason reason)
{
	if (c->st == KS_ST_FORWARDING)
		ks_stat_add(&c->wk->stats.closed_by[c->route->dir][reason], 1);
}

void ks_conn_destroy(struct ks_conn *c, enum ks_close_reason reason)
{
	count_close(c, reason);
	if (c->st == KS_ST_FORWARDING)
		log_close(c, reason, NULL);
	conn_free(c);
}

void ks_conn_shed(struct ks_conn *c)
{
	int fd = c->route->dir == KS_INBOUND ? c->tls_fd : c->plain_fd;

	/* The client sees a reset: its connection did not fail on its own. */
	if (fd >= 0)
		ks_set_rst_on_close(fd);
	c->tls.reject = KS_REJ_SHED;
	conn_free(c);
}

/*
 * An authenticated connection takes one of --max-connections, or is refused
 * (reset, counted and logged by admission). Pending connections never hold
 * one, so they cannot keep an authenticated client out. False when c was
 * freed.
 */
static bool take_slot(struct ks_conn *c)
{
	struct ks_worker *wk = c->wk;
	uint32_t max = wk->sh->cfg->max_connections;

	if (atomic_fetch_add_explicit(&wk->sh->nforwarding, 1, memory_order_relaxed) < max) {
		c->slot = true;
		return true;
	}
	atomic_fetch_sub_explicit(&wk->sh->nforwarding, 1, memory_order_relaxed);
	ks_adm_note(&wk->adm, KS_ADM_REFUSED_CONNECTIONS, wk->now_ms, wk->idx, c->route->listen_str,
		    max);
	ks_conn_shed(c);
	return false;
}

void ks_conn_close(struct ks_conn *c, enum ks_close_reason reason, enum ks_side rst_side,
		   const char *detail)
{
	/* The side that did not fail gets a RST, so the failure propagates
	 * instead of looking like a clean end of stream. */
	if (rst_side != KS_SIDE_NONE)
		ks_set_rst_on_close(rst_side == KS_SIDE_TLS ? c->tls_fd : c->plain_fd);
	count_close(c, reason);
	log_close(c, reason, detail);
	conn_free(c);
}

/* A pump said the connection ends: carry out c->end. */
static void conn_end(struct ks_conn *c)
{
	ks_conn_close(c, c->end.decided ? c->end.reason : KS_CLOSE_INTERNAL_ERROR, c->end.rst,
		      c->end.detail);
}

static int set_wants(struct ks_conn *c, uint32_t tls_want, uint32_t plain_want)
{
	if (ks_loop_want(&c->wk->loop, &c->tls_w, tls_want) < 0 ||
	    ks_loop_want(&c->wk->loop, &c->plain_w, plain_want) < 0)
		return -1;
	return 0;
}

/* woke: the watch whose readiness brought us here (NULL: none, try both). */
static void forward(struct ks_conn *c, const struct ks_watch *woke)
{
	struct ks_wants w = {0};
	enum ks_pump_status st =
	    c->rl == KS_RL_USERSPACE ? ks_pump_user(c, woke, &w) : ks_pump_splice(c, &w);

	/* The server's first record is in: the receive side to the kernel,
	 * and a pass of the splice pump over it. */
	if (st == KS_PUMP_WAIT && c->ticket_wait) {
		int r = maybe_end_ticket_wait(c);

		if (r < 0)
			st = KS_PUMP_CLOSE;
		else if (r > 0)
			st = ks_pump_splice(c, &w);
	}

	if (st == KS_PUMP_WAIT && set_wants(c, w.tls, w.plain) == 0)
		return;
	if (st == KS_PUMP_WAIT)
		ks_pump_close(c, KS_CLOSE_INTERNAL_ERROR, KS_SIDE_NONE,
			      "event loop registration failed");
	conn_end(c);
}

/* Permissive plaintext: the same splice pump, through pipes, with no TLS. */
static int plaintext_open(struct ks_conn *c)
{
	if (!ks_loglimit_conn(c, "conn_open", "plaintext"))
		return 0;
	ks_warn("event=conn_open conn=%llu dir=inbound listen=%s peer=%s peer_id=- tls=- "
		"record_layer=plaintext record_layer_reason=\"permissive: the client did "
		"not start with TLS\"",
		(unsigned long long)c->id, c->route->listen_str, c->peer_str);
	return 0;
}

/* A connection starts forwarding: the counters behind /metrics. */
static void count_open(struct ks_conn *c)
{
	struct ks_wstats *st = &c->wk->stats;
	enum ks_dir dir = c->route->dir;
	uint64_t ms = c->wk->now_ms - c->start_ms;

	ks_stat_add(&st->opened[dir][c->rl], 1);
	ks_stat_add(&st->hs_bucket[dir][ks_hs_bucket_of(ms)], 1);
	ks_stat_add(&st->hs_sum_ms[dir], ms);
	if (c->rl == KS_RL_USERSPACE && c->fallback < KS_FB__COUNT)
		ks_stat_add(&st->fallbacks[c->fallback], 1);
	if (c->rl != KS_RL_PLAINTEXT)
		ks_stat_add(&st->handshakes[dir][c->tls.resumed], 1);
}

/* The record layer is decided: the access log's conn_open line. */
static void log_open(struct ks_conn *c, const char *why)
{
	struct ks_log_field id;
	int group = SSL_get_negotiated_group(c->ssl);

	if (ks_log_access()) /* access log: --access-log off drops it */
		ks_info("event=conn_open conn=%llu dir=%s listen=%s peer=%s peer_id=%s tls=%s "
			"cipher=%s group=%s resumed=%s record_layer=%s record_layer_reason=\"%s\" "
			"identity_serial=%s",
			(unsigned long long)c->id, dir_name(c), c->route->listen_str, c->peer_str,
			peer_id(c, &id), SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
			group ? SSL_group_to_name(c->ssl, group) : "-",
			c->tls.resumed ? "yes" : "no", ks_rl_name(c->rl), why, c->ident->serial);
}

/* What the session is still needed for, once the record layer is decided. */
static void layer_decided(struct ks_conn *c)
{
	if (c->rl == KS_RL_KERNEL) {
		/* The kernel owns the record layer: the session is dead weight. */
		SSL_free(c->ssl);
		c->ssl = NULL;
	} else {
		/* Record boundaries no longer matter: read whole socket buffers,
		 * not a header and then a body per record (half the reads). */
		SSL_set_read_ahead(c->ssl, 1);
		/* Counting records was for the hand-off only. */
		SSL_set_msg_callback(c->ssl, NULL);
	}
	/* On the kernel path no ticket reaches OpenSSL any more; on the
	 * userspace one a client keeps the facts for the tickets to come. */
	if (c->rl == KS_RL_KERNEL) {
		free(c->tls.facts);
		c->tls.facts = NULL;
	}
}

/*
 * Outbound with resumption, where the kernel takes the record layer: the
 * server's NewSessionTicket comes after the handshake, under its
 * application key (RFC 8446 §4.6.1). With the receive side in the kernel
 * from the start, the ticket would be read and dropped (ctlrec.c), and no
 * connection would ever resume. So the transmit side goes to the kernel at
 * once, and the app's bytes to the server are spliced from the start; the
 * receive side stays with OpenSSL (one record at a time, no read-ahead, no
 * auto-retry: nothing past a record leaves the socket) until the server's
 * first record is read, its ticket or anything else, or KS_TICKET_WAIT_MS
 * have passed for a server that sends none. Then the kernel takes it from
 * the next record; a later ticket (OpenSSL servers send two) reaches the
 * kernel, which skips it. OpenSSL may not write any more once the kernel
 * encrypts: its write side is a null BIO, and a KeyUpdate read meanwhile
 * (OpenSSL would answer it) ends the connection.
 */
/* Generous: waiting delays nothing (the transmit side is the kernel's), it
 * only keeps OpenSSL's state that long; a ticket that comes later is lost
 * to the next connection (under ASan in the TCG VM, 200 ms was too short). */
#define KS_TICKET_WAIT_MS 1000

static bool ticket_wait_wanted(const struct ks_conn *c)
{
	return c->route->dir == KS_OUTBOUND && c->ident->res && c->tls.tickets == 0 &&
	       c->tls.seq.rx == 0 && ks_offload_possible(c);
}

/* The kTLS hand-off, or the userspace record layer; logged either way. */
static int handoff(struct ks_conn *c)
{
	bool wait = ticket_wait_wanted(c);
	char why[256];
	BIO *null;

	if ((wait ? ks_offload_handoff_tx(c, why, sizeof(why))
		  : ks_offload_handoff(c, why, sizeof(why))) < 0) {
		reject(c, KS_REJ_KTLS_UNAVAILABLE, why);
		return -1;
	}
	if (wait && c->rl == KS_RL_KERNEL) {
		null = BIO_new(BIO_s_null());
		if (!null) {
			reject(c, KS_REJ_KTLS_UNAVAILABLE, "out of memory");
			return -1;
		}
		SSL_set0_wbio(c->ssl, null);
		SSL_clear_mode(c->ssl, SSL_MODE_AUTO_RETRY);
		c->ticket_wait = 1;
		c->ticket_deadline_ms = c->wk->now_ms + KS_TICKET_WAIT_MS;
		log_open(c, why);
		return 0;
	}
	log_open(c, why);
	layer_decided(c);
	return 0;
}

/*
 * After each pass while the receive side waits: the kernel takes it once a
 * record from the server was read (or the bound passed) and OpenSSL holds
 * nothing, our plaintext from it delivered. 1: it did; 0: not yet; -1: the
 * connection must end (c->end says why).
 */
static int maybe_end_ticket_wait(struct ks_conn *c)
{
	struct ks_log_field id;
	uint64_t from;
	int rc;

	if (c->tls.seq.updated) {
		ks_pump_close(c, KS_CLOSE_KEY_UPDATE_UNSUPPORTED, KS_SIDE_PLAIN,
			      "the server sent a KeyUpdate before its session ticket");
		return -1;
	}
	if (c->tls_eof) { /* nothing more to receive: nothing to hand over */
		c->ticket_wait = 0;
		layer_decided(c);
		return 1; /* the splice pump passes the end on */
	}
	if (c->tls.tickets == 0 && c->tls.seq.rx == 0 && c->wk->now_ms < c->ticket_deadline_ms)
		return 0;
	if (c->t2p || SSL_has_pending(c->ssl))
		return 0;
	rc = ks_offload_rx(c, &from);
	if (rc < 0) {
		ks_pump_close(c, KS_CLOSE_TLS_ERROR, KS_SIDE_PLAIN,
			      "kernel TLS receive after the session ticket: %s", strerror(-rc));
		return -1;
	}
	c->ticket_wait = 0;
	if (ks_log_access())
		ks_info("event=ktls_rx conn=%llu dir=%s peer=%s peer_id=%s from_record=%llu "
			"tickets=%u",
			(unsigned long long)c->id, dir_name(c), c->peer_str, peer_id(c, &id),
			(unsigned long long)from, c->tls.tickets);
	layer_decided(c);
	return 1;
}

static void established(struct ks_conn *c)
{
	struct ks_worker *wk = c->wk;
	uint32_t idle = wk->sh->cfg->idle_timeout_ms;

	c->st = KS_ST_ESTABLISHED;
	if ((c->rl == KS_RL_PLAINTEXT ? plaintext_open(c) : handoff(c)) < 0)
		return;
	/* Authenticated (or relayed as plaintext): no longer admission's. */
	ks_adm_pending_del(&wk->adm, c->route->dir, c->src_key);
	c->pending = false;
	ks_list_del(&c->link);
	c->deadline_ms = idle ? wk->now_ms + idle : UINT64_MAX;
	ks_list_add_tail(&wk->lists[KS_WL_IDLE], &c->link);
	c->st = KS_ST_FORWARDING;
	count_open(c);
	forward(c, NULL);
}

/*
 * A ticket was offered (outbound) or received (inbound) and not used: why,
 * counted and logged once per connection, before the outcome of the full
 * handshake that followed (event=conn_open, or event=handshake_rejected).
 */
static void resume_refused(struct ks_conn *c)
{
	enum ks_resume_why why = (enum ks_resume_why)c->tls.resume_why;

	if (why == KS_RES_OK)
		return;
	c->tls.resume_why = KS_RES_OK;
	ks_stat_add(&c->wk->stats.resume_refused[c->route->dir]
						[why < KS_RES__COUNT ? why : KS_RES_MALFORMED],
		    1);
	if (ks_log_access() && ks_loglimit_conn(c, "resumption_refused", ks_resume_why_name(why)))
		ks_info("event=resumption_refused conn=%llu dir=%s listen=%s peer=%s reason=%s",
			(unsigned long long)c->id, dir_name(c), c->route->listen_str, c->peer_str,
			ks_resume_why_name(why));
}

static void drive_handshake(struct ks_conn *c)
{
	enum ks_hs_status st = ks_handshake_step(c->ssl, &c->tls);
	char detail[256];

	if (st == KS_HS_DONE || st == KS_HS_FAILED)
		resume_refused(c);

	if (st == KS_HS_DONE) {
		if (!take_slot(c))
			return;
		/* Inbound: only an authenticated peer makes us connect to the app. */
		if (c->route->dir == KS_OUTBOUND)
			established(c);
		else
			connect_app(c);
		return;
	}
	if (st != KS_HS_FAILED) {
		if (ks_loop_want(&c->wk->loop, &c->tls_w,
				 st == KS_HS_WANT_READ ? KS_EV_IN : KS_EV_OUT) < 0)
			reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
		return;
	}
	ks_handshake_classify(c->ssl, &c->tls, c->tls.ssl_err, detail, sizeof(detail));
	log_reject(c, detail);
	conn_free(c);
}

/*
 * Inbound, the app did not take the connection (down, or its backlog full):
 * the client gets a fatal internal_error alert (RFC 8446 §6.2), which TLS
 * clients report as an error (curl: "tlsv1 alert internal error", exit 56).
 * A close_notify would read as a clean, empty answer. After the alert comes
 * a FIN, not a reset: a reset that overtakes the client right after its
 * handshake makes it fail on the socket (curl: getpeername ENOTCONN) before
 * it reads the alert. So what the client already sent is read and dropped
 * first, and a client that goes on sending gets the reset from the kernel.
 * With no alert to send (a suite we cannot seal, or permissive plaintext),
 * a reset says it.
 */
static void app_down(struct ks_conn *c, const char *detail)
{
	uint8_t rec[KS_TLS13_ALERT_RECORD_LEN], sink[4096];
	const struct ks_ktls_suite *suite = NULL;
	const SSL_CIPHER *cipher = c->ssl ? SSL_get_current_cipher(c->ssl) : NULL;
	const uint8_t *secret = c->tls.server ? c->tls.secrets.server : c->tls.secrets.client;
	size_t slen = c->tls.server ? c->tls.secrets.server_len : c->tls.secrets.client_len;

	if (cipher && slen && c->tls.seq.tx_app)
		suite = ks_ktls_suite(SSL_CIPHER_get_protocol_id(cipher));
	if (!suite ||
	    ks_tls13_seal_alert(suite, secret, slen, c->tls.seq.tx, SSL_AD_INTERNAL_ERROR, rec) <
		0 ||
	    send(c->tls_fd, rec, sizeof(rec), MSG_NOSIGNAL | MSG_DONTWAIT) !=
		(ssize_t)sizeof(rec)) {
		ks_set_rst_on_close(c->tls_fd);
	} else {
		shutdown(c->tls_fd, SHUT_WR);
		for (int i = 0; i < 16 && recv(c->tls_fd, sink, sizeof(sink), MSG_DONTWAIT) > 0;
		     i++)
			;
	}
	reject(c, KS_REJ_UPSTREAM_FAILED, detail);
}

/* Inbound: connect to the app (after authentication, or for plaintext). */
static void connect_app(struct ks_conn *c)
{
	int fd = ks_connect_start(&c->target);

	if (fd < 0) {
		app_down(c, strerror(-fd));
		return;
	}
	c->plain_fd = fd;
	c->st = KS_ST_UPSTREAM;
	if (ks_loop_add(&c->wk->loop, &c->plain_w, fd, on_ready, c) < 0 ||
	    ks_loop_want(&c->wk->loop, &c->plain_w, KS_EV_OUT) < 0 ||
	    ks_loop_want(&c->wk->loop, &c->tls_w, 0) < 0)
		reject(c, KS_REJ_UPSTREAM_FAILED, "event loop registration failed");
}

/*
 * Inbound, before anything else: the client's first byte, peeked. It must
 * come within --first-byte-timeout. In permissive mode (like Istio's
 * PeerAuthentication PERMISSIVE) it also decides: a TLS connection starts
 * with a handshake record, content type 22 (RFC 8446 §5.1); anything else is
 * plaintext from a client outside the mesh, passed to the app as is and
 * counted apart.
 */
static void sniff(struct ks_conn *c)
{
	uint8_t b;
	ssize_t n = recv(c->tls_fd, &b, 1, MSG_PEEK);

	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		if (ks_loop_want(&c->wk->loop, &c->tls_w, KS_EV_IN) < 0)
			reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
		return;
	}
	if (n <= 0) {
		reject(c, KS_REJ_PEER_CLOSED,
		       n == 0 ? "closed before sending anything" : strerror(errno));
		return;
	}
	first_byte_seen(c);
	/* Strict: OpenSSL judges the bytes (and names a non-TLS client not_tls). */
	if (b == KS_TLS_CT_HANDSHAKE || c->wk->sh->cfg->inbound_mode != KS_INBOUND_PERMISSIVE) {
		start_handshake(c);
		return;
	}
	c->rl = KS_RL_PLAINTEXT;
	if (take_slot(c))
		connect_app(c);
}

static void start_handshake(struct ks_conn *c)
{
	c->ssl = ks_handshake_start(&c->tls, c->tls_fd);
	if (!c->ssl) {
		reject(c, KS_REJ_PROTOCOL_ERROR, "cannot create TLS session");
		return;
	}
	c->st = KS_ST_HANDSHAKE;
	drive_handshake(c);
}

/* The first-byte deadline never outlasts the handshake's. */
static uint32_t first_byte_ms(const struct ks_dp_config *cfg)
{
	return cfg->first_byte_timeout_ms < cfg->handshake_timeout_ms ? cfg->first_byte_timeout_ms
								      : cfg->handshake_timeout_ms;
}

/*
 * The client's first byte arrived: the rest of the handshake gets the whole
 * --handshake-timeout from accept. The list stays ordered by deadline: the
 * connection moves back from the tail past every later deadline (usually
 * none: its new one is the latest).
 */
static void first_byte_seen(struct ks_conn *c)
{
	struct ks_list *head = &c->wk->lists[KS_WL_HS_IN], *at;

	c->deadline_ms = c->start_ms + c->wk->sh->cfg->handshake_timeout_ms;
	ks_list_del(&c->link);
	for (at = head->prev; at != head && ks_conn_of(at)->deadline_ms > c->deadline_ms;)
		at = at->prev;
	ks_list_add_after(at, &c->link);
}

static struct ks_conn *conn_new(struct ks_worker *wk, const struct ks_route *route,
				const uint8_t key[16])
{
	struct ks_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->wk = wk;
	c->route = route;
	c->id = atomic_fetch_add_explicit(&wk->sh->next_conn_id, 1, memory_order_relaxed) + 1;
	c->start_ms = wk->now_ms;
	c->deadline_ms = wk->now_ms + wk->sh->cfg->handshake_timeout_ms;
	/* Inbound: the client speaks first, and soon (deadline_for_first_byte). */
	if (route->dir == KS_INBOUND)
		c->deadline_ms = wk->now_ms + first_byte_ms(wk->sh->cfg);
	c->tls_fd = c->plain_fd = -1;
	c->p2t_pipe[0] = c->p2t_pipe[1] = c->t2p_pipe[0] = c->t2p_pipe[1] = -1;
	c->ident = ks_worker_identity(wk);
	c->tls.server = route->dir == KS_INBOUND;
	c->tls.route = route->listen_str;
	c->tls.expect_id = route->expect_id;
	c->tls.ident = c->ident;
	c->tls.verify_err = X509_V_OK;
	memcpy(c->src_key, key, sizeof(c->src_key)); /* counted as pending by admit() */
	c->pending = true;
	ks_list_add_tail(&wk->lists[ks_wl_handshake(route->dir)], &c->link);
	wk->nconn++;
	return c;
}

/* Inbound: the accepted socket is the TLS side (or plaintext, if sniffed so). */
static void accept_inbound(struct ks_conn *c, int fd, const struct sockaddr *sa)
{
	c->tls_fd = fd;
	c->target = c->route->target;
	ks_addr_str(sa, c->peer_str, sizeof(c->peer_str));
	if (ks_loop_add(&c->wk->loop, &c->tls_w, fd, on_ready, c) < 0) {
		reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
		return;
	}
	c->st = KS_ST_SNIFF;
	sniff(c);
}

/* Where an outbound connection goes: the route's remote, or the original destination. */
/*
 * The redirect's start-up probe destinations (bpf/redirect.h), IPv4,
 * IPv4-mapped or IPv6. Both redirects send them to this listener from every
 * uid, ours included, so that the start-up check's probe comes back to us;
 * the daemon's accept hook takes that one before it gets here.
 */
static bool is_redirect_probe(const struct ks_addr *a)
{
	const struct sockaddr_in *in4 = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
	uint32_t w[4];

	if (a->ss.ss_family == AF_INET)
		return ntohl(in4->sin_addr.s_addr) == KS_REDIR_PROBE_IP4 &&
		       ntohs(in4->sin_port) == KS_REDIR_PROBE_PORT;
	if (a->ss.ss_family != AF_INET6 || ntohs(in6->sin6_port) != KS_REDIR_PROBE_PORT)
		return false;
	memcpy(w, &in6->sin6_addr, sizeof(w));
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return ntohl(w[3]) == KS_REDIR_PROBE_IP4;
	return ntohl(w[0]) == KS_REDIR_PROBE_IP6_W0 && w[1] == 0 && w[2] == 0 &&
	       ntohl(w[3]) == KS_REDIR_PROBE_IP6_W3;
}

static int outbound_target(struct ks_conn *c, int fd)
{
	if (!c->route->transparent) {
		c->target = c->route->target;
		return 0;
	}
	if (ks_original_dst(fd, &c->target) < 0) {
		snprintf(c->peer_str, sizeof(c->peer_str), "unknown");
		reject(c, KS_REJ_UPSTREAM_FAILED,
		       "no original destination (SO_ORIGINAL_DST): not redirected?");
		return -1;
	}
	/* A connection addressed to the listener itself would loop forever. */
	if (ks_addr_equal(&c->target, &c->route->listen)) {
		ks_addr_str((struct sockaddr *)&c->target.ss, c->peer_str, sizeof(c->peer_str));
		reject(c, KS_REJ_UPSTREAM_FAILED,
		       "original destination is this listener (redirect loop)");
		return -1;
	}
	/*
	 * Any other connection to a probe address (an app's) would make us
	 * connect() there, which the redirect sends back to this listener, and
	 * again, until admission sheds: nothing real is ever behind it.
	 */
	if (is_redirect_probe(&c->target)) {
		ks_addr_str((struct sockaddr *)&c->target.ss, c->peer_str, sizeof(c->peer_str));
		reject(c, KS_REJ_UPSTREAM_FAILED,
		       "original destination is the redirect's start-up probe address, which the "
		       "redirect sends back to this listener (a loop): not a destination");
		return -1;
	}
	c->tls.dest = (const struct sockaddr *)&c->target.ss;
	/* Refused before a byte leaves: no policy, no connection. */
	if (c->ident->pol.unknown_dest == KS_UNKNOWN_DEST_REFUSE &&
	    !ks_policy_dest(&c->ident->pol, c->tls.dest)) {
		ks_addr_str(c->tls.dest, c->peer_str, sizeof(c->peer_str));
		reject(c, KS_REJ_NO_DESTINATION_ID,
		       "no expected server ID for this destination (--destination-id, SetPolicy "
		       "destinations) and --unknown-destination refuse");
		return -1;
	}
	return 0;
}

/* Outbound to a name: the next address of its answer, if one is left. */
static bool next_addr(struct ks_conn *c)
{
	if (!c->res || c->res->next >= c->res->ans.n)
		return false;
	c->target = c->res->ans.addrs[c->res->next++];
	return true;
}

/* Outbound: connect to c->target (a name's next address, if that fails at once). */
static void connect_remote(struct ks_conn *c)
{
	int rc;

	for (;;) {
		ks_addr_str((struct sockaddr *)&c->target.ss, c->peer_str, sizeof(c->peer_str));
		rc = ks_connect_start(&c->target);
		if (rc >= 0)
			break;
		if (!next_addr(c)) {
			reject(c, KS_REJ_UPSTREAM_FAILED, strerror(-rc));
			return;
		}
	}
	c->tls_fd = rc;
	c->st = KS_ST_CONNECTING;
	if (ks_loop_add(&c->wk->loop, &c->tls_w, c->tls_fd, on_ready, c) < 0 ||
	    ks_loop_want(&c->wk->loop, &c->tls_w, KS_EV_OUT) < 0)
		reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
}

/* The name did not resolve: the app sees a reset, as for any refusal before forwarding. */
static void resolve_failed(struct ks_conn *c, const char *why)
{
	ks_set_rst_on_close(c->plain_fd);
	reject(c, KS_REJ_RESOLVE_FAILED, why);
}

/*
 * Outbound to a name: its addresses from the resolver's cache, or a wait
 * (RESOLVING, on wk->resolving) until a lookup ends; the resolver then
 * wakes the worker and ks_conn_resolved asks again. The handshake deadline
 * bounds the wait, as it bounds every connection before forwarding.
 */
static void resolve_remote(struct ks_conn *c)
{
	struct ks_worker *wk = c->wk;
	enum ks_res_status st;

	if (!c->res && !(c->res = calloc(1, sizeof(*c->res)))) {
		resolve_failed(c, "out of memory");
		return;
	}
	c->res->c = c;
	st = ks_resolver_get(wk->sh->res, c->route->host, c->route->port, wk->now_ms, wk->wake_fd,
			     &c->res->ans);
	if (st == KS_RES_WAIT) {
		c->st = KS_ST_RESOLVING;
		if (!c->res->link.next)
			ks_list_add_tail(&wk->resolving, &c->res->link);
		return;
	}
	ks_list_del(&c->res->link);
	if (st == KS_RES_FAILED || !next_addr(c)) {
		resolve_failed(c, c->res->ans.why[0] ? c->res->ans.why : "no address");
		return;
	}
	connect_remote(c);
}

void ks_conn_resolved(struct ks_worker *wk)
{
	struct ks_list batch;

	if (ks_list_empty(&wk->resolving))
		return;
	/* Move the whole list to batch: one still waiting puts itself back. */
	ks_list_init(&batch);
	ks_list_add_after(&wk->resolving, &batch);
	ks_list_del(&wk->resolving);
	ks_list_init(&wk->resolving);
	while (!ks_list_empty(&batch)) {
		struct ks_conn_res *r = ks_container_of(batch.next, struct ks_conn_res, link);

		ks_list_del(&r->link);
		resolve_remote(r->c);
	}
}

/* Outbound: the accepted socket is the app's; we connect to the remote sidecar. */
static void accept_outbound(struct ks_conn *c, int fd)
{
	c->plain_fd = fd;
	if (ks_loop_add(&c->wk->loop, &c->plain_w, fd, on_ready, c) < 0) {
		reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
		return;
	}
	if (c->route->host[0]) {
		/* "name:port" until there is an address (ListConnections, the log). */
		snprintf(c->peer_str, sizeof(c->peer_str), "%.*s", (int)sizeof(c->peer_str) - 1,
			 c->route->target_str);
		resolve_remote(c);
		return;
	}
	if (outbound_target(c, fd) < 0)
		return;
	connect_remote(c);
}

void ks_conn_accept(struct ks_worker *wk, const struct ks_route *route, int fd,
		    const struct sockaddr *sa, const uint8_t key[16])
{
	struct ks_conn *c = conn_new(wk, route, key);

	if (!c) {
		ks_adm_pending_del(&wk->adm, route->dir, key);
		ks_error("event=accept_failed listen=%s detail=\"out of memory\"",
			 route->listen_str);
		close(fd);
		atomic_fetch_sub_explicit(&wk->sh->nconns, 1, memory_order_relaxed);
		return;
	}
	if (!c->ident->server_ctx) {
		c->tls_fd = fd; /* closed by reject */
		ks_addr_str(sa, c->peer_str, sizeof(c->peer_str));
		reject(c, KS_REJ_NO_IDENTITY,
		       "no identity yet: waiting for the control plane (SetIdentity)");
		return;
	}
	ks_tune_socket(fd);
	if (route->dir == KS_INBOUND)
		accept_inbound(c, fd, sa);
	else
		accept_outbound(c, fd);
}

void ks_conn_resume(struct ks_conn *c)
{
	if (c->st == KS_ST_FORWARDING)
		forward(c, NULL);
}

void ks_conn_timeout(struct ks_conn *c)
{
	char detail[96];

	if (c->st == KS_ST_FORWARDING) {
		/* Best effort close_notify; the peer may be gone. */
		if (!c->tls_wr_shut && !c->tls_unclean && c->ssl)
			(void)SSL_shutdown(c->ssl);
		else if (!c->tls_wr_shut && c->rl == KS_RL_KERNEL)
			(void)ks_ktls_send_alert(c->tls_fd, 1, 0);
		ERR_clear_error();
		ks_conn_close(c, KS_CLOSE_IDLE_TIMEOUT, KS_SIDE_NONE, NULL);
		return;
	}
	if (c->st == KS_ST_RESOLVING) {
		resolve_failed(c, "no answer from the lookup within --handshake-timeout");
		return;
	}
	if (c->st == KS_ST_SNIFF)
		snprintf(detail, sizeof(detail),
			 "the client sent nothing within %u ms (--first-byte-timeout)",
			 first_byte_ms(c->wk->sh->cfg));
	else
		snprintf(detail, sizeof(detail), "no progress in state %s", ks_state_names[c->st]);
	reject(c, KS_REJ_HANDSHAKE_TIMEOUT, detail);
}

/*
 * Readiness of either socket. Each state arms only the socket it waits for,
 * so the state says what happened: the remote or the app accepted our
 * connect, a handshake record arrived, or bytes can move.
 */
static void on_ready(struct ks_watch *w, uint32_t ev)
{
	struct ks_conn *c = w->owner;
	int rc;

	(void)ev;
	switch (c->st) {
	case KS_ST_SNIFF:
		sniff(c);
		return;
	case KS_ST_CONNECTING:
		rc = ks_connect_result(c->tls_fd);
		if (rc < 0 && next_addr(c)) {
			/* A name's other addresses (another family, another
			 * replica) before giving up. */
			ks_loop_del(&c->wk->loop, &c->tls_w);
			close(c->tls_fd);
			c->tls_fd = -1;
			connect_remote(c);
			return;
		}
		if (rc < 0) {
			reject(c, KS_REJ_UPSTREAM_FAILED, strerror(-rc));
			return;
		}
		/* Connected: the name's other addresses are no longer needed. */
		conn_res_free(c);
		c->res = NULL;
		start_handshake(c);
		return;
	case KS_ST_HANDSHAKE:
		drive_handshake(c);
		return;
	case KS_ST_UPSTREAM:
		rc = ks_connect_result(c->plain_fd);
		if (rc < 0) {
			app_down(c, strerror(-rc));
			return;
		}
		established(c);
		return;
	case KS_ST_FORWARDING:
		forward(c, w);
		return;
	case KS_ST_ESTABLISHED: /* passed through without waiting */
	case KS_ST_RESOLVING:	/* only the resolver's answer moves it on */
		return;
	}
}
