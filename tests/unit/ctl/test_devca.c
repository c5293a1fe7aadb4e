/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The development CA: what it writes to disk (the root and the signer apart),
 * that every certificate and CRL it makes verifies with plain OpenSSL as a
 * peer would check it (strict RFC 5280 mode), that an exported signer set
 * holds no root key and signs alone, that the flat layout of earlier
 * ktlsctl still works, and that bad requests are refused with a reason
 * naming the problem. Each test works in a temporary directory.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "ctl/devca.h"
#include "tests/unit/support.h"
#include "tls/spiffe.h"

#define TD   "example.org"
#define WEB  "spiffe://example.org/ns/a/sa/web"
#define HOUR 3600L
#define YEAR (365L * 86400)

static char dir[256];
/* Two CAs in the same trust domain: "other" must never vouch for "ca". */
static char ca_dir[320];
static char other_dir[320];
/* Their halves (devca.h): what signs, and the root. */
static char ca_signer[340];
static char ca_root[340];
static char other_signer[340];

static void path_of(char *out, size_t outlen, const char *d, const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", d, name);

	if (n < 0 || (size_t)n >= outlen)
		fail_msg("path %s/%s is too long", d, name);
}

static void spew(const char *d, const char *name, const char *data)
{
	char path[512];
	FILE *fp;

	path_of(path, sizeof(path), d, name);
	fp = fopen(path, "w");
	if (!fp)
		fail_msg("cannot write %s", path);
	fputs(data, fp);
	fclose(fp);
}

static void copy_file(const char *from_dir, const char *to_dir, const char *name)
{
	char *data = ks_test_slurp(from_dir, name);

	spew(to_dir, name, data);
	free(data);
}

static void rm_rf(const char *path)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

static void init_ok(const char *d, const char *td)
{
	char err[512] = "";

	if (ks_devca_init(d, td, false, err, sizeof(err)) != 0)
		fail_msg("init %s: %s", d, err);
}

static int setup(void **state)
{
	char err[512] = "";

	(void)state;
	snprintf(dir, sizeof(dir), "%s/ks-devca-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	path_of(ca_dir, sizeof(ca_dir), dir, "ca");
	path_of(other_dir, sizeof(other_dir), dir, "other");
	path_of(ca_signer, sizeof(ca_signer), ca_dir, "signer");
	path_of(ca_root, sizeof(ca_root), ca_dir, "root");
	path_of(other_signer, sizeof(other_signer), other_dir, "signer");
	if (ks_devca_init(ca_dir, TD, false, err, sizeof(err)) != 0 ||
	    ks_devca_init(other_dir, TD, false, err, sizeof(err)) != 0) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rm_rf(dir);
	return 0;
}

static struct ks_devca *open_ca(const char *d)
{
	struct ks_devca *ca = NULL;
	char err[512] = "";

	if (ks_devca_open(d, &ca, err, sizeof(err)) != 0)
		fail_msg("open %s: %s", d, err);
	assert_non_null(ca);
	return ca;
}

static STACK_OF(X509) * parse_certs(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	STACK_OF(X509) *certs = sk_X509_new_null();
	X509 *x;

	assert_non_null(bio);
	assert_non_null(certs);
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		assert_true(sk_X509_push(certs, x) > 0);
	ERR_clear_error();
	BIO_free(bio);
	return certs;
}

static X509 *load_cert(const char *d, const char *name)
{
	char *pem = ks_test_slurp(d, name);
	STACK_OF(X509) *certs = parse_certs(pem);
	X509 *x;

	free(pem);
	assert_int_equal(sk_X509_num(certs), 1);
	x = sk_X509_shift(certs);
	sk_X509_free(certs);
	return x;
}

static EVP_PKEY *load_key(const char *d, const char *name)
{
	char *pem = ks_test_slurp(d, name);
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);

	assert_non_null(key);
	BIO_free(bio);
	free(pem);
	return key;
}

static X509_CRL *parse_crl(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509_CRL *crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);

	assert_non_null(crl);
	BIO_free(bio);
	return crl;
}

static char *cert_to_pem(X509 *x)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out;
	long n;

	assert_true(PEM_write_bio_X509(bio, x));
	n = BIO_get_mem_data(bio, &data);
	out = strndup(data, (size_t)n);
	assert_non_null(out);
	BIO_free(bio);
	return out;
}

/* The first certificate of a chain PEM, as PEM. */
static char *leaf_pem(const char *chain)
{
	STACK_OF(X509) *certs = parse_certs(chain);
	char *out;

	assert_true(sk_X509_num(certs) >= 1);
	out = cert_to_pem(sk_X509_value(certs, 0));
	sk_X509_pop_free(certs, X509_free);
	return out;
}

/* Seconds from now until t (negative: in the past). */
static long secs_until(const ASN1_TIME *t)
{
	int days, secs;

	assert_true(ASN1_TIME_diff(&days, &secs, NULL, t));
	return (long)days * 86400 + secs;
}

static int ext_critical(X509 *x, int nid)
{
	int idx = X509_get_ext_by_NID(x, nid, -1);

	if (idx < 0)
		fail_msg("extension %s missing", OBJ_nid2sn(nid));
	return X509_EXTENSION_get_critical(X509_get_ext(x, idx));
}

static void name_text(X509_NAME *name, int nid, char *out, int outlen)
{
	if (X509_NAME_get_text_by_NID(name, nid, out, outlen) < 0)
		out[0] = '\0';
}

/*
 * Verifies the first certificate of chain_pem, with the rest as untrusted
 * intermediates, against d/bundle.pem as a peer would: strict RFC 5280
 * checks, a TLS purpose (EKU), and the CRL when given. Returns X509_V_OK or
 * the verification error.
 */
static int verify(const char *d, const char *chain_pem, const char *crl_pem, int purpose)
{
	STACK_OF(X509) *certs = parse_certs(chain_pem);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	char bundle[512];
	X509 *leaf;
	int rc;

	path_of(bundle, sizeof(bundle), d, "bundle.pem");
	assert_non_null(store);
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_load_file(store, bundle), 1);
	X509_STORE_set_flags(store, X509_V_FLAG_X509_STRICT);
	if (crl_pem) {
		X509_CRL *crl = parse_crl(crl_pem);

		assert_int_equal(X509_STORE_add_crl(store, crl), 1);
		X509_CRL_free(crl);
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	}
	leaf = sk_X509_shift(certs);
	assert_non_null(leaf);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, certs), 1);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
	rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(leaf);
	sk_X509_pop_free(certs, X509_free);
	ERR_clear_error();
	return rc;
}

static void expect_verifies(const char *d, const char *chain_pem)
{
	int rc = verify(d, chain_pem, NULL, X509_PURPOSE_SSL_CLIENT);

	if (rc != X509_V_OK)
		fail_msg("chain does not verify as a client: %s",
			 X509_verify_cert_error_string(rc));
	rc = verify(d, chain_pem, NULL, X509_PURPOSE_SSL_SERVER);
	if (rc != X509_V_OK)
		fail_msg("chain does not verify as a server: %s",
			 X509_verify_cert_error_string(rc));
}

static void check_serial(X509 *x)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);

	assert_non_null(bn);
	assert_false(BN_is_negative(bn));
	assert_false(BN_is_zero(bn));
	assert_true(BN_num_bits(bn) <= 128);
	/* 128 random bits: fewer than 64 significant ones has probability 2^-64. */
	assert_true(BN_num_bits(bn) > 64);
	BN_free(bn);
}

/* Everything X509-SVID and the header promise about a leaf. */
static void check_leaf(X509 *leaf, X509 *inter, const char *id, long ttl, bool rsa)
{
	GENERAL_NAMES *san;
	const GENERAL_NAME *gn;
	BASIC_CONSTRAINTS *bc;
	char buf[KS_SPIFFE_MAX + 1];
	const char *why = NULL;
	long left;
	int crit = -1;

	san = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	assert_non_null(san);
	assert_int_equal(sk_GENERAL_NAME_num(san), 1);
	gn = sk_GENERAL_NAME_value(san, 0);
	assert_int_equal(gn->type, GEN_URI);
	assert_int_equal(ASN1_STRING_length(gn->d.uniformResourceIdentifier), (int)strlen(id));
	assert_memory_equal(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), id, strlen(id));
	GENERAL_NAMES_free(san);
	if (ks_spiffe_from_cert(leaf, buf, sizeof(buf), &why) != 0)
		fail_msg("ks_spiffe_from_cert: %s", why);
	assert_string_equal(buf, id);

	bc = X509_get_ext_d2i(leaf, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_false(bc->ca);
	assert_int_equal(crit, 1);
	BASIC_CONSTRAINTS_free(bc);
	assert_int_equal(X509_check_ca(leaf), 0);

	assert_int_equal(X509_get_key_usage(leaf),
			 KU_DIGITAL_SIGNATURE | (rsa ? KU_KEY_ENCIPHERMENT : 0));
	assert_int_equal(ext_critical(leaf, NID_key_usage), 1);
	assert_int_equal(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);

	assert_non_null(X509_get0_subject_key_id(leaf));
	assert_non_null(X509_get0_authority_key_id(leaf));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf),
					       X509_get0_subject_key_id(inter)),
			 0);
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(inter)),
			 0);

	name_text(X509_get_subject_name(leaf), NID_organizationName, buf, sizeof(buf));
	assert_string_equal(buf, "ktls-sidecar");
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(leaf)), 1);

	left = secs_until(X509_get0_notAfter(leaf));
	if (left > ttl || left < ttl - 10)
		fail_msg("notAfter is %ld s away, expected about %ld", left, ttl);
	left = secs_until(X509_get0_notBefore(leaf));
	if (left > -29 || left < -40)
		fail_msg("notBefore is %ld s away, expected about -30", left);

	assert_int_equal(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
	check_serial(leaf);
}

static void check_group(EVP_PKEY *key, const char *group)
{
	char name[64] = "";
	size_t len = 0;

	assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
	assert_true(EVP_PKEY_get_group_name(key, name, sizeof(name), &len));
	assert_string_equal(name, group);
}

static mode_t mode_of(const char *d, const char *name)
{
	char path[512];
	struct stat st;

	path_of(path, sizeof(path), d, name);
	if (stat(path, &st) != 0)
		fail_msg("%s missing", path);
	return st.st_mode & 07777;
}

/* The names in d, sorted, comma-separated (without . and ..). */
static char *entries(const char *d)
{
	struct dirent **list = NULL;
	char *out = calloc(1, 1024);
	int n = scandir(d, &list, NULL, alphasort);

	assert_non_null(out);
	if (n < 0)
		fail_msg("cannot list %s", d);
	for (int i = 0; i < n; i++) {
		if (strcmp(list[i]->d_name, ".") != 0 && strcmp(list[i]->d_name, "..") != 0) {
			if (out[0])
				strcat(out, ",");
			strncat(out, list[i]->d_name, 1024 - strlen(out) - 2);
		}
		free(list[i]);
	}
	free(list);
	return out;
}

static void expect_entries(const char *d, const char *want)
{
	char *got = entries(d);

	if (strcmp(got, want) != 0)
		fail_msg("%s holds %s, expected %s", d, got, want);
	free(got);
}

#define SIGNER_SET "bundle.pem,intermediate.key,intermediate.pem,trust_domain"

/*
 * Every private key in every file of d (PEM_read_bio_PrivateKey skips other
 * blocks), compared with the root certificate's public key: none may be the
 * root's. Returns how many keys there were, so a caller can tell an empty
 * set from a clean one.
 */
static int keys_not_root(const char *d, X509 *root)
{
	struct dirent **list = NULL;
	int n = scandir(d, &list, NULL, alphasort), keys = 0;

	if (n < 0)
		fail_msg("cannot list %s", d);
	for (int i = 0; i < n; i++) {
		char path[512];
		EVP_PKEY *key;
		BIO *bio;

		path_of(path, sizeof(path), d, list[i]->d_name);
		bio = list[i]->d_type == DT_REG ? BIO_new_file(path, "r") : NULL;
		while (bio && (key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) != NULL) {
			if (EVP_PKEY_eq(key, X509_get0_pubkey(root)) == 1)
				fail_msg("%s holds the root's private key", path);
			keys++;
			EVP_PKEY_free(key);
		}
		BIO_free(bio);
		free(list[i]);
	}
	free(list);
	ERR_clear_error();
	return keys;
}

/* A CA in the flat layout of ktlsctl before the root/signer split: the same six files in one
 * directory, taken from the split CA in from. */
static void make_flat(const char *from, const char *to)
{
	char root[340], signer[340];

	path_of(root, sizeof(root), from, "root");
	path_of(signer, sizeof(signer), from, "signer");
	ks_test_sh("mkdir -m 700 '%s' && cp -p '%s'/root.key '%s'/root.pem '%s'/* '%s'/", to, root,
		   root, signer, to);
	expect_entries(to, "bundle.pem,intermediate.key,intermediate.pem,root.key,root.pem,"
			   "trust_domain");
}

static void test_init_files(void **state)
{
	char d[320], rd[340], sd[340], buf[256], err[512] = "";
	X509 *root, *inter, *bundle;
	EVP_PKEY *root_key, *inter_key;
	char *text;
	int days, secs;

	(void)state;
	path_of(d, sizeof(d), dir, "fresh");
	path_of(rd, sizeof(rd), d, "root");
	path_of(sd, sizeof(sd), d, "signer");
	assert_int_equal(ks_devca_init(d, TD, false, err, sizeof(err)), 0);
	assert_int_equal(ERR_peek_error(), 0);
	/* The root apart from what signs: the signer can be handed out alone. */
	expect_entries(d, "root,signer");
	expect_entries(rd, "root.key,root.pem,trust_domain");
	expect_entries(sd, SIGNER_SET);
	assert_int_equal(mode_of(d, "."), 0700);
	assert_int_equal(mode_of(d, "root"), 0700);
	assert_int_equal(mode_of(d, "signer"), 0700);
	assert_int_equal(mode_of(rd, "root.key"), 0600);
	assert_int_equal(mode_of(sd, "intermediate.key"), 0600);
	assert_int_equal(mode_of(rd, "root.pem"), 0644);
	assert_int_equal(mode_of(sd, "intermediate.pem"), 0644);
	assert_int_equal(mode_of(sd, "bundle.pem"), 0644);
	assert_int_equal(mode_of(sd, "trust_domain"), 0644);
	assert_int_equal(mode_of(rd, "trust_domain"), 0644);
	text = ks_test_slurp(sd, "trust_domain");
	assert_string_equal(text, TD "\n");
	free(text);
	text = ks_test_slurp(rd, "trust_domain");
	assert_string_equal(text, TD "\n");
	free(text);
	text = ks_test_slurp(rd, "root.key");
	assert_non_null(strstr(text, "-----BEGIN PRIVATE KEY-----"));
	free(text);

	root = load_cert(rd, "root.pem");
	bundle = load_cert(sd, "bundle.pem"); /* and only one certificate in it */
	inter = load_cert(sd, "intermediate.pem");
	/* One key in signer/, and it is not the root's. */
	assert_int_equal(keys_not_root(sd, root), 1);
	assert_int_equal(X509_cmp(root, bundle), 0);

	/* Root: self-signed, CA:TRUE critical, pathlen 1, keyCertSign+cRLSign critical. */
	assert_int_equal(X509_check_issued(root, root), X509_V_OK);
	assert_int_equal(X509_verify(root, X509_get0_pubkey(root)), 1);
	assert_int_equal(X509_check_ca(root), 1);
	assert_int_equal(X509_get_pathlen(root), 1);
	assert_int_equal(ext_critical(root, NID_basic_constraints), 1);
	assert_int_equal(X509_get_key_usage(root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_int_equal(ext_critical(root, NID_key_usage), 1);
	assert_non_null(X509_get0_subject_key_id(root));
	assert_int_equal(
	    ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(root), X509_get0_subject_key_id(root)),
	    0);
	name_text(X509_get_subject_name(root), NID_organizationName, buf, sizeof(buf));
	assert_string_equal(buf, "ktls-sidecar dev CA");
	name_text(X509_get_subject_name(root), NID_commonName, buf, sizeof(buf));
	assert_int_equal(strncmp(buf, TD " root ", strlen(TD " root ")), 0);
	assert_int_equal(strlen(buf), strlen(TD " root ") + 8);
	assert_int_equal(X509_get_signature_nid(root), NID_ecdsa_with_SHA256);
	check_group(X509_get0_pubkey(root), "prime256v1");
	check_serial(root);
	assert_true(
	    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(root), X509_get0_notAfter(root)));
	assert_in_range(days, 3650, 3653);

	/* Intermediate: signed by the root, pathlen 0, five years. */
	assert_int_equal(X509_check_issued(root, inter), X509_V_OK);
	assert_int_equal(X509_verify(inter, X509_get0_pubkey(root)), 1);
	assert_int_equal(X509_check_ca(inter), 1);
	assert_int_equal(X509_get_pathlen(inter), 0);
	assert_int_equal(X509_get_key_usage(inter), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(inter),
					       X509_get0_subject_key_id(root)),
			 0);
	assert_int_equal(X509_get_signature_nid(inter), NID_ecdsa_with_SHA256);
	check_group(X509_get0_pubkey(inter), "prime256v1");
	check_serial(inter);
	assert_true(
	    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(inter), X509_get0_notAfter(inter)));
	assert_in_range(days, 1825, 1827);

	root_key = load_key(rd, "root.key");
	inter_key = load_key(sd, "intermediate.key");
	assert_int_equal(X509_check_private_key(root, root_key), 1);
	assert_int_equal(X509_check_private_key(inter, inter_key), 1);

	EVP_PKEY_free(inter_key);
	EVP_PKEY_free(root_key);
	X509_free(inter);
	X509_free(bundle);
	X509_free(root);
}

static void test_init_existing(void **state)
{
	static const char *const bad_tds[] = {
	    "Example.org", "exa mple.org", "example.org:443", "a/b", "", "user@example.org"};
	char d[320], missing[320], flat[320], set[320], err[512] = "";
	char *before, *after;
	struct ks_devca *ca;

	(void)state;
	path_of(d, sizeof(d), dir, "again");
	init_ok(d, TD);
	before = ks_test_slurp(d, "root/root.pem");
	assert_int_equal(ks_devca_init(d, TD, false, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "already holds a CA"));
	after = ks_test_slurp(d, "root/root.pem");
	assert_string_equal(before, after);
	free(after);

	err[0] = '\0';
	if (ks_devca_init(d, "other.example", true, err, sizeof(err)) != 0)
		fail_msg("forced init: %s", err);
	after = ks_test_slurp(d, "root/root.pem");
	assert_string_not_equal(before, after);
	free(after);
	free(before);
	assert_int_equal(mode_of(d, "root/root.key"), 0600);
	assert_int_equal(mode_of(d, "signer/intermediate.key"), 0600);
	expect_entries(d, "root,signer");
	ca = open_ca(d);
	assert_string_equal(ks_devca_trust_domain(ca), "other.example");
	ks_devca_close(ca);

	/* A flat CA of earlier ktlsctl, and a signer set, are CAs too: refused without force. */
	path_of(flat, sizeof(flat), dir, "again-flat");
	make_flat(ca_dir, flat);
	path_of(set, sizeof(set), dir, "again-set");
	ks_test_sh("mkdir '%s' && cp '%s'/* '%s'/", set, ca_signer, set);
	err[0] = '\0';
	assert_int_equal(ks_devca_init(flat, TD, false, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "already holds a CA"));
	err[0] = '\0';
	assert_int_equal(ks_devca_init(set, TD, false, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "already holds a CA"));
	/* Forced over a flat CA: the old root key does not stay behind next to signer/. */
	if (ks_devca_init(flat, TD, true, err, sizeof(err)) != 0)
		fail_msg("forced init over a flat CA: %s", err);
	expect_entries(flat, "root,signer");

	/* Invalid trust domains are refused before anything is created. */
	path_of(missing, sizeof(missing), dir, "never");
	for (size_t i = 0; i < sizeof(bad_tds) / sizeof(bad_tds[0]); i++) {
		err[0] = '\0';
		if (ks_devca_init(missing, bad_tds[i], false, err, sizeof(err)) != -EINVAL)
			fail_msg("trust domain \"%s\" accepted", bad_tds[i]);
		assert_non_null(strstr(err, "trust domain"));
	}
	assert_int_equal(ks_devca_init(missing, NULL, false, err, sizeof(err)), -EINVAL);
	assert_int_equal(access(missing, F_OK), -1);

	path_of(missing, sizeof(missing), dir, "no/such/parent");
	err[0] = '\0';
	assert_int_equal(ks_devca_init(missing, TD, false, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot create CA directory"));
}

static void test_issue(void **state)
{
	struct ks_devca *ca = open_ca(ca_dir);
	char *chain = NULL, *key_pem = NULL, *chain2 = NULL, *key2 = NULL, *bundle = NULL, *file;
	char err[512] = "";
	STACK_OF(X509) * certs, *certs2;
	X509 *inter = load_cert(ca_signer, "intermediate.pem");
	EVP_PKEY *key;
	BIO *bio;

	(void)state;
	assert_string_equal(ks_devca_trust_domain(ca), TD);
	if (ks_devca_issue(ca, WEB, HOUR, &chain, &key_pem, err, sizeof(err)) != 0)
		fail_msg("issue: %s", err);
	assert_int_equal(ERR_peek_error(), 0);
	certs = parse_certs(chain);
	assert_int_equal(sk_X509_num(certs), 2);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 1), inter), 0);
	expect_verifies(ca_signer, chain);
	/* The verification above means something: another CA's bundle refuses it. */
	assert_int_not_equal(verify(other_signer, chain, NULL, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	check_leaf(sk_X509_value(certs, 0), inter, WEB, HOUR, false);

	assert_int_equal(strncmp(key_pem, "-----BEGIN PRIVATE KEY-----", 27), 0);
	bio = BIO_new_mem_buf(key_pem, -1);
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_non_null(key);
	check_group(key, "prime256v1");
	assert_int_equal(X509_check_private_key(sk_X509_value(certs, 0), key), 1);

	/* A second leaf has a fresh key and serial. */
	if (ks_devca_issue(ca, WEB, HOUR, &chain2, &key2, err, sizeof(err)) != 0)
		fail_msg("issue: %s", err);
	assert_string_not_equal(key_pem, key2);
	certs2 = parse_certs(chain2);
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(sk_X509_value(certs, 0)),
					      X509_get0_serialNumber(sk_X509_value(certs2, 0))),
			     0);

	/* The bundle is the root, as written to bundle.pem. */
	assert_int_equal(ks_devca_bundle_pem(ca, &bundle), 0);
	file = ks_test_slurp(ca_signer, "bundle.pem");
	assert_string_equal(bundle, file);
	free(file);

	/* Refusals from the shared request checks leave both outputs NULL. */
	free(chain2);
	free(key2);
	assert_int_equal(
	    ks_devca_issue(ca, "spiffe://example.org", HOUR, &chain2, &key2, err, sizeof(err)),
	    -EINVAL);
	assert_int_equal(ks_devca_issue(ca, WEB, 0, &chain2, &key2, err, sizeof(err)), -EINVAL);
	assert_null(chain2);
	assert_null(key2);

	sk_X509_pop_free(certs2, X509_free);
	sk_X509_pop_free(certs, X509_free);
	EVP_PKEY_free(key);
	X509_free(inter);
	free(bundle);
	free(key_pem);
	free(chain);
	ks_devca_close(ca);
}

/* A PEM CSR with subject CN=evil, an optional URI SAN and an optional CA:TRUE request. */
static char *make_csr(EVP_PKEY *key, const char *uri, bool ask_ca, bool corrupt_signature)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	unsigned char *der = NULL;
	char conf[KS_SPIFFE_MAX + 8], *data, *pem;
	BIO *bio;
	long n;
	int len;

	assert_non_null(req);
	assert_non_null(name);
	assert_non_null(exts);
	assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					       (const unsigned char *)"evil", -1, -1, 0));
	assert_true(X509_REQ_set_version(req, X509_REQ_VERSION_1));
	assert_true(X509_REQ_set_subject_name(req, name));
	assert_true(X509_REQ_set_pubkey(req, key));
	if (uri) {
		snprintf(conf, sizeof(conf), "URI:%s", uri);
		assert_true(sk_X509_EXTENSION_push(
		    exts, X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, conf)));
	}
	if (ask_ca)
		assert_true(sk_X509_EXTENSION_push(
		    exts,
		    X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE")));
	if (sk_X509_EXTENSION_num(exts) > 0)
		assert_true(X509_REQ_add_extensions(req, exts));
	assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
	len = i2d_X509_REQ(req, &der);
	assert_true(len > 0);
	/* The DER ends with the signature value; for ECDSA, the last byte of s. */
	if (corrupt_signature)
		der[len - 1] ^= 0x01;
	bio = BIO_new(BIO_s_mem());
	assert_true(PEM_write_bio(bio, "CERTIFICATE REQUEST", "", der, len) > 0);
	n = BIO_get_mem_data(bio, &data);
	pem = strndup(data, (size_t)n);
	assert_non_null(pem);
	BIO_free(bio);
	OPENSSL_free(der);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return pem;
}

/* Signs csr and checks the leaf; returns the chain. */
static char *sign_ok(struct ks_devca *ca, const char *csr, EVP_PKEY *key, bool rsa)
{
	X509 *inter = load_cert(ca_signer, "intermediate.pem");
	STACK_OF(X509) * certs;
	char *chain = NULL, err[512] = "";
	X509 *leaf;

	if (ks_devca_sign_csr(ca, csr, strlen(csr), WEB, HOUR, &chain, err, sizeof(err)) != 0)
		fail_msg("sign_csr: %s", err);
	assert_int_equal(ERR_peek_error(), 0);
	expect_verifies(ca_signer, chain);
	certs = parse_certs(chain);
	assert_int_equal(sk_X509_num(certs), 2);
	leaf = sk_X509_value(certs, 0);
	check_leaf(leaf, inter, WEB, HOUR, rsa);
	/* Only the CSR's key reaches the certificate: not its subject, not its extensions. */
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), key), 1);
	assert_int_equal(
	    X509_NAME_get_index_by_NID(X509_get_subject_name(leaf), NID_commonName, -1), -1);
	sk_X509_pop_free(certs, X509_free);
	X509_free(inter);
	return chain;
}

static void test_sign_csr(void **state)
{
	struct ks_devca *ca = open_ca(ca_dir);
	EVP_PKEY *p256 = EVP_EC_gen("P-256");
	EVP_PKEY *rsa = EVP_RSA_gen(2048);
	char *csr, *chain;

	(void)state;
	assert_non_null(p256);
	assert_non_null(rsa);

	csr = make_csr(p256, NULL, false, false);
	chain = sign_ok(ca, csr, p256, false);
	free(chain);
	free(csr);

	csr = make_csr(p256, WEB, false, false);
	chain = sign_ok(ca, csr, p256, false);
	free(chain);
	free(csr);

	/* A CSR asking to be a CA still gets CA:FALSE (check_leaf). */
	csr = make_csr(p256, WEB, true, false);
	chain = sign_ok(ca, csr, p256, false);
	free(chain);
	free(csr);

	csr = make_csr(rsa, WEB, false, false);
	chain = sign_ok(ca, csr, rsa, true);
	free(chain);
	free(csr);

	EVP_PKEY_free(rsa);
	EVP_PKEY_free(p256);
	ks_devca_close(ca);
}

/* A P-256 key that encodes its curve as explicit parameters (RFC 5480 forbids it). */
static EVP_PKEY *explicit_p256(void)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"P-256", 0),
	    OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING,
					     (char *)OSSL_PKEY_EC_ENCODING_EXPLICIT, 0),
	    OSSL_PARAM_construct_end(),
	};
	EVP_PKEY *key = NULL;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_params(ctx, params), 1);
	assert_int_equal(EVP_PKEY_generate(ctx, &key), 1);
	EVP_PKEY_CTX_free(ctx);
	return key;
}

static void expect_csr_refused(struct ks_devca *ca, const char *csr, size_t len, const char *id,
			       long ttl, const char *needle)
{
	char *chain = (char *)"untouched", err[512] = "";
	int rc = ks_devca_sign_csr(ca, csr, len, id, ttl, &chain, err, sizeof(err));

	if (rc != -EINVAL)
		fail_msg("sign_csr(%s) returned %d (%s), expected -EINVAL: %s", id ? id : "NULL",
			 rc, err, needle);
	assert_null(chain);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_sign_csr_refused(void **state)
{
	struct ks_devca *ca = open_ca(ca_dir);
	EVP_PKEY *p256 = EVP_EC_gen("P-256");
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	EVP_PKEY *rsa1024 = EVP_RSA_gen(1024);
	EVP_PKEY *explicit_key = explicit_p256();
	char *good = make_csr(p256, NULL, false, false);
	char *with_uri = make_csr(p256, WEB, false, false);
	char *bad_sig = make_csr(p256, WEB, false, true);
	char *other_uri = make_csr(p256, "spiffe://example.org/ns/a/sa/db", false, false);
	char *weak = make_csr(rsa1024, NULL, false, false);
	char *curve = make_csr(p384, NULL, false, false);
	char *explicit_csr = make_csr(explicit_key, NULL, false, false);
	char *cert = ks_test_slurp(ca_signer, "intermediate.pem");

	(void)state;
	expect_csr_refused(ca, bad_sig, strlen(bad_sig), WEB, HOUR, "self-signature");
	expect_csr_refused(ca, other_uri, strlen(other_uri), WEB, HOUR,
			   "\"spiffe://example.org/ns/a/sa/db\" differs");
	expect_csr_refused(ca, with_uri, strlen(with_uri), "spiffe://other.org/ns/a/sa/web", HOUR,
			   "not in this CA's trust domain");
	/* A name in the trust domain as a prefix only is another trust domain. */
	expect_csr_refused(ca, good, strlen(good), "spiffe://example.org.evil/a", HOUR,
			   "not in this CA's trust domain");
	expect_csr_refused(ca, good, strlen(good), "spiffe://example.org", HOUR,
			   "invalid SPIFFE ID");
	expect_csr_refused(ca, good, strlen(good), "spiffe://example.org/", HOUR,
			   "invalid SPIFFE ID");
	expect_csr_refused(ca, good, strlen(good), "https://example.org/a", HOUR,
			   "invalid SPIFFE ID");
	expect_csr_refused(ca, good, strlen(good), "spiffe://example.org/a/../b", HOUR,
			   "invalid SPIFFE ID");
	expect_csr_refused(ca, good, strlen(good), NULL, HOUR, "no SPIFFE ID");
	expect_csr_refused(ca, "garbage\n", 8, WEB, HOUR, "not a PEM certificate request");
	expect_csr_refused(ca, cert, strlen(cert), WEB, HOUR, "not a PEM certificate request");
	expect_csr_refused(ca, good, strlen(good) / 2, WEB, HOUR, "not a PEM certificate request");
	expect_csr_refused(ca, good, 0, WEB, HOUR, "empty");
	expect_csr_refused(ca, NULL, 10, WEB, HOUR, "empty");
	expect_csr_refused(ca, weak, strlen(weak), WEB, HOUR, "at least 2048");
	expect_csr_refused(ca, curve, strlen(curve), WEB, HOUR, "only P-256");
	expect_csr_refused(ca, explicit_csr, strlen(explicit_csr), WEB, HOUR,
			   "explicit curve parameters");
	expect_csr_refused(ca, good, strlen(good), WEB, 0, "ttl");
	expect_csr_refused(ca, good, strlen(good), WEB, -5, "ttl");

	free(cert);
	free(explicit_csr);
	free(curve);
	free(weak);
	free(other_uri);
	free(bad_sig);
	free(with_uri);
	free(good);
	EVP_PKEY_free(explicit_key);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(p256);
	ks_devca_close(ca);
}

static void expect_open_refused(const char *d, int want, const char *needle)
{
	struct ks_devca *ca = (struct ks_devca *)"untouched";
	char err[512] = "";
	int rc = ks_devca_open(d, &ca, err, sizeof(err));

	if (rc != want)
		fail_msg("open %s returned %d (%s), expected %d", d, rc, err, want);
	assert_null(ca);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_open_refused(void **state)
{
	char d[320], sd[340], rd[340];

	(void)state;
	path_of(d, sizeof(d), dir, "nonexistent");
	expect_open_refused(d, -ENOENT, "cannot open");

	/* Another CA's intermediate key next to our intermediate. */
	path_of(d, sizeof(d), dir, "wrongkey");
	path_of(sd, sizeof(sd), d, "signer");
	init_ok(d, TD);
	copy_file(other_signer, sd, "intermediate.key");
	expect_open_refused(d, -EINVAL, "intermediate.key does not match");

	/* A consistent intermediate and key, but under another root. */
	path_of(d, sizeof(d), dir, "wrongroot");
	path_of(sd, sizeof(sd), d, "signer");
	init_ok(d, TD);
	copy_file(other_signer, sd, "intermediate.key");
	copy_file(other_signer, sd, "intermediate.pem");
	expect_open_refused(d, -EINVAL, "does not verify under bundle.pem");

	path_of(d, sizeof(d), dir, "badtd");
	path_of(sd, sizeof(sd), d, "signer");
	init_ok(d, TD);
	spew(sd, "trust_domain", "Example.org\n");
	expect_open_refused(d, -EINVAL, "invalid trust domain");

	path_of(d, sizeof(d), dir, "garbage");
	path_of(sd, sizeof(sd), d, "signer");
	init_ok(d, TD);
	spew(sd, "intermediate.pem", "not a certificate\n");
	expect_open_refused(d, -EINVAL, "no PEM certificate");

	path_of(d, sizeof(d), dir, "nobundle");
	path_of(sd, sizeof(sd), d, "signer");
	init_ok(d, TD);
	spew(sd, "bundle.pem", "");
	expect_open_refused(d, -EINVAL, "trust bundle");

	/*
	 * A "signer" that is the root itself verifies (it is its own anchor):
	 * refused, since its key would go wherever the signer goes.
	 */
	path_of(d, sizeof(d), dir, "rootsigner");
	path_of(sd, sizeof(sd), d, "signer");
	path_of(rd, sizeof(rd), d, "root");
	init_ok(d, TD);
	ks_test_sh(
	    "cp '%s/root.pem' '%s/intermediate.pem' && cp '%s/root.key' '%s/intermediate.key'", rd,
	    sd, rd, sd);
	expect_open_refused(d, -EINVAL, "never the root");
	expect_open_refused(sd, -EINVAL, "never the root");

	/* Halves missing: each says what the directory is and what to do. */
	path_of(d, sizeof(d), dir, "rootonly");
	path_of(sd, sizeof(sd), d, "signer");
	path_of(rd, sizeof(rd), d, "root");
	init_ok(d, TD);
	ks_test_sh("rm -r '%s'", sd);
	expect_open_refused(d, -ENOENT, "new-signer");
	expect_open_refused(rd, -ENOENT, "holds a root key but no signer");
	path_of(d, sizeof(d), dir, "empty");
	ks_test_sh("mkdir '%s'", d);
	expect_open_refused(d, -ENOENT, "holds no dev CA");
}

/* Opens d, checks where it reports a root key, and that it signs a leaf that verifies under
 * ca's bundle (ca_signer/bundle.pem). */
static void expect_signs(const char *d, const char *root_key)
{
	struct ks_devca *ca = open_ca(d);
	char *chain = NULL, *key = NULL, *bundle = NULL, *file, err[512] = "";

	if (root_key)
		assert_string_equal(ks_devca_root_key(ca), root_key);
	else
		assert_null(ks_devca_root_key(ca));
	assert_string_equal(ks_devca_trust_domain(ca), TD);
	if (ks_devca_issue(ca, WEB, HOUR, &chain, &key, err, sizeof(err)) != 0)
		fail_msg("issue from %s: %s", d, err);
	expect_verifies(ca_signer, chain);
	assert_int_equal(ks_devca_bundle_pem(ca, &bundle), 0);
	file = ks_test_slurp(ca_signer, "bundle.pem");
	assert_string_equal(bundle, file);
	free(file);
	free(bundle);
	free(key);
	free(chain);
	ks_devca_close(ca);
}

/* Every layout signs; only those with the root key beside them say so. */
static void test_layouts(void **state)
{
	char flat[320], flat_key[340], moved[320], root_key[340];

	(void)state;
	path_of(root_key, sizeof(root_key), ca_root, "root.key");
	expect_signs(ca_dir, root_key);
	expect_signs(ca_signer, NULL);

	path_of(flat, sizeof(flat), dir, "flat");
	path_of(flat_key, sizeof(flat_key), flat, "root.key");
	make_flat(ca_dir, flat);
	expect_signs(flat, flat_key);

	/* The root moved offline, as the README advises: the signer still works. */
	path_of(moved, sizeof(moved), dir, "moved");
	ks_test_sh("cp -rp '%s' '%s' && rm -r '%s/root'", ca_dir, moved, moved);
	expect_signs(moved, NULL);
}

static void expect_export(struct ks_devca *ca, const char *out, bool force, int want,
			  const char *needle)
{
	char err[512] = "";
	int rc = ks_devca_export_signer(ca, out, force, err, sizeof(err));

	if (rc != want)
		fail_msg("export to %s returned %d (%s), expected %d", out, rc, err, want);
	if (needle && !strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_int_equal(ERR_peek_error(), 0);
}

/* out holds the signer set of the CA in ca_dir, and no root key. */
static void check_signer_set(const char *out)
{
	X509 *root = load_cert(ca_root, "root.pem");
	X509 *inter = load_cert(out, "intermediate.pem");
	X509 *ours = load_cert(ca_signer, "intermediate.pem");
	EVP_PKEY *key = load_key(out, "intermediate.key");
	char *a, *b;

	expect_entries(out, SIGNER_SET);
	assert_int_equal(mode_of(out, "."), 0700);
	assert_int_equal(mode_of(out, "intermediate.key"), 0600);
	assert_int_equal(mode_of(out, "intermediate.pem"), 0644);
	assert_int_equal(mode_of(out, "bundle.pem"), 0644);
	/* Exactly one private key, the signer's, and not the root's. */
	assert_int_equal(keys_not_root(out, root), 1);
	assert_int_equal(X509_check_private_key(inter, key), 1);
	assert_int_equal(X509_cmp(inter, ours), 0);
	a = ks_test_slurp(out, "bundle.pem");
	b = ks_test_slurp(ca_root, "root.pem");
	assert_string_equal(a, b);
	free(a);
	free(b);
	a = ks_test_slurp(out, "trust_domain");
	assert_string_equal(a, TD "\n");
	free(a);
	/* And it is enough to sign alone. */
	expect_signs(out, NULL);
	EVP_PKEY_free(key);
	X509_free(ours);
	X509_free(inter);
	X509_free(root);
}

static void test_export_signer(void **state)
{
	struct ks_devca *ca = open_ca(ca_dir), *legacy;
	char out[320], flat[320], out2[320], stray[320], file[320], deep[320];
	char *before, *after;

	(void)state;
	path_of(out, sizeof(out), dir, "export");
	expect_export(ca, out, false, 0, NULL);
	check_signer_set(out);

	/* Again: refused without force, and nothing changed; replaced with it. */
	before = ks_test_slurp(out, "intermediate.key");
	spew(out, "trust_domain", "changed.example\n");
	expect_export(ca, out, false, -EEXIST, "already holds a signer set");
	after = ks_test_slurp(out, "trust_domain");
	assert_string_equal(after, "changed.example\n");
	free(after);
	expect_export(ca, out, true, 0, NULL);
	check_signer_set(out);
	after = ks_test_slurp(out, "intermediate.key");
	assert_string_equal(before, after);
	free(after);
	free(before);

	/* The migration: a flat CA of earlier ktlsctl exports the same set, root key left behind.
	 */
	path_of(flat, sizeof(flat), dir, "export-flat");
	make_flat(ca_dir, flat);
	legacy = open_ca(flat);
	path_of(out2, sizeof(out2), dir, "export-from-flat");
	expect_export(legacy, out2, false, 0, NULL);
	check_signer_set(out2);

	/* Never next to anything else, least of all a root key: all of OUT becomes the Secret. */
	expect_export(legacy, flat, true, -ENOTEMPTY, "root.key");
	expect_export(ca, ca_dir, true, -ENOTEMPTY, "directory of its own");
	path_of(stray, sizeof(stray), dir, "export-stray");
	ks_test_sh("mkdir '%s' && touch '%s/notes.txt'", stray, stray);
	expect_export(ca, stray, true, -ENOTEMPTY, "notes.txt");
	expect_entries(stray, "notes.txt");
	path_of(file, sizeof(file), dir, "export-file");
	spew(dir, "export-file", "x");
	expect_export(ca, file, false, -ENOTDIR, "not a directory");
	path_of(deep, sizeof(deep), dir, "no/such/parent");
	expect_export(ca, deep, false, -ENOENT, "cannot create");
	expect_export(ca, "", false, -EINVAL, "no output");

	ks_devca_close(legacy);
	ks_devca_close(ca);
}

static void expect_new_signer(const char *d, int want, const char *needle)
{
	char err[512] = "";
	int rc = ks_devca_new_signer(d, err, sizeof(err));

	if (rc != want)
		fail_msg("new_signer(%s) returned %d (%s), expected %d", d, rc, err, want);
	if (needle && !strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_new_signer(void **state)
{
	char d[320], sd[340], rd[340], flat[320], set[320], moved[330];
	char *chain = NULL, *key = NULL, *bundle_before, *after, *cur, *old_inter, err[512] = "";
	STACK_OF(X509) * certs;
	struct ks_devca *ca;
	X509 *inter, *root;

	(void)state;
	path_of(d, sizeof(d), dir, "rotate");
	path_of(sd, sizeof(sd), d, "signer");
	path_of(rd, sizeof(rd), d, "root");
	init_ok(d, TD);
	ca = open_ca(d);
	if (ks_devca_issue(ca, WEB, HOUR, &chain, &key, err, sizeof(err)) != 0)
		fail_msg("issue: %s", err);
	ks_devca_close(ca);
	bundle_before = ks_test_slurp(sd, "bundle.pem");
	old_inter = ks_test_slurp(sd, "intermediate.pem");

	expect_new_signer(d, 0, NULL);
	expect_entries(sd, SIGNER_SET); /* no .new left over */
	assert_int_equal(mode_of(sd, "intermediate.key"), 0600);
	after = ks_test_slurp(sd, "intermediate.pem");
	assert_string_not_equal(after, old_inter);
	free(after);
	/* The same root: the bundle is unchanged and the new intermediate chains to it. */
	after = ks_test_slurp(sd, "bundle.pem");
	assert_string_equal(after, bundle_before);
	free(after);
	inter = load_cert(sd, "intermediate.pem");
	root = load_cert(rd, "root.pem");
	assert_int_equal(X509_verify(inter, X509_get0_pubkey(root)), 1);
	assert_int_equal(keys_not_root(sd, root), 1);
	/* A leaf of the old intermediate still verifies under the bundle. */
	expect_verifies(sd, chain);
	free(chain);
	free(key);
	ca = open_ca(d);
	if (ks_devca_issue(ca, WEB, HOUR, &chain, &key, err, sizeof(err)) != 0)
		fail_msg("issue: %s", err);
	ks_devca_close(ca);
	certs = parse_certs(chain);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 1), inter), 0);
	sk_X509_pop_free(certs, X509_free);
	expect_verifies(sd, chain);
	free(chain);
	free(key);

	/* Without the root key: refused, and nothing written. */
	path_of(set, sizeof(set), dir, "rotate-set");
	ks_test_sh("mkdir '%s' && cp '%s'/* '%s'/", set, sd, set);
	expect_new_signer(set, -ENOKEY, "no root key");
	expect_entries(set, SIGNER_SET);
	after = ks_test_slurp(set, "intermediate.pem");
	cur = ks_test_slurp(sd, "intermediate.pem");
	assert_string_equal(after, cur);
	free(cur);
	free(after);
	path_of(moved, sizeof(moved), dir, "rotate-moved");
	ks_test_sh("cp -rp '%s' '%s' && rm -r '%s/root'", d, moved, moved);
	expect_new_signer(moved, -ENOKEY, "only the root can sign");
	/* root/ on its own is not a CA directory. */
	expect_new_signer(rd, -EINVAL, "holds a root key but no signer");
	expect_new_signer("", -EINVAL, "no CA directory");

	/* A root key that is not the root certificate's. */
	ks_test_sh("cp -rp '%s' '%s-mismatch' && cp '%s/root/root.key' '%s-mismatch/root/root.key'",
		   d, d, other_dir, d);
	snprintf(moved, sizeof(moved), "%s-mismatch", d);
	expect_new_signer(moved, -EINVAL, "root.key does not match root.pem");

	/* A lost signer/ is made again. */
	ks_test_sh("rm -r '%s'", sd);
	expect_new_signer(d, 0, NULL);
	assert_int_equal(mode_of(d, "signer"), 0700);
	expect_entries(sd, SIGNER_SET);

	/* The flat layout: the new signer goes where the old one was. */
	path_of(flat, sizeof(flat), dir, "rotate-flat");
	make_flat(ca_dir, flat);
	expect_new_signer(flat, 0, NULL);
	expect_entries(flat, "bundle.pem,intermediate.key,intermediate.pem,root.key,root.pem,"
			     "trust_domain");
	after = ks_test_slurp(flat, "intermediate.pem");
	free(old_inter);
	old_inter = ks_test_slurp(ca_signer, "intermediate.pem");
	assert_string_not_equal(after, old_inter);
	free(after);
	ca = open_ca(flat);
	assert_non_null(ks_devca_root_key(ca));
	ks_devca_close(ca);

	X509_free(root);
	X509_free(inter);
	free(old_inter);
	free(bundle_before);
}

static char *crl_ok(struct ks_devca *ca, const char *certs_pem, long next)
{
	char *crl = NULL, err[512] = "";

	if (ks_devca_crl(ca, certs_pem, next, &crl, err, sizeof(err)) != 0)
		fail_msg("crl: %s", err);
	assert_int_equal(ERR_peek_error(), 0);
	return crl;
}

static void expect_crl_refused(struct ks_devca *ca, const char *certs_pem, long next,
			       const char *needle)
{
	char *crl = (char *)"untouched", err[512] = "";
	int rc = ks_devca_crl(ca, certs_pem, next, &crl, err, sizeof(err));

	if (rc != -EINVAL)
		fail_msg("crl returned %d (%s), expected -EINVAL: %s", rc, err, needle);
	assert_null(crl);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_int_equal(ERR_peek_error(), 0);
}

static int revoked_count(X509_CRL *crl)
{
	STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);

	return revoked ? sk_X509_REVOKED_num(revoked) : 0;
}

static void test_crl(void **state)
{
	struct ks_devca *ca = open_ca(ca_dir), *other = open_ca(other_dir);
	X509 *inter = load_cert(ca_signer, "intermediate.pem");
	X509 *root = load_cert(ca_root, "root.pem");
	char *chain1 = NULL, *chain2 = NULL, *key1 = NULL, *key2 = NULL, *alien = NULL,
	     *alien_key = NULL;
	char *leaf1, *leaf2, *both, *crl_pem, err[512] = "";
	STACK_OF(X509) * c1, *c2;
	X509_REVOKED *rev;
	X509_CRL *crl;
	AUTHORITY_KEYID *akid;
	ASN1_INTEGER *number;
	int64_t n;
	long left;
	time_t now = time(NULL);

	(void)state;
	if (ks_devca_issue(ca, WEB, HOUR, &chain1, &key1, err, sizeof(err)) != 0 ||
	    ks_devca_issue(ca, "spiffe://example.org/db", HOUR, &chain2, &key2, err, sizeof(err)) ||
	    ks_devca_issue(other, WEB, HOUR, &alien, &alien_key, err, sizeof(err)))
		fail_msg("issue: %s", err);
	c1 = parse_certs(chain1);
	c2 = parse_certs(chain2);
	leaf1 = leaf_pem(chain1);
	leaf2 = leaf_pem(chain2);

	crl_pem = crl_ok(ca, leaf1, HOUR);
	crl = parse_crl(crl_pem);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(inter)), 1);
	assert_int_not_equal(X509_CRL_verify(crl, X509_get0_pubkey(root)), 1);
	ERR_clear_error();
	assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(inter)), 0);
	assert_int_equal(
	    X509_CRL_get0_by_serial(crl, &rev, X509_get_serialNumber(sk_X509_value(c1, 0))), 1);
	assert_int_equal(
	    X509_CRL_get0_by_serial(crl, &rev, X509_get_serialNumber(sk_X509_value(c2, 0))), 0);
	assert_int_equal(revoked_count(crl), 1);
	akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
	assert_non_null(akid);
	assert_int_equal(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(inter)), 0);
	AUTHORITY_KEYID_free(akid);
	number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	assert_non_null(number);
	assert_true(ASN1_INTEGER_get_int64(&n, number));
	assert_in_range(n, now - 5, now + 5);
	ASN1_INTEGER_free(number);
	left = secs_until(X509_CRL_get0_nextUpdate(crl));
	assert_in_range(left, HOUR - 10, HOUR);
	left = secs_until(X509_CRL_get0_lastUpdate(crl));
	assert_true(left <= 0 && left >= -10);
	X509_CRL_free(crl);
	/* A peer checking the CRL refuses leaf 1 and still accepts leaf 2. */
	assert_int_equal(verify(ca_signer, chain1, crl_pem, X509_PURPOSE_SSL_CLIENT),
			 X509_V_ERR_CERT_REVOKED);
	assert_int_equal(verify(ca_signer, chain2, crl_pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	free(crl_pem);

	/* Several certificates, and a repeated one listed once. */
	both = malloc(strlen(leaf1) * 2 + strlen(leaf2) + 1);
	assert_non_null(both);
	strcpy(both, leaf1);
	strcat(both, leaf2);
	strcat(both, leaf1);
	crl_pem = crl_ok(ca, both, HOUR);
	crl = parse_crl(crl_pem);
	assert_int_equal(revoked_count(crl), 2);
	assert_int_equal(
	    X509_CRL_get0_by_serial(crl, &rev, X509_get_serialNumber(sk_X509_value(c2, 0))), 1);
	X509_CRL_free(crl);
	free(crl_pem);
	free(both);

	/* Empty CRLs are valid and signed. */
	crl_pem = crl_ok(ca, NULL, HOUR);
	crl = parse_crl(crl_pem);
	assert_int_equal(revoked_count(crl), 0);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(inter)), 1);
	X509_CRL_free(crl);
	assert_int_equal(verify(ca_signer, chain1, crl_pem, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	free(crl_pem);
	crl_pem = crl_ok(ca, "", 60);
	crl = parse_crl(crl_pem);
	assert_int_equal(revoked_count(crl), 0);
	X509_CRL_free(crl);
	free(crl_pem);

	expect_crl_refused(ca, alien, HOUR, "not issued by this CA's intermediate");
	/* chain1 holds the intermediate too, which the intermediate did not issue. */
	expect_crl_refused(ca, chain1, HOUR, "certificate 2");
	expect_crl_refused(ca, "garbage\n", HOUR, "no PEM certificate");
	expect_crl_refused(ca, leaf1, 0, "next update");

	sk_X509_pop_free(c2, X509_free);
	sk_X509_pop_free(c1, X509_free);
	free(leaf2);
	free(leaf1);
	free(alien_key);
	free(alien);
	free(key2);
	free(key1);
	free(chain2);
	free(chain1);
	X509_free(root);
	X509_free(inter);
	ks_devca_close(other);
	ks_devca_close(ca);
}

static void test_clamp(void **state)
{
	struct ks_devca *ca = open_ca(ca_dir);
	X509 *inter = load_cert(ca_signer, "intermediate.pem");
	EVP_PKEY *p256 = EVP_EC_gen("P-256");
	char *csr = make_csr(p256, NULL, false, false);
	const long ttls[] = {20 * YEAR, LONG_MAX};
	char err[512] = "";

	(void)state;
	for (size_t i = 0; i < 2 * sizeof(ttls) / sizeof(ttls[0]); i++) {
		char *chain = NULL, *key = NULL;
		long ttl = ttls[i / 2];
		STACK_OF(X509) * certs;
		X509 *leaf;
		int rc;

		if (i % 2 == 0)
			rc = ks_devca_issue(ca, WEB, ttl, &chain, &key, err, sizeof(err));
		else
			rc = ks_devca_sign_csr(ca, csr, strlen(csr), WEB, ttl, &chain, err,
					       sizeof(err));
		if (rc != 0)
			fail_msg("ttl %ld: %s", ttl, err);
		certs = parse_certs(chain);
		leaf = sk_X509_value(certs, 0);
		assert_true(
		    ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(inter)) <= 0);
		/* Clamped to the intermediate, not cut to something arbitrary. */
		assert_true(secs_until(X509_get0_notAfter(leaf)) > 4 * YEAR);
		expect_verifies(ca_signer, chain);
		sk_X509_pop_free(certs, X509_free);
		free(key);
		free(chain);
	}
	free(csr);
	EVP_PKEY_free(p256);
	X509_free(inter);
	ks_devca_close(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_files),
	    cmocka_unit_test(test_init_existing),
	    cmocka_unit_test(test_issue),
	    cmocka_unit_test(test_sign_csr),
	    cmocka_unit_test(test_sign_csr_refused),
	    cmocka_unit_test(test_open_refused),
	    cmocka_unit_test(test_layouts),
	    cmocka_unit_test(test_export_signer),
	    cmocka_unit_test(test_new_signer),
	    cmocka_unit_test(test_crl),
	    cmocka_unit_test(test_clamp),
	};

	return cmocka_run_group_tests_name("devca", tests, setup, teardown);
}
