/* SPDX-License-Identifier: Apache-2.0 */
/* PEM text and files to OpenSSL objects. Each returns 0 or -errno with a reason in err. */
#ifndef KS_TLS_PEM_H
#define KS_TLS_PEM_H

#include <stddef.h>

#include <openssl/x509.h>

/* Every certificate in pem (at least one). */
int ks_pem_certs(const char *pem, size_t len, STACK_OF(X509) * *out, char *err, size_t errlen);
int ks_pem_key(const char *pem, size_t len, EVP_PKEY **out, char *err, size_t errlen);
/* Every CRL in pem; blank text is an empty set, other text without one is an error. */
int ks_pem_crls(const char *pem, size_t len, STACK_OF(X509_CRL) * *out, char *err, size_t errlen);

/* The same from files; what names the file in messages ("trust bundle"). */
int ks_pem_file_certs(const char *path, STACK_OF(X509) * *out, const char *what, char *err,
		      size_t errlen);
int ks_pem_file_key(const char *path, EVP_PKEY **key, char *err, size_t errlen);

/* "what: <the newest OpenSSL error>" into err; clears the thread's error queue. */
void ks_ssl_err(char *err, size_t errlen, const char *what);

#endif
