/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel TLS (Documentation/networking/tls.rst): deriving the record keys
 * from the TLS 1.3 traffic secrets, installing them for both directions, and
 * the control records (alerts, post-handshake messages) that a kTLS socket
 * hands back to us. Syscall-facing functions return 0 or -errno.
 */
#ifndef KS_TLS_KTLS_H
#define KS_TLS_KTLS_H

#include <linux/tls.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define KS_KTLS_SECRET_MAX 48 /* SHA-384 */

/* TLS 1.3 traffic secrets of one connection, from OpenSSL's keylog callback. */
struct ks_ktls_secrets {
	uint8_t client[KS_KTLS_SECRET_MAX];
	uint8_t server[KS_KTLS_SECRET_MAX];
	uint8_t client_len, server_len;
};

struct ks_ktls_suite {
	uint16_t tls_id;	/* RFC 8446 B.4, e.g. 0x1301 */
	uint16_t kernel_cipher; /* TLS_CIPHER_* */
	uint8_t key_len;
	const char *digest; /* HKDF hash */
	const char *name;
};

union ks_ktls_crypto_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 aes128;
	struct tls12_crypto_info_aes_gcm_256 aes256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

/* Capability bits from the start-up probe. */
#define KS_KTLS_CAP_AES128 (1u << 0)
#define KS_KTLS_CAP_AES256 (1u << 1)
#define KS_KTLS_CAP_CHACHA (1u << 2)
#define KS_KTLS_CAP_ALL	   (KS_KTLS_CAP_AES128 | KS_KTLS_CAP_AES256 | KS_KTLS_CAP_CHACHA)
/* The kernel takes a new key on a live socket (TLS 1.3 KeyUpdate, Linux 6.14+). */
#define KS_KTLS_CAP_REKEY (1u << 3)

/* The suite for an RFC 8446 cipher suite id, NULL if kTLS cannot do it. */
const struct ks_ktls_suite *ks_ktls_suite(uint16_t tls_id);
unsigned ks_ktls_suite_cap(const struct ks_ktls_suite *s);

/*
 * Records one "LABEL CLIENT_RANDOM SECRET" keylog line. Only the application
 * traffic secrets (…_TRAFFIC_SECRET_0) are kept. Returns 1 if kept, 0 if the
 * line is of another kind, -EINVAL if it is malformed.
 */
int ks_ktls_keylog_line(struct ks_ktls_secrets *s, const char *line);

/*
 * Record numbers under the application traffic keys, per direction, so the
 * kernel continues where OpenSSL stopped (RFC 8446 §5.3: the per-record nonce
 * is the record number XOR the IV, and it restarts at 0 with each key). Fed
 * from OpenSSL's message callback, which reports every record header sent or
 * received. A direction switches to its application key right after its
 * Finished message (RFC 8446 §7.1 and §7.2), so the records after that one
 * are counted.
 */
struct ks_ktls_seq {
	uint64_t tx, rx;
	uint8_t tx_app, rx_app; /* our / the peer's Finished has gone by */
	/* A KeyUpdate went by under OpenSSL (either way): the secrets we hold
	 * are no longer the keys in use, so the kernel cannot take over. */
	uint8_t updated;
};
/* For SSL_CTX_set_msg_callback: one call of it (TLS 1.3 only). */
void ks_ktls_seq_msg(struct ks_ktls_seq *s, int write_p, int content_type, const void *buf,
		     size_t len);

/* HKDF-Expand-Label(secret, label, "", out_len), RFC 8446 §7.1. */
int ks_ktls_expand_label(const char *digest, const uint8_t *secret, size_t secret_len,
			 const char *label, uint8_t *out, size_t out_len);

/*
 * Fills the kernel's crypto_info for one direction: key and iv derived from
 * secret (RFC 8446 §7.3), rec_seq = seq (big-endian, the number of the next
 * record in that direction).
 */
int ks_ktls_crypto_info(const struct ks_ktls_suite *suite, const uint8_t *secret, size_t secret_len,
			uint64_t seq, union ks_ktls_crypto_info *ci, socklen_t *len);

/*
 * Moves a traffic secret to the next generation in place (RFC 8446 §7.2):
 * application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length).
 */
int ks_ktls_next_secret(const char *digest, uint8_t *secret, size_t secret_len);

#define KS_TLS_CT_ALERT		     21
#define KS_TLS_CT_HANDSHAKE	     22
#define KS_TLS_CT_DATA		     23
#define KS_TLS_HS_NEW_SESSION_TICKET 4
#define KS_TLS_HS_KEY_UPDATE	     24

#endif
