/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the admission webhook's request handling
 * (injectd/admission.c) with the real transform and a fixed InjectorConfig,
 * and the JSONPatch diff and apply (injectd/patch.c). The input is a
 * request body, copied to a buffer of exactly its size (ASan catches any
 * read past it). Checked properties:
 *   - handling never crashes and always answers: HTTP 400 with text (500,
 *     out of memory, never happens: ASan aborts first), or 200 with a JSON AdmissionReview v1 whose
 * response.uid is the request's, whose allowed is a boolean, and whose patch (when there is one) is
 * base64 of a JSON array;
 *   - for a Pod the transform injects, the patch applied to the pod gives
 *     exactly the injected pod (apply(diff(a, b), a) == b);
 *   - for any input [A, B] (a JSON array of two values), the same holds for
 *     diff(A, B) applied to A, and diff(B, B) is empty.
 *
 *   make fuzz                          (FUZZ_SECS, default 300)
 *   build/fuzz/fuzz_admission tests/fuzz/corpus/admission
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "injectd/admission.h"
#include "injectd/patch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ks_inject_cfg *cfg;

static void setup(void)
{
	struct ks_inject_msg msg = {{0}};

	if (cfg)
		return;
	if (ks_inject_cfg_load(NULL, &cfg, &msg) ||
	    ks_inject_cfg_set(cfg, "trustDomain", "example.org", &msg) ||
	    ks_inject_cfg_check(cfg, &msg))
		abort();
}

/* apply(diff(a, b), a) == b, or abort. */
static void round_trip(const json_t *a, const json_t *b)
{
	json_t *patch = NULL, *doc, *none = NULL;
	char err[256];

	if (ks_patch_diff(a, b, &patch))
		return; /* out of memory */
	doc = json_deep_copy(a);
	if (!doc || ks_patch_apply(&doc, patch, err, sizeof(err)) || !json_equal(doc, b))
		abort();
	if (ks_patch_diff(b, b, &none) == 0 && json_array_size(none) != 0)
		abort();
	json_decref(none);
	json_decref(doc);
	json_decref(patch);
}

static void check_answer(const char *buf, size_t size, const struct ks_adm_answer *a)
{
	struct ks_adm_request r;
	char err[256];
	json_t *ans, *resp;

	if (!a->body)
		return; /* out of memory */
	/* 500 is out of memory only, and ASan aborts on that first. */
	if (a->http_status != 200) {
		if (a->http_status != 400 || a->result != KS_ADM_ERROR)
			abort();
		return;
	}
	ans = json_loads(a->body, 0, NULL);
	resp = json_object_get(ans, "response");
	if (!ans || !json_is_boolean(json_object_get(resp, "allowed")))
		abort();
	if (ks_admission_decode(buf, size, &r, err, sizeof(err)) != 0 ||
	    strcmp(json_string_value(json_object_get(resp, "uid")) ?: "", r.uid) != 0)
		abort();
	ks_admission_request_free(&r);
	const char *p = json_string_value(json_object_get(resp, "patch"));
	if (p) {
		size_t n = strlen(p);
		unsigned char *raw = malloc(n + 1);
		int got = raw ? EVP_DecodeBlock(raw, (const unsigned char *)p, (int)n) : -1;
		if (a->result != KS_ADM_INJECTED || !json_is_true(json_object_get(resp, "allowed")))
			abort();
		if (!raw || got < 0 || n % 4)
			abort();
		got -= (n && p[n - 1] == '=') + (n > 1 && p[n - 2] == '=');
		json_t *ops = json_loadb((const char *)raw, (size_t)got, 0, NULL);
		if (!json_is_array(ops) || json_array_size(ops) == 0)
			abort();
		json_decref(ops);
		free(raw);
	}
	json_decref(ans);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ks_adm_answer a;
	struct ks_adm_request r;
	struct ks_inject_msg msg = {{0}};
	char err[256];
	char *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	setup();
	memcpy(buf, data, size);
	ks_admission_handle(buf, size, cfg, &a);
	check_answer(buf, size, &a);
	ks_adm_answer_free(&a);

	if (ks_admission_decode(buf, size, &r, err, sizeof(err)) == 0) {
		json_t *patch = NULL, *injected = NULL;
		if (r.object &&
		    ks_admission_patch(&r, cfg, &patch, &injected, &msg) == KS_INJECT_DONE) {
			json_t *doc = json_deep_copy(r.object);
			if (!doc || ks_patch_apply(&doc, patch, err, sizeof(err)) ||
			    !json_equal(doc, injected))
				abort();
			json_decref(doc);
		}
		json_decref(patch);
		json_decref(injected);
		ks_admission_request_free(&r);
	}

	/* [A, B]: the diff on any two values (the pre-scan bounds the depth). */
	if (ks_admission_prescan(buf, size, err, sizeof(err)) == 0) {
		json_t *pair = json_loadb(buf, size, 0, NULL);
		if (json_is_array(pair) && json_array_size(pair) == 2)
			round_trip(json_array_get(pair, 0), json_array_get(pair, 1));
		json_decref(pair);
	}
	free(buf);
	return 0;
}
