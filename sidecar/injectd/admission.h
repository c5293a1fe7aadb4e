/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admission webhook's one request: an admission.k8s.io/v1
 * AdmissionReview in, an AdmissionReview (or, when the request cannot be
 * answered as one, a plain HTTP error) out. No I/O: serve.c reads the
 * body and writes the answer; the fuzzer and the unit tests call this.
 *
 * The answers (README, "The injection webhook"):
 *  - not JSON, nested deeper than KS_ADM_MAX_DEPTH, more than
 *    KS_ADM_MAX_VALUES values, or no request.uid: HTTP 400 with a review
 *    that refuses it, its uid empty (there is no uid to answer: the API
 *    server, which never sends such a body, would apply the webhook's
 *    failurePolicy), the reason in status.message;
 *  - a review that is not admission.k8s.io/v1 AdmissionReview, or a Pod
 *    CREATE without an object: allowed false, code 400, the reason;
 *  - a Pod the transform refuses (a bad ktls-sidecar.io/ annotation, a
 *    spec it cannot patch): allowed false, code 400, the transform's
 *    message, which names the pod and the annotation. The user fixes the
 *    manifest; a pod that silently lost its sidecar would instead run
 *    without mTLS, or (strict peers) fail at its first connection;
 *  - a Pod the transform skips (ktls-sidecar.io/inject "false",
 *    hostNetwork, another mesh's proxy, nothing to carry), anything that
 *    is not a Pod, or an operation other than CREATE: allowed true, no
 *    patch, status.message says why (the webhook's rules should send only
 *    Pod CREATEs; anything else is passed, not blocked);
 *  - an injected Pod: allowed true with a base64 JSONPatch (patch.h) of
 *    the pod before and after ks_inject_pod; none when it changed nothing
 *    (a re-invocation of an injected pod).
 */
#ifndef KS_INJECTD_ADMISSION_H
#define KS_INJECTD_ADMISSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "inject/inject.h"

#define KS_ADM_API_VERSION "admission.k8s.io/v1"
#define KS_ADM_KIND	   "AdmissionReview"
/*
 * Nesting depth of a review. A Pod's deepest paths (affinity's
 * nodeSelectorTerms[].matchExpressions[].values[], managedFields'
 * fieldsV1) are about 15 levels under the review; 64 leaves room. jansson
 * would parse up to JSON_PARSER_MAX_DEPTH (2048) levels, and its parser,
 * json_deep_copy, json_equal, json_dumps and our diff each recurse once
 * per level on a connection thread's stack: a pre-scan of the raw bytes
 * refuses a deeper body before any of them runs.
 */
#define KS_ADM_MAX_DEPTH 64
/* Values (array items and object members) in a review: 256 Ki, for the
 * memory of a parsed body (jansson's nodes are tens of bytes each, so
 * 4 MiB of "[0,0,0,...]" would otherwise be ~100 MB). A real Pod has a
 * few thousand at most. */
#define KS_ADM_MAX_VALUES (256u * 1024)

/* What became of a request, for metrics and logs. */
enum ks_adm_result {
	KS_ADM_INJECTED, /* allowed, with a patch (or none needed) */
	KS_ADM_SKIPPED,	 /* allowed, unchanged */
	KS_ADM_REFUSED,	 /* allowed: false */
	KS_ADM_ERROR,	 /* no review to answer (HTTP 400), or out of memory (500) */
	KS_ADM__COUNT,
};
const char *ks_adm_result_name(enum ks_adm_result r);

/* A decoded request. Pointers into root (owned). */
struct ks_adm_request {
	json_t *root;
	const char *uid;
	const char *api_version, *kind;			/* the review's own */
	const char *operation;				/* request.operation */
	const char *res_group, *res_version, *res_kind; /* request.kind */
	const char *ns;					/* request.namespace, or "" */
	json_t *object;					/* request.object, or NULL */
	const char *owner_kind; /* object.metadata.ownerReferences[controller].kind, or "" */
	char what[320];		/* "Pod shop/cart-7d9f8-* (ReplicaSet cart-7d9f8)" */
};

/*
 * Checks the raw body before it is parsed: nesting depth at most
 * KS_ADM_MAX_DEPTH and at most KS_ADM_MAX_VALUES values. Strings are
 * skipped (brackets inside them do not count). 0, or -E2BIG with err.
 */
int ks_admission_prescan(const char *body, size_t len, char *err, size_t errlen);

/*
 * Parses and decodes body[0..len). 0: r is filled (ks_admission_request_free
 * it) and may still be refused by ks_admission_answer's checks; -EBADMSG:
 * no review to answer (err says why: not JSON, too deep, no request.uid);
 * -ENOMEM.
 */
int ks_admission_decode(const char *body, size_t len, struct ks_adm_request *r, char *err,
			size_t errlen);
void ks_admission_request_free(struct ks_adm_request *r);

/* The answer to one request. */
struct ks_adm_answer {
	int http_status; /* 200 (a review), 400 or 500 (text) */
	char *body;	 /* malloc'ed; application/json or text/plain */
	size_t len;
	const char *content_type;
	enum ks_adm_result result;
	char uid[80]; /* for the log line ("" when none) */
	char what[320];
	char msg[KS_INJECT_MSG_MAX]; /* why, for the log line and status.message */
	size_t patch_ops;
};
void ks_adm_answer_free(struct ks_adm_answer *a);

/* The whole request: decode, inject with cfg, diff, encode. Always fills
 * a (a->body NULL only when even that failed: then answer a bare 500). */
void ks_admission_handle(const char *body, size_t len, const struct ks_inject_cfg *cfg,
			 struct ks_adm_answer *a);

/*
 * The injection itself, for a decoded Pod CREATE: the JSONPatch that
 * ks_inject_pod's changes to a copy of r->object amount to, in *patch
 * (an array, maybe empty), or NULL when the pod is skipped. Returns a
 * ks_inject_result, or -EINVAL (msg says why) / -ENOMEM. The fuzzer
 * applies the patch to the object and compares.
 */
int ks_admission_patch(const struct ks_adm_request *r, const struct ks_inject_cfg *cfg,
		       json_t **patch, json_t **injected, struct ks_inject_msg *msg);

#endif
