/* SPDX-License-Identifier: Apache-2.0 */
#include "dataplane/offload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "common/log.h"
#include "common/secret.h"
#include "dataplane/conn.h"
#include "dataplane/stats.h"
#include "tls/ktls.h"
#include "tls/ktls_io.h"

/* Written once by the main thread before the workers start, then read-only. */
static enum ks_ktls_mode ks_mode;
static unsigned ks_caps;
static char ks_probe_why[200];

void ks_offload_probe(enum ks_ktls_mode mode)
{
	ks_mode = mode;
	if (mode == KS_KTLS_OFF) {
		snprintf(ks_probe_why, sizeof(ks_probe_why), "disabled by --ktls=off");
		ks_info("event=ktls_probe mode=off");
		return;
	}
	ks_caps = ks_ktls_probe(ks_probe_why, sizeof(ks_probe_why));
	ks_log(ks_caps ? KS_LOG_INFO : (mode == KS_KTLS_REQUIRE ? KS_LOG_ERROR : KS_LOG_WARN),
	       "event=ktls_probe mode=%s aes128gcm=%s aes256gcm=%s chacha20poly1305=%s "
	       "rekey=%s detail=\"%s%s\"",
	       ks_ktls_mode_name(mode), ks_caps & KS_KTLS_CAP_AES128 ? "yes" : "no",
	       ks_caps & KS_KTLS_CAP_AES256 ? "yes" : "no",
	       ks_caps & KS_KTLS_CAP_CHACHA ? "yes" : "no",
	       ks_caps & KS_KTLS_CAP_REKEY ? "yes" : "no", ks_probe_why,
	       !ks_caps && mode == KS_KTLS_REQUIRE ? "; --ktls=require: every connection "
						     "will be refused"
						   : "");
}

unsigned ks_offload_caps(const char **why)
{
	*why = ks_probe_why;
	return ks_caps;
}

/* Returns 0 with the socket offloaded (its transmit side alone with
 * tx_only), 1 to stay in userspace (why says why), or -errno when the
 * socket is unusable. */
static int try_offload(struct ks_conn *c, char *why, size_t whylen, bool tx_only)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
	const struct ks_ktls_suite *suite;
	union ks_ktls_crypto_info tx, rx;
	KS_WIPE_AT_EXIT(tx);
	KS_WIPE_AT_EXIT(rx);
	socklen_t txlen, rxlen;
	const uint8_t *txs, *rxs;
	size_t txslen, rxslen;
	const char *step;
	bool server = c->tls.server;
	int rc;

	if (ks_mode == KS_KTLS_OFF) {
		c->fallback = KS_FB_DISABLED;
		snprintf(why, whylen, "%s", ks_probe_why);
		return 1;
	}
	if (SSL_version(c->ssl) != TLS1_3_VERSION) {
		c->fallback = KS_FB_TLS12;
		snprintf(why, whylen, "%s session: kernel offload is for TLS 1.3 only",
			 SSL_get_version(c->ssl));
		return 1;
	}
	if (!ks_caps) {
		c->fallback = KS_FB_KERNEL;
		snprintf(why, whylen, "%s", ks_probe_why);
		return 1;
	}
	suite = cipher ? ks_ktls_suite(SSL_CIPHER_get_protocol_id(cipher)) : NULL;
	if (!suite || !(ks_caps & ks_ktls_suite_cap(suite))) {
		c->fallback = KS_FB_CIPHER;
		snprintf(why, whylen, "this kernel cannot offload %s",
			 cipher ? SSL_CIPHER_get_name(cipher) : "the cipher");
		return 1;
	}
	if (!c->tls.secrets.client_len || !c->tls.secrets.server_len) {
		c->fallback = KS_FB_SECRETS;
		snprintf(why, whylen, "traffic secrets were not captured");
		return 1;
	}
	/* Bytes OpenSSL holds past the handshake have left the socket for good:
	 * the kernel would start one record late (ktls-facts.md). */
	if (SSL_has_pending(c->ssl)) {
		c->fallback = KS_FB_BYTES_PAST_HANDSHAKE;
		snprintf(why, whylen, "OpenSSL read %d bytes past the handshake",
			 SSL_pending(c->ssl));
		return 1;
	}
	txs = server ? c->tls.secrets.server : c->tls.secrets.client;
	txslen = server ? c->tls.secrets.server_len : c->tls.secrets.client_len;
	rxs = server ? c->tls.secrets.client : c->tls.secrets.server;
	rxslen = server ? c->tls.secrets.client_len : c->tls.secrets.server_len;
	/* The kernel continues the record numbers where OpenSSL stopped:
	 * counted, not assumed. A server that sent its session ticket has
	 * sent one record already; a client that waited for it (conn.c) has
	 * received it, and may have sent and received data on the way. */
	if (c->tls.seq.updated) {
		c->fallback = KS_FB_KEY_UPDATE;
		snprintf(why, whylen, "a KeyUpdate went by before the hand-off");
		return 1;
	}
	if (!c->tls.seq.tx_app || !c->tls.seq.rx_app) {
		c->fallback = KS_FB_RECORD_NUMBERS;
		snprintf(why, whylen, "record numbers unknown (Finished not seen)");
		return 1;
	}
	rc = ks_ktls_crypto_info(suite, txs, txslen, c->tls.seq.tx, &tx, &txlen);
	if (rc == 0)
		rc = ks_ktls_crypto_info(suite, rxs, rxslen, c->tls.seq.rx, &rx, &rxlen);
	if (rc < 0) {
		c->fallback = KS_FB_KEY_DERIVATION;
		snprintf(why, whylen, "key derivation failed");
		return 1;
	}
	rc = ks_ktls_install(c->tls_fd, &tx, txlen, tx_only ? NULL : &rx, rxlen, &step);
	if (rc < 0) {
		c->fallback = KS_FB_SETSOCKOPT;
		snprintf(why, whylen, "setsockopt %s: %s", step, strerror(-rc));
		/* After TLS_TX the kernel already encrypts what we send:
		 * OpenSSL cannot take over any more. */
		return strcmp(step, "TLS_RX") == 0 ? rc : 1;
	}
	c->suite = suite;
	/* The record numbers the kernel starts from: the records OpenSSL
	 * moved under the application keys (session tickets, data read while
	 * a client waited for its ticket). */
	if (tx_only)
		snprintf(why, whylen,
			 "kTLS TX %s from record %llu out; RX once the server's first record "
			 "(its session ticket) is read",
			 suite->name, (unsigned long long)c->tls.seq.tx);
	else
		snprintf(why, whylen, "kTLS TX+RX %s from record %llu out, %llu in", suite->name,
			 (unsigned long long)c->tls.seq.tx, (unsigned long long)c->tls.seq.rx);
	return 0;
}

static int handoff(struct ks_conn *c, char *why, size_t whylen, bool tx_only)
{
	int rc = try_offload(c, why, whylen, tx_only);

	/* The secrets are only worth keeping for a kernel that can rekey:
	 * elsewhere a KeyUpdate ends the connection anyway. */
	if (rc != 0 || (!tx_only && !(ks_caps & KS_KTLS_CAP_REKEY)))
		ks_wipe(&c->tls.secrets, sizeof(c->tls.secrets)); /* also zeroes the lengths */
	if (rc == 0) {
		c->rl = KS_RL_KERNEL;
		return 0;
	}
	c->rl = KS_RL_USERSPACE;
	if (rc < 0)
		return rc;
	return ks_mode == KS_KTLS_REQUIRE ? -EOPNOTSUPP : 0;
}

int ks_offload_handoff(struct ks_conn *c, char *why, size_t whylen)
{
	return handoff(c, why, whylen, false);
}

int ks_offload_handoff_tx(struct ks_conn *c, char *why, size_t whylen)
{
	return handoff(c, why, whylen, true);
}

int ks_offload_rx(struct ks_conn *c, uint64_t *from)
{
	const uint8_t *rxs = c->tls.server ? c->tls.secrets.client : c->tls.secrets.server;
	size_t rxslen = c->tls.server ? c->tls.secrets.client_len : c->tls.secrets.server_len;
	union ks_ktls_crypto_info rx;
	KS_WIPE_AT_EXIT(rx);
	socklen_t rxlen;
	int rc;

	*from = c->tls.seq.rx;
	/* Bytes OpenSSL holds, or a key it moved on from: the kernel would
	 * start at the wrong record, or with the wrong key. */
	if (SSL_has_pending(c->ssl) || c->tls.seq.updated || !c->suite || !rxslen)
		rc = -EPROTO;
	else
		rc = ks_ktls_crypto_info(c->suite, rxs, rxslen, c->tls.seq.rx, &rx, &rxlen);
	if (rc == 0)
		rc = ks_ktls_set_key(c->tls_fd, TLS_RX, &rx, rxlen);
	if (rc != 0 || !(ks_caps & KS_KTLS_CAP_REKEY))
		ks_wipe(&c->tls.secrets, sizeof(c->tls.secrets));
	return rc;
}

bool ks_offload_possible(const struct ks_conn *c)
{
	return ks_mode != KS_KTLS_OFF && ks_caps && c->ssl && SSL_version(c->ssl) == TLS1_3_VERSION;
}

bool ks_offload_can_rekey(const struct ks_conn *c)
{
	return c->rl == KS_RL_KERNEL && (ks_caps & KS_KTLS_CAP_REKEY) && c->suite &&
	       c->tls.secrets.client_len && c->tls.secrets.server_len;
}

int ks_offload_rekey(struct ks_conn *c, bool tx)
{
	/* Our TX secret is the client's on the outbound side, the server's on
	 * the inbound side; RX is the other one. */
	bool client_secret = tx != c->tls.server;
	union ks_ktls_crypto_info ci;
	KS_WIPE_AT_EXIT(ci);
	socklen_t len;
	uint8_t *secret;
	size_t slen;
	int rc;

	if (!c->tls.secrets.client_len || !c->tls.secrets.server_len || !c->suite)
		return -EOPNOTSUPP;
	secret = client_secret ? c->tls.secrets.client : c->tls.secrets.server;
	slen = client_secret ? c->tls.secrets.client_len : c->tls.secrets.server_len;
	rc = ks_ktls_next_secret(c->suite->digest, secret, slen);
	if (rc == 0)
		rc = ks_ktls_crypto_info(c->suite, secret, slen, 0, &ci, &len);
	if (rc == 0)
		rc = ks_ktls_set_key(c->tls_fd, tx ? TLS_TX : TLS_RX, &ci, len);
	return rc;
}
