/* SPDX-License-Identifier: Apache-2.0 */
/* One AdmissionReview in, one answer out: admission.h has the answers. */
#include "injectd/admission.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "injectd/patch.h"

const char *ks_adm_result_name(enum ks_adm_result r)
{
	static const char *const names[KS_ADM__COUNT] = {"injected", "skipped", "refused", "error"};
	return (unsigned)r < KS_ADM__COUNT ? names[r] : "?";
}

int ks_admission_prescan(const char *body, size_t len, char *err, size_t errlen)
{
	unsigned depth = 0;
	size_t values = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = body[i];
		if (in_str) {
			if (c == '\\')
				i++; /* the escaped byte cannot end the string */
			else if (c == '"')
				in_str = false;
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			break;
		case '[':
		case '{':
			if (++depth > KS_ADM_MAX_DEPTH) {
				snprintf(err, errlen, "JSON nested deeper than %d levels",
					 KS_ADM_MAX_DEPTH);
				return -E2BIG;
			}
			/* an opening bracket starts a value too */
			__attribute__((fallthrough));
		case ',':
			if (++values > KS_ADM_MAX_VALUES) {
				snprintf(err, errlen, "JSON with more than %u values",
					 KS_ADM_MAX_VALUES);
				return -E2BIG;
			}
			break;
		case ']':
		case '}':
			if (depth)
				depth--;
			break;
		default:
			break;
		}
	}
	return 0;
}

static const char *str_at(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* The object's controller owner: its kind, and its name for messages. */
static void controller_of(const json_t *meta, const char **kind, const char **name)
{
	size_t i;
	json_t *ref;

	*kind = "";
	*name = "";
	json_array_foreach(json_object_get(meta, "ownerReferences"), i, ref)
	{
		if (!json_is_true(json_object_get(ref, "controller")))
			continue;
		*kind = str_at(ref, "kind") ? str_at(ref, "kind") : "";
		*name = str_at(ref, "name") ? str_at(ref, "name") : "";
		return;
	}
}

int ks_admission_decode(const char *body, size_t len, struct ks_adm_request *r, char *err,
			size_t errlen)
{
	json_error_t jerr;
	const json_t *req, *rkind, *meta;

	memset(r, 0, sizeof(*r));
	if (ks_admission_prescan(body, len, err, errlen))
		return -EBADMSG;
	/* JSON_REJECT_DUPLICATES: two "uid"s (or two "object"s) would be two
	 * readings of one request. No JSON_ALLOW_NUL: a NUL in a string is
	 * refused, so every string is a C string. */
	r->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!r->root) {
		snprintf(err, errlen, "not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
			 jerr.column);
		return -EBADMSG;
	}
	req = json_object_get(r->root, "request");
	r->uid = str_at(req, "uid");
	if (!json_is_object(r->root) || !json_is_object(req) || !r->uid || !r->uid[0] ||
	    strlen(r->uid) >= 80) {
		snprintf(err, errlen, "no request.uid: not an AdmissionReview request");
		ks_admission_request_free(r);
		return -EBADMSG;
	}
	r->api_version = str_at(r->root, "apiVersion");
	r->kind = str_at(r->root, "kind");
	r->operation = str_at(req, "operation");
	rkind = json_object_get(req, "kind");
	r->res_group = str_at(rkind, "group");
	r->res_version = str_at(rkind, "version");
	r->res_kind = str_at(rkind, "kind");
	r->ns = str_at(req, "namespace") ? str_at(req, "namespace") : "";
	r->object = json_object_get(req, "object");
	if (!json_is_object(r->object))
		r->object = NULL;
	meta = json_object_get(r->object, "metadata");
	const char *owner_name;
	controller_of(meta, &r->owner_kind, &owner_name);
	/* A pod a controller makes has no name yet, only generateName. */
	const char *name = str_at(meta, "name"), *gen = str_at(meta, "generateName");
	const char *ns =
	    r->ns[0] ? r->ns : (str_at(meta, "namespace") ? str_at(meta, "namespace") : "");
	int n =
	    snprintf(r->what, sizeof(r->what), "%s %s%s%.100s%s", r->res_kind ? r->res_kind : "?",
		     ns, ns[0] ? "/" : "", name && name[0] ? name : (gen ? gen : ""),
		     name && name[0] ? "" : (gen ? "*" : "(no name)"));
	if (r->owner_kind[0] && n > 0 && (size_t)n < sizeof(r->what))
		snprintf(r->what + n, sizeof(r->what) - (size_t)n, " (%.40s %.100s)", r->owner_kind,
			 owner_name);
	return 0;
}

void ks_admission_request_free(struct ks_adm_request *r)
{
	json_decref(r->root);
	memset(r, 0, sizeof(*r));
}

int ks_admission_patch(const struct ks_adm_request *r, const struct ks_inject_cfg *cfg,
		       json_t **patch, json_t **injected, struct ks_inject_msg *msg)
{
	json_t *copy, *meta, *spec;
	int rc;

	*patch = NULL;
	if (injected)
		*injected = NULL;
	copy = json_deep_copy(r->object);
	if (!copy)
		return -ENOMEM;
	meta = json_object_get(copy, "metadata");
	if (!meta) {
		meta = json_object();
		if (!meta || json_object_set_new(copy, "metadata", meta)) {
			json_decref(copy);
			return -ENOMEM;
		}
	}
	spec = json_object_get(copy, "spec");
	rc = ks_inject_pod(meta, spec, r->owner_kind, r->what, cfg, msg);
	if (rc == KS_INJECT_DONE)
		rc = ks_patch_diff(r->object, copy, patch) ? -ENOMEM : KS_INJECT_DONE;
	if (rc == KS_INJECT_DONE && injected)
		*injected = json_incref(copy);
	json_decref(copy);
	return rc;
}

void ks_adm_answer_free(struct ks_adm_answer *a)
{
	free(a->body);
	a->body = NULL;
}

static void set_msg(struct ks_adm_answer *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_msg(struct ks_adm_answer *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->msg, sizeof(a->msg), fmt, ap);
	va_end(ap);
}

/* A JSON string of msg. The messages quote the request's own strings,
 * cut to a length (a pod's generateName is anything until validation,
 * which runs after mutating admission), and a cut can split a UTF-8
 * sequence, which jansson refuses: then every non-ASCII byte becomes '?'. */
static json_t *utf8_string(char *msg)
{
	json_t *s = json_string(msg);

	if (s)
		return s;
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	return json_string(msg);
}

static void text_answer(struct ks_adm_answer *a, int status)
{
	size_t n = strlen(a->msg);

	a->http_status = status;
	a->result = KS_ADM_ERROR;
	a->content_type = "text/plain; charset=utf-8";
	a->body = malloc(n + 2);
	if (!a->body)
		return;
	memcpy(a->body, a->msg, n);
	a->body[n] = '\n';
	a->body[n + 1] = '\0';
	a->len = n + 1;
}

/* The review answer; patch (may be NULL) is base64'd into it. */
static void review_answer(struct ks_adm_answer *a, const char *uid, bool allowed, int code,
			  const json_t *patch)
{
	json_t *root = json_object(), *resp = json_object(), *st;
	char *b64 = NULL, *pj = NULL;
	int fail = !root || !resp;

	a->http_status = 200;
	a->content_type = "application/json";
	fail = fail || json_object_set_new(root, "apiVersion", json_string(KS_ADM_API_VERSION)) ||
	       json_object_set_new(root, "kind", json_string(KS_ADM_KIND)) ||
	       json_object_set(root, "response", resp) ||
	       json_object_set_new(resp, "uid", json_string(uid)) ||
	       json_object_set_new(resp, "allowed", json_boolean(allowed));
	if (!fail && patch && json_array_size(patch)) {
		pj = json_dumps(patch, JSON_COMPACT);
		size_t n = pj ? strlen(pj) : 0;
		b64 = pj ? malloc(4 * ((n + 2) / 3) + 1) : NULL;
		if (!b64 || n > 0x7fffffff)
			fail = 1;
		else
			EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)pj, (int)n);
		fail = fail || json_object_set_new(resp, "patchType", json_string("JSONPatch")) ||
		       json_object_set_new(resp, "patch", json_string(b64));
		a->patch_ops = json_array_size(patch);
	}
	if (!fail && a->msg[0]) {
		st = json_object();
		fail = !st || json_object_set_new(resp, "status", st) ||
		       json_object_set_new(st, "code", json_integer(code)) ||
		       json_object_set_new(st, "message", utf8_string(a->msg));
		if (!fail && !allowed)
			fail = json_object_set_new(st, "status", json_string("Failure")) ||
			       json_object_set_new(st, "reason", json_string("BadRequest"));
	}
	if (!fail) {
		a->body = json_dumps(root, JSON_COMPACT);
		a->len = a->body ? strlen(a->body) : 0;
	}
	if (!a->body) {
		set_msg(a, "out of memory");
		text_answer(a, 500);
	}
	free(pj);
	free(b64);
	json_decref(resp);
	json_decref(root);
}

static bool streq(const char *a, const char *b)
{
	return a && strcmp(a, b) == 0;
}

void ks_admission_handle(const char *body, size_t len, const struct ks_inject_cfg *cfg,
			 struct ks_adm_answer *a)
{
	struct ks_adm_request r;
	struct ks_inject_msg im = {{0}};
	json_t *patch = NULL;
	char err[256];
	int rc;

	memset(a, 0, sizeof(*a));
	rc = ks_admission_decode(body, len, &r, err, sizeof(err));
	if (rc == -ENOMEM) {
		set_msg(a, "out of memory");
		text_answer(a, 500);
		return;
	}
	if (rc) {
		/* Not a review we can read (not JSON, no uid): still answered
		 * as one, refused, with HTTP 400 and an empty uid. The API
		 * server never sends this; whoever did gets the reason in the
		 * shape every review answer has. */
		set_msg(a, "%s", err);
		review_answer(a, "", false, 400, NULL);
		a->http_status = 400;
		a->result = KS_ADM_ERROR;
		return;
	}
	snprintf(a->uid, sizeof(a->uid), "%s", r.uid);
	snprintf(a->what, sizeof(a->what), "%s", r.what);
	if (!streq(r.api_version, KS_ADM_API_VERSION) || !streq(r.kind, KS_ADM_KIND)) {
		/* Our answer is a v1 review whatever was asked: the webhook's
		 * admissionReviewVersions is ["v1"], so the API server never
		 * sends another, and anything else is not the API server. */
		set_msg(a, "expected apiVersion %s kind %s, got apiVersion %.64s kind %.64s",
			KS_ADM_API_VERSION, KS_ADM_KIND, r.api_version ? r.api_version : "(none)",
			r.kind ? r.kind : "(none)");
		a->result = KS_ADM_REFUSED;
		review_answer(a, r.uid, false, 400, NULL);
		goto out;
	}
	if (!r.res_kind || !streq(r.res_kind, "Pod") || !r.res_group || r.res_group[0] ||
	    !streq(r.res_version, "v1")) {
		set_msg(a, "not injected: request.kind is %.64s/%.32s %.64s, not core/v1 Pod",
			r.res_group ? r.res_group : "?", r.res_version ? r.res_version : "?",
			r.res_kind ? r.res_kind : "?");
		a->result = KS_ADM_SKIPPED;
		review_answer(a, r.uid, true, 200, NULL);
		goto out;
	}
	if (!streq(r.operation, "CREATE")) {
		/* A pod's containers cannot change after it is created. */
		set_msg(a, "not injected: operation %.32s (only CREATE is injected)",
			r.operation ? r.operation : "(none)");
		a->result = KS_ADM_SKIPPED;
		review_answer(a, r.uid, true, 200, NULL);
		goto out;
	}
	if (!r.object) {
		set_msg(a, "%s: request.object is missing or not an object", r.what);
		a->result = KS_ADM_REFUSED;
		review_answer(a, r.uid, false, 400, NULL);
		goto out;
	}
	rc = ks_admission_patch(&r, cfg, &patch, NULL, &im);
	if (rc == -ENOMEM) {
		set_msg(a, "out of memory");
		text_answer(a, 500);
	} else if (rc < 0) {
		set_msg(a, "%s", im.text);
		a->result = KS_ADM_REFUSED;
		review_answer(a, r.uid, false, 400, NULL);
	} else if (rc == KS_INJECT_DONE) {
		a->result = KS_ADM_INJECTED;
		if (json_array_size(patch) == 0)
			set_msg(a, "%s: already injected: nothing to change", r.what);
		review_answer(a, r.uid, true, 200, patch);
	} else {
		set_msg(a, "%s", im.text[0] ? im.text : "not injected");
		a->result = KS_ADM_SKIPPED;
		review_answer(a, r.uid, true, 200, NULL);
	}
out:
	json_decref(patch);
	ks_admission_request_free(&r);
}
