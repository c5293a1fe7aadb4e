/* SPDX-License-Identifier: Apache-2.0 */
#include "ktls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/ssl.h>

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

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
	int rc;

	rc = ks_ktls_expand_label(suite->digest, secret, secret_len, "key", key, suite->key_len);
	if (rc == 0)
		rc = ks_ktls_expand_label(suite->digest, secret, secret_len, "iv", iv, sizeof(iv));
	if (rc < 0)
		goto cleanup;
	for (int i = 7; i >= 0; i--, seq >>= 8)
		rec_seq[i] = (uint8_t)seq;
	memset(ci, 0, sizeof(*ci));
	ci->base.version = TLS_1_3_VERSION;
	ci->base.cipher_type = suite->kernel_cipher;
	/* The kernel splits the 12-byte TLS 1.3 IV into a 4-byte salt and an
	 * 8-byte "iv" for AES-GCM; ChaCha20-Poly1305 takes all 12 as iv. */
	switch (suite->kernel_cipher) {
	case TLS_CIPHER_AES_GCM_128:
		memcpy(ci->aes128.salt, iv, 4);
		memcpy(ci->aes128.iv, iv + 4, 8);
		memcpy(ci->aes128.key, key, 16);
		memcpy(ci->aes128.rec_seq, rec_seq, 8);
		*len = sizeof(ci->aes128);
		break;
	case TLS_CIPHER_AES_GCM_256:
		memcpy(ci->aes256.salt, iv, 4);
		memcpy(ci->aes256.iv, iv + 4, 8);
		memcpy(ci->aes256.key, key, 32);
		memcpy(ci->aes256.rec_seq, rec_seq, 8);
		*len = sizeof(ci->aes256);
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
		memcpy(ci->chacha.iv, iv, 12);
		memcpy(ci->chacha.key, key, 32);
		memcpy(ci->chacha.rec_seq, rec_seq, 8);
		*len = sizeof(ci->chacha);
		break;
	default:
		rc = -EINVAL;
	}
cleanup:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
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
	int rc;

	if (secret_len > sizeof(next))
		return -EINVAL;
	rc = ks_ktls_expand_label(digest, secret, secret_len, "traffic upd", next, secret_len);
	if (rc == 0)
		memcpy(secret, next, secret_len);
	OPENSSL_cleanse(next, sizeof(next));
	return rc;
}

int ks_ktls_set_key(int fd, int dir, const union ks_ktls_crypto_info *ci, socklen_t len)
{
	return setsockopt(fd, SOL_TLS, dir, ci, len) < 0 ? -errno : 0;
}

int ks_ktls_install(int fd, const union ks_ktls_crypto_info *tx, socklen_t txlen,
		    const union ks_ktls_crypto_info *rx, socklen_t rxlen, const char **step)
{
	*step = "TCP_ULP";
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		return -errno;
	*step = "TLS_TX";
	if (setsockopt(fd, SOL_TLS, TLS_TX, tx, txlen) < 0)
		return -errno;
	*step = "TLS_RX";
	if (setsockopt(fd, SOL_TLS, TLS_RX, rx, rxlen) < 0)
		return -errno;
	return 0;
}

/* A connected loopback TCP pair, for probing. */
static int tcp_pair(int fds[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int l, rc = -EIO;

	fds[0] = fds[1] = -1;
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &alen) < 0)
		goto fail;
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof(a)) < 0)
		goto fail;
	fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fds[1] < 0)
		goto fail;
	close(l);
	return 0;
fail:
	rc = -errno;
	close(l);
	if (fds[0] >= 0)
		close(fds[0]);
	fds[0] = -1;
	return rc;
}

unsigned ks_ktls_probe(char *why, size_t whylen)
{
	static const uint8_t zero[KS_KTLS_SECRET_MAX];
	unsigned caps = 0;

	snprintf(why, whylen, "ok");
	for (size_t i = 0; i < sizeof(ks_suites) / sizeof(ks_suites[0]); i++) {
		union ks_ktls_crypto_info ci;
		socklen_t len;
		const char *step;
		int fds[2], rc;

		rc = tcp_pair(fds);
		if (rc < 0) {
			snprintf(why, whylen, "cannot make a loopback pair: %s", strerror(-rc));
			return caps;
		}
		rc = ks_ktls_crypto_info(&ks_suites[i], zero, 32, 0, &ci, &len);
		if (rc == 0)
			rc = ks_ktls_install(fds[0], &ci, len, &ci, len, &step);
		/* A second TLS_TX is a key update on 6.14+ and EBUSY before. */
		if (rc == 0 && !(caps & KS_KTLS_CAP_REKEY) &&
		    ks_ktls_set_key(fds[0], TLS_TX, &ci, len) == 0)
			caps |= KS_KTLS_CAP_REKEY;
		close(fds[0]);
		close(fds[1]);
		if (rc == 0) {
			caps |= 1u << i;
			continue;
		}
		if (strcmp(step, "TCP_ULP") == 0) {
			snprintf(why, whylen, "kernel has no tls ULP (TCP_ULP: %s)", strerror(-rc));
			return 0;
		}
		snprintf(why, whylen, "%s not offloadable (%s: %s)", ks_suites[i].name, step,
			 strerror(-rc));
	}
	return caps;
}

ssize_t ks_ktls_recv_record(int fd, uint8_t *buf, size_t len, uint8_t *type)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cmsg;
	ssize_t n;

	n = recvmsg(fd, &msg, MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	*type = KS_TLS_CT_DATA;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (cmsg && cmsg->cmsg_level == SOL_TLS && cmsg->cmsg_type == TLS_GET_RECORD_TYPE)
		*type = *(uint8_t *)CMSG_DATA(cmsg);
	return n;
}

int ks_ktls_send_record(int fd, uint8_t type, const void *buf, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	ssize_t n;

	cmsg->cmsg_level = SOL_TLS;
	cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*(uint8_t *)CMSG_DATA(cmsg) = type;
	n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	/* A control record is never split: the kernel takes all or nothing. */
	return (size_t)n == len ? 0 : -EIO;
}

int ks_ktls_send_alert(int fd, uint8_t level, uint8_t desc)
{
	uint8_t alert[2] = {level, desc};

	return ks_ktls_send_record(fd, KS_TLS_CT_ALERT, alert, sizeof(alert));
}
