/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers several unit test programs share (include after cmocka.h):
 * running a shell command for fixtures (tests/lib/pki.sh), reading a
 * fixture file, and a self-signed P-256 certificate for an SSL_CTX.
 * static inline: each program uses what it needs.
 */
#ifndef KS_TEST_SUPPORT_H
#define KS_TEST_SUPPORT_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Runs a shell command (printf-style); the test fails if it does. */
static inline void ks_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void ks_test_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

/* The contents of dir/name as a string (malloc'ed); the test fails if unreadable. */
static inline char *ks_test_slurp(const char *dir, const char *name)
{
	char path[512], *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Gives a server ctx a fresh self-signed P-256 certificate, valid an hour. */
static inline void ks_test_self_signed(SSL_CTX *ctx)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *crt = X509_new();

	assert_non_null(key);
	assert_non_null(crt);
	ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
	X509_gmtime_adj(X509_getm_notBefore(crt), -60);
	X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN", MBSTRING_ASC,
				   (const unsigned char *)"ks.test", -1, -1, 0);
	X509_set_issuer_name(crt, X509_get_subject_name(crt));
	X509_set_pubkey(crt, key);
	assert_true(X509_sign(crt, key, EVP_sha256()) > 0);
	assert_int_equal(SSL_CTX_use_certificate(ctx, crt), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
	X509_free(crt);
	EVP_PKEY_free(key);
}

#endif
