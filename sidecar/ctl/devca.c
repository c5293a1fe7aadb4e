/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Development CA (devca.h): NOT FOR PRODUCTION. A root that only ever signs
 * one intermediate, which signs X509-SVID leaves and CRLs. Certificates are
 * built structurally with OpenSSL; nothing from a CSR except its public key
 * reaches a certificate.
 */
#include "ctl/devca.h"

#include <dirent.h>
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
/* A CA directory's halves (devca.h). */
#define KS_ROOT_DIR   "root"
#define KS_SIGNER_DIR "signer"

struct ks_devca {
	X509 *inter;
	EVP_PKEY *inter_key;
	STACK_OF(X509) * bundle; /* the trust anchors the intermediate verifies under */
	char td[KS_SPIFFE_TD_MAX + 1];
	/* A root key beside the signer where it was opened, or "" (devca.h). */
	char root_key[PATH_MAX];
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
 * O_EXCL|O_NOFOLLOW refuses to write through anything planted at the path
 * (the unlink first clears a leftover of an interrupted run). fchmod makes
 * the mode exact whatever the umask.
 */
static int write_file(const char *dir, const char *name, const char *data, mode_t mode, char *err,
		      size_t errlen)
{
	char path[PATH_MAX];
	size_t len = strlen(data);
	FILE *fp;
	int fd, rc;

	rc = join(path, sizeof(path), dir, name, err, errlen);
	if (rc < 0)
		return rc;
	if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		errf(err, errlen, "cannot replace %s: %s", path, strerror(-rc));
		return rc;
	}
	fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		rc = -errno;
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

/*
 * Writes name.new and renames it over name: a reader (an agent starting)
 * sees the old file or the new one, never half of one.
 */
static int replace_file(const char *dir, const char *name, const char *data, mode_t mode, char *err,
			size_t errlen)
{
	char tmp[NAME_MAX + 1], from[PATH_MAX], to[PATH_MAX];
	int rc;

	snprintf(tmp, sizeof(tmp), "%s.new", name);
	rc = join(from, sizeof(from), dir, tmp, err, errlen);
	if (rc == 0)
		rc = join(to, sizeof(to), dir, name, err, errlen);
	if (rc == 0)
		rc = write_file(dir, tmp, data, mode, err, errlen);
	if (rc < 0)
		return rc;
	if (rename(from, to) < 0) {
		rc = -errno;
		errf(err, errlen, "cannot rename %s to %s: %s", from, to, strerror(-rc));
		unlink(from);
		return rc;
	}
	return 0;
}

/* stat(2), not lstat: a Kubernetes Secret volume is made of symlinks. */
static bool has_entry(const char *dir, const char *name, bool want_dir)
{
	char path[PATH_MAX];
	struct stat st;

	if (join(path, sizeof(path), dir, name, NULL, 0) < 0 || stat(path, &st) < 0)
		return false;
	return !want_dir || S_ISDIR(st.st_mode);
}

/*
 * Where dir keeps its two halves (devca.h): ca init's root/ and signer/, or
 * both in dir itself (a signer set, or the flat layout of earlier ktlsctl).
 */
static int find_halves(const char *dir, char *root, char *signer, size_t len, char *err,
		       size_t errlen)
{
	int rc;

	if (!has_entry(dir, KS_ROOT_DIR, true) && !has_entry(dir, KS_SIGNER_DIR, true)) {
		if (strlen(dir) >= len) {
			errf(err, errlen, "path %s is too long", dir);
			return -ENAMETOOLONG;
		}
		strcpy(root, dir);
		strcpy(signer, dir);
		return 0;
	}
	rc = join(root, len, dir, KS_ROOT_DIR, err, errlen);
	if (rc == 0)
		rc = join(signer, len, dir, KS_SIGNER_DIR, err, errlen);
	return rc;
}

/* Creates dir with mode 0700 whatever the umask (the CA's keys are ours alone), or accepts an
 * existing directory; *created says which. */
static int make_dir(const char *dir, bool *created, char *err, size_t errlen)
{
	struct stat st;
	int rc;

	*created = false;
	if (mkdir(dir, 0700) == 0) {
		*created = true;
		if (chmod(dir, 0700) < 0) {
			rc = -errno;
			errf(err, errlen, "cannot chmod %s: %s", dir, strerror(-rc));
			return rc;
		}
		return 0;
	}
	if (errno != EEXIST) {
		rc = -errno;
		errf(err, errlen, "cannot create directory %s: %s", dir, strerror(-rc));
		return rc;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		errf(err, errlen, "%s exists and is not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
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

/*
 * A new intermediate under root, written with the bundle (the root
 * certificate) and the trust domain into signer_dir, replacing what is
 * there. The certificate goes last: until it is renamed into place the old
 * one is there, and open() refuses a key that does not match it rather than
 * sign with a half-replaced signer.
 */
static int write_signer(const char *signer_dir, const char *td, X509 *root, EVP_PKEY *root_key,
			char *err, size_t errlen)
{
	static const char *const names[] = {"trust_domain", "bundle.pem", "intermediate.key",
					    "intermediate.pem"};
	static const mode_t modes[] = {0644, 0644, 0600, 0644};
	char *data[KS_ARRAY_SIZE(names)] = {NULL};
	char td_line[KS_SPIFFE_TD_MAX + 2];
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *inter = NULL;
	int rc = -EIO;

	if (!key) {
		ks_ssl_err(err, errlen, "cannot generate a P-256 key for the intermediate");
		goto cleanup;
	}
	inter = make_ca_cert(td, "intermediate", 0, KS_INTER_DAYS, key, root, root_key, time(NULL));
	if (!inter) {
		ks_ssl_err(err, errlen, "cannot build the intermediate certificate");
		goto cleanup;
	}
	snprintf(td_line, sizeof(td_line), "%s\n", td);
	if (!(data[0] = strdup(td_line)) || cert_pem(root, &data[1]) < 0 ||
	    key_pem(key, &data[2]) < 0 || cert_pem(inter, &data[3]) < 0) {
		ks_ssl_err(err, errlen, "cannot encode the signer as PEM");
		rc = -ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < KS_ARRAY_SIZE(names); i++) {
		rc = replace_file(signer_dir, names[i], data[i], modes[i], err, errlen);
		if (rc < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	ks_wipe_free_str(data[2]);
	free(data[0]);
	free(data[1]);
	free(data[3]);
	X509_free(inter);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

/* What init leaves in dir, and what a failed init takes away again. */
static void remove_ca(const char *root_dir, const char *signer_dir)
{
	static const char *const root_names[] = {"root.key", "root.pem", "trust_domain"};
	static const char *const signer_names[] = {"intermediate.key", "intermediate.pem",
						   "bundle.pem", "trust_domain"};
	char path[PATH_MAX];

	for (size_t i = 0; i < KS_ARRAY_SIZE(root_names); i++) {
		if (join(path, sizeof(path), root_dir, root_names[i], NULL, 0) == 0)
			unlink(path);
	}
	for (size_t i = 0; i < KS_ARRAY_SIZE(signer_names); i++) {
		if (join(path, sizeof(path), signer_dir, signer_names[i], NULL, 0) == 0)
			unlink(path);
	}
	/* Fails, as it should, where something else was left in them. */
	rmdir(signer_dir);
	rmdir(root_dir);
}

int ks_devca_init(const char *dir, const char *trust_domain, bool force, char *err, size_t errlen)
{
	/* What a CA of either layout, or a signer set, holds directly in dir. */
	static const char *const held[] = {KS_ROOT_DIR,	 KS_SIGNER_DIR,	     "root.pem",
					   "root.key",	 "intermediate.pem", "intermediate.key",
					   "bundle.pem", "trust_domain"};
	char root_dir[PATH_MAX], signer_dir[PATH_MAX], path[PATH_MAX];
	char td_line[KS_SPIFFE_TD_MAX + 2], *key = NULL, *cert = NULL;
	EVP_PKEY *root_key = NULL;
	X509 *root = NULL;
	bool created_dir = false, created;
	int rc;

	if (!dir || !*dir) {
		errf(err, errlen, "CA directory is empty");
		return -EINVAL;
	}
	rc = check_trust_domain(trust_domain, err, errlen);
	if (rc < 0)
		return rc;
	rc = join(root_dir, sizeof(root_dir), dir, KS_ROOT_DIR, err, errlen);
	if (rc == 0)
		rc = join(signer_dir, sizeof(signer_dir), dir, KS_SIGNER_DIR, err, errlen);
	if (rc < 0)
		return rc;
	rc = make_dir(dir, &created_dir, err, errlen);
	if (rc < 0) {
		if (rc != -ENOTDIR)
			errf(err, errlen, "cannot create CA directory %s: %s", dir, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < KS_ARRAY_SIZE(held) && !force; i++) {
		if (has_entry(dir, held[i], false)) {
			errf(err, errlen, "%s already holds a CA (%s); use --force to replace it",
			     dir, held[i]);
			return -EEXIST;
		}
	}

	root_key = EVP_EC_gen("P-256");
	if (!root_key) {
		ks_ssl_err(err, errlen, "cannot generate a P-256 root key");
		rc = -EIO;
		goto cleanup;
	}
	/* pathlen 1 on the root: room for the one intermediate and no more (RFC 5280 §4.2.1.9). */
	root =
	    make_ca_cert(trust_domain, "root", 1, KS_ROOT_DAYS, root_key, NULL, NULL, time(NULL));
	if (!root) {
		ks_ssl_err(err, errlen, "cannot build the root certificate");
		rc = -EIO;
		goto cleanup;
	}
	snprintf(td_line, sizeof(td_line), "%s\n", trust_domain);
	if (key_pem(root_key, &key) < 0 || cert_pem(root, &cert) < 0) {
		ks_ssl_err(err, errlen, "cannot encode the root as PEM");
		rc = -ENOMEM;
		goto cleanup;
	}
	rc = make_dir(root_dir, &created, err, errlen);
	if (rc == 0)
		rc = make_dir(signer_dir, &created, err, errlen);
	if (rc == 0)
		rc = replace_file(root_dir, "root.key", key, 0600, err, errlen);
	if (rc == 0)
		rc = replace_file(root_dir, "trust_domain", td_line, 0644, err, errlen);
	if (rc == 0)
		rc = write_signer(signer_dir, trust_domain, root, root_key, err, errlen);
	/* root.pem last: a root key without it is an init that did not finish. */
	if (rc == 0)
		rc = replace_file(root_dir, "root.pem", cert, 0644, err, errlen);
	/*
	 * A flat CA replaced by a split one, once the new one is complete: its
	 * root key must not stay behind beside signer/, where the agent's
	 * warning would be the only sign of it.
	 */
	for (size_t i = 2; rc == 0 && i < KS_ARRAY_SIZE(held); i++) {
		rc = join(path, sizeof(path), dir, held[i], err, errlen);
		if (rc == 0 && unlink(path) < 0 && errno != ENOENT) {
			rc = -errno;
			errf(err, errlen, "cannot remove %s: %s", path, strerror(-rc));
		}
	}
cleanup:
	/* Without force nothing was there before: take it all away, so that a
	 * retry is not refused. With force, what was replaced is gone anyway. */
	if (rc < 0 && !force) {
		remove_ca(root_dir, signer_dir);
		if (created_dir)
			rmdir(dir);
	}
	ks_wipe_free_str(key);
	free(cert);
	X509_free(root);
	EVP_PKEY_free(root_key);
	ERR_clear_error();
	return rc;
}

int ks_devca_new_signer(const char *dir, char *err, size_t errlen)
{
	char root_dir[PATH_MAX], signer_dir[PATH_MAX], td[KS_SPIFFE_TD_MAX + 1];
	EVP_PKEY *root_key = NULL;
	X509 *root = NULL;
	bool created;
	int rc;

	if (!dir || !*dir) {
		errf(err, errlen, "no CA directory given");
		return -EINVAL;
	}
	rc = find_halves(dir, root_dir, signer_dir, sizeof(root_dir), err, errlen);
	if (rc < 0)
		return rc;
	if (!has_entry(root_dir, "root.key", false)) {
		errf(err, errlen,
		     "%s has no root key (%s/root.key), and only the root can sign a new "
		     "intermediate: run this on the directory ktlsctl ca init made, with its "
		     "root/ (a signer set cannot make another signer)",
		     dir, root_dir);
		return -ENOKEY;
	}
	/* The flat layout keeps its signer next to the root; a root/ on its own has none. */
	if (strcmp(root_dir, signer_dir) == 0 && !has_entry(dir, "intermediate.pem", false)) {
		errf(err, errlen,
		     "%s holds a root key but no signer: pass the CA directory above it (the one "
		     "with root/ and signer/)",
		     dir);
		return -EINVAL;
	}
	rc = read_trust_domain(root_dir, td, sizeof(td), err, errlen);
	if (rc == 0)
		rc = read_cert(root_dir, "root.pem", &root, err, errlen);
	if (rc == 0)
		rc = read_key(root_dir, "root.key", &root_key, err, errlen);
	if (rc < 0)
		goto cleanup;
	if (X509_check_private_key(root, root_key) != 1) {
		ks_ssl_err(err, errlen, "root.key does not match root.pem");
		rc = -EINVAL;
		goto cleanup;
	}
	rc = make_dir(signer_dir, &created, err, errlen);
	if (rc == 0)
		rc = write_signer(signer_dir, td, root, root_key, err, errlen);
cleanup:
	X509_free(root);
	EVP_PKEY_free(root_key);
	ERR_clear_error();
	return rc;
}

static int verify_intermediate(struct ks_devca *ca, char *err, size_t errlen)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *vctx = X509_STORE_CTX_new();
	int rc = -EINVAL;

	if (!store || !vctx) {
		ks_ssl_err(err, errlen, "cannot set up verification of the intermediate");
		rc = -ENOMEM;
		goto cleanup;
	}
	for (int i = 0; i < sk_X509_num(ca->bundle); i++) {
		if (!X509_STORE_add_cert(store, sk_X509_value(ca->bundle, i))) {
			ks_ssl_err(err, errlen, "cannot set up verification of the intermediate");
			rc = -ENOMEM;
			goto cleanup;
		}
	}
	if (!X509_STORE_CTX_init(vctx, store, ca->inter, NULL)) {
		ks_ssl_err(err, errlen, "cannot set up verification of the intermediate");
		rc = -ENOMEM;
		goto cleanup;
	}
	if (X509_verify_cert(vctx) != 1) {
		errf(err, errlen, "intermediate.pem does not verify under bundle.pem: %s",
		     X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
		goto cleanup;
	}
	/* The target of a verification need not be a CA; this one must sign leaves. */
	if (X509_check_ca(ca->inter) != 1) {
		errf(err, errlen, "intermediate.pem is not a CA certificate");
		goto cleanup;
	}
	/*
	 * A root copied in as the intermediate verifies (it is its own anchor),
	 * and its key would then travel as the signer's: everywhere the
	 * signer goes, which is what the split exists to prevent.
	 */
	for (int i = 0; i < sk_X509_num(ca->bundle); i++) {
		if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(ca->bundle, i)), ca->inter_key) ==
		    1) {
			errf(err, errlen,
			     "intermediate.key is the key of certificate %d of bundle.pem, a root: "
			     "the signer must be an intermediate, never the root",
			     i + 1);
			goto cleanup;
		}
	}
	rc = 0;
cleanup:
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(store);
	return rc;
}

/* Says clearly what dir is instead, when it holds no signer. */
static int check_has_signer(const char *dir, const char *root_dir, const char *signer_dir,
			    char *err, size_t errlen)
{
	struct stat st;

	if (has_entry(signer_dir, "intermediate.pem", false))
		return 0;
	if (stat(dir, &st) < 0) {
		int rc = -errno;

		errf(err, errlen, "cannot open %s: %s", dir, strerror(-rc));
		return rc;
	}
	if (strcmp(root_dir, signer_dir) != 0)
		errf(err, errlen,
		     "%s has a root (%s) but no signer (%s): make one with ktlsctl ca "
		     "new-signer %s",
		     dir, root_dir, signer_dir, dir);
	else if (has_entry(dir, "root.key", false))
		errf(err, errlen,
		     "%s holds a root key but no signer (intermediate.pem): pass the "
		     "CA directory (with root/ and signer/), or a signer set from ktlsctl ca "
		     "export-signer",
		     dir);
	else
		errf(err, errlen,
		     "%s holds no dev CA: expected signer/ (a CA from ktlsctl ca init) "
		     "or intermediate.pem (a signer set from ktlsctl ca export-signer)",
		     dir);
	return -ENOENT;
}

int ks_devca_open(const char *dir, struct ks_devca **out, char *err, size_t errlen)
{
	char root_dir[PATH_MAX], signer_dir[PATH_MAX], path[PATH_MAX];
	struct ks_devca *ca = NULL;
	int rc;

	if (!dir || !out) {
		errf(err, errlen, "no CA directory given");
		return -EINVAL;
	}
	*out = NULL;
	rc = find_halves(dir, root_dir, signer_dir, sizeof(root_dir), err, errlen);
	if (rc == 0)
		rc = check_has_signer(dir, root_dir, signer_dir, err, errlen);
	if (rc == 0)
		rc = join(path, sizeof(path), signer_dir, "bundle.pem", err, errlen);
	if (rc < 0)
		return rc;
	ca = calloc(1, sizeof(*ca));
	if (!ca) {
		errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = read_trust_domain(signer_dir, ca->td, sizeof(ca->td), err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = ks_pem_file_certs(path, &ca->bundle, "trust bundle", err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = read_cert(signer_dir, "intermediate.pem", &ca->inter, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = read_key(signer_dir, "intermediate.key", &ca->inter_key, err, errlen);
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
	/* Only looked at, never read: signing needs the intermediate alone. */
	if (has_entry(root_dir, "root.key", false))
		join(ca->root_key, sizeof(ca->root_key), root_dir, "root.key", NULL, 0);
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
	X509_free(ca->inter);
	EVP_PKEY_free(ca->inter_key);
	sk_X509_pop_free(ca->bundle, X509_free);
	free(ca);
}

const char *ks_devca_trust_domain(const struct ks_devca *ca)
{
	return ca ? ca->td : NULL;
}

const char *ks_devca_root_key(const struct ks_devca *ca)
{
	return ca && ca->root_key[0] ? ca->root_key : NULL;
}

static int bundle_pem(const struct ks_devca *ca, char **pem)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc = -ENOMEM;

	if (!bio)
		return -ENOMEM;
	for (int i = 0; i < sk_X509_num(ca->bundle); i++) {
		if (!PEM_write_bio_X509(bio, sk_X509_value(ca->bundle, i)))
			goto cleanup;
	}
	rc = bio_string(bio, pem);
cleanup:
	BIO_free(bio);
	return rc;
}

int ks_devca_bundle_pem(const struct ks_devca *ca, char **pem)
{
	int rc;

	if (!ca || !pem)
		return -EINVAL;
	*pem = NULL;
	rc = bundle_pem(ca, pem);
	ERR_clear_error();
	return rc;
}

/*
 * out must be new, empty, or (with force) an earlier signer set and nothing
 * else: `kubectl create secret --from-file=OUT` takes every file in it.
 */
static int check_export_dir(const char *out, bool force, char *err, size_t errlen)
{
	static const char *const names[] = {"intermediate.key", "intermediate.pem", "bundle.pem",
					    "trust_domain"};
	char stray[NAME_MAX + 1] = "";
	bool created, earlier = false;
	struct dirent *e;
	DIR *d;
	int rc;

	rc = make_dir(out, &created, err, errlen);
	if (rc < 0 || created)
		return rc;
	d = opendir(out);
	if (!d) {
		rc = -errno;
		errf(err, errlen, "cannot read %s: %s", out, strerror(-rc));
		return rc;
	}
	while ((e = readdir(d)) != NULL) {
		bool ours = false;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		for (size_t i = 0; i < KS_ARRAY_SIZE(names) && !ours; i++)
			ours = strcmp(e->d_name, names[i]) == 0;
		earlier |= ours;
		/* A root key is the one to name, whatever readdir shows first. */
		if (!ours && (!stray[0] || strcmp(e->d_name, "root.key") == 0))
			snprintf(stray, sizeof(stray), "%s", e->d_name);
	}
	closedir(d);
	if (stray[0]) {
		errf(err, errlen,
		     "%s holds %.64s: a signer set needs a directory of its own (all of it goes "
		     "into the Secret); use a new or empty one",
		     out, stray);
		return -ENOTEMPTY;
	}
	if (earlier && !force) {
		errf(err, errlen, "%s already holds a signer set; use --force to replace it", out);
		return -EEXIST;
	}
	return 0;
}

int ks_devca_export_signer(const struct ks_devca *ca, const char *out, bool force, char *err,
			   size_t errlen)
{
	char *key = NULL, *inter = NULL, *bundle = NULL, td_line[KS_SPIFFE_TD_MAX + 2];
	int rc;

	if (!ca || !out || !*out) {
		errf(err, errlen, "no CA or no output directory given");
		return -EINVAL;
	}
	rc = check_export_dir(out, force, err, errlen);
	if (rc < 0)
		return rc;
	/* From what open() checked, not copies of files: nothing else can come along. */
	snprintf(td_line, sizeof(td_line), "%s\n", ca->td);
	if (key_pem(ca->inter_key, &key) < 0 || cert_pem(ca->inter, &inter) < 0 ||
	    bundle_pem(ca, &bundle) < 0) {
		ks_ssl_err(err, errlen, "cannot encode the signer set as PEM");
		rc = -ENOMEM;
		goto cleanup;
	}
	rc = replace_file(out, "trust_domain", td_line, 0644, err, errlen);
	if (rc == 0)
		rc = replace_file(out, "bundle.pem", bundle, 0644, err, errlen);
	if (rc == 0)
		rc = replace_file(out, "intermediate.key", key, 0600, err, errlen);
	if (rc == 0)
		rc = replace_file(out, "intermediate.pem", inter, 0644, err, errlen);
cleanup:
	ks_wipe_free_str(key);
	free(inter);
	free(bundle);
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
