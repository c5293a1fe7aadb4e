/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/ktls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/ssl.h>

#include "common/secret.h"

static const struct ks_ktls_suite ks_suites[] = {
    {0x1301, TLS_CIPHER_AES_GCM_128, 16, "SHA256", "TLS_AES_128_GCM_SHA256"},
    {0x1302, TLS_CIPHER_AES_GCM_256, 32, "SHA384", "TLS_AES_256_GCM_SHA384"},
    {0x1303, TLS_CIPHER_CHACHA20_POLY1305, 32, "SHA256", "TLS_CHACHA20_POLY1305_SHA256"},
};

const struct ks_ktls_suite *ks_ktls_suite(uint16_t tls_id)
{
	for (size_t i = 0; i < sizeof(ks_suites) / sizeof(ks_suites[0]); i++)
		if (ks_suites[i].tls_id == tls_id)
			return &ks_suites[i];
	return NULL;
}

unsigned ks_ktls_suite_cap(const struct ks_ktls_suite *s)
{
	return 1u << (unsigned)(s - ks_suites);
}

static int unhex(const char *h, size_t hlen, uint8_t *out, size_t outmax)
{
	if (hlen % 2 || hlen / 2 > outmax)
		return -EINVAL;
	for (size_t i = 0; i < hlen / 2; i++) {
		int hi = OPENSSL_hexchar2int((unsigned char)h[2 * i]);
		int lo = OPENSSL_hexchar2int((unsigned char)h[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (int)(hlen / 2);
}

int ks_ktls_keylog_line(struct ks_ktls_secrets *s, const char *line)
{
	static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ",
			  server[] = "SERVER_TRAFFIC_SECRET_0 ";
	const char *p, *secret;
	uint8_t *dst;
	uint8_t *dlen;
	int n;

	if (strncmp(line, client, sizeof(client) - 1) == 0) {
		p = line + sizeof(client) - 1;
		dst = s->client;
		dlen = &s->client_len;
	} else if (strncmp(line, server, sizeof(server) - 1) == 0) {
		p = line + sizeof(server) - 1;
		dst = s->server;
		dlen = &s->server_len;
	} else {
		return 0;
	}
	/* Skip the client random: the connection is known from the SSL. */
	secret = strchr(p, ' ');
	if (!secret)
		return -EINVAL;
	secret++;
	n = unhex(secret, strcspn(secret, " \r\n"), dst, KS_KTLS_SECRET_MAX);
	if (n <= 0)
		return -EINVAL;
	*dlen = (uint8_t)n;
	return 1;
}

int ks_ktls_expand_label(const char *digest, const uint8_t *secret, size_t secret_len,
			 const char *label, uint8_t *out, size_t out_len)
{
	/* OpenSSL's TLS13-KDF in EXPAND_ONLY mode is HKDF-Expand-Label with
	 * the "tls13 " prefix we pass (RFC 8446 §7.1). */
	static const unsigned char prefix[] = "tls13 ";
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "TLS13-KDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, rc = -EINVAL;
	OSSL_PARAM params[6], *p = params;

	if (!kctx)
		goto cleanup;
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, (void *)prefix,
						 sizeof(prefix) - 1);
	*p++ =
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, (void *)label, strlen(label));
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, out_len, params) == 1)
		rc = 0;
cleanup:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return rc;
}

int ks_ktls_crypto_info(const struct ks_ktls_suite *suite, const uint8_t *secret, size_t secret_len,
			uint64_t seq, union ks_ktls_crypto_info *ci, socklen_t *len)
{
	uint8_t key[32], iv[12], rec_seq[8];
	KS_WIPE_AT_EXIT(key);
	KS_WIPE_AT_EXIT(iv);
	int rc;

	rc = ks_ktls_expand_label(suite->digest, secret, secret_len, "key", key, suite->key_len);
	if (rc == 0)
		rc = ks_ktls_expand_label(suite->digest, secret, secret_len, "iv", iv, sizeof(iv));
	if (rc < 0)
		return rc;
	for (int i = 7; i >= 0; i--, seq >>= 8)
		rec_seq[i] = (uint8_t)seq;
	memset(ci, 0, sizeof(*ci));
	ci->base.version = TLS_1_3_VERSION;
	ci->base.cipher_type = suite->kernel_cipher;
	/* The kernel splits the 12-byte TLS 1.3 IV into a 4-byte salt and an
	 * 8-byte "iv" for AES-GCM; ChaCha20-Poly1305 takes all 12 as iv. The
	 * two AES-GCM layouts differ only in the key's size. */
	switch (suite->kernel_cipher) {
	case TLS_CIPHER_AES_GCM_128:
	case TLS_CIPHER_AES_GCM_256: {
		bool k128 = suite->kernel_cipher == TLS_CIPHER_AES_GCM_128;

		memcpy(k128 ? ci->aes128.salt : ci->aes256.salt, iv, 4);
		memcpy(k128 ? ci->aes128.iv : ci->aes256.iv, iv + 4, 8);
		memcpy(k128 ? ci->aes128.key : ci->aes256.key, key, suite->key_len);
		memcpy(k128 ? ci->aes128.rec_seq : ci->aes256.rec_seq, rec_seq, 8);
		*len = k128 ? sizeof(ci->aes128) : sizeof(ci->aes256);
		break;
	}
	case TLS_CIPHER_CHACHA20_POLY1305:
		memcpy(ci->chacha.iv, iv, 12);
		memcpy(ci->chacha.key, key, 32);
		memcpy(ci->chacha.rec_seq, rec_seq, 8);
		*len = sizeof(ci->chacha);
		break;
	default:
		rc = -EINVAL;
	}
	return rc;
}

void ks_ktls_seq_msg(struct ks_ktls_seq *s, int write_p, int content_type, const void *buf,
		     size_t len)
{
	const uint8_t *p = buf;

	if (content_type == SSL3_RT_HEADER) {
		/* One per record. A Finished record itself is reported before
		 * its message, so it is never counted as an application record. */
		if (write_p && s->tx_app)
			s->tx++;
		else if (!write_p && s->rx_app)
			s->rx++;
		return;
	}
	if (content_type == SSL3_RT_HANDSHAKE && len >= 1 && p[0] == SSL3_MT_KEY_UPDATE &&
	    (write_p ? s->tx_app : s->rx_app))
		s->updated = 1;
	if (content_type == SSL3_RT_HANDSHAKE && len >= 1 && p[0] == SSL3_MT_FINISHED) {
		if (write_p)
			s->tx_app = 1;
		else
			s->rx_app = 1;
	}
}

int ks_ktls_next_secret(const char *digest, uint8_t *secret, size_t secret_len)
{
	uint8_t next[KS_KTLS_SECRET_MAX];
	KS_WIPE_AT_EXIT(next);
	int rc;

	if (secret_len > sizeof(next))
		return -EINVAL;
	rc = ks_ktls_expand_label(digest, secret, secret_len, "traffic upd", next, secret_len);
	if (rc == 0)
		memcpy(secret, next, secret_len);
	return rc;
}
