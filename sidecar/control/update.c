/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Updates from the control plane. They run on the control thread only, and
 * each holds the identity slot's update_mu from reading the current identity
 * to publishing the new one, so SIGHUP and the API cannot interleave.
 */
#include "control/update.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/net.h"
#include "common/secret.h"
#include "dataplane/settings.h"
#include "dataplane/worker.h"
#include "tls/identity.h"
#include "tls/pem.h"
#include "tls/resume.h"
#include "tls/spiffe.h"

#define CODE(x)	  KTLS__CONTROL__V1__CODE__CODE_##x
#define REASON(x) KTLS__CONTROL__V1__REASON__REASON_##x

static void result(struct ks_ctl_result *res, int code, int reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void result(struct ks_ctl_result *res, int code, int reason, const char *fmt, ...)
{
	va_list ap;

	res->code = code;
	res->reason = reason;
	va_start(ap, fmt);
	vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
	va_end(ap);
}

static bool have_state(struct ks_ctl_env *env, struct ks_ctl_result *res)
{
	if (env->ident && env->tls && env->dp)
		return true;
	result(res, CODE(FAILED_PRECONDITION), REASON(NONE),
	       "this endpoint has no identity state to update");
	return false;
}

/*
 * Publishes p as the new identity, or refuses with the builder's reason.
 * Called with update_mu held; cur is the identity p was derived from.
 */
static int publish(struct ks_ctl_env *env, const struct ks_ident_parts *p, const char *what,
		   struct ks_ctl_result *res)
{
	struct ks_identity *id;
	struct ks_log_field f;
	enum ks_ident_reason reason;
	char err[512], clean[512];
	int rc = ks_identity_build(env->tls, p, &id, &reason, err, sizeof(err));

	if (rc < 0) {
		result(res, rc == -ENOMEM ? CODE(INTERNAL) : CODE(REJECTED), (int)reason,
		       "%s rejected, nothing changed: %s", what, err);
		ks_warn("event=control_update_rejected op=%s reason=\"%s\"", what,
			ks_log_clean(clean, sizeof(clean), err));
		return rc;
	}
	ks_identity_slot_publish(env->ident, id);
	if (id->leaf)
		ks_info("event=control_update op=%s id=%s serial=%s not_after=%s bundle_certs=%zu "
			"crls=%d policy_allow=%zu policy_routes=%zu",
			what, ks_log_field(&f, id->id), id->serial, id->not_after, id->nbundle,
			id->crls ? sk_X509_CRL_num(id->crls) : 0, id->pol.nallow, id->pol.nout);
	else
		ks_info("event=control_update op=%s identity=none bundle_certs=%zu", what,
			id->nbundle);
	return 0;
}

void ks_ctl_create_csr(struct ks_ctl_env *env, const char *spiffe_id, char **csr_pem,
		       struct ks_ctl_result *res)
{
	struct ks_identity *cur = NULL;
	const char *id = spiffe_id && *spiffe_id ? spiffe_id : NULL, *why;
	struct ks_log_field f;
	char san[KS_SPIFFE_MAX + 8];
	EVP_PKEY *key = NULL;
	X509_REQ *req = NULL;
	X509_EXTENSION *ext = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	BIO *bio = NULL;
	BUF_MEM *mem;

	*csr_pem = NULL;
	if (env->tls && env->tls->spiffe_id) {
		if (id && strcmp(id, env->tls->spiffe_id) != 0) {
			result(res, CODE(REJECTED), REASON(ID_MISMATCH),
			       "CSR for %s refused: this sidecar is --spiffe-id %s", id,
			       env->tls->spiffe_id);
			return;
		}
		id = env->tls->spiffe_id;
	}
	if (!id && env->ident) {
		cur = ks_identity_slot_get(env->ident, NULL);
		if (cur->leaf)
			id = cur->id;
	}
	if (!id) {
		result(res, CODE(INVALID_ARGUMENT), REASON(NO_SPIFFE_ID),
		       "no SPIFFE ID: give one, or start the sidecar with --spiffe-id");
		goto cleanup;
	}
	if (ks_spiffe_validate(id, &why) < 0) {
		result(res, CODE(INVALID_ARGUMENT), REASON(NO_SPIFFE_ID), "'%s': %s", id, why);
		goto cleanup;
	}
	/* X509-SVID.md §2: the ID is the certificate's one URI SAN; the
	 * subject carries nothing the mesh relies on. */
	snprintf(san, sizeof(san), "URI:%s", id);
	key = EVP_EC_gen("P-256");
	req = X509_REQ_new();
	exts = sk_X509_EXTENSION_new_null();
	bio = BIO_new(BIO_s_mem());
	if (!key || !req || !exts || !bio)
		goto ossl_fail;
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
	if (!ext || !sk_X509_EXTENSION_push(exts, ext))
		goto ossl_fail;
	ext = NULL;
	if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) || !X509_REQ_set_pubkey(req, key) ||
	    !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "O", MBSTRING_ASC,
					(const unsigned char *)"ktls-sidecar", -1, -1, 0) ||
	    !X509_REQ_add_extensions(req, exts) || !X509_REQ_sign(req, key, EVP_sha256()) ||
	    !PEM_write_bio_X509_REQ(bio, req))
		goto ossl_fail;
	BIO_get_mem_ptr(bio, &mem);
	*csr_pem = strndup(mem->data, mem->length);
	if (!*csr_pem)
		goto ossl_fail;
	/* The new key replaces any earlier pending one: only the newest CSR
	 * can be answered. */
	EVP_PKEY_free(env->csr_key);
	env->csr_key = key;
	key = NULL;
	result(res, CODE(OK), REASON(NONE), "CSR for %s; its P-256 key stays in the sidecar", id);
	ks_info("event=control_csr id=%s", ks_log_field(&f, id));
	goto cleanup;
ossl_fail:
	result(res, CODE(INTERNAL), REASON(NONE), "cannot make a CSR: %s",
	       ERR_reason_error_string(ERR_peek_last_error())
		   ? ERR_reason_error_string(ERR_peek_last_error())
		   : "out of memory");
cleanup:
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	BIO_free(bio);
	ks_identity_put(cur);
	ERR_clear_error();
}

static void bad_pem(struct ks_ctl_result *res, int rc, const char *what, const char *err)
{
	result(res, rc == -ENOMEM ? CODE(INTERNAL) : CODE(REJECTED), REASON(BAD_PEM),
	       "%s rejected, nothing changed: %s", what, err);
}

void ks_ctl_set_identity(struct ks_ctl_env *env, const Ktls__Control__V1__SetIdentity *m,
			 struct ks_ctl_result *res)
{
	STACK_OF(X509) *certs = NULL, *bundle = NULL;
	EVP_PKEY *key = NULL;
	struct ks_identity *cur = NULL;
	struct ks_ident_parts p;
	X509 *leaf = NULL;
	bool pending = false;
	char err[512];
	int rc;

	if (!have_state(env, res))
		return;
	rc = ks_pem_certs(m->chain_pem, strlen(m->chain_pem), &certs, err, sizeof(err));
	if (rc < 0) {
		bad_pem(res, rc, "SetIdentity", err);
		goto cleanup;
	}
	leaf = sk_X509_shift(certs);
	if (m->key_pem[0]) {
		rc = ks_pem_key(m->key_pem, strlen(m->key_pem), &key, err, sizeof(err));
		if (rc < 0) {
			bad_pem(res, rc, "SetIdentity", err);
			goto cleanup;
		}
	} else if (env->csr_key) {
		key = env->csr_key;
		pending = true;
	} else {
		result(res, CODE(REJECTED), REASON(NO_PENDING_KEY),
		       "SetIdentity rejected, nothing changed: no key given and no CreateCsr "
		       "pending");
		goto cleanup;
	}
	if (m->bundle_pem[0]) {
		rc = ks_pem_certs(m->bundle_pem, strlen(m->bundle_pem), &bundle, err, sizeof(err));
		if (rc < 0) {
			bad_pem(res, rc, "SetIdentity (bundle)", err);
			goto cleanup;
		}
	}
	pthread_mutex_lock(&env->ident->update_mu);
	cur = ks_identity_slot_get(env->ident, NULL);
	ks_identity_parts(cur, &p);
	p.leaf = leaf;
	p.chain = certs;
	p.key = key;
	if (bundle)
		p.bundle = bundle;
	rc = publish(env, &p, "SetIdentity", res);
	pthread_mutex_unlock(&env->ident->update_mu);
	if (rc == 0) {
		struct ks_identity *now = ks_identity_slot_get(env->ident, NULL);

		result(res, CODE(OK), REASON(NONE), "identity %s serial %s until %s in force%s",
		       now->id, now->serial, now->not_after,
		       bundle ? ", with the new trust bundle" : "");
		ks_identity_put(now);
		if (pending)
			env->csr_key = NULL; /* now owned by the identity */
	}
cleanup:
	if (pending)
		key = rc == 0 ? key : NULL; /* on failure the pending key stays pending */
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(bundle, X509_free);
	ks_identity_put(cur);
}

/* The trust domain a SetTrustBundle is for: "" for our own, else its bare name. */
static int bundle_td(struct ks_ctl_env *env, const struct ks_identity *cur, const char *in,
		     char td[KS_SPIFFE_TD_MAX + 1], struct ks_ctl_result *res)
{
	char own[KS_SPIFFE_TD_MAX + 1] = "";
	const char *why;

	td[0] = '\0';
	if (!in[0])
		return 0;
	if (ks_spiffe_td_parse(in, td, KS_SPIFFE_TD_MAX + 1, &why) < 0) {
		result(res, CODE(REJECTED), REASON(BAD_TRUST_DOMAIN),
		       "SetTrustBundle rejected, nothing changed: trust_domain '%s': %s", in, why);
		return -EINVAL;
	}
	/* Our own trust domain: from the certificate, or the one we will have. */
	if (cur->leaf)
		snprintf(own, sizeof(own), "%s", cur->trust_domain);
	else if (env->tls->spiffe_id)
		ks_spiffe_trust_domain(env->tls->spiffe_id, own, sizeof(own));
	if (strcmp(td, own) == 0)
		td[0] = '\0';
	return 0;
}

void ks_ctl_set_bundle(struct ks_ctl_env *env, const Ktls__Control__V1__SetTrustBundle *m,
		       struct ks_ctl_result *res)
{
	STACK_OF(X509) *bundle = NULL;
	struct ks_identity *cur = NULL;
	struct ks_td_bundle *fed = NULL;
	struct ks_ident_parts p;
	char err[512], td[KS_SPIFFE_TD_MAX + 1];
	size_t nfed = 0;
	int rc = -EINVAL;

	if (!have_state(env, res))
		return;
	pthread_mutex_lock(&env->ident->update_mu);
	cur = ks_identity_slot_get(env->ident, NULL);
	if (bundle_td(env, cur, m->trust_domain, td, res) < 0)
		goto cleanup;
	/* An empty bundle for a federated trust domain ends the federation;
	 * our own bundle is never empty. */
	if (td[0] && !m->bundle_pem[0]) {
		bundle = NULL;
	} else {
		rc = ks_pem_certs(m->bundle_pem, strlen(m->bundle_pem), &bundle, err, sizeof(err));
		if (rc < 0) {
			bad_pem(res, rc, "SetTrustBundle", err);
			goto cleanup;
		}
	}
	ks_identity_parts(cur, &p);
	if (td[0]) {
		rc = ks_identity_fed_with(&p, td, bundle, &fed, &nfed, err, sizeof(err));
		if (rc < 0) {
			result(res, CODE(REJECTED), REASON(BAD_TRUST_DOMAIN),
			       "SetTrustBundle rejected, nothing changed: %s", err);
			goto cleanup;
		}
		p.fed = fed;
		p.nfed = nfed;
	} else {
		/* The builder verifies our own chain under the new bundle: a
		 * bundle that drops our own root would have peers of our trust
		 * domain refuse us too (a CA rotation goes A, A+B, B; README). */
		p.bundle = bundle;
	}
	rc = publish(env, &p, "SetTrustBundle", res);
	if (rc == 0 && !td[0])
		result(res, CODE(OK), REASON(NONE),
		       "trust bundle of our own trust domain, %d certificate(s), in force",
		       sk_X509_num(bundle));
	else if (rc == 0 && bundle)
		result(res, CODE(OK), REASON(NONE),
		       "federated bundle of %s, %d certificate(s), in force", td,
		       sk_X509_num(bundle));
	else if (rc == 0)
		result(res, CODE(OK), REASON(NONE),
		       "federation with %s removed: its peers are refused from now on", td);
cleanup:
	pthread_mutex_unlock(&env->ident->update_mu);
	free(fed);
	ks_identity_put(cur);
	sk_X509_pop_free(bundle, X509_free);
}

void ks_ctl_set_crl(struct ks_ctl_env *env, const char *crl_pem, struct ks_ctl_result *res)
{
	STACK_OF(X509_CRL) *crls = NULL;
	struct ks_identity *cur = NULL;
	struct ks_ident_parts p;
	enum ks_ident_reason reason = KS_IR_NONE;
	char err[512];
	int rc;

	if (!have_state(env, res))
		return;
	rc = ks_pem_crls(crl_pem, strlen(crl_pem), &crls, err, sizeof(err));
	if (rc < 0) {
		bad_pem(res, rc, "SetCrl", err);
		return;
	}
	pthread_mutex_lock(&env->ident->update_mu);
	cur = ks_identity_slot_get(env->ident, NULL);
	ks_identity_parts(cur, &p);
	rc = ks_identity_check_crls(crls, p.bundle, p.chain, &reason, err, sizeof(err));
	if (rc < 0) {
		result(res, CODE(REJECTED), (int)reason, "SetCrl rejected, nothing changed: %s",
		       err);
	} else {
		p.crls = crls;
		p.crl_gen = cur->crl_gen + 1;
		rc = publish(env, &p, "SetCrl", res);
	}
	pthread_mutex_unlock(&env->ident->update_mu);
	if (rc == 0) {
		result(res, CODE(OK), REASON(NONE),
		       "%d CRL(s) in force; open connections they revoke are being closed",
		       sk_X509_CRL_num(crls));
		/* Workers sweep their open connections when they see the new
		 * CRL generation (worker.c). */
		for (unsigned i = 0; i < env->nworkers; i++)
			ks_worker_wake(&env->workers[i]);
	}
	ks_identity_put(cur);
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
}

static int parse_pin(const char *hex, uint8_t out[32])
{
	if (strlen(hex) != 64)
		return -EINVAL;
	for (int i = 0; i < 32; i++) {
		unsigned v;

		if (!isxdigit((unsigned char)hex[2 * i]) ||
		    !isxdigit((unsigned char)hex[2 * i + 1]) || sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* Builds pol from m, or fills res and returns -EINVAL/-ENOMEM. */
static int policy_from_msg(const struct ks_dp_config *cfg, const Ktls__Control__V1__SetPolicy *m,
			   struct ks_policy *pol, struct ks_ctl_result *res)
{
	const char *why;

	memset(pol, 0, sizeof(*pol));
	if (m->n_inbound_allow && !(pol->allow = calloc(m->n_inbound_allow, sizeof(char *))))
		goto nomem;
	for (size_t i = 0; i < m->n_inbound_allow; i++) {
		if (ks_spiffe_pattern_validate(m->inbound_allow[i], &why) < 0) {
			result(res, CODE(REJECTED), REASON(BAD_PATTERN),
			       "SetPolicy rejected, nothing changed: inbound_allow '%s': %s",
			       m->inbound_allow[i], why);
			return -EINVAL;
		}
		if (!(pol->allow[pol->nallow] = strdup(m->inbound_allow[i])))
			goto nomem;
		pol->nallow++;
	}
	if (m->n_outbound && !(pol->out = calloc(m->n_outbound, sizeof(*pol->out))))
		goto nomem;
	for (size_t i = 0; i < m->n_outbound; i++) {
		const Ktls__Control__V1__OutboundPolicy *o = m->outbound[i];
		struct ks_route_policy *rp = &pol->out[pol->nout];
		const struct ks_route *route = NULL;
		struct ks_addr a;
		char aerr[128];

		if (ks_addr_parse(o->destination, &a, aerr, sizeof(aerr)) == 0)
			for (size_t r = 0; r < cfg->nroutes && !route; r++)
				if (cfg->routes[r].dir == KS_OUTBOUND &&
				    ks_addr_equal(&cfg->routes[r].listen, &a))
					route = &cfg->routes[r];
		if (!route) {
			result(res, CODE(REJECTED), REASON(UNKNOWN_DESTINATION),
			       "SetPolicy rejected, nothing changed: destination '%s' is not the "
			       "LISTEN address of an outbound route",
			       o->destination);
			return -EINVAL;
		}
		if (ks_policy_route(pol, route->listen_str)) {
			result(res, CODE(REJECTED), REASON(UNKNOWN_DESTINATION),
			       "SetPolicy rejected, nothing changed: destination '%s' given twice",
			       o->destination);
			return -EINVAL;
		}
		if (o->server_id[0] && ks_spiffe_pattern_validate(o->server_id, &why) < 0) {
			result(res, CODE(REJECTED), REASON(BAD_PATTERN),
			       "SetPolicy rejected, nothing changed: server_id '%s': %s",
			       o->server_id, why);
			return -EINVAL;
		}
		if (!(rp->listen = strdup(route->listen_str)) ||
		    (o->server_id[0] && !(rp->server_id = strdup(o->server_id))) ||
		    (o->n_spki_sha256 && !(rp->pins = calloc(o->n_spki_sha256, 32)))) {
			pol->nout++;
			goto nomem;
		}
		pol->nout++;
		for (size_t k = 0; k < o->n_spki_sha256; k++) {
			if (parse_pin(o->spki_sha256[k], rp->pins[k]) < 0) {
				result(
				    res, CODE(REJECTED), REASON(BAD_PIN),
				    "SetPolicy rejected, nothing changed: pin '%s' for %s is not "
				    "64 hex digits (SHA-256 of the SubjectPublicKeyInfo)",
				    o->spki_sha256[k], o->destination);
				return -EINVAL;
			}
			rp->npins++;
		}
	}
	if (m->n_destinations && !(pol->dest = calloc(m->n_destinations, sizeof(*pol->dest))))
		goto nomem;
	for (size_t i = 0; i < m->n_destinations; i++) {
		const Ktls__Control__V1__DestinationPolicy *d = m->destinations[i];
		struct ks_dest_policy *dp = &pol->dest[pol->ndest];

		if (ks_dest_parse(d->destination, dp, &why) < 0) {
			result(res, CODE(REJECTED), REASON(UNKNOWN_DESTINATION),
			       "SetPolicy rejected, nothing changed: destination '%s': %s",
			       d->destination, why);
			return -EINVAL;
		}
		for (size_t k = 0; k < pol->ndest; k++)
			if (pol->dest[k].family == dp->family &&
			    pol->dest[k].prefix == dp->prefix && pol->dest[k].port == dp->port &&
			    memcmp(pol->dest[k].addr, dp->addr, sizeof(dp->addr)) == 0) {
				result(res, CODE(REJECTED), REASON(UNKNOWN_DESTINATION),
				       "SetPolicy rejected, nothing changed: destination '%s' "
				       "given twice",
				       d->destination);
				return -EINVAL;
			}
		if (ks_spiffe_pattern_validate(d->server_id, &why) < 0) {
			result(res, CODE(REJECTED), REASON(BAD_PATTERN),
			       "SetPolicy rejected, nothing changed: server_id '%s' for %s: %s",
			       d->server_id, d->destination, why);
			return -EINVAL;
		}
		if (!(dp->server_id = strdup(d->server_id)))
			goto nomem;
		pol->ndest++;
	}
	pol->unknown_dest =
	    m->refuse_unknown_destinations ? KS_UNKNOWN_DEST_REFUSE : KS_UNKNOWN_DEST_TRUST_DOMAIN;
	return 0;
nomem:
	result(res, CODE(INTERNAL), REASON(NONE), "out of memory");
	return -ENOMEM;
}

void ks_ctl_set_policy(struct ks_ctl_env *env, const Ktls__Control__V1__SetPolicy *m,
		       struct ks_ctl_result *res)
{
	struct ks_identity *cur = NULL;
	struct ks_ident_parts p;
	struct ks_policy pol;
	int rc;

	if (!have_state(env, res))
		return;
	rc = policy_from_msg(env->dp, m, &pol, res);
	if (env->refuse_unknown_dest)
		pol.unknown_dest = KS_UNKNOWN_DEST_REFUSE;
	if (rc == 0) {
		pthread_mutex_lock(&env->ident->update_mu);
		cur = ks_identity_slot_get(env->ident, NULL);
		ks_identity_parts(cur, &p);
		p.pol = &pol;
		rc = publish(env, &p, "SetPolicy", res);
		pthread_mutex_unlock(&env->ident->update_mu);
	}
	if (rc == 0)
		result(res, CODE(OK), REASON(NONE),
		       "policy in force: %zu inbound pattern(s)%s, %zu outbound route(s), %zu "
		       "destination(s), unknown destinations %s",
		       pol.nallow, pol.nallow ? "" : " (own trust domain)", pol.nout, pol.ndest,
		       pol.unknown_dest == KS_UNKNOWN_DEST_REFUSE ? "refused"
								  : "in our trust domain");
	ks_policy_free(&pol);
	ks_identity_put(cur);
}

void ks_ctl_ticket_name_hex(const uint8_t *name, char out[2 * KS_TICKET_NAME_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < KS_TICKET_NAME_LEN; i++) {
		out[2 * i] = digits[name[i] >> 4];
		out[2 * i + 1] = digits[name[i] & 15];
	}
	out[2 * KS_TICKET_NAME_LEN] = '\0';
}

/* A refused SetTicketKeys: answered and logged (the reason names no secret). */
static void ticket_keys_refused(struct ks_ctl_result *res, int code, int reason, const char *why)
{
	char clean[512];

	result(res, code, reason, "SetTicketKeys rejected, nothing changed: %s", why);
	ks_warn("event=control_update_rejected op=SetTicketKeys reason=\"%s\"",
		ks_log_clean(clean, sizeof(clean), why));
}

/*
 * The keys arrive in the request's wiped memory (ks_pb_secret_allocator);
 * the copy made here is wiped on the way out, and the ring keeps only what
 * it derives from them. Logs and answers carry key names and counts only.
 */
void ks_ctl_set_ticket_keys(struct ks_ctl_env *env, const Ktls__Control__V1__SetTicketKeys *m,
			    struct ks_ctl_result *res)
{
	struct ks_ticket_secret keys[KS_TICKET_KEYS_MAX];
	KS_WIPE_AT_EXIT(keys);
	uint8_t names[KS_TICKET_KEYS_MAX][KS_TICKET_NAME_LEN];
	char err[256], list[KS_TICKET_KEYS_MAX * (2 * KS_TICKET_NAME_LEN + 1)];
	struct ks_ticket_ring *ring;
	bool pushed;
	size_t n;
	int rc;

	if (!env->tls || !env->tls->res) {
		ticket_keys_refused(res, CODE(FAILED_PRECONDITION), REASON(NONE),
				    "session resumption is off (--session-resumption off): this "
				    "sidecar issues no tickets and holds no ticket keys");
		return;
	}
	ring = &env->tls->res->ring;
	if (m->n_keys > KS_TICKET_KEYS_MAX) {
		snprintf(err, sizeof(err),
			 "%zu ticket keys: at most %d (the one that seals new tickets, then the "
			 "retired ones that still open them)",
			 m->n_keys, KS_TICKET_KEYS_MAX);
		ticket_keys_refused(res, CODE(REJECTED), REASON(BAD_TICKET_KEY), err);
		return;
	}
	for (size_t i = 0; i < m->n_keys; i++) {
		const Ktls__Control__V1__TicketKey *k = m->keys[i];

		if (k->name.len != KS_TICKET_NAME_LEN || k->secret.len != KS_TICKET_SECRET_LEN) {
			snprintf(err, sizeof(err),
				 "ticket key %zu: name of %zu bytes and secret of %zu bytes; want "
				 "exactly %d and %d",
				 i + 1, k->name.len, k->secret.len, KS_TICKET_NAME_LEN,
				 KS_TICKET_SECRET_LEN);
			ticket_keys_refused(res, CODE(REJECTED), REASON(BAD_TICKET_KEY), err);
			return;
		}
		memcpy(keys[i].name, k->name.data, KS_TICKET_NAME_LEN);
		memcpy(keys[i].secret, k->secret.data, KS_TICKET_SECRET_LEN);
	}
	/* Duplicate names and all-zero secrets are the ring's to refuse; it
	 * changes nothing then. */
	rc = ks_ticket_ring_set(ring, keys, m->n_keys, err, sizeof(err));
	if (rc < 0) {
		ticket_keys_refused(res, rc == -EINVAL ? CODE(REJECTED) : CODE(INTERNAL),
				    rc == -EINVAL ? REASON(BAD_TICKET_KEY) : REASON(NONE), err);
		return;
	}
	n = ks_ticket_ring_names(ring, names, KS_TICKET_KEYS_MAX, &pushed);
	list[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char hex[2 * KS_TICKET_NAME_LEN + 1];

		ks_ctl_ticket_name_hex(names[i], hex);
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "",
			 hex);
	}
	ks_info("event=control_update op=SetTicketKeys ticket_keys=%s keys=%zu names=%s",
		pushed ? "pushed" : "own", n, n ? list : "-");
	if (pushed)
		result(res, CODE(OK), REASON(NONE),
		       "%zu pushed ticket key(s) in force (%s); %.*s seals new tickets", n, list,
		       2 * KS_TICKET_NAME_LEN, list);
	else
		result(res, CODE(OK), REASON(NONE),
		       "ticket keys of our own again (%s): a new one every %us; tickets sealed "
		       "under the pushed keys now get a full handshake",
		       n ? list : "none", ring->period_s);
}
