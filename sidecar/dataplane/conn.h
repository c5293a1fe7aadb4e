/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One proxied connection: a TLS side (the peer sidecar) and a plaintext side
 * (the local app). Owned by exactly one worker and touched by no other
 * thread.
 *
 * States:
 *   SNIFF       inbound: waiting for the client's first byte (within
 *               --first-byte-timeout); with --inbound-mode=permissive it
 *               decides between the TLS handshake and plaintext to the app
 *   RESOLVING   outbound to a name: waiting for its lookup (resolver.h)
 *   CONNECTING  outbound: TCP connect to the remote is in progress
 *   HANDSHAKE   TLS handshake in userspace (tls/handshake.c)
 *   UPSTREAM    inbound: peer authenticated, TCP connect to the app in progress
 *   ESTABLISHED the hand-off point: the handshake is over and not one byte
 *               past it has been read from the TLS socket. offload.c decides
 *               here who owns the record layer (kernel TLS, or OpenSSL)
 *   FORWARDING  bytes move both ways until both directions are shut
 *
 * Lifetime: conn.c alone creates and frees a connection. The record-layer
 * pumps (pump_user.c, pump_splice.c, ctlrec.c) never free it: they return a
 * status, and when the connection must end they say why in c->end (pump.h)
 * and return KS_PUMP_CLOSE; conn.c then logs, resets the side named, and
 * frees. So no callee ever leaves its caller holding a freed connection.
 */
#ifndef KS_DATAPLANE_CONN_H
#define KS_DATAPLANE_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/list.h"
#include "common/net.h"
#include "dataplane/loop/loop.h"
#include "dataplane/settings.h"
#include "tls/handshake.h"
#include "tls/ktls.h"

/* One full TLS record of plaintext (RFC 8446 §5.1: 2^14). */
#define KS_BUF_SIZE 16384

struct ks_worker;
struct ks_identity;
struct ks_conn_res;

struct ks_buf {
	struct ks_buf *next; /* free list */
	uint32_t off, len;
	uint8_t data[KS_BUF_SIZE];
};

enum ks_conn_state {
	KS_ST_SNIFF, /* inbound, permissive: waiting for the first byte */
	KS_ST_CONNECTING,
	KS_ST_HANDSHAKE,
	KS_ST_UPSTREAM,
	KS_ST_ESTABLISHED,
	KS_ST_FORWARDING,
	KS_ST_RESOLVING, /* outbound to a name: its lookup is under way */
};

/* PLAINTEXT: a permissive inbound connection that did not start with TLS,
 * relayed as is to the app (splice, like the kernel path). */
enum ks_record_layer { KS_RL_USERSPACE, KS_RL_KERNEL, KS_RL_PLAINTEXT, KS_RL__COUNT };

const char *ks_rl_name(enum ks_record_layer rl);

/* Which socket of a connection. */
enum ks_side { KS_SIDE_NONE, KS_SIDE_TLS, KS_SIDE_PLAIN };

/*
 * How a forwarding connection ended: reason= on event=conn_close and the
 * reason label of its metric, both named by ks_close_reason_name (stats.c).
 */
enum ks_close_reason {
	KS_CLOSE_DONE,
	KS_CLOSE_IDLE_TIMEOUT,
	KS_CLOSE_SHUTDOWN,
	KS_CLOSE_REVOKED,
	KS_CLOSE_PEER_RESET,
	KS_CLOSE_PEER_ALERT,
	KS_CLOSE_UNCLEAN_EOF,
	KS_CLOSE_TLS_ERROR,
	KS_CLOSE_KEY_UPDATE_UNSUPPORTED,
	KS_CLOSE_APP_RESET,
	KS_CLOSE_APP_ERROR,
	KS_CLOSE_INTERNAL_ERROR,
	KS_CLOSE_OTHER, /* no close gives it; its metric series (0) is kept */
	KS_CLOSE__COUNT
};

/* How a connection ends, decided by whoever saw it, carried out by conn.c. */
struct ks_conn_end {
	bool decided; /* false while open */
	enum ks_close_reason reason;
	enum ks_side rst; /* the side that did not fail: it gets a RST so the failure propagates */
	char detail[192];
};

/*
 * Post-handshake handshake messages on the kernel path (session tickets,
 * KeyUpdate), which may be split across records (RFC 8446 §5.1): the
 * message header collected so far and the body bytes still to skip.
 */
struct ks_hs_reasm {
	uint8_t hdr[4];
	uint8_t hdr_len;
	uint32_t skip; /* body bytes of a NewSessionTicket still to come */
};

struct ks_conn {
	struct ks_list link; /* in the worker's handshake or idle list */
	uint64_t deadline_ms;
	uint64_t start_ms;
	uint64_t id;
	struct ks_worker *wk;
	const struct ks_route *route;
	struct ks_identity *ident; /* the identity this connection started with (a reference) */
	enum ks_conn_state st;
	enum ks_record_layer rl;
	uint8_t fallback;    /* rl is USERSPACE after a TLS handshake: enum ks_fallback (stats.h) */
	bool pending;	     /* counted by admission until it forwards (admission.h) */
	bool slot;	     /* holds one of --max-connections (sh->nforwarding) */
	uint8_t src_key[16]; /* the peer's address, as admission counts it */

	int tls_fd, plain_fd;
	struct ks_watch tls_w, plain_w;
	SSL *ssl;
	struct ks_addr target;	 /* where we connect: app (inbound) or remote */
	struct ks_conn_res *res; /* outbound to a name: its addresses (conn.c) */
	char peer_str[KS_ADDRSTRLEN];
	/* The handshake's view: the peer's ID, why it was refused, and the
	 * traffic secrets, kept after the hand-off only on the kernel path of
	 * a kernel that can take a new key (each KeyUpdate moves one direction
	 * to the next generation). */
	struct ks_tls_peer tls;
	const struct ks_ktls_suite *suite; /* kernel path: the offloaded cipher */

	/* userspace record layer: plaintext->TLS and TLS->plaintext, on demand */
	struct ks_buf *p2t, *t2p;
	/* kernel record layer: the same two directions as pipes for splice(2),
	 * held only while bytes are in flight (pipes.h; -1: none) */
	int p2t_pipe[2], t2p_pipe[2];
	uint32_t p2t_plen, t2p_plen; /* bytes sitting in each pipe */
	struct ks_list pipe_link;    /* on the worker's pipe waiters: none could be had */
	struct ks_hs_reasm hs;
	/* payload bytes that passed through our own memory (recv/send/SSL_*):
	 * on the kernel path only control records, the proof of zero-copy */
	uint64_t ubytes;
	uint64_t bytes_to_peer, bytes_from_peer;
	/* Records sent under the current TX key on the kernel path, an upper
	 * bound (ks_pump_splice counts each splice's bytes in full records). */
	uint64_t tx_records;
	uint8_t plain_eof;     /* app sent FIN */
	uint8_t tls_eof;       /* peer sent close_notify (or EOF) */
	uint8_t tls_unclean;   /* EOF without close_notify: no more TLS writes */
	uint8_t tls_wr_shut;   /* we sent close_notify + FIN to the peer */
	uint8_t plain_wr_shut; /* we sent FIN to the app */
	uint8_t ku_reply;      /* our KeyUpdate is owed before more data: KS_KU_* */
	uint16_t key_updates;  /* KeyUpdates followed, both directions */
	/* Outbound, resumption on, kernel path ahead: the server's
	 * NewSessionTicket has not been read yet. Until it is (or the peer
	 * sends anything else, or ticket_deadline_ms passes), OpenSSL keeps
	 * the record layer, so the ticket is not lost to the kernel (conn.c). */
	uint8_t ticket_wait;
	uint64_t ticket_deadline_ms;
	struct ks_conn_end end;
};

/* Why our KeyUpdate is owed (c->ku_reply; 0: it is not). */
enum { KS_KU_REQUESTED = 1, KS_KU_AEAD_LIMIT = 2 };

/* Takes ownership of fd (accepted on a listener of route), counted as pending under key. */
void ks_conn_accept(struct ks_worker *wk, const struct ks_route *route, int fd,
		    const struct sockaddr *sa, const uint8_t key[16]);
/* The worker was woken: connections waiting for a lookup ask again. May free them. */
void ks_conn_resolved(struct ks_worker *wk);
/* Timer expiry (handshake or idle). Frees c. */
void ks_conn_timeout(struct ks_conn *c);
/* Runs a forwarding connection's pump again (it waited for a pipe). May free c. */
void ks_conn_resume(struct ks_conn *c);
/* Ends c now: logged with reason and detail, RST to rst_side. Frees c. */
void ks_conn_close(struct ks_conn *c, enum ks_close_reason reason, enum ks_side rst_side,
		   const char *detail);
/* Worker shutdown: close without ceremony. Frees c. */
void ks_conn_destroy(struct ks_conn *c, enum ks_close_reason reason);
/* Admission sheds c, still before forwarding, for a newcomer: a reset, no log
 * line of its own (admission counts and logs sheds). Frees c. */
void ks_conn_shed(struct ks_conn *c);

static inline struct ks_conn *ks_conn_of(struct ks_list *l)
{
	return ks_container_of(l, struct ks_conn, link);
}

#endif
