/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Control API requests: decode strictly, run, encode the response. Pure
 * apart from what env exposes, so the fuzzer drives it directly, behind the
 * real frame reader (tests/fuzz/fuzz_control.c). Requests are decoded into
 * memory that is wiped when freed: a SetIdentity may carry a private key, a
 * SetTicketKeys the secrets of session tickets.
 */
#include "control/control.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/version.h"
#include "control/update.h"
#include "dataplane/offload.h"
#include "dataplane/worker.h"
#include "ktls/control/v1/control.pb-c.h"
#include "tls/identity.h"
#include "tls/ktls.h"
#include "tls/resume.h"

typedef Ktls__Control__V1__Request pb_request;
typedef Ktls__Control__V1__Response pb_response;

/*
 * Finds the first field this build does not know, anywhere in m. Our schema
 * has no recursion, so the depth is bounded by it.
 */
static bool find_unknown(const ProtobufCMessage *m, char *where, size_t wlen)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;

	if (m->n_unknown_fields) {
		snprintf(where, wlen, "unknown field %u in %s", m->unknown_fields[0].tag, d->name);
		return true;
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *v =
			    *(ProtobufCMessage *const *const *)(base + f->offset);

			for (size_t j = 0; j < n; j++)
				if (find_unknown(v[j], where, wlen))
					return true;
			continue;
		}
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + f->offset);

		if (sub && find_unknown(sub, where, wlen))
			return true;
	}
	return false;
}

/* Responses carry no secret (a CSR is public): plain malloc, freed with free(3). */
static int encode(const pb_response *r, uint8_t **out, size_t *outlen)
{
	return ks_ctl_frame_pack(&r->base, false, out, outlen);
}

int ks_ctl_error_frame(int code, const char *message, uint8_t **out, size_t *outlen)
{
	pb_response r = KTLS__CONTROL__V1__RESPONSE__INIT;

	r.code = (Ktls__Control__V1__Code)code;
	r.message = (char *)message;
	return encode(&r, out, outlen);
}

static int op_get_status(struct ks_ctl_env *env, pb_response *r, uint8_t **out, size_t *outlen)
{
	Ktls__Control__V1__Status st = KTLS__CONTROL__V1__STATUS__INIT;
	Ktls__Control__V1__Identity pid = KTLS__CONTROL__V1__IDENTITY__INIT;
	Ktls__Control__V1__KtlsCapability kc = KTLS__CONTROL__V1__KTLS_CAPABILITY__INIT;
	Ktls__Control__V1__Counters ct = KTLS__CONTROL__V1__COUNTERS__INIT;
	Ktls__Control__V1__ReasonCount rc_msgs[KS_REJ__COUNT], *rc_ptrs[KS_REJ__COUNT];
	Ktls__Control__V1__TicketKeys tk = KTLS__CONTROL__V1__TICKET_KEYS__INIT;
	uint8_t tk_names[KS_TICKET_KEYS_MAX][KS_TICKET_NAME_LEN];
	char tk_hex[KS_TICKET_KEYS_MAX][2 * KS_TICKET_NAME_LEN + 1], *tk_ptrs[KS_TICKET_KEYS_MAX];
	bool tk_pushed = false;
	size_t nrc = 0;
	struct ks_identity *id = NULL;
	char **fps = NULL, **ffps = NULL;
	Ktls__Control__V1__FederatedBundle *fb = NULL, **fbp = NULL;
	size_t nffps = 0;
	const char *why;
	unsigned caps = ks_offload_caps(&why);
	struct ks_totals t;
	int rc;

	st.version = (char *)ks_version();
	if (env->ident)
		id = ks_identity_slot_get(env->ident, NULL);
	if (env->sh)
		st.draining = atomic_load(&env->sh->drain);
	kc.mode = (char *)ks_ktls_mode_name(env->dp ? env->dp->ktls : KS_KTLS_AUTO);
	if (id && id->leaf) {
		pid.spiffe_id = id->id;
		pid.serial = id->serial;
		pid.not_after = id->not_after;
		pid.not_after_unix = id->not_after_unix;
		st.identity = &pid;
	}
	if (id) {
		fps = calloc(id->nbundle ? id->nbundle : 1, sizeof(*fps));
		if (!fps) {
			ks_identity_put(id);
			return -ENOMEM;
		}
		for (size_t i = 0; i < id->nbundle; i++)
			fps[i] = id->bundle_sha256[i];
		st.n_bundle_sha256 = id->nbundle;
		st.bundle_sha256 = fps;
	}
	if (id && id->nfed) {
		for (size_t i = 0; i < id->nfed; i++)
			nffps += (size_t)sk_X509_num(id->fed[i].certs);
		fb = calloc(id->nfed, sizeof(*fb));
		fbp = calloc(id->nfed, sizeof(*fbp));
		ffps = calloc(nffps ? nffps : 1, sizeof(*ffps));
		if (!fb || !fbp || !ffps) {
			free(fb);
			free(fbp);
			free(ffps);
			free(fps);
			ks_identity_put(id);
			return -ENOMEM;
		}
		nffps = 0;
		for (size_t i = 0; i < id->nfed; i++) {
			ktls__control__v1__federated_bundle__init(&fb[i]);
			fb[i].trust_domain = id->fed[i].td;
			fb[i].bundle_sha256 = &ffps[nffps];
			for (int k = 0; k < sk_X509_num(id->fed[i].certs); k++)
				ffps[nffps++] = id->fed[i].sha256[k];
			fb[i].n_bundle_sha256 = (size_t)sk_X509_num(id->fed[i].certs);
			fbp[i] = &fb[i];
		}
		st.n_federated_bundles = id->nfed;
		st.federated_bundles = fbp;
	}
	kc.aes128gcm = !!(caps & KS_KTLS_CAP_AES128);
	kc.aes256gcm = !!(caps & KS_KTLS_CAP_AES256);
	kc.chacha20poly1305 = !!(caps & KS_KTLS_CAP_CHACHA);
	kc.rekey = !!(caps & KS_KTLS_CAP_REKEY);
	kc.detail = (char *)why;
	st.ktls = &kc;
	st.workers = env->nworkers;
	/* Set before the workers started and never changed: a worker that is
	 * tearing its loop down cannot race this read. */
	st.io_backend = (char *)(env->nworkers ? env->workers[0].backend : "none");
	if (env->sh && env->nworkers) {
		ks_worker_totals(env->workers, env->nworkers, env->sh, &t);
		ct.connections_open = t.open;
		ct.handshakes_rejected = t.rejected;
		ct.kernel_connections = t.conns[KS_RL_KERNEL];
		ct.kernel_bytes = t.bytes[KS_RL_KERNEL];
		ct.kernel_userspace_bytes = t.ubytes[KS_RL_KERNEL];
		ct.userspace_connections = t.conns[KS_RL_USERSPACE];
		ct.userspace_bytes = t.bytes[KS_RL_USERSPACE];
		ct.userspace_userspace_bytes = t.ubytes[KS_RL_USERSPACE];
		ct.plaintext_connections = t.conns[KS_RL_PLAINTEXT];
		ct.plaintext_bytes = t.bytes[KS_RL_PLAINTEXT];
		ct.shed_max_handshakes = t.admission[KS_ADM_SHED_HANDSHAKES];
		ct.refused_max_connections = t.admission[KS_ADM_REFUSED_CONNECTIONS];
		ct.refused_max_handshakes_per_source = t.admission[KS_ADM_REFUSED_SOURCE];
		ct.accept_failed = t.admission[KS_ADM_ACCEPT_FAILED];
		/* By reason; a connection closed while pending without a
		 * verdict (a drain, a stop) is in the total only. */
		for (int i = KS_REJ_NONE + 1; i < KS_REJ__COUNT; i++) {
			if (!t.rejected_by[i])
				continue;
			ktls__control__v1__reason_count__init(&rc_msgs[nrc]);
			rc_msgs[nrc].reason = (char *)ks_reject_name((enum ks_reject)i);
			rc_msgs[nrc].count = t.rejected_by[i];
			rc_ptrs[nrc] = &rc_msgs[nrc];
			nrc++;
		}
		ct.n_handshakes_rejected_by_reason = nrc;
		ct.handshakes_rejected_by_reason = rc_ptrs;
	}
	st.counters = &ct;
	/* Ticket keys: names only (and whose), never a secret. */
	if (env->tls && env->tls->res) {
		tk.n_names = ks_ticket_ring_names(&env->tls->res->ring, tk_names,
						  KS_TICKET_KEYS_MAX, &tk_pushed);
		tk.pushed = tk_pushed;
		for (size_t i = 0; i < tk.n_names; i++) {
			ks_ctl_ticket_name_hex(tk_names[i], tk_hex[i]);
			tk_ptrs[i] = tk_hex[i];
		}
		tk.names = tk_ptrs;
		st.ticket_keys = &tk;
	}
	r->result_case = KTLS__CONTROL__V1__RESPONSE__RESULT_STATUS;
	r->status = &st;
	rc = encode(r, out, outlen);
	free(fps);
	free(ffps);
	free(fbp);
	free(fb);
	ks_identity_put(id);
	return rc;
}

static int reply(pb_response *r, int code, const char *message, uint8_t **out, size_t *outlen)
{
	r->code = (Ktls__Control__V1__Code)code;
	r->message = (char *)message;
	return encode(r, out, outlen);
}

/* Workers answer within one loop turn; this bounds a stuck one. */
#define KS_CTL_LIST_TIMEOUT_MS 2000

static int op_list_connections(struct ks_ctl_env *env, pb_response *r, uint8_t **out,
			       size_t *outlen)
{
	Ktls__Control__V1__ConnectionList list = KTLS__CONTROL__V1__CONNECTION_LIST__INIT;
	Ktls__Control__V1__Connection *pc = NULL, **pp = NULL;
	struct ks_conn_info *info = NULL;
	size_t n = 0;
	unsigned missing = 0;
	char msg[128];
	int rc;

	if (env->sh && env->nworkers &&
	    ks_worker_snapshot(env->workers, env->nworkers, env->sh, KS_CTL_LIST_TIMEOUT_MS, &info,
			       &n, &missing) < 0)
		return reply(r, KTLS__CONTROL__V1__CODE__CODE_INTERNAL, "out of memory", out,
			     outlen);
	if (n && (!(pc = calloc(n, sizeof(*pc))) || !(pp = calloc(n, sizeof(*pp))))) {
		rc = reply(r, KTLS__CONTROL__V1__CODE__CODE_INTERNAL, "out of memory", out, outlen);
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		ktls__control__v1__connection__init(&pc[i]);
		pc[i].id = info[i].id;
		pc[i].direction = (char *)(info[i].dir == KS_INBOUND ? "inbound" : "outbound");
		pc[i].peer_id = info[i].peer_id ? info[i].peer_id : (char *)"";
		pc[i].peer_addr = info[i].peer_addr;
		pc[i].cipher = (char *)info[i].cipher;
		pc[i].record_layer =
		    (char *)(info[i].forwarding ? ks_rl_name(info[i].rl) : "handshake");
		pc[i].bytes_to_peer = info[i].bytes_to_peer;
		pc[i].bytes_from_peer = info[i].bytes_from_peer;
		pc[i].age_ms = info[i].age_ms;
		pp[i] = &pc[i];
	}
	list.n_connections = n;
	list.connections = pp;
	r->result_case = KTLS__CONTROL__V1__RESPONSE__RESULT_CONNECTIONS;
	r->connections = &list;
	if (missing)
		snprintf(msg, sizeof(msg),
			 "%zu connection(s); %u worker(s) did not answer in %d ms", n, missing,
			 KS_CTL_LIST_TIMEOUT_MS);
	else
		snprintf(msg, sizeof(msg), "%zu connection(s)", n);
	rc = reply(
	    r, missing ? KTLS__CONTROL__V1__CODE__CODE_INTERNAL : KTLS__CONTROL__V1__CODE__CODE_OK,
	    msg, out, outlen);
cleanup:
	free(pp);
	free(pc);
	ks_conn_info_free(info, n);
	return rc;
}

/* An update of the identity, for /metrics (ktls_sidecar_identity_updates_total). */
static void count_update(struct ks_ctl_env *env, enum ks_ident_source src,
			 const struct ks_ctl_result *res)
{
	if (env->ident)
		ks_identity_slot_count(env->ident, src,
				       res->code == KTLS__CONTROL__V1__CODE__CODE_OK);
}

static int reply_res(pb_response *r, const struct ks_ctl_result *res, uint8_t **out, size_t *outlen)
{
	r->reason = (Ktls__Control__V1__Reason)res->reason;
	return reply(r, res->code, res->msg, out, outlen);
}

void ks_ctl_env_fini(struct ks_ctl_env *env)
{
	EVP_PKEY_free(env->csr_key);
	env->csr_key = NULL;
}

int ks_ctl_handle(struct ks_ctl_env *env, const uint8_t *req, size_t len, uint8_t **out,
		  size_t *outlen)
{
	pb_response r = KTLS__CONTROL__V1__RESPONSE__INIT;
	pb_request *q = ktls__control__v1__request__unpack(&ks_pb_secret_allocator, len, req);
	struct ks_ctl_result res = {0};
	char msg[200];
	int rc;

	if (!q)
		return reply(&r, KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT,
			     "request is not a valid ktls.control.v1.Request (truncated, or a "
			     "field of the wrong type)",
			     out, outlen);
	r.id = q->id;
	if (find_unknown(&q->base, msg, sizeof(msg))) {
		rc = reply(&r, KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT, msg, out, outlen);
		goto done;
	}
	switch (q->op_case) {
	case KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS:
		rc = op_get_status(env, &r, out, outlen);
		break;
	case KTLS__CONTROL__V1__REQUEST__OP_DRAIN: {
		int d = env->drain ? env->drain(env, q->drain->timeout_ms) : -ENOSYS;

		if (d < 0)
			rc = reply(&r, KTLS__CONTROL__V1__CODE__CODE_INTERNAL,
				   "cannot start the drain", out, outlen);
		else
			rc = reply(&r, KTLS__CONTROL__V1__CODE__CODE_OK,
				   d == 1 ? "already draining"
					  : "draining: inbound listeners close after the drain "
					    "delay, outbound ones once the app is done; open "
					    "connections get the drain timeout",
				   out, outlen);
		break;
	}
	case KTLS__CONTROL__V1__REQUEST__OP_CREATE_CSR: {
		Ktls__Control__V1__Csr csr = KTLS__CONTROL__V1__CSR__INIT;
		char *pem = NULL;

		ks_ctl_create_csr(env, q->create_csr->spiffe_id, &pem, &res);
		if (pem) {
			csr.csr_pem = pem;
			r.result_case = KTLS__CONTROL__V1__RESPONSE__RESULT_CSR;
			r.csr = &csr;
		}
		rc = reply_res(&r, &res, out, outlen);
		free(pem);
		break;
	}
	case KTLS__CONTROL__V1__REQUEST__OP_SET_IDENTITY:
		ks_ctl_set_identity(env, q->set_identity, &res);
		count_update(env, KS_IDSRC_SET_IDENTITY, &res);
		rc = reply_res(&r, &res, out, outlen);
		break;
	case KTLS__CONTROL__V1__REQUEST__OP_SET_TRUST_BUNDLE:
		ks_ctl_set_bundle(env, q->set_trust_bundle, &res);
		count_update(env, KS_IDSRC_SET_TRUST_BUNDLE, &res);
		rc = reply_res(&r, &res, out, outlen);
		break;
	case KTLS__CONTROL__V1__REQUEST__OP_SET_CRL:
		ks_ctl_set_crl(env, q->set_crl->crl_pem, &res);
		count_update(env, KS_IDSRC_SET_CRL, &res);
		rc = reply_res(&r, &res, out, outlen);
		break;
	case KTLS__CONTROL__V1__REQUEST__OP_SET_POLICY:
		ks_ctl_set_policy(env, q->set_policy, &res);
		count_update(env, KS_IDSRC_SET_POLICY, &res);
		rc = reply_res(&r, &res, out, outlen);
		break;
	case KTLS__CONTROL__V1__REQUEST__OP_SET_TICKET_KEYS:
		ks_ctl_set_ticket_keys(env, q->set_ticket_keys, &res);
		count_update(env, KS_IDSRC_SET_TICKET_KEYS, &res);
		rc = reply_res(&r, &res, out, outlen);
		break;
	case KTLS__CONTROL__V1__REQUEST__OP_LIST_CONNECTIONS:
		rc = op_list_connections(env, &r, out, outlen);
		break;
	default:
		rc = reply(&r, KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT,
			   "request names no operation", out, outlen);
		break;
	}
done:
	ktls__control__v1__request__free_unpacked(q, &ks_pb_secret_allocator);
	return rc;
}
