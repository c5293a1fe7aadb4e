/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PEM text and files to OpenSSL objects, with errors a person can act on
 * (which file, which block), for the identity files and control-plane pushes.
 */
#include "tls/pem.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

void ks_ssl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[256];

	if (e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(err, errlen, "%s: %s", what, buf);
	} else {
		snprintf(err, errlen, "%s", what);
	}
	ERR_clear_error();
}

/* Reads every PEM certificate in bio; at least one. */
static int read_certs(BIO *bio, STACK_OF(X509) * *out, const char *what, char *err, size_t errlen)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	X509 *x;
	unsigned long e;
	int rc = -EINVAL;

	if (!sk)
		return -ENOMEM;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			rc = -ENOMEM;
			goto cleanup;
		}
	}
	/* The loop ends on "no start line" at EOF; anything else is corruption. */
	e = ERR_peek_last_error();
	if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		char buf[160];

		snprintf(buf, sizeof(buf), "%s has a corrupt PEM block", what);
		ks_ssl_err(err, errlen, buf);
		goto cleanup;
	}
	if (sk_X509_num(sk) == 0) {
		snprintf(err, errlen, "%s has no PEM certificate", what);
		goto cleanup;
	}
	ERR_clear_error();
	*out = sk;
	sk = NULL;
	rc = 0;
cleanup:
	sk_X509_pop_free(sk, X509_free);
	ERR_clear_error();
	return rc;
}

static BIO *mem_bio(const char *pem, size_t len)
{
	return BIO_new_mem_buf(pem, len > INT_MAX ? -1 : (int)len);
}

int ks_pem_certs(const char *pem, size_t len, STACK_OF(X509) * *out, char *err, size_t errlen)
{
	BIO *bio = mem_bio(pem, len);
	int rc;

	*out = NULL;
	if (!bio)
		return -ENOMEM;
	rc = read_certs(bio, out, "certificate PEM", err, errlen);
	BIO_free(bio);
	return rc;
}

static int read_key_bio(BIO *bio, EVP_PKEY **key, const char *what, char *err, size_t errlen)
{
	*key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (!*key) {
		char buf[320];

		snprintf(buf, sizeof(buf), "%s has no usable PEM private key", what);
		ks_ssl_err(err, errlen, buf);
		return -EINVAL;
	}
	return 0;
}

int ks_pem_key(const char *pem, size_t len, EVP_PKEY **out, char *err, size_t errlen)
{
	BIO *bio = mem_bio(pem, len);
	int rc;

	*out = NULL;
	if (!bio)
		return -ENOMEM;
	rc = read_key_bio(bio, out, "key PEM", err, errlen);
	BIO_free(bio);
	return rc;
}

int ks_pem_crls(const char *pem, size_t len, STACK_OF(X509_CRL) * *out, char *err, size_t errlen)
{
	STACK_OF(X509_CRL) *sk = sk_X509_CRL_new_null();
	BIO *bio = mem_bio(pem, len);
	X509_CRL *crl;
	unsigned long e;
	int rc = -EINVAL;

	*out = NULL;
	if (!sk || !bio) {
		rc = -ENOMEM;
		goto cleanup;
	}
	while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_CRL_push(sk, crl)) {
			X509_CRL_free(crl);
			rc = -ENOMEM;
			goto cleanup;
		}
	}
	e = ERR_peek_last_error();
	if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		ks_ssl_err(err, errlen, "CRL PEM has a corrupt block");
		goto cleanup;
	}
	/* Text that is not empty but holds no CRL is a mistake, not "no CRLs". */
	if (sk_X509_CRL_num(sk) == 0 && strspn(pem, " \t\r\n") < len) {
		snprintf(err, errlen, "CRL PEM has no X509 CRL block");
		goto cleanup;
	}
	*out = sk;
	sk = NULL;
	rc = 0;
cleanup:
	sk_X509_CRL_pop_free(sk, X509_CRL_free);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

int ks_pem_file_certs(const char *path, STACK_OF(X509) * *out, const char *what, char *err,
		      size_t errlen)
{
	BIO *bio = BIO_new_file(path, "r");
	char buf[256];
	int rc;

	*out = NULL;
	if (!bio) {
		rc = errno ? -errno : -EIO;
		snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(-rc));
		ERR_clear_error();
		return rc;
	}
	snprintf(buf, sizeof(buf), "%s %s", what, path);
	rc = read_certs(bio, out, buf, err, errlen);
	BIO_free(bio);
	return rc;
}

int ks_pem_file_key(const char *path, EVP_PKEY **key, char *err, size_t errlen)
{
	BIO *bio = BIO_new_file(path, "r");
	char buf[256];
	int rc;

	if (!bio) {
		rc = errno ? -errno : -EIO;
		snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(-rc));
		ERR_clear_error();
		return rc;
	}
	snprintf(buf, sizeof(buf), "key file %s", path);
	rc = read_key_bio(bio, key, buf, err, errlen);
	BIO_free(bio);
	return rc;
}
