/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One proxied connection: a TLS side (the peer sidecar) and a plaintext side
 * (the local app). Owned by exactly one worker and touched by no other
 * thread.
 *
 * States:
 *   SNIFF       inbound with --inbound-mode=permissive: the first byte decides
 *               between the TLS handshake and plaintext straight to the app
 *   CONNECTING  outbound: TCP connect to the remote is in progress
 *   HANDSHAKE   TLS handshake in userspace (handshake.c)
 *   UPSTREAM    inbound: peer authenticated, TCP connect to the app in progress
 *   ESTABLISHED the hand-off point: the handshake is over and not one byte
 *               past it has been read from the TLS socket. offload.c decides
 *               here who owns the record layer (kernel TLS, or OpenSSL)
 *   FORWARDING  bytes move both ways until both directions are shut
 */
#ifndef KS_CONN_H
#define KS_CONN_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"
#include "handshake.h"
#include "loop.h"
#include "ktls.h"
#include "net.h"

/* One full TLS record of plaintext (RFC 8446 §5.1: 2^14). */
#define KS_BUF_SIZE 16384

struct ks_worker;
struct ks_identity;

struct ks_list {
	struct ks_list *prev, *next;
};

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
};

/* PLAINTEXT: a permissive inbound connection that did not start with TLS,
 * relayed as is to the app (splice, like the kernel path). */
enum ks_record_layer { KS_RL_USERSPACE, KS_RL_KERNEL, KS_RL_PLAINTEXT, KS_RL__COUNT };

const char *ks_rl_name(enum ks_record_layer rl);

struct ks_conn {
	struct ks_list link; /* in the worker's handshake or idle list */
	uint64_t deadline_ms;
	uint64_t start_ms;
	uint64_t id;
	struct ks_worker *wk;
	const struct ks_route *route;
	struct ks_identity *ident; /* the identity this connection started with */
	enum ks_conn_state st;
	enum ks_record_layer rl;

	int tls_fd, plain_fd;
	struct ks_watch tls_w, plain_w;
	SSL *ssl;
	struct ks_addr target; /* where we connect: app (inbound) or remote */
	char peer_str[KS_ADDRSTRLEN];
	char *peer_id;
	/* the peer leaf's issuer (X509_NAME_hash_ex) and serial, for CRLs
	 * pushed after the handshake (RFC 5280 §4.1.2.2: at most 20 octets) */
	unsigned long peer_issuer_hash;
	uint8_t peer_serial[20];
	uint8_t peer_serial_len;

	/* handshake diagnostics, filled by the verify callback */
	enum ks_reject reject;
	const char *reject_why;
	long verify_err;
	int ssl_err;

	/* Traffic secrets: from the keylog callback to the hand-off, and kept
	 * after it only on the kernel path of a kernel that can take a new key
	 * (each KeyUpdate moves one direction to the next generation). Inline:
	 * no allocation to fail or to outlive the handshake's heap. */
	struct ks_ktls_secrets secrets;
	const struct ks_ktls_suite *suite; /* kernel path: the offloaded cipher */
	struct ks_ktls_seq seq;		   /* records under the application keys so far */

	/* userspace record layer: plaintext->TLS and TLS->plaintext, on demand */
	struct ks_buf *p2t, *t2p;
	/* kernel record layer: the same two directions as pipes for splice(2) */
	int p2t_pipe[2], t2p_pipe[2];
	uint32_t p2t_plen, t2p_plen; /* bytes sitting in each pipe */
	/* payload bytes that passed through our own memory (recv/send/SSL_*):
	 * on the kernel path only control records, the proof of zero-copy */
	uint64_t ubytes;
	uint64_t bytes_to_peer, bytes_from_peer;
	uint8_t plain_eof;     /* app sent FIN */
	uint8_t tls_eof;       /* peer sent close_notify (or EOF) */
	uint8_t tls_unclean;   /* EOF without close_notify: no more TLS writes */
	uint8_t tls_wr_shut;   /* we sent close_notify + FIN to the peer */
	uint8_t plain_wr_shut; /* we sent FIN to the app */
	uint8_t ku_reply;      /* the peer asked for our KeyUpdate: owed before more data */
	uint16_t key_updates;  /* KeyUpdates followed, both directions */
};

/* Takes ownership of fd (accepted on a listener of route). */
void ks_conn_accept(struct ks_worker *wk, const struct ks_route *route, int fd,
		    const struct sockaddr *sa);
/* Timer expiry (handshake or idle). */
void ks_conn_timeout(struct ks_conn *c);
/* Worker shutdown: close without ceremony. */
void ks_conn_destroy(struct ks_conn *c, const char *reason);

/* For the record-layer pumps (conn.c: userspace, splice.c: kernel). */
void ks_conn_done(struct ks_conn *c);
/* The peer sent FIN without close_notify: no more reads, logged once. */
void ks_conn_unclean_eof(struct ks_conn *c);
/*
 * Shared tail of both pumps: FIN to the app once the peer's data is flushed,
 * and the end of the connection once both directions are shut. Returns true
 * when c was freed.
 */
bool ks_conn_finish_step(struct ks_conn *c, bool t2p_flushed, bool *progress);
void ks_conn_abort(struct ks_conn *c, int rst_fd, const char *reason, const char *detail);
void ks_conn_touch(struct ks_conn *c);
/* Returns -1 when c was freed (registration failed). */
int ks_conn_set_wants(struct ks_conn *c, uint32_t tls_want, uint32_t plain_want);
void ks_splice_pump(struct ks_conn *c);

#endif
