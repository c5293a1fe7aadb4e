/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Development CA (devca.h): NOT FOR PRODUCTION. A root that only ever signs
 * one intermediate, which signs X509-SVID leaves and CRLs. Certificates are
 * built structurally with OpenSSL; nothing from a CSR except its public key
 * reaches a certificate.
 */
#include "ctl/devca.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "common/secret.h"
#include "tls/pem.h"
#include "tls/spiffe.h"

/* Backdating notBefore lets peers whose clocks lag ours accept a fresh certificate. */
#define KS_CLOCK_SKEW 30
#define KS_ROOT_DAYS  (10 * 365)
#define KS_INTER_DAYS (5 * 365)
/* RFC 5280 Appendix A: ub-common-name. */
#define KS_CN_MAX	 64
#define KS_CA_ORG	 "ktls-sidecar dev CA"
#define KS_LEAF_ORG	 "ktls-sidecar"
#define KS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct ks_devca {
	X509 *root;
	X509 *inter;
	EVP_PKEY *inter_key;
	char td[KS_SPIFFE_TD_MAX + 1];
};

struct ext_spec {
	int nid;
	const char *value;
};

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int join(char *out, size_t outlen, const char *dir, const char *name, char *err,
		size_t errlen)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= outlen) {
		errf(err, errlen, "path %s/%s is too long", dir, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* Copies a memory BIO into a NUL-terminated malloc'ed string. */
static int bio_string(BIO *bio, char **out)
{
	char *data = NULL;
	long n = BIO_get_mem_data(bio, &data);

	if (n < 0 || !data)
		return -EIO;
	*out = malloc((size_t)n + 1);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, data, (size_t)n);
	(*out)[n] = '\0';
	return 0;
}

static int check_trust_domain(const char *td, char *err, size_t errlen)
{
	char id[KS_SPIFFE_TD_MAX + 16];
	const char *why = NULL;

	if (!td || !*td) {
		errf(err, errlen, "trust domain is empty");
		return -EINVAL;
	}
	if (strlen(td) > KS_SPIFFE_TD_MAX) {
		errf(err, errlen, "trust domain is longer than %d bytes", KS_SPIFFE_TD_MAX);
		return -EINVAL;
	}
	/* A '/' would turn the probe ID below into a valid ID with a longer path. */
	if (strchr(td, '/')) {
		errf(err, errlen, "invalid trust domain \"%s\": it contains '/'", td);
		return -EINVAL;
	}
	snprintf(id, sizeof(id), "spiffe://%s/x", td);
	if (ks_spiffe_validate(id, &why) < 0) {
		errf(err, errlen, "invalid trust domain \"%s\": %s", td, why);
		return -EINVAL;
	}
	return 0;
}

/* Same policy as identity.c applies to our own keys: P-256 or RSA >= 2048. */
static int check_key_type(EVP_PKEY *key, char *err, size_t errlen)
{
	char group[64];
	size_t glen = 0;
	int explicit_params = 0;

	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_group_name(key, group, sizeof(group), &glen) ||
		    strcmp(group, "prime256v1") != 0) {
			errf(err, errlen,
			     "CSR has an ECDSA key on curve %s: only P-256 is supported",
			     glen ? group : "?");
			return -EINVAL;
		}
		/* RFC 5480 §2.1.1: specifiedCurve MUST NOT be used; the leaf would copy it
		 * and strict verifiers (OpenSSL X509_STRICT) refuse it. */
		if (EVP_PKEY_get_int_param(key, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS,
					   &explicit_params) &&
		    explicit_params) {
			errf(err, errlen,
			     "CSR's P-256 key has explicit curve parameters: use the named curve");
			return -EINVAL;
		}
		return 0;
	case EVP_PKEY_RSA:
		if (EVP_PKEY_get_bits(key) < 2048) {
			errf(err, errlen,
			     "CSR has a %d-bit RSA key: at least 2048 bits are required",
			     EVP_PKEY_get_bits(key));
			return -EINVAL;
		}
		return 0;
	default:
		errf(err, errlen, "CSR has an unsupported %s key: use ECDSA P-256 or RSA >= 2048",
		     OBJ_nid2sn(EVP_PKEY_get_base_id(key)));
		return -EINVAL;
	}
}

/*
 * RFC 5280 §4.1.2.2: positive, at most 20 octets, unique per issuer. 128
 * random bits (17 octets at most once DER adds a sign byte) make collisions
 * negligible without keeping state, and serials unpredictable.
 */
static int set_random_serial(X509 *x)
{
	BIGNUM *bn = BN_new();
	ASN1_INTEGER *sn = NULL;
	int ok = 0;

	if (!bn)
		return 0;
	do {
		if (!BN_rand(bn, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY))
			goto cleanup;
	} while (BN_is_zero(bn));
	sn = BN_to_ASN1_INTEGER(bn, NULL);
	ok = sn && X509_set_serialNumber(x, sn);
cleanup:
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	return ok;
}

static X509_NAME *make_name(const char *org, const char *cn)
{
	X509_NAME *name = X509_NAME_new();

	if (!name)
		return NULL;
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)org, -1,
					-1, 0) ||
	    (cn && !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
					       -1, -1, 0))) {
		X509_NAME_free(name);
		return NULL;
	}
	return name;
}

/* Version, serial, names, key and a notBefore backdated for clock skew. */
static X509 *new_cert(X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, time_t now)
{
	X509 *x = X509_new();

	if (!x)
		return NULL;
	/* RFC 5280 §4.1.2.1: extensions require v3. */
	if (!X509_set_version(x, X509_VERSION_3) || !set_random_serial(x) ||
	    !X509_set_subject_name(x, subject) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subject) ||
	    !X509_set_pubkey(x, pub) ||
	    !X509_time_adj_ex(X509_getm_notBefore(x), 0, -KS_CLOCK_SKEW, &now)) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/*
 * Fixed extensions go through OpenSSL's config syntax; issuer NULL means
 * self-signed. SKI must precede AKI: for a self-signed certificate
 * "keyid:always" copies the SKI just added.
 */
static int add_exts(X509 *x, X509 *issuer, const struct ext_spec *specs, size_t n)
{
	X509V3_CTX ctx;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	for (size_t i = 0; i < n; i++) {
		X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, specs[i].nid, specs[i].value);
		int ok;

		if (!ext)
			return 0;
		ok = X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
		if (!ok)
			return 0;
	}
	return 1;
}

/*
 * The URI comes from the caller, so it is set as a structure rather than
 * through the config parser, which would interpret commas and prefixes.
 * Not critical: every certificate here has a non-empty subject
 * (X509-SVID §3.1, RFC 5280 §4.2.1.6).
 */
static int add_uri_san(X509 *x, const char *uri)
{
	GENERAL_NAMES *names = GENERAL_NAMES_new();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	int ok = 0;

	if (!names || !gn || !ia5 || !ASN1_STRING_set(ia5, uri, (int)strlen(uri)))
		goto cleanup;
	GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(names, gn))
		goto cleanup;
	gn = NULL;
	ok = X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1;
cleanup:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(names);
	return ok;
}

/* issuer/issuer_key NULL: self-signed root. */
static X509 *make_ca_cert(const char *td, const char *role, int pathlen, int days, EVP_PKEY *key,
			  X509 *issuer, EVP_PKEY *issuer_key, time_t now)
{
	char cn[KS_CN_MAX + 1], bc[48], uri[KS_SPIFFE_TD_MAX + 16];
	unsigned char rnd[4];
	/* Room for " <role> " and 8 hex digits; a long td is cut, the random tail keeps CNs apart.
	 */
	int tdmax = KS_CN_MAX - (int)strlen(role) - 2 - 2 * (int)sizeof(rnd);
	X509_NAME *name = NULL;
	X509 *x = NULL;
	const struct ext_spec exts[] = {
	    /* RFC 5280 §4.2.1.9: MUST be critical in CA certificates. */
	    {NID_basic_constraints, bc},
	    /* X509-SVID §4.3: signing certificates set keyCertSign, may set cRLSign. */
	    {NID_key_usage, "critical,keyCertSign,cRLSign"},
	    /* RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey. */
	    {NID_subject_key_identifier, "hash"},
	    /* RFC 5280 §4.2.1.1: lets verifiers pick the issuer when keys roll. */
	    {NID_authority_key_identifier, "keyid:always"},
	};

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return NULL;
	snprintf(cn, sizeof(cn), "%.*s %s %02x%02x%02x%02x", tdmax, td, role, rnd[0], rnd[1],
		 rnd[2], rnd[3]);
	snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
	/* X509-SVID §3.2: a signing certificate SHOULD be an SVID whose ID has no path. */
	snprintf(uri, sizeof(uri), "spiffe://%s", td);
	name = make_name(KS_CA_ORG, cn);
	if (!name)
		goto fail;
	x = new_cert(name, key, issuer, now);
	if (!x || !add_exts(x, issuer, exts, KS_ARRAY_SIZE(exts)) || !add_uri_san(x, uri) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now) ||
	    !X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
		goto fail;
	X509_NAME_free(name);
	return x;
fail:
	X509_NAME_free(name);
	X509_free(x);
	return NULL;
}

static int cert_pem(X509 *x, char **out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc = -ENOMEM;

	if (bio && PEM_write_bio_X509(bio, x))
		rc = bio_string(bio, out);
	BIO_free(bio);
	return rc;
}

static int key_pem(EVP_PKEY *key, char **out)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc = -ENOMEM;

	/* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"). */
	if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
		rc = bio_string(bio, out);
	/* A mem BIO clears its buffer on free. */
	BIO_free(bio);
	return rc;
}

/*
 * O_EXCL|O_NOFOLLOW refuses to write through anything planted at the path;
 * force unlinks first so a replaced file gets the new mode. fchmod makes the
 * mode exact whatever the umask.
 */
static int write_file(const char *dir, const char *name, const char *data, mode_t mode, bool force,
		      char *err, size_t errlen)
{
	char path[PATH_MAX];
	size_t len = strlen(data);
	FILE *fp;
	int fd, rc;

	rc = join(path, sizeof(path), dir, name, err, errlen);
	if (rc < 0)
		return rc;
	if (force && unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		errf(err, errlen, "cannot replace %s: %s", path, strerror(-rc));
		return rc;
	}
	fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		rc = -errno;
		if (rc == -EEXIST)
			errf(err, errlen, "%s already exists (leftover of another CA? use force)",
			     path);
		else
			errf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fchmod(fd, mode) < 0) {
		rc = -errno;
		close(fd);
		goto fail;
	}
	fp = fdopen(fd, "w");
	if (!fp) {
		rc = -errno;
		close(fd);
		goto fail;
	}
	if (fwrite(data, 1, len, fp) != len || fflush(fp) != 0 || fsync(fileno(fp)) < 0) {
		rc = errno ? -errno : -EIO;
		fclose(fp);
		goto fail;
	}
	if (fclose(fp) != 0) {
		rc = errno ? -errno : -EIO;
		goto fail;
	}
	return 0;
fail:
	errf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
	unlink(path);
	return rc;
}

int ks_devca_init(const char *dir, const char *trust_domain, bool force, char *err, size_t errlen)
{
	/* root.pem last: its presence marks a complete CA (and is what a re-init checks). */
	static const char *const names[] = {"root.key",	  "intermediate.key", "intermediate.pem",
					    "bundle.pem", "trust_domain",     "root.pem"};
	static const mode_t modes[] = {0600, 0600, 0644, 0644, 0644, 0644};
	EVP_PKEY *root_key = NULL, *inter_key = NULL;
	X509 *root = NULL, *inter = NULL;
	char *data[KS_ARRAY_SIZE(names)] = {NULL};
	char path[PATH_MAX], td_line[KS_SPIFFE_TD_MAX + 2];
	size_t written = 0;
	time_t now = time(NULL);
	struct stat st;
	int rc;

	if (!dir || !*dir) {
		errf(err, errlen, "CA directory is empty");
		return -EINVAL;
	}
	rc = check_trust_domain(trust_domain, err, errlen);
	if (rc < 0)
		return rc;
	rc = join(path, sizeof(path), dir, "root.pem", err, errlen);
	if (rc < 0)
		return rc;
	if (mkdir(dir, 0700) == 0) {
		/* The umask may have taken bits off; the CA keys' directory is ours alone. */
		if (chmod(dir, 0700) < 0) {
			rc = -errno;
			errf(err, errlen, "cannot chmod %s: %s", dir, strerror(-rc));
			return rc;
		}
	} else if (errno != EEXIST) {
		rc = -errno;
		errf(err, errlen, "cannot create CA directory %s: %s", dir, strerror(-rc));
		return rc;
	} else if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		errf(err, errlen, "%s exists and is not a directory", dir);
		return -ENOTDIR;
	}
	if (lstat(path, &st) == 0 && !force) {
		errf(err, errlen, "%s already holds a CA (root.pem); use force to replace it", dir);
		return -EEXIST;
	}

	root_key = EVP_EC_gen("P-256");
	inter_key = EVP_EC_gen("P-256");
	if (!root_key || !inter_key) {
		ks_ssl_err(err, errlen, "cannot generate P-256 CA keys");
		rc = -EIO;
		goto cleanup;
	}
	/* pathlen 1 on the root: room for the one intermediate and no more (RFC 5280 §4.2.1.9). */
	root = make_ca_cert(trust_domain, "root", 1, KS_ROOT_DAYS, root_key, NULL, NULL, now);
	if (!root) {
		ks_ssl_err(err, errlen, "cannot build the root certificate");
		rc = -EIO;
		goto cleanup;
	}
	inter = make_ca_cert(trust_domain, "intermediate", 0, KS_INTER_DAYS, inter_key, root,
			     root_key, now);
	if (!inter) {
		ks_ssl_err(err, errlen, "cannot build the intermediate certificate");
		rc = -EIO;
		goto cleanup;
	}
	snprintf(td_line, sizeof(td_line), "%s\n", trust_domain);
	if (key_pem(root_key, &data[0]) < 0 || key_pem(inter_key, &data[1]) < 0 ||
	    cert_pem(inter, &data[2]) < 0 || cert_pem(root, &data[3]) < 0 ||
	    !(data[4] = strdup(td_line)) || cert_pem(root, &data[5]) < 0) {
		ks_ssl_err(err, errlen, "cannot encode the CA as PEM");
		rc = -ENOMEM;
		goto cleanup;
	}

	/* Without root.pem a failure part-way leaves no CA that open() would accept. */
	if (force && unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		errf(err, errlen, "cannot replace %s: %s", path, strerror(-rc));
		goto cleanup;
	}
	for (written = 0; written < KS_ARRAY_SIZE(names); written++) {
		rc = write_file(dir, names[written], data[written], modes[written], force, err,
				errlen);
		if (rc < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	if (rc < 0) {
		/* Remove what this call created so a retry without force is not refused. */
		for (size_t i = 0; i < written; i++) {
			if (join(path, sizeof(path), dir, names[i], NULL, 0) == 0)
				unlink(path);
		}
	}
	ks_wipe_free_str(data[0]);
	ks_wipe_free_str(data[1]);
	for (size_t i = 2; i < KS_ARRAY_SIZE(data); i++)
		free(data[i]);
	X509_free(inter);
	X509_free(root);
	EVP_PKEY_free(inter_key);
	EVP_PKEY_free(root_key);
	ERR_clear_error();
	return rc;
}

/* Opens dir/name for reading; path gets the full name for messages. */
static int open_in(const char *dir, const char *name, char *path, size_t pathlen, BIO **bio,
		   char *err, size_t errlen)
{
	int rc = join(path, pathlen, dir, name, err, errlen);

	if (rc < 0)
		return rc;
	*bio = BIO_new_file(path, "r");
	if (!*bio) {
		rc = errno ? -errno : -EIO;
		errf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
		ERR_clear_error();
		return rc;
	}
	return 0;
}

/* One PEM object from dir/name: a certificate, or else a private key. */
static int read_pem(const char *dir, const char *name, bool cert, void **out, char *err,
		    size_t errlen)
{
	char path[PATH_MAX], what[PATH_MAX + 32];
	BIO *bio;
	int rc = open_in(dir, name, path, sizeof(path), &bio, err, errlen);

	if (rc < 0)
		return rc;
	*out = cert ? (void *)PEM_read_bio_X509(bio, NULL, NULL, NULL)
		    : (void *)PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!*out) {
		snprintf(what, sizeof(what), "%s has no %s", path,
			 cert ? "PEM certificate" : "usable PEM private key");
		ks_ssl_err(err, errlen, what);
		return -EINVAL;
	}
	return 0;
}

static int read_cert(const char *dir, const char *name, X509 **out, char *err, size_t errlen)
{
	return read_pem(dir, name, true, (void **)out, err, errlen);
}

static int read_key(const char *dir, const char *name, EVP_PKEY **out, char *err, size_t errlen)
{
	return read_pem(dir, name, false, (void **)out, err, errlen);
}

static int read_trust_domain(const char *dir, char *td, size_t tdlen, char *err, size_t errlen)
{
	char path[PATH_MAX], line[KS_SPIFFE_TD_MAX + 3];
	size_t n;
	FILE *fp;
	int rc;

	rc = join(path, sizeof(path), dir, "trust_domain", err, errlen);
	if (rc < 0)
		return rc;
	fp = fopen(path, "re");
	if (!fp) {
		rc = -errno;
		errf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
		return rc;
	}
	if (!fgets(line, sizeof(line), fp))
		line[0] = '\0';
	fclose(fp);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	rc = check_trust_domain(line, err, errlen);
	if (rc < 0)
		return rc;
	snprintf(td, tdlen, "%s", line);
	return 0;
}

static int verify_intermediate(struct ks_devca *ca, char *err, size_t errlen)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *vctx = X509_STORE_CTX_new();
	int rc = -EINVAL;

	if (!store || !vctx || !X509_STORE_add_cert(store, ca->root) ||
	    !X509_STORE_CTX_init(vctx, store, ca->inter, NULL)) {
		ks_ssl_err(err, errlen, "cannot set up verification of the intermediate");
		rc = -ENOMEM;
		goto cleanup;
	}
	if (X509_verify_cert(vctx) != 1) {
		errf(err, errlen, "intermediate.pem does not verify under root.pem: %s",
		     X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
		goto cleanup;
	}
	/* The target of a verification need not be a CA; this one must sign leaves. */
	if (X509_check_ca(ca->inter) != 1) {
		errf(err, errlen, "intermediate.pem is not a CA certificate");
		goto cleanup;
	}
	rc = 0;
cleanup:
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(store);
	return rc;
}

int ks_devca_open(const char *dir, struct ks_devca **out, char *err, size_t errlen)
{
	struct ks_devca *ca;
	int rc;

	if (!dir || !out) {
		errf(err, errlen, "no CA directory given");
		return -EINVAL;
	}
	*out = NULL;
	ca = calloc(1, sizeof(*ca));
	if (!ca) {
		errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = read_trust_domain(dir, ca->td, sizeof(ca->td), err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = read_cert(dir, "root.pem", &ca->root, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = read_cert(dir, "intermediate.pem", &ca->inter, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = read_key(dir, "intermediate.key", &ca->inter_key, err, errlen);
	if (rc < 0)
		goto cleanup;
	if (X509_check_private_key(ca->inter, ca->inter_key) != 1) {
		ks_ssl_err(err, errlen, "intermediate.key does not match intermediate.pem");
		rc = -EINVAL;
		goto cleanup;
	}
	rc = verify_intermediate(ca, err, errlen);
	if (rc < 0)
		goto cleanup;
	*out = ca;
	ca = NULL;
cleanup:
	ks_devca_close(ca);
	ERR_clear_error();
	return rc;
}

void ks_devca_close(struct ks_devca *ca)
{
	if (!ca)
		return;
	X509_free(ca->root);
	X509_free(ca->inter);
	EVP_PKEY_free(ca->inter_key);
	free(ca);
}

const char *ks_devca_trust_domain(const struct ks_devca *ca)
{
	return ca ? ca->td : NULL;
}

int ks_devca_bundle_pem(const struct ks_devca *ca, char **pem)
{
	int rc;

	if (!ca || !pem)
		return -EINVAL;
	*pem = NULL;
	rc = cert_pem(ca->root, pem);
	ERR_clear_error();
	return rc;
}

static int check_request(const struct ks_devca *ca, const char *spiffe_id, long ttl_secs,
			 char **chain_pem, char *err, size_t errlen)
{
	const char *why = NULL;

	if (!ca || !chain_pem) {
		errf(err, errlen, "no CA or no output given");
		return -EINVAL;
	}
	*chain_pem = NULL;
	if (ttl_secs < 1) {
		errf(err, errlen, "ttl must be at least 1 second (got %ld)", ttl_secs);
		return -EINVAL;
	}
	if (!spiffe_id) {
		errf(err, errlen, "no SPIFFE ID given");
		return -EINVAL;
	}
	/* Also enforces X509-SVID §3.1: a leaf ID has a non-root path. */
	if (ks_spiffe_validate(spiffe_id, &why) < 0) {
		errf(err, errlen, "invalid SPIFFE ID \"%.*s\": %s", 256, spiffe_id, why);
		return -EINVAL;
	}
	if (!ks_spiffe_in_trust_domain(spiffe_id, ca->td)) {
		errf(err, errlen, "SPIFFE ID %s is not in this CA's trust domain %s", spiffe_id,
		     ca->td);
		return -EINVAL;
	}
	return 0;
}

static int issue_leaf(struct ks_devca *ca, EVP_PKEY *pub, const char *spiffe_id, long ttl_secs,
		      char **chain_pem, char *err, size_t errlen)
{
	bool rsa = EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA;
	const struct ext_spec exts[] = {
	    /* X509-SVID §4.1: cA false; critical so no verifier treats it as a CA. */
	    {NID_basic_constraints, "critical,CA:FALSE"},
	    /* X509-SVID §4.3: digitalSignature; keyEncipherment only serves RSA key transport. */
	    {NID_key_usage,
	     rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature"},
	    /* X509-SVID §4.4: both, since a sidecar is client and server. */
	    {NID_ext_key_usage, "serverAuth,clientAuth"},
	    {NID_subject_key_identifier, "hash"},
	    {NID_authority_key_identifier, "keyid:always"},
	};
	time_t now = time(NULL);
	ASN1_TIME *tnow = NULL;
	X509_NAME *name = NULL;
	X509 *leaf = NULL;
	BIO *bio = NULL;
	int days = 0, secs = 0, ok, rc = -EIO;
	long left;

	tnow = ASN1_TIME_set(NULL, now);
	if (!tnow || !ASN1_TIME_diff(&days, &secs, tnow, X509_get0_notAfter(ca->inter))) {
		ks_ssl_err(err, errlen, "cannot read the intermediate's notAfter");
		goto cleanup;
	}
	left = (long)days * 86400 + secs;
	if (left <= 0) {
		errf(err, errlen, "the CA's intermediate has expired: create a new CA");
		rc = -EKEYEXPIRED;
		goto cleanup;
	}
	/* No CN: a path segment may exceed ub-common-name (64), and the ID is in the SAN. */
	name = make_name(KS_LEAF_ORG, NULL);
	leaf = name ? new_cert(name, pub, ca->inter, now) : NULL;
	if (!leaf || !add_exts(leaf, ca->inter, exts, KS_ARRAY_SIZE(exts)) ||
	    !add_uri_san(leaf, spiffe_id)) {
		ks_ssl_err(err, errlen, "cannot build the leaf certificate");
		goto cleanup;
	}
	/*
	 * Verifiers reject a chain once any member has expired, so a leaf
	 * outliving its intermediate would advertise validity it cannot have,
	 * and rotation keyed on the leaf's notAfter would renew too late.
	 */
	if (ttl_secs >= left)
		ok = X509_set1_notAfter(leaf, X509_get0_notAfter(ca->inter));
	else
		ok = X509_time_adj_ex(X509_getm_notAfter(leaf), 0, ttl_secs, &now) != NULL;
	if (!ok || !X509_sign(leaf, ca->inter_key, EVP_sha256())) {
		ks_ssl_err(err, errlen, "cannot sign the leaf certificate");
		goto cleanup;
	}
	bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio_X509(bio, leaf) || !PEM_write_bio_X509(bio, ca->inter)) {
		ks_ssl_err(err, errlen, "cannot encode the certificate chain");
		rc = -ENOMEM;
		goto cleanup;
	}
	rc = bio_string(bio, chain_pem);
	if (rc < 0)
		errf(err, errlen, "out of memory");
cleanup:
	BIO_free(bio);
	X509_free(leaf);
	X509_NAME_free(name);
	ASN1_TIME_free(tnow);
	return rc;
}

/* Error messages quote CSR contents; keep them printable and short. */
static void printable(char *dst, size_t dstlen, const unsigned char *src, int srclen)
{
	size_t n = 0;

	for (int i = 0; i < srclen && n + 1 < dstlen; i++)
		dst[n++] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
	dst[n] = '\0';
}

static int check_csr_uris(X509_REQ *req, const char *spiffe_id, char *err, size_t errlen)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *names = NULL;
	size_t idlen = strlen(spiffe_id);
	int crit = -1, rc = -EINVAL;

	if (!exts) {
		ks_ssl_err(err, errlen, "CSR has a malformed extension request");
		return -EINVAL;
	}
	names = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
	if (!names) {
		if (crit == -1) {
			rc = 0; /* no SAN: the ID comes from the request alone */
		} else if (crit == -2) {
			errf(err, errlen, "CSR has more than one subjectAltName extension");
		} else {
			ks_ssl_err(err, errlen, "CSR has a malformed subjectAltName");
		}
		goto cleanup;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		const ASN1_IA5STRING *u;
		char shown[160];

		if (gn->type != GEN_URI)
			continue;
		u = gn->d.uniformResourceIdentifier;
		if ((size_t)ASN1_STRING_length(u) == idlen &&
		    memcmp(ASN1_STRING_get0_data(u), spiffe_id, idlen) == 0)
			continue;
		printable(shown, sizeof(shown), ASN1_STRING_get0_data(u), ASN1_STRING_length(u));
		errf(err, errlen, "CSR URI SAN \"%s\" differs from the requested SPIFFE ID %s",
		     shown, spiffe_id);
		goto cleanup;
	}
	rc = 0;
cleanup:
	GENERAL_NAMES_free(names);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return rc;
}

int ks_devca_sign_csr(struct ks_devca *ca, const char *csr_pem, size_t csr_len,
		      const char *spiffe_id, long ttl_secs, char **chain_pem, char *err,
		      size_t errlen)
{
	X509_REQ *req = NULL;
	EVP_PKEY *pub;
	BIO *bio = NULL;
	int rc;

	rc = check_request(ca, spiffe_id, ttl_secs, chain_pem, err, errlen);
	if (rc < 0)
		return rc;
	if (!csr_pem || csr_len == 0 || csr_len > INT_MAX) {
		errf(err, errlen, "CSR is empty or too large");
		return -EINVAL;
	}
	bio = BIO_new_mem_buf(csr_pem, (int)csr_len);
	if (!bio) {
		ks_ssl_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = -EINVAL;
	req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
	if (!req) {
		ks_ssl_err(err, errlen, "CSR is not a PEM certificate request");
		goto cleanup;
	}
	pub = X509_REQ_get0_pubkey(req);
	if (!pub) {
		ks_ssl_err(err, errlen, "CSR has no usable public key");
		goto cleanup;
	}
	/* Proof of possession: whoever sent the CSR holds the private key. */
	if (X509_REQ_verify(req, pub) != 1) {
		ks_ssl_err(err, errlen, "CSR self-signature does not verify");
		goto cleanup;
	}
	rc = check_key_type(pub, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = check_csr_uris(req, spiffe_id, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = issue_leaf(ca, pub, spiffe_id, ttl_secs, chain_pem, err, errlen);
cleanup:
	X509_REQ_free(req);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

int ks_devca_issue(struct ks_devca *ca, const char *spiffe_id, long ttl_secs, char **chain_pem,
		   char **key_out, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;
	int rc;

	if (!key_out) {
		errf(err, errlen, "no key output given");
		return -EINVAL;
	}
	*key_out = NULL;
	rc = check_request(ca, spiffe_id, ttl_secs, chain_pem, err, errlen);
	if (rc < 0)
		return rc;
	key = EVP_EC_gen("P-256");
	if (!key) {
		ks_ssl_err(err, errlen, "cannot generate a P-256 key");
		rc = -EIO;
		goto cleanup;
	}
	rc = issue_leaf(ca, key, spiffe_id, ttl_secs, chain_pem, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = key_pem(key, key_out);
	if (rc < 0) {
		ks_ssl_err(err, errlen, "cannot encode the private key");
		free(*chain_pem);
		*chain_pem = NULL;
	}
cleanup:
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

static bool seen_serial(STACK_OF(X509) * certs, int upto)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(sk_X509_value(certs, upto));

	for (int i = 0; i < upto; i++) {
		if (ASN1_INTEGER_cmp(sn, X509_get0_serialNumber(sk_X509_value(certs, i))) == 0)
			return true;
	}
	return false;
}

static int revoke_certs(struct ks_devca *ca, X509_CRL *crl, const char *certs_pem, ASN1_TIME *when,
			char *err, size_t errlen)
{
	STACK_OF(X509) *certs = NULL;
	X509_REVOKED *rev = NULL;
	int rc;

	rc = ks_pem_certs(certs_pem, strlen(certs_pem), &certs, err, errlen);
	if (rc < 0)
		return rc;
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *x = sk_X509_value(certs, i);

		/* Name + AKI match and the signature: a CRL only speaks for its issuer's
		 * certificates (RFC 5280 §5.1.2.3, §6.3.3 (b)). */
		if (X509_check_issued(ca->inter, x) != X509_V_OK ||
		    X509_verify(x, X509_get0_pubkey(ca->inter)) != 1) {
			char subj[256], shown[256];

			X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
			printable(shown, sizeof(shown), (const unsigned char *)subj,
				  (int)strlen(subj));
			errf(err, errlen,
			     "certificate %d (subject %s) was not issued by this CA's intermediate",
			     i + 1, shown);
			rc = -EINVAL;
			goto cleanup;
		}
		if (seen_serial(certs, i))
			continue;
		rev = X509_REVOKED_new();
		if (!rev || !X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(x)) ||
		    !X509_REVOKED_set_revocationDate(rev, when) ||
		    !X509_CRL_add0_revoked(crl, rev)) {
			ks_ssl_err(err, errlen, "cannot add a revoked entry");
			rc = -ENOMEM;
			goto cleanup;
		}
		rev = NULL;
	}
	rc = 0;
cleanup:
	X509_REVOKED_free(rev);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

int ks_devca_crl(struct ks_devca *ca, const char *certs_pem, long next_update_secs, char **crl_pem,
		 char *err, size_t errlen)
{
	time_t now = time(NULL);
	ASN1_TIME *last = NULL, *next = NULL;
	ASN1_INTEGER *number = NULL;
	X509_EXTENSION *akid = NULL;
	X509_CRL *crl = NULL;
	X509V3_CTX ctx;
	BIO *bio = NULL;
	int rc = -EINVAL;

	if (!ca || !crl_pem) {
		errf(err, errlen, "no CA or no output given");
		return -EINVAL;
	}
	*crl_pem = NULL;
	if (next_update_secs < 1) {
		errf(err, errlen, "next update must be at least 1 second ahead (got %ld)",
		     next_update_secs);
		return -EINVAL;
	}
	crl = X509_CRL_new();
	last = ASN1_TIME_set(NULL, now);
	next = X509_time_adj_ex(NULL, 0, next_update_secs, &now);
	number = ASN1_INTEGER_new();
	/* RFC 5280 §5.1.2.1: v2 because the CRL has extensions. */
	if (!crl || !last || !next || !number || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->inter)) ||
	    !X509_CRL_set1_lastUpdate(crl, last) || !X509_CRL_set1_nextUpdate(crl, next)) {
		ks_ssl_err(err, errlen, "cannot build the CRL (next update out of range?)");
		goto cleanup;
	}
	if (certs_pem && *certs_pem) {
		rc = revoke_certs(ca, crl, certs_pem, last, err, errlen);
		if (rc < 0)
			goto cleanup;
	}
	rc = -EIO;
	/* RFC 5280 §5.2.1 (AKI, MUST) and §5.2.3 (CRL number, MUST, monotonic:
	 * the clock is good enough for a development CA). */
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, ca->inter, NULL, NULL, crl, 0);
	akid = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
	if (!akid || !X509_CRL_add_ext(crl, akid, -1) || !ASN1_INTEGER_set_int64(number, now) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0) || !X509_CRL_sort(crl) ||
	    !X509_CRL_sign(crl, ca->inter_key, EVP_sha256())) {
		ks_ssl_err(err, errlen, "cannot sign the CRL");
		goto cleanup;
	}
	bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio_X509_CRL(bio, crl)) {
		ks_ssl_err(err, errlen, "cannot encode the CRL");
		rc = -ENOMEM;
		goto cleanup;
	}
	rc = bio_string(bio, crl_pem);
	if (rc < 0)
		errf(err, errlen, "out of memory");
cleanup:
	BIO_free(bio);
	X509_EXTENSION_free(akid);
	X509_CRL_free(crl);
	ASN1_INTEGER_free(number);
	ASN1_TIME_free(next);
	ASN1_TIME_free(last);
	ERR_clear_error();
	return rc;
}
