/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON Patch (injectd/patch.h): apply(diff(a, b), a) == b over the shapes
 * the injector produces and the awkward ones (type changes, the root,
 * keys that need RFC 6901 escaping, the empty key); the ops the diff
 * chooses (appends, whole-array replaces); and the apply's refusals.
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

#include "injectd/patch.h"

static json_t *J(const char *s)
{
	json_error_t e;
	json_t *v = json_loads(s, JSON_DECODE_ANY, &e);

	if (!v)
		fail_msg("bad fixture %s: %s", s, e.text);
	return v;
}

/* diff(a, b), applied to a copy of a, gives b; returns the patch. */
static json_t *round_trip(const char *as, const char *bs)
{
	json_t *a = J(as), *b = J(bs), *patch = NULL, *doc;
	char err[256] = "";

	assert_int_equal(ks_patch_diff(a, b, &patch), 0);
	assert_true(json_is_array(patch));
	doc = json_deep_copy(a);
	if (ks_patch_apply(&doc, patch, err, sizeof(err)) != 0)
		fail_msg("%s -> %s: apply failed: %s", as, bs, err);
	if (!json_equal(doc, b)) {
		char *got = json_dumps(doc, JSON_ENCODE_ANY), *p = json_dumps(patch, 0);
		fail_msg("%s -> %s: patch %s gave %s", as, bs, p, got);
	}
	/* The diff leaves its inputs alone. */
	json_t *a2 = J(as);
	assert_true(json_equal(a, a2));
	json_decref(a2);
	json_decref(doc);
	json_decref(a);
	json_decref(b);
	return patch;
}

static void test_round_trips(void **state)
{
	static const char *const pairs[][2] = {
	    {"{}", "{}"},
	    {"{\"a\":1}", "{\"a\":1,\"b\":{\"c\":[1,2]}}"},
	    {"{\"a\":1,\"b\":2}", "{\"b\":2}"},
	    {"{\"a\":1}", "{\"a\":\"1\"}"},
	    {"{\"a\":{\"x\":1}}", "{\"a\":[1]}"},
	    {"{\"a\":{\"x\":1,\"y\":{\"z\":null}}}",
	     "{\"a\":{\"x\":1,\"y\":{\"z\":false,\"w\":0}}}"},
	    {"{\"v\":[1,2]}", "{\"v\":[1,2,3,4]}"},
	    {"{\"v\":[1,2]}", "{\"v\":[0,1,2]}"},
	    {"{\"v\":[1,2,3]}", "{\"v\":[1,3]}"},
	    {"{\"v\":[]}", "{\"v\":[{\"name\":\"x\"}]}"},
	    {"[1,2]", "[1,2,[3]]"},
	    {"[1,2]", "{\"a\":1}"},
	    {"1", "\"x\""},
	    {"{\"a/b\":1,\"c~d\":2,\"~1\":3,\"\":4}", "{\"a/b\":5,\"c~d\":2,\"~1\":6,\"\":{}}"},
	    {"{\"m\":{\"ktls-sidecar.io/injected-version\":\"0.0.9\"}}",
	     "{\"m\":{\"ktls-sidecar.io/injected-version\":\"0.1.0\",\"x/y~z\":\"\"}}"},
	    /* A pod, as the injector changes one: annotations added, a list
	     * prepended, a list appended, a new field. */
	    {"{\"metadata\":{\"name\":\"p\"},\"spec\":{\"containers\":[{\"name\":\"app\"}],"
	     "\"volumes\":[{\"name\":\"data\"}]}}",
	     "{\"metadata\":{\"name\":\"p\",\"annotations\":{\"ktls-sidecar.io/injected-version\":"
	     "\"0.1.0\"}},\"spec\":{\"initContainers\":[{\"name\":\"ktls-sidecar\"}],"
	     "\"containers\":[{\"name\":\"app\"}],\"volumes\":[{\"name\":\"data\"},{\"name\":"
	     "\"ktls-run\"}],\"securityContext\":{\"fsGroup\":1337}}}"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		json_decref(round_trip(pairs[i][0], pairs[i][1]));
	/* Equal documents: an empty patch. */
	json_t *p = round_trip("{\"a\":[1,{\"b\":2}]}", "{\"a\":[1,{\"b\":2}]}");
	assert_int_equal(json_array_size(p), 0);
	json_decref(p);
}

static void expect_ops(const char *as, const char *bs, const char *want)
{
	json_t *p = round_trip(as, bs), *w = J(want);

	if (!json_equal(p, w)) {
		char *got = json_dumps(p, 0);
		fail_msg("%s -> %s: got %s, want %s", as, bs, got, want);
	}
	json_decref(p);
	json_decref(w);
}

static void test_ops_and_escaping(void **state)
{
	(void)state;
	/* RFC 6901 §3: '~' is "~0", '/' is "~1"; "~1" as a key is "~01". */
	expect_ops("{\"a/b\":1}", "{\"a/b\":2}",
		   "[{\"op\":\"replace\",\"path\":\"/a~1b\",\"value\":2}]");
	expect_ops("{}", "{\"~1\":0}", "[{\"op\":\"add\",\"path\":\"/~01\",\"value\":0}]");
	expect_ops("{\"m~\":{\"\":1}}", "{\"m~\":{}}", "[{\"op\":\"remove\",\"path\":\"/m~0/\"}]");
	expect_ops("{\"ann\":{}}", "{\"ann\":{\"ktls-sidecar.io/injected-version\":\"1\"}}",
		   "[{\"op\":\"add\",\"path\":\"/ann/ktls-sidecar.io~1injected-version\","
		   "\"value\":\"1\"}]");
	/* Appended items: one add at "/-" each, in order. */
	expect_ops("{\"v\":[1]}", "{\"v\":[1,2,3]}",
		   "[{\"op\":\"add\",\"path\":\"/v/-\",\"value\":2},"
		   "{\"op\":\"add\",\"path\":\"/v/-\",\"value\":3}]");
	/* A prepend (the sidecar before the app) replaces the list whole. */
	expect_ops("{\"v\":[1]}", "{\"v\":[0,1]}",
		   "[{\"op\":\"replace\",\"path\":\"/v\",\"value\":[0,1]}]");
	/* Removals first, then the new object's keys in its order. */
	expect_ops(
	    "{\"a\":1,\"b\":1}", "{\"c\":1,\"b\":2}",
	    "[{\"op\":\"remove\",\"path\":\"/a\"},{\"op\":\"add\",\"path\":\"/c\",\"value\":1},"
	    "{\"op\":\"replace\",\"path\":\"/b\",\"value\":2}]");
	/* The root. */
	expect_ops("[1]", "{}", "[{\"op\":\"replace\",\"path\":\"\",\"value\":{}}]");
}

/* RFC 6902 appendix A's add, remove and replace examples. */
static void test_apply_rfc_examples(void **state)
{
	static const char *const cases[][3] = {
	    {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
	     "{\"baz\":\"qux\",\"foo\":\"bar\"}"},
	    {"{\"foo\":[\"bar\",\"baz\"]}",
	     "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
	     "{\"foo\":[\"bar\",\"qux\",\"baz\"]}"},
	    {"{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]",
	     "{\"foo\":\"bar\"}"},
	    {"{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
	     "{\"foo\":[\"bar\",\"baz\"]}"},
	    {"{\"baz\":\"qux\",\"foo\":\"bar\"}",
	     "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
	     "{\"baz\":\"boo\",\"foo\":\"bar\"}"},
	    {"{\"foo\":\"bar\"}",
	     "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{}}}]",
	     "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}"},
	    {"{\"foo\":[\"bar\"]}",
	     "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\",\"def\"]}]",
	     "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}"},
	    /* add over an existing member replaces it (§4.1) */
	    {"{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":2}]", "{\"a\":2}"},
	    {"{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/1\",\"value\":2}]", "{\"a\":[1,2]}"},
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *doc = J(cases[i][0]), *p = J(cases[i][1]), *want = J(cases[i][2]);
		if (ks_patch_apply(&doc, p, err, sizeof(err)) != 0)
			fail_msg("case %zu: %s", i, err);
		if (!json_equal(doc, want))
			fail_msg("case %zu: wrong result", i);
		json_decref(doc);
		json_decref(p);
		json_decref(want);
	}
}

static void test_apply_refused(void **state)
{
	static const struct {
		const char *patch, *why;
	} bad[] = {
	    {"{}", "array of operations"},
	    {"[1]", "not an object"},
	    {"[{\"op\":\"add\"}]", "not an object with"},
	    {"[{\"path\":\"/a\"}]", "not an object with"},
	    {"[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/b\"}]", "is not add, remove"},
	    {"[{\"op\":\"test\",\"path\":\"/a\",\"value\":1}]", "is not add, remove"},
	    {"[{\"op\":\"add\",\"path\":\"/b\"}]", "no \"value\""},
	    {"[{\"op\":\"replace\",\"path\":\"/a\"}]", "no \"value\""},
	    {"[{\"op\":\"remove\",\"path\":\"/nope\"}]", "does not name"},
	    {"[{\"op\":\"replace\",\"path\":\"/nope\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"add\",\"path\":\"/x/y\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"add\",\"path\":\"/~2\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"add\",\"path\":\"/a~\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"remove\",\"path\":\"/l/3\"}]", "does not name"},
	    {"[{\"op\":\"add\",\"path\":\"/l/4\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"add\",\"path\":\"/l/01\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"remove\",\"path\":\"/l/-\"}]", "does not name"},
	    {"[{\"op\":\"replace\",\"path\":\"/l/-1\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"add\",\"path\":\"/l/99999999999999999999999\",\"value\":1}]",
	     "does not name"},
	    {"[{\"op\":\"add\",\"path\":\"/a/b\",\"value\":1}]", "does not name"},
	    {"[{\"op\":\"remove\",\"path\":\"\"}]", "whole document"},
	    /* The second op fails after the first applied. */
	    {"[{\"op\":\"add\",\"path\":\"/n\",\"value\":1},{\"op\":\"remove\",\"path\":\"/m\"}]",
	     "operation 1"},
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *doc = J("{\"a\":1,\"l\":[1,2,3]}"), *p = J(bad[i].patch);
		err[0] = '\0';
		int rc = ks_patch_apply(&doc, p, err, sizeof(err));
		if (rc != -EINVAL)
			fail_msg("case %zu (%s): rc %d, want -EINVAL", i, bad[i].patch, rc);
		if (!strstr(err, bad[i].why))
			fail_msg("case %zu (%s): '%s' lacks '%s'", i, bad[i].patch, err,
				 bad[i].why);
		json_decref(doc);
		json_decref(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trips),
	    cmocka_unit_test(test_ops_and_escaping),
	    cmocka_unit_test(test_apply_rfc_examples),
	    cmocka_unit_test(test_apply_refused),
	};

	return cmocka_run_group_tests_name("patch", tests, NULL, NULL);
}
