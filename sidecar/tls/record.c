/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/record.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/secret.h"

static const EVP_CIPHER *aead(const struct ks_ktls_suite *suite)
{
	switch (suite->kernel_cipher) {
	case TLS_CIPHER_AES_GCM_128:
		return EVP_aes_128_gcm();
	case TLS_CIPHER_AES_GCM_256:
		return EVP_aes_256_gcm();
	case TLS_CIPHER_CHACHA20_POLY1305:
		return EVP_chacha20_poly1305();
	default:
		return NULL;
	}
}

int ks_tls13_seal_alert(const struct ks_ktls_suite *suite, const uint8_t *secret, size_t secret_len,
			uint64_t seq, uint8_t desc, uint8_t out[KS_TLS13_ALERT_RECORD_LEN])
{
	/* TLSInnerPlaintext (RFC 8446 §5.2): the alert, then its real type. */
	const uint8_t inner[3] = {2 /* fatal */, desc, KS_TLS_CT_ALERT};
	const EVP_CIPHER *cipher = aead(suite);
	uint8_t key[32], nonce[12];
	KS_WIPE_AT_EXIT(key);
	KS_WIPE_AT_EXIT(nonce);
	EVP_CIPHER_CTX *ctx = NULL;
	int n, rc;

	if (!cipher)
		return -EINVAL;
	rc = ks_ktls_expand_label(suite->digest, secret, secret_len, "key", key, suite->key_len);
	if (rc == 0)
		rc = ks_ktls_expand_label(suite->digest, secret, secret_len, "iv", nonce,
					  sizeof(nonce));
	if (rc < 0)
		return rc;
	/* §5.3: the per-record nonce is the IV XOR the record number,
	 * big-endian and left-padded to the IV's length. */
	for (int i = 11; i >= 4; i--, seq >>= 8)
		nonce[i] ^= (uint8_t)seq;
	/* The outer header, also the AEAD's additional data: opaque_type
	 * application_data, legacy_record_version 0x0303, the length. */
	out[0] = KS_TLS_CT_DATA;
	out[1] = 0x03;
	out[2] = 0x03;
	out[3] = 0;
	out[4] = sizeof(inner) + 16;
	rc = -EIO;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx || !EVP_EncryptInit_ex(ctx, cipher, NULL, NULL, NULL) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, sizeof(nonce), NULL) ||
	    !EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) ||
	    !EVP_EncryptUpdate(ctx, NULL, &n, out, 5) ||
	    !EVP_EncryptUpdate(ctx, out + 5, &n, inner, sizeof(inner)) || n != sizeof(inner) ||
	    !EVP_EncryptFinal_ex(ctx, out + 5 + n, &n) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + 5 + sizeof(inner)))
		goto cleanup;
	rc = 0;
cleanup:
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}
