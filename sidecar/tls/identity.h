/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The workload identity: our certificate chain, key and trust bundle, built
 * into a server and a client SSL_CTX. An identity is immutable once loaded.
 *
 * Reload model: the main thread (SIGHUP) or the control thread (the control
 * API) builds a new identity, validates it completely, and only then publishes it in the
 * slot. Publishing takes a mutex for the pointer swap and bumps an atomic
 * generation. Workers compare the generation (one relaxed load per accepted
 * connection) and take a reference under the mutex only when it changed.
 * Every connection holds a reference to the identity it started with, so
 * established connections never see a change, and the old identity is freed
 * when its last connection ends.
 */
#ifndef KS_TLS_IDENTITY_H
#define KS_TLS_IDENTITY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "tls/pem.h"
#include "tls/policy.h"
#include "tls/spiffe.h"
#include "tls/trust.h"

struct ks_resumption;

/*
 * How identities are built: the sidecar's own files and TLS parameters.
 * Owned by the daemon's configuration, immutable while it runs.
 */
/* --federated-ca TD=FILE: a foreign trust domain and its bundle's file. */
struct ks_fed_file {
	char *td;   /* trust domain name, without "spiffe://" */
	char *path; /* PEM roots */
};

struct ks_tls_opts {
	char *cert, *key, *ca;	 /* all NULL: the control plane pushes the identity */
	struct ks_fed_file *fed; /* foreign trust domains' bundles, loaded with the identity */
	size_t nfed;
	char *spiffe_id;    /* NULL: whatever the certificate says */
	int min_version;    /* TLS1_2_VERSION or TLS1_3_VERSION */
	char *ciphersuites; /* TLS 1.3 suites, OpenSSL syntax; NULL = all three AEADs */
	bool keylog; /* capture traffic secrets and record numbers (kTLS hand-off, tls/record.h) */
	/* Outbound too: only where the kernel can take the record layer. The
	 * client side needs the secrets for nothing else, and OpenSSL formats
	 * every keylog line byte by byte (4% of a resumption's CPU). */
	bool keylog_client;
	/* Session resumption (tls/resume.h): the process's ticket keys and
	 * client tickets, outliving every identity; NULL: off. */
	struct ks_resumption *res;
};

/*
 * Why an update was refused. The values are those of ktls.control.v1.Reason,
 * so the control API passes them through unchanged.
 */
enum ks_ident_reason {
	KS_IR_NONE = 0,
	KS_IR_BAD_PEM = 1,
	KS_IR_KEY_MISMATCH = 2,
	KS_IR_CHAIN_UNVERIFIED = 3,
	KS_IR_EXPIRED = 4,
	KS_IR_NOT_YET_VALID = 5,
	KS_IR_ID_MISMATCH = 6,
	KS_IR_NO_SPIFFE_ID = 7,
	KS_IR_BAD_PATTERN = 8,
	KS_IR_WEAK_KEY = 9,
	KS_IR_NO_PENDING_KEY = 10,
	KS_IR_NO_BUNDLE = 11,
	KS_IR_CRL_UNVERIFIED = 12,
	KS_IR_UNKNOWN_DESTINATION = 13,
	KS_IR_BAD_PIN = 14,
	KS_IR_BAD_TRUST_DOMAIN = 15,
	KS_IR_BAD_TICKET_KEY = 16, /* SetTicketKeys (control/update.c), not the builder's */
};

struct ks_identity {
	atomic_int refs;
	/* NULL until we have a certificate (started without one, waiting for
	 * the control plane): connections are then refused. */
	SSL_CTX *server_ctx; /* inbound: requires and verifies a client certificate */
	SSL_CTX *client_ctx; /* outbound: presents our certificate, verifies the server */

	/* What it was built from, each part owned (referenced) here, so that
	 * an update can replace one part and keep the others. */
	X509 *leaf;
	STACK_OF(X509) * chain; /* intermediates we present */
	EVP_PKEY *key;
	STACK_OF(X509) * bundle;  /* trust anchors of our own trust domain */
	struct ks_td_bundle *fed; /* foreign trust domains' anchors, one per td */
	size_t nfed;
	STACK_OF(X509_CRL) * crls;
	uint8_t (*crl_signer)[32]; /* per CRL: its signer's key digest (zero: unknown) */
	struct ks_policy pol;	   /* authorization, deep copy */
	struct ks_resumption *res; /* opts->res: borrowed, outlives the identity */
	uint64_t crl_gen; /* bumped by every CRL change: workers re-check open connections */

	char id[KS_SPIFFE_MAX + 1];
	char trust_domain[KS_SPIFFE_TD_MAX + 1];
	char serial[80];
	char not_after[64];
	int64_t not_after_unix;
	char (*bundle_sha256)[65]; /* SHA-256 (hex) of each certificate in the bundle */
	uint8_t bundle_digest[32]; /* of the whole bundle, in order (tls/resume.h) */
	size_t nbundle;
};

/* The inputs of an identity, borrowed: build takes its own references. */
struct ks_ident_parts {
	X509 *leaf; /* leaf, chain and key: all NULL for "no certificate yet" */
	STACK_OF(X509) * chain;
	EVP_PKEY *key;
	STACK_OF(X509) * bundle;	/* NULL: none yet (only without a certificate) */
	const struct ks_td_bundle *fed; /* foreign trust domains (certs borrowed) */
	size_t nfed;
	STACK_OF(X509_CRL) * crls;
	const struct ks_policy *pol;
	uint64_t crl_gen;
};

/*
 * Validates parts and builds an identity from them: the key is ECDSA P-256
 * or RSA >= 2048 and matches the certificate, the leaf carries exactly one
 * SPIFFE ID (equal to --spiffe-id when that is set), and the chain verifies
 * against the bundle now, which also checks the validity period. On failure
 * returns -errno, *reason and a human-readable message in err.
 */
int ks_identity_build(const struct ks_tls_opts *opts, const struct ks_ident_parts *p,
		      struct ks_identity **out, enum ks_ident_reason *reason, char *err,
		      size_t errlen);
/*
 * The federated bundles of p with td's replaced by certs (certs NULL or
 * empty: td's removed), as a new array of borrowed stacks sorted by td;
 * free the array alone. -ENOMEM, or -EINVAL with err for an invalid td.
 */
int ks_identity_fed_with(const struct ks_ident_parts *p, const char *td, STACK_OF(X509) * certs,
			 struct ks_td_bundle **out, size_t *nout, char *err, size_t errlen);

/* The parts of id, borrowed from it (id may be NULL: all empty). */
void ks_identity_parts(const struct ks_identity *id, struct ks_ident_parts *p);

/*
 * Loads opts' cert, key and ca files and builds an identity with them; the
 * CRLs and policy come from cur (SIGHUP keeps what the control plane
 * pushed), or are pol (the command line's) when cur is NULL.
 */
int ks_identity_load(const struct ks_tls_opts *opts, const struct ks_policy *pol,
		     const struct ks_identity *cur, struct ks_identity **out, char *err,
		     size_t errlen);

/*
 * Checks pushed CRLs: each is signed by a certificate in bundle or chain
 * (the issuers we know) and is not past its nextUpdate. RFC 5280 §6.3.
 */
int ks_identity_check_crls(STACK_OF(X509_CRL) * crls, STACK_OF(X509) * bundle,
			   STACK_OF(X509) * chain, enum ks_ident_reason *reason, char *err,
			   size_t errlen);

/*
 * Is the certificate (its issuer's key, as X509_pubkey_digest SHA-256, and
 * its serial) revoked by one of id's CRLs? A CRL applies to the
 * certificates of the CA whose key signed it (RFC 5280 §6.3.3 (f)), not to
 * those of any CA that shares its name.
 */
bool ks_identity_revoked(const struct ks_identity *id, const uint8_t issuer_key[32],
			 const uint8_t *serial, size_t serial_len);

struct ks_identity *ks_identity_get(struct ks_identity *id);
void ks_identity_put(struct ks_identity *id);

/*
 * Writers (SIGHUP and the file watch in the main thread, the control thread) serialize on
 * update_mu for the whole read-modify-publish, so two updates cannot both
 * start from the same identity and lose one of the changes.
 */
/* Where an update of the identity came from (the metric's source label). */
enum ks_ident_source {
	KS_IDSRC_FILE,	/* SIGHUP: --cert/--key/--ca reloaded */
	KS_IDSRC_FILES, /* the same files, reloaded on change (--identity-watch) */
	KS_IDSRC_SET_IDENTITY,
	KS_IDSRC_SET_TRUST_BUNDLE,
	KS_IDSRC_SET_CRL,
	KS_IDSRC_SET_POLICY,
	KS_IDSRC_WORKLOAD_API,	  /* the SPIFFE Workload API stream (wapi/wapi.h) */
	KS_IDSRC_SET_TICKET_KEYS, /* session ticket keys (tls/tickets.h), beside the identity */
	KS_IDSRC__COUNT
};

struct ks_identity_slot {
	pthread_mutex_t mu;
	pthread_mutex_t update_mu;
	struct ks_identity *cur;
	_Atomic uint64_t gen;
	/* Updates by source, [0] rejected and [1] accepted (/metrics). */
	_Atomic uint64_t updates[KS_IDSRC__COUNT][2];
};

const char *ks_ident_source_name(enum ks_ident_source src);

/* Counts one update attempt (any thread). */
static inline void ks_identity_slot_count(struct ks_identity_slot *s, enum ks_ident_source src,
					  bool accepted)
{
	atomic_fetch_add_explicit(&s->updates[src][accepted], 1, memory_order_relaxed);
}

void ks_identity_slot_init(struct ks_identity_slot *s, struct ks_identity *first);
void ks_identity_slot_fini(struct ks_identity_slot *s);
/* Publishes id (the slot takes over the caller's reference). */
void ks_identity_slot_publish(struct ks_identity_slot *s, struct ks_identity *id);
/* Returns a new reference to the current identity. */
struct ks_identity *ks_identity_slot_get(struct ks_identity_slot *s, uint64_t *gen);

#endif
