/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The webhook's request handling (injectd/admission.h) with the real
 * transform: each refusal of the envelope and the answer it gets (HTTP
 * 400 with a refusing review (empty uid) without a uid; a review with allowed false, or allowed
 * true and no patch, with one); the pre-scan's bounds; and the injected answer: its shape, and that
 * its patch applied to the pod gives what ks_inject_object (the CLI's path) makes of the same pod,
 * for a Deployment's pod and a Job's pod, and nothing on a re-invocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <openssl/evp.h>

#include "injectd/admission.h"
#include "injectd/patch.h"

static struct ks_inject_cfg *cfg;

static int setup(void **state)
{
	struct ks_inject_msg msg = {{0}};

	(void)state;
	if (ks_inject_cfg_load(NULL, &cfg, &msg) ||
	    ks_inject_cfg_set(cfg, "trustDomain", "example.org", &msg) ||
	    ks_inject_cfg_check(cfg, &msg)) {
		fprintf(stderr, "config: %s\n", msg.text);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ks_inject_cfg_free(cfg);
	return 0;
}

/* A review of one pod: owner "" for none; ann a JSON object's members. */
static char *review(const char *api, const char *kind, const char *uid, const char *rkind,
		    const char *op, const char *owner, const char *ann, const char *spec_extra)
{
	char *s = NULL;
	char ownerref[256] = "";

	if (owner[0])
		snprintf(
		    ownerref, sizeof(ownerref),
		    ",\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"Other\","
		    "\"name\":\"x\",\"uid\":\"1\"},{\"apiVersion\":\"apps/v1\",\"kind\":\"%s\","
		    "\"name\":\"cart-7d9f8c\",\"uid\":\"2\",\"controller\":true}]",
		    owner);
	if (asprintf(&s,
		     "{\"apiVersion\":\"%s\",\"kind\":\"%s\",\"request\":{\"uid\":\"%s\","
		     "\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"%s\"},"
		     "\"resource\":{\"group\":\"\",\"version\":\"v1\",\"resource\":\"pods\"},"
		     "\"namespace\":\"shop\",\"operation\":\"%s\",\"userInfo\":{\"username\":"
		     "\"system:serviceaccount:kube-system:replicaset-controller\"},"
		     "\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{"
		     "\"generateName\":\"cart-7d9f8c-\",\"labels\":{\"app\":\"cart\"},"
		     "\"annotations\":{%s}%s},\"spec\":{\"serviceAccountName\":\"cart\","
		     "\"containers\":[{\"name\":\"app\",\"image\":\"shop/cart:1.2\",\"ports\":"
		     "[{\"containerPort\":8080}]}]%s}},\"oldObject\":null,\"dryRun\":false}}",
		     api, kind, uid, rkind, op, ann, ownerref, spec_extra) < 0)
		fail();
	return s;
}

static const char *GOOD_ANN = "\"ktls-sidecar.io/inbound\":\"8443=8080\"";

static char *good(const char *owner)
{
	return review(KS_ADM_API_VERSION, KS_ADM_KIND, "705ab4f5-6393-11e8-b7cc-42010a800002",
		      "Pod", "CREATE", owner, GOOD_ANN, "");
}

static void handle(const char *body, struct ks_adm_answer *a)
{
	ks_admission_handle(body, strlen(body), cfg, a);
	assert_non_null(a->body);
	assert_int_equal(a->len, strlen(a->body));
}

/* The answer as a review, checked for the fields every review has. */
static json_t *as_review(const struct ks_adm_answer *a, const char *uid)
{
	json_error_t e;
	json_t *r;

	assert_int_equal(a->http_status, 200);
	assert_string_equal(a->content_type, "application/json");
	r = json_loads(a->body, 0, &e);
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "apiVersion")),
			    KS_ADM_API_VERSION);
	assert_string_equal(json_string_value(json_object_get(r, "kind")), KS_ADM_KIND);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r, "response"), "uid")), uid);
	return r;
}

/* A body that is no review we can read: HTTP 400 with a review that
 * refuses it (uid empty), the reason in status.message. */
static void expect_text(const char *body, const char *why)
{
	struct ks_adm_answer a;
	json_error_t jerr;

	ks_admission_handle(body, strlen(body), cfg, &a);
	assert_non_null(a.body);
	assert_int_equal(a.http_status, 400);
	assert_int_equal(a.result, KS_ADM_ERROR);
	assert_string_equal(a.content_type, "application/json");
	json_t *r = json_loadb(a.body, a.len, 0, &jerr);
	assert_non_null(r);
	json_t *resp = json_object_get(r, "response");
	assert_string_equal(json_string_value(json_object_get(r, "kind")), KS_ADM_KIND);
	assert_string_equal(json_string_value(json_object_get(resp, "uid")), "");
	assert_true(json_is_false(json_object_get(resp, "allowed")));
	json_t *st = json_object_get(resp, "status");
	assert_int_equal(json_integer_value(json_object_get(st, "code")), 400);
	const char *m = json_string_value(json_object_get(st, "message"));
	if (!m || !strstr(m, why))
		fail_msg("'%s': message '%s' lacks '%s'", body, m ? m : "(none)", why);
	json_decref(r);
	ks_adm_answer_free(&a);
}

static void test_no_review(void **state)
{
	(void)state;
	expect_text("", "not JSON");
	expect_text("{\"apiVersion\":", "not JSON");
	expect_text("not json at all", "not JSON");
	expect_text("[]", "no request.uid");
	expect_text("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
		    "no request.uid");
	expect_text("{\"request\":{\"uid\":\"\"}}", "no request.uid");
	expect_text("{\"request\":{\"uid\":7}}", "no request.uid");
	expect_text("{\"request\":[]}", "no request.uid");
	/* Two readings of one request. */
	expect_text("{\"request\":{\"uid\":\"a\",\"uid\":\"b\"}}", "duplicate");
}

/* Expects a review answer: allowed, its status code and a message part. */
static json_t *expect_review(const char *body, const char *uid, bool allowed, int code,
			     const char *why, enum ks_adm_result result)
{
	struct ks_adm_answer a;
	json_t *r, *resp, *st;

	handle(body, &a);
	r = as_review(&a, uid);
	resp = json_object_get(r, "response");
	assert_int_equal(json_is_true(json_object_get(resp, "allowed")), allowed);
	assert_int_equal(a.result, result);
	if (why) {
		st = json_object_get(resp, "status");
		assert_int_equal(json_integer_value(json_object_get(st, "code")), code);
		const char *m = json_string_value(json_object_get(st, "message"));
		if (!m || !strstr(m, why))
			fail_msg("message '%s' lacks '%s'", m ? m : "(none)", why);
	}
	if (result != KS_ADM_INJECTED) {
		assert_null(json_object_get(resp, "patch"));
		assert_null(json_object_get(resp, "patchType"));
	}
	ks_adm_answer_free(&a);
	return r;
}

static void test_refused_and_passed(void **state)
{
	char *b;

	(void)state;
	b = review("admission.k8s.io/v1beta1", KS_ADM_KIND, "u1", "Pod", "CREATE", "", GOOD_ANN,
		   "");
	json_decref(expect_review(b, "u1", false, 400, "expected apiVersion admission.k8s.io/v1",
				  KS_ADM_REFUSED));
	free(b);
	b = review(KS_ADM_API_VERSION, "ConversionReview", "u2", "Pod", "CREATE", "", GOOD_ANN, "");
	json_decref(expect_review(b, "u2", false, 400, "kind ConversionReview", KS_ADM_REFUSED));
	free(b);
	/* Not a Pod: passed, not blocked. */
	b = review(KS_ADM_API_VERSION, KS_ADM_KIND, "u3", "Deployment", "CREATE", "", GOOD_ANN, "");
	json_decref(expect_review(b, "u3", true, 200, "not core/v1 Pod", KS_ADM_SKIPPED));
	free(b);
	b = review(KS_ADM_API_VERSION, KS_ADM_KIND, "u4", "Pod", "UPDATE", "", GOOD_ANN, "");
	json_decref(expect_review(b, "u4", true, 200, "operation UPDATE", KS_ADM_SKIPPED));
	free(b);
	/* No object. */
	json_decref(expect_review("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":"
				  "\"AdmissionReview\",\"request\":{\"uid\":\"u5\",\"kind\":{"
				  "\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
				  "\"operation\":\"CREATE\",\"object\":\"pod\"}}",
				  "u5", false, 400, "request.object is missing", KS_ADM_REFUSED));
	/* A bad annotation: refused, naming the pod and the annotation. */
	b = review(KS_ADM_API_VERSION, KS_ADM_KIND, "u6", "Pod", "CREATE", "ReplicaSet",
		   "\"ktls-sidecar.io/inbound\":\"80x\"", "");
	json_t *r = expect_review(b, "u6", false, 400, "ktls-sidecar.io/inbound", KS_ADM_REFUSED);
	const char *m = json_string_value(
	    json_object_get(json_object_get(json_object_get(r, "response"), "status"), "message"));
	assert_non_null(strstr(m, "Pod shop/cart-7d9f8c-* (ReplicaSet cart-7d9f8c)"));
	assert_string_equal(
	    json_string_value(json_object_get(
		json_object_get(json_object_get(r, "response"), "status"), "reason")),
	    "BadRequest");
	json_decref(r);
	free(b);
	/* An unknown ktls-sidecar.io/ annotation is an error too. */
	b = review(KS_ADM_API_VERSION, KS_ADM_KIND, "u7", "Pod", "CREATE", "",
		   "\"ktls-sidecar.io/inbond\":\"8443=8080\"", "");
	json_decref(expect_review(b, "u7", false, 400, "ktls-sidecar.io/inbond", KS_ADM_REFUSED));
	free(b);
	/* Skipped pods: allowed, unchanged, and why. */
	b = review(KS_ADM_API_VERSION, KS_ADM_KIND, "u8", "Pod", "CREATE", "",
		   "\"ktls-sidecar.io/inject\":\"false\",\"ktls-sidecar.io/inbound\":\"8443=8080\"",
		   "");
	json_decref(expect_review(b, "u8", true, 200, "ktls-sidecar.io/inject is \"false\"",
				  KS_ADM_SKIPPED));
	free(b);
	b = review(KS_ADM_API_VERSION, KS_ADM_KIND, "u9", "Pod", "CREATE", "", GOOD_ANN,
		   ",\"hostNetwork\":true");
	json_decref(expect_review(b, "u9", true, 200, "hostNetwork", KS_ADM_SKIPPED));
	free(b);
}

static void test_prescan(void **state)
{
	char err[128];
	char *deep = malloc(2 * KS_ADM_MAX_DEPTH + 8);
	size_t n = 0;

	(void)state;
	assert_non_null(deep);
	for (int i = 0; i < KS_ADM_MAX_DEPTH; i++)
		deep[n++] = '[';
	for (int i = 0; i < KS_ADM_MAX_DEPTH; i++)
		deep[n++] = ']';
	assert_int_equal(ks_admission_prescan(deep, n, err, sizeof(err)), 0);
	/* One more level is refused, before any parse. */
	memmove(deep + 1, deep, n);
	deep[0] = '[';
	deep[n + 1] = ']';
	assert_int_equal(ks_admission_prescan(deep, n + 2, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "nested deeper than 64"));
	deep[n + 2] = '\0';
	expect_text(deep, "nested deeper than 64");
	free(deep);
	/* Brackets inside strings do not count, escaped quotes do not end them. */
	const char *s =
	    "{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[\"}";
	assert_int_equal(ks_admission_prescan(s, strlen(s), err, sizeof(err)), 0);
	/* Too many values. */
	size_t big = 2 * KS_ADM_MAX_VALUES + 8;
	char *many = malloc(big + 1);
	assert_non_null(many);
	n = 0;
	many[n++] = '[';
	for (unsigned i = 0; i <= KS_ADM_MAX_VALUES; i++) {
		many[n++] = '0';
		many[n++] = ',';
	}
	many[n++] = '0';
	many[n++] = ']';
	many[n] = '\0';
	assert_int_equal(ks_admission_prescan(many, n, err, sizeof(err)), -E2BIG);
	expect_text(many, "more than 262144 values");
	free(many);
}

static json_t *b64_json(const char *b64)
{
	size_t n = strlen(b64), out;
	unsigned char *raw = malloc(n);
	json_error_t e;
	json_t *v;

	assert_non_null(raw);
	assert_int_equal(n % 4, 0);
	int got = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
	assert_true(got >= 0);
	out = (size_t)got - (n && b64[n - 1] == '=') - (n > 1 && b64[n - 2] == '=');
	v = json_loadb((const char *)raw, out, 0, &e);
	free(raw);
	assert_non_null(v);
	return v;
}

/* What ks_inject_object (the CLI's path) makes of the review's pod. */
static json_t *cli_of(const char *body)
{
	json_t *r = json_loads(body, 0, NULL), *pod;
	struct ks_inject_msg msg = {{0}};

	assert_non_null(r);
	pod = json_incref(json_object_get(json_object_get(r, "request"), "object"));
	json_decref(r);
	assert_int_equal(ks_inject_object(pod, cfg, NULL, NULL, &msg), KS_INJECT_DONE);
	return pod;
}

static void injected(const char *body, json_t **patched_out)
{
	struct ks_adm_answer a;
	char err[256];
	json_t *r, *resp, *patch, *pod;

	handle(body, &a);
	assert_int_equal(a.result, KS_ADM_INJECTED);
	r = as_review(&a, "705ab4f5-6393-11e8-b7cc-42010a800002");
	resp = json_object_get(r, "response");
	assert_true(json_is_true(json_object_get(resp, "allowed")));
	assert_string_equal(json_string_value(json_object_get(resp, "patchType")), "JSONPatch");
	patch = b64_json(json_string_value(json_object_get(resp, "patch")));
	assert_int_equal(json_array_size(patch), a.patch_ops);
	assert_true(a.patch_ops > 0);
	json_t *req = json_loads(body, 0, NULL);
	pod = json_incref(json_object_get(json_object_get(req, "request"), "object"));
	json_decref(req);
	if (ks_patch_apply(&pod, patch, err, sizeof(err)))
		fail_msg("the answer's patch does not apply: %s", err);
	*patched_out = pod;
	json_decref(patch);
	json_decref(r);
	ks_adm_answer_free(&a);
}

static void test_injected(void **state)
{
	json_t *rs_pod, *job_pod, *cli;
	char *b;

	(void)state;
	b = good("ReplicaSet");
	injected(b, &rs_pod);
	cli = cli_of(b);
	assert_true(json_equal(rs_pod, cli));
	json_decref(cli);
	free(b);

	b = good("Job");
	injected(b, &job_pod);
	cli = cli_of(b);
	assert_true(json_equal(job_pod, cli));
	json_decref(cli);
	free(b);
	/* The owner matters (a Job's pod drains with no delay). */
	assert_false(json_equal(rs_pod, job_pod));

	/* A re-invocation (reinvocationPolicy: IfNeeded) of the injected pod:
	 * allowed, no patch. */
	b = good("ReplicaSet");
	json_t *rv = json_loads(b, 0, NULL);
	free(b);
	json_object_set(json_object_get(rv, "request"), "object", rs_pod);
	char *again = json_dumps(rv, 0);
	json_t *r = expect_review(again, "705ab4f5-6393-11e8-b7cc-42010a800002", true, 200,
				  "already injected", KS_ADM_INJECTED);
	assert_null(json_object_get(json_object_get(r, "response"), "patch"));
	json_decref(r);
	free(again);
	json_decref(rv);
	json_decref(rs_pod);
	json_decref(job_pod);
}

/* A message that quotes the request's strings cut at a length stays valid
 * UTF-8 (jansson refuses anything else): still a review, not a 500. */
static void test_message_utf8(void **state)
{
	char *b, gen[256] = "", ann[512];

	(void)state;
	for (int i = 0; i < 70; i++)
		strcat(gen, "\xc3\xa9"); /* 140 bytes of e-acute */
	b = review(KS_ADM_API_VERSION, KS_ADM_KIND, "u10", "Pod", "CREATE", "",
		   "\"ktls-sidecar.io/inbound\":\"80x\"", "");
	char *at = strstr(b, "cart-7d9f8c-");
	assert_non_null(at);
	size_t n = strlen(b) + strlen(gen) + 1;
	char *nb = malloc(n);
	assert_non_null(nb);
	snprintf(nb, n, "%.*s%s%s", (int)(at - b), b, gen, at + strlen("cart-7d9f8c-"));
	json_decref(
	    expect_review(nb, "u10", false, 400, "ktls-sidecar.io/inbound", KS_ADM_REFUSED));
	free(nb);
	free(b);
	/* The same for an apiVersion cut at 64 bytes. */
	snprintf(ann, sizeof(ann), "x%s", gen);
	b = review(ann, KS_ADM_KIND, "u11", "Pod", "CREATE", "", GOOD_ANN, "");
	json_decref(expect_review(b, "u11", false, 400, "expected apiVersion", KS_ADM_REFUSED));
	free(b);
}

static void test_decode_fields(void **state)
{
	struct ks_adm_request r;
	char err[128], *b = good("Job");

	(void)state;
	assert_int_equal(ks_admission_decode(b, strlen(b), &r, err, sizeof(err)), 0);
	assert_string_equal(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
	assert_string_equal(r.ns, "shop");
	assert_string_equal(r.operation, "CREATE");
	assert_string_equal(r.res_kind, "Pod");
	/* The controller owner, not the first one. */
	assert_string_equal(r.owner_kind, "Job");
	assert_string_equal(r.what, "Pod shop/cart-7d9f8c-* (Job cart-7d9f8c)");
	assert_non_null(r.object);
	ks_admission_request_free(&r);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_review),	  cmocka_unit_test(test_refused_and_passed),
	    cmocka_unit_test(test_prescan),	  cmocka_unit_test(test_injected),
	    cmocka_unit_test(test_decode_fields), cmocka_unit_test(test_message_utf8),
	};

	return cmocka_run_group_tests_name("admission", tests, setup, teardown);
}
