/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Manifests in and out (sidecar/inject/manifest.c): YAML scalars typed as
 * Kubernetes' decoder (sigs.k8s.io/yaml over go-yaml v2, YAML 1.1) types
 * them, multi-document streams, JSON, round trips that keep every type, the
 * strings that must be quoted on output to stay strings, and what is
 * refused: anchors and aliases, non-core tags, nesting beyond
 * KS_MANIFEST_MAX_DEPTH, duplicate keys, invalid UTF-8, NUL bytes, and
 * syntax errors (with their line).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inject/manifest.h"

static json_t *parse_ok(const char *text, enum ks_manifest_format *fmt)
{
	struct ks_inject_msg msg = {{0}};
	json_t *docs = NULL;
	int rc = ks_manifest_parse(text, strlen(text), &docs, fmt, &msg);
	if (rc)
		fail_msg("parse failed (%d): %s\n--- input:\n%s", rc, msg.text, text);
	return docs;
}

/* The one document of text, parsed. */
static json_t *doc1(const char *text)
{
	json_t *docs = parse_ok(text, NULL);
	assert_int_equal(json_array_size(docs), 1);
	json_t *d = json_incref(json_array_get(docs, 0));
	json_decref(docs);
	return d;
}

/* Parses len bytes and wants a refusal whose message holds want. */
static void parse_bad_n(const char *text, size_t len, const char *want)
{
	struct ks_inject_msg msg = {{0}};
	json_t *docs = NULL;
	int rc = ks_manifest_parse(text, len, &docs, NULL, &msg);
	if (rc != -EINVAL)
		fail_msg("want -EINVAL, got %d for:\n%s", rc, text);
	assert_null(docs);
	if (!strstr(msg.text, want))
		fail_msg("message '%s' lacks '%s'", msg.text, want);
}

static void parse_bad(const char *text, const char *want)
{
	parse_bad_n(text, strlen(text), want);
}

/* ------------------------------------------------------------ typing */

static void test_yaml_typing(void **state)
{
	(void)state;
	json_t *d = doc1("port: 8080\n"
			 "qport: \"8080\"\n"
			 "sport: '8080'\n"
			 "on: on\n"
			 "yes: yes\n"
			 "y: y\n"
			 "No: No\n"
			 "off: OFF\n"
			 "mode: 0755\n"
			 "hex: 0x1F\n"
			 "neg: -12\n"
			 "f: 1.5\n"
			 "e: 1e3\n"
			 "tilde: ~\n"
			 "nul: null\n"
			 "empty:\n"
			 "tagged: !!str 8080\n"
			 "tagged_bool: !!str yes\n"
			 "word: hello\n"
			 "version: 1.2.3\n"
			 "time: 10:30\n"
			 "quoted_true: \"true\"\n"
			 "not_octal: 08\n"
			 "huge: 12345678901234567890\n"
			 "under: 1_000.5\n");
	assert_true(json_is_integer(json_object_get(d, "port")));
	assert_int_equal(json_integer_value(json_object_get(d, "port")), 8080);
	assert_string_equal(json_string_value(json_object_get(d, "qport")), "8080");
	assert_string_equal(json_string_value(json_object_get(d, "sport")), "8080");
	/* YAML 1.1 booleans, as go-yaml v2 has them. */
	assert_true(json_is_true(json_object_get(d, "on")));
	assert_true(json_is_true(json_object_get(d, "yes")));
	assert_true(json_is_true(json_object_get(d, "y")));
	assert_true(json_is_false(json_object_get(d, "No")));
	assert_true(json_is_false(json_object_get(d, "off")));
	/* Keys stay strings (JSON has no other keys). */
	assert_non_null(json_object_get(d, "on"));
	/* 0755 is octal: 493. */
	assert_true(json_is_integer(json_object_get(d, "mode")));
	assert_int_equal(json_integer_value(json_object_get(d, "mode")), 0755);
	assert_int_equal(json_integer_value(json_object_get(d, "hex")), 31);
	assert_int_equal(json_integer_value(json_object_get(d, "neg")), -12);
	assert_true(json_is_real(json_object_get(d, "f")));
	assert_true(json_real_value(json_object_get(d, "f")) == 1.5);
	assert_true(json_is_real(json_object_get(d, "e")));
	assert_true(json_real_value(json_object_get(d, "e")) == 1000.0);
	assert_true(json_is_null(json_object_get(d, "tilde")));
	assert_true(json_is_null(json_object_get(d, "nul")));
	assert_true(json_is_null(json_object_get(d, "empty")));
	assert_string_equal(json_string_value(json_object_get(d, "tagged")), "8080");
	assert_string_equal(json_string_value(json_object_get(d, "tagged_bool")), "yes");
	assert_string_equal(json_string_value(json_object_get(d, "word")), "hello");
	assert_string_equal(json_string_value(json_object_get(d, "version")), "1.2.3");
	assert_string_equal(json_string_value(json_object_get(d, "time")), "10:30");
	assert_string_equal(json_string_value(json_object_get(d, "quoted_true")), "true");
	/* Digits that are no int64 are go-yaml's floats (yamlStyleFloat). */
	assert_true(json_is_real(json_object_get(d, "not_octal")));
	assert_true(json_real_value(json_object_get(d, "not_octal")) == 8.0);
	assert_true(json_is_real(json_object_get(d, "huge")));
	assert_true(json_is_real(json_object_get(d, "under")));
	assert_true(json_real_value(json_object_get(d, "under")) == 1000.5);
	/* Keys keep the order they came in. */
	assert_string_equal(json_object_iter_key(json_object_iter(d)), "port");
	json_decref(d);
}

/* ------------------------------------------------------------ streams */

static void test_yaml_stream(void **state)
{
	(void)state;
	enum ks_manifest_format fmt = KS_MANIFEST_JSON;
	/* Leading "---", an empty document, a comment-only document, and a
	 * trailing "---": three real documents. */
	json_t *docs = parse_ok("---\n"
				"kind: A\n"
				"---\n"
				"---\n"
				"# only a comment\n"
				"---\n"
				"kind: B\n"
				"...\n"
				"---\n"
				"kind: C\n"
				"---\n",
				&fmt);
	assert_int_equal(fmt, KS_MANIFEST_YAML);
	assert_int_equal(json_array_size(docs), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(docs, 1), "kind")),
			    "B");
	json_decref(docs);
	/* Nothing at all: no documents, no error. */
	docs = parse_ok("", NULL);
	assert_int_equal(json_array_size(docs), 0);
	json_decref(docs);
	docs = parse_ok("# just a comment\n---\n", NULL);
	assert_int_equal(json_array_size(docs), 0);
	json_decref(docs);
}

static void test_json(void **state)
{
	(void)state;
	enum ks_manifest_format fmt = KS_MANIFEST_YAML;
	json_t *docs = parse_ok("  \n{\"kind\": \"Pod\", \"port\": 8080, \"s\": \"8080\", "
				"\"b\": true, \"n\": null, \"f\": 1.5}\n",
				&fmt);
	assert_int_equal(fmt, KS_MANIFEST_JSON);
	assert_int_equal(json_array_size(docs), 1);
	json_t *d = json_array_get(docs, 0);
	assert_true(json_is_integer(json_object_get(d, "port")));
	assert_true(json_is_string(json_object_get(d, "s")));
	assert_true(json_is_true(json_object_get(d, "b")));
	assert_true(json_is_null(json_object_get(d, "n")));
	assert_true(json_is_real(json_object_get(d, "f")));
	json_decref(docs);

	/* A stream of documents one after the other (kubectl's -o json of
	 * several objects, jq's output). */
	docs = parse_ok("{\"kind\": \"A\"}\n{\"kind\": \"B\"}{\"kind\":\"C\"}\n\n", &fmt);
	assert_int_equal(fmt, KS_MANIFEST_JSON);
	assert_int_equal(json_array_size(docs), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(docs, 2), "kind")),
			    "C");
	json_decref(docs);

	/* A leading '{' is JSON, as kubectl's YAMLOrJSONDecoder sniffs it:
	 * flow-style YAML there is a JSON syntax error. */
	parse_bad("{kind: Pod}\n", "line 1");

	/* Broken JSON: the line is named. */
	parse_bad("{\"kind\": \"A\",\n \"x\": }\n", "line 2");
	parse_bad("{\"kind\": \"A\"}\n{\"kind\": \n", "line");
}

/* ------------------------------------------------------------ output */

static char *write_str(const json_t *docs, enum ks_manifest_format fmt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(ks_manifest_write(f, docs, fmt), 0);
	fclose(f);
	return buf;
}

/* parse -> write -> parse gives equal documents (json_equal compares
 * types: 8080 is not "8080", 1.0 is not 1). */
static void round_trip(const char *text, enum ks_manifest_format fmt)
{
	enum ks_manifest_format got;
	json_t *a = parse_ok(text, &got);
	assert_int_equal(got, fmt);
	char *out = write_str(a, fmt);
	json_t *b = parse_ok(out, &got);
	assert_int_equal(got, fmt);
	if (!json_equal(a, b))
		fail_msg("round trip changed the documents:\n--- in:\n%s\n--- out:\n%s", text, out);
	/* And once more: the writer's output is a fixed point. */
	char *out2 = write_str(b, fmt);
	assert_string_equal(out, out2);
	free(out);
	free(out2);
	json_decref(a);
	json_decref(b);
}

static void test_round_trip(void **state)
{
	(void)state;
	round_trip("apiVersion: v1\n"
		   "kind: ConfigMap\n"
		   "metadata: {name: x, labels: {a: b}}\n"
		   "data:\n"
		   "  port: \"8080\"\n"
		   "  flag: \"yes\"\n"
		   "  script: |\n"
		   "    #!/bin/sh\n"
		   "    echo \"hi: there\"\n"
		   "  folded: >\n"
		   "    one\n"
		   "    two\n"
		   "list: [1, \"1\", 1.5, true, \"true\", null, \"null\", ~, \"\", [], {}]\n"
		   "nested:\n"
		   "  - a: 1\n"
		   "    b: [x, y]\n"
		   "  - - deep\n"
		   "big: 9007199254740993\n"
		   "neg: -0.25\n"
		   "exp: 6.02e+23\n"
		   "whole_float: 2.0\n"
		   "unicode: \"gr\xc3\xbc\xc3\x9f dich \xe2\x9c\x93\"\n"
		   "---\n"
		   "kind: Second\n",
		   KS_MANIFEST_YAML);
	round_trip("{\"kind\": \"List\", \"items\": [{\"a\": 1, \"b\": \"1\", \"c\": 1.5, "
		   "\"d\": [true, false, null], \"e\": {}, \"f\": \"yes\", \"g\": \"0755\"}]}\n",
		   KS_MANIFEST_JSON);
	round_trip("{\"kind\": \"A\"}\n{\"kind\": \"B\", \"n\": 2}\n", KS_MANIFEST_JSON);
}

/* Each string, written as YAML, reads back as the same string. */
static void test_quoting(void **state)
{
	(void)state;
	static const char *const strs[] = {"yes",
					   "on",
					   "Off",
					   "y",
					   "N",
					   "true",
					   "null",
					   "Null",
					   "~",
					   "",
					   "0755",
					   "0x1F",
					   "8080",
					   "-1",
					   "+1",
					   "1e3",
					   "1.5",
					   ".5",
					   ".inf",
					   "-.inf",
					   ".nan",
					   "1_000",
					   "0b101",
					   "0o17",
					   "08",
					   "09",
					   "12345678901234567890",
					   "1_0.5",
					   " leading",
					   "trailing ",
					   "  both  ",
					   "a: b",
					   "a #b",
					   "#comment",
					   "- item",
					   "? key",
					   "*alias",
					   "&anchor",
					   "!tag",
					   "%directive",
					   "@at",
					   "`tick",
					   "{flow}",
					   "[flow]",
					   "a,b",
					   "'single'",
					   "\"double\"",
					   "multi\nline",
					   "multi\nline\n",
					   "trailing newline\n",
					   "\ttab",
					   "back\\slash",
					   "---",
					   "...",
					   "key:",
					   "-",
					   ":",
					   "|",
					   ">",
					   "=",
					   "<<",
					   "gr\xc3\xbc\xc3\x9f",
					   "trailing space \nnext line",
					   "\x01control",
					   "nel\xc2\x85line",
					   "line\u2028sep",
					   "\xef\xbb\xbf"
					   "bom",
					   "tab\tinside",
					   "cr\r\nlf",
					   NULL};
	json_t *obj = json_object();
	json_t *arr = json_array();
	for (size_t i = 0; strs[i]; i++) {
		json_array_append_new(arr, json_string(strs[i]));
		/* As keys too: a key "yes" must stay the key "yes". */
		json_object_set_new(obj, strs[i], json_integer((json_int_t)i));
	}
	json_t *docs = json_pack("[{s:o, s:o}]", "values", arr, "keys", obj);
	char *out = write_str(docs, KS_MANIFEST_YAML);
	json_t *back = parse_ok(out, NULL);
	json_t *bv = json_object_get(json_array_get(back, 0), "values");
	json_t *bk = json_object_get(json_array_get(back, 0), "keys");
	for (size_t i = 0; strs[i]; i++) {
		json_t *v = json_array_get(bv, i);
		if (!json_is_string(v) || strcmp(json_string_value(v), strs[i]) != 0)
			fail_msg("'%s' did not survive as a string:\n%s", strs[i], out);
		if (!json_object_get(bk, strs[i]))
			fail_msg("the key '%s' did not survive:\n%s", strs[i], out);
	}
	assert_true(json_equal(docs, back));
	/* The ones a plain scalar would retype are quoted, not left plain. */
	assert_non_null(strstr(out, "- \"yes\"\n"));
	assert_non_null(strstr(out, "- \"0755\"\n"));
	assert_non_null(strstr(out, "- \"1e3\"\n"));
	assert_non_null(strstr(out, "- \"\"\n"));
	assert_non_null(strstr(out, "- \"null\"\n"));
	assert_non_null(strstr(out, "- \"08\"\n"));
	/* A plain word stays plain (no needless quotes in what people read). */
	json_t *plain = json_pack("[{s:s}]", "image", "registry.example/app:1.2.3");
	char *p = write_str(plain, KS_MANIFEST_YAML);
	assert_string_equal(p, "image: registry.example/app:1.2.3\n");
	free(p);
	json_decref(plain);
	free(out);
	json_decref(docs);
	json_decref(back);
}

/* A multi-line string comes out as a literal block, readable in a diff. */
static void test_literal_block(void **state)
{
	(void)state;
	json_t *docs = json_pack("[{s:s}]", "script", "line one\nline two\n");
	char *out = write_str(docs, KS_MANIFEST_YAML);
	assert_string_equal(out, "script: |\n  line one\n  line two\n");
	free(out);
	json_decref(docs);
}

static void test_numbers_out(void **state)
{
	(void)state;
	json_t *docs = json_pack("[{s:I, s:f, s:f, s:f, s:b, s:n}]", "i", (json_int_t)8080, "f",
				 1.5, "whole", 2.0, "small", 1e-7, "b", 1, "n");
	char *out = write_str(docs, KS_MANIFEST_YAML);
	assert_non_null(strstr(out, "i: 8080\n"));
	assert_non_null(strstr(out, "f: 1.5\n"));
	assert_non_null(strstr(out, "whole: 2.0\n"));
	assert_non_null(strstr(out, "b: true\n"));
	/* The key "n" is quoted: plain, it would be YAML 1.1's false. */
	assert_non_null(strstr(out, "\"n\": null\n"));
	json_t *back = parse_ok(out, NULL);
	assert_true(json_equal(docs, back));
	free(out);
	json_decref(back);
	json_decref(docs);
}

/* ------------------------------------------------------------ refusals */

static void test_anchors_aliases(void **state)
{
	(void)state;
	/* The billion laughs: nine levels of ten aliases each. */
	parse_bad(
	    "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
	    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
	    "line 1: YAML anchors (&a) are not accepted");
	/* An alias alone (its anchor undefined: libyaml's parser passes it). */
	parse_bad("a: 1\nb: *x\n", "aliases");
	/* An anchor on a mapping, and a merge key's usual form. */
	parse_bad("base: &base\n  a: 1\nderived:\n  <<: *base\n", "anchors (&base)");
}

static void test_tags(void **state)
{
	(void)state;
	parse_bad("a: !!python/object:os.system ls\n", "not a core YAML type");
	parse_bad("a: !custom x\n", "not a core YAML type");
	parse_bad("a: !!binary aGVsbG8=\n", "not a core YAML type");
	parse_bad("a: !!set {x, y}\n", "not a core YAML type");
	/* The core ones are fine. */
	json_t *d = doc1("a: !!int \"3\"\nb: !!map {x: 1}\nc: !!seq [1]\nd: !!null\n");
	assert_non_null(json_object_get(d, "b"));
	json_decref(d);
}

static char *nest(int depth, const char *open, const char *close, const char *leaf)
{
	size_t n = (strlen(open) + strlen(close)) * (size_t)depth + strlen(leaf) + 2;
	char *s = malloc(n), *p = s;
	assert_non_null(s);
	for (int i = 0; i < depth; i++)
		p += sprintf(p, "%s", open);
	p += sprintf(p, "%s", leaf);
	for (int i = 0; i < depth; i++)
		p += sprintf(p, "%s", close);
	sprintf(p, "\n");
	return s;
}

static void test_depth(void **state)
{
	(void)state;
	/* KS_MANIFEST_MAX_DEPTH levels of collections pass; one more does not. */
	char *ok = nest(KS_MANIFEST_MAX_DEPTH, "[", "]", "1");
	json_decref(parse_ok(ok, NULL));
	free(ok);
	char *deep = nest(KS_MANIFEST_MAX_DEPTH + 1, "[", "]", "1");
	parse_bad(deep, "deeper than 64");
	free(deep);
	/* Mappings, the root one included ("k: {a: ...}": a leading '{'
	 * would read as JSON). */
	char buf[1024];
	ok = nest(KS_MANIFEST_MAX_DEPTH - 1, "{a: ", "}", "1");
	snprintf(buf, sizeof(buf), "k: %s", ok);
	json_decref(parse_ok(buf, NULL));
	free(ok);
	deep = nest(KS_MANIFEST_MAX_DEPTH, "{a: ", "}", "1");
	snprintf(buf, sizeof(buf), "k: %s", deep);
	parse_bad(buf, "line 1: nested deeper than 64");
	free(deep);
	/* JSON: the same limit (jansson's own is 2048). */
	ok = nest(KS_MANIFEST_MAX_DEPTH, "{\"a\": ", "}", "1");
	json_decref(parse_ok(ok, NULL));
	free(ok);
	deep = nest(KS_MANIFEST_MAX_DEPTH + 1, "{\"a\": ", "}", "1");
	parse_bad(deep, "deeper than 64");
	free(deep);
	deep = nest(KS_MANIFEST_MAX_DEPTH + 1, "[", "]", "1");
	parse_bad(deep, "deeper than 64");
	free(deep);
	/* Deeper than jansson's own limit: refused, not a crash. */
	deep = nest(5000, "[", "]", "1");
	parse_bad(deep, "line");
	free(deep);
}

static void test_duplicates(void **state)
{
	(void)state;
	parse_bad("a: 1\nb: 2\na: 3\n", "line 3: key 'a' appears twice");
	parse_bad("spec:\n  containers: []\n  containers: []\n", "'containers' appears twice");
	parse_bad("{\"a\": 1, \"a\": 2}\n", "duplicate");
	/* The same key in two mappings is fine. */
	json_decref(doc1("a: {x: 1}\nb: {x: 1}\n"));
}

static void test_utf8_nul(void **state)
{
	(void)state;
	parse_bad("a: \"caf\xe9\"\n", "line");		    /* Latin-1, not UTF-8 */
	parse_bad("a: b\xff\xfe\n", "line");		    /* not UTF-8 */
	parse_bad("{\"a\": \"caf\xe9\"}\n", "line");	    /* JSON too */
	parse_bad("a: \"\xed\xa0\x80\"\n", "line");	    /* a UTF-16 surrogate */
	parse_bad_n("a: b\0c\n", 7, "NUL byte");	    /* a raw NUL */
	parse_bad_n("{\"a\": \"b\0c\"}\n", 13, "NUL byte"); /* in JSON */
	/* An escaped NUL is a NUL too: no C string can carry it. */
	parse_bad("a: \"b\\0c\"\n", "NUL byte");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	/* Unterminated quotes: the line where the quote opened is named. */
	parse_bad("a: 1\nb: \"open\nc: 2\n", "starts on line 2");
	parse_bad("a: 1\nb: 2\nc: 'open\n", "starts on line 3");
	parse_bad("a: 1\nb: [1, 2\nc: 3\n", "line");
	/* Bad indentation. */
	parse_bad("a:\n  b: 1\n c: 2\n", "line 3");
	/* A tab where indentation is expected. */
	parse_bad("a:\n\tb: 1\n", "line 2");
	/* A mapping key that is not a scalar. */
	parse_bad("? [a]\n: 1\n", "key must be a scalar");
	/* NaN and infinities: JSON has none. */
	parse_bad("a: .nan\n", "not a number JSON can hold");
	parse_bad("a: -.inf\n", "not a number JSON can hold");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_yaml_typing),	  cmocka_unit_test(test_yaml_stream),
	    cmocka_unit_test(test_json),	  cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_quoting),	  cmocka_unit_test(test_literal_block),
	    cmocka_unit_test(test_numbers_out),	  cmocka_unit_test(test_anchors_aliases),
	    cmocka_unit_test(test_tags),	  cmocka_unit_test(test_depth),
	    cmocka_unit_test(test_duplicates),	  cmocka_unit_test(test_utf8_nul),
	    cmocka_unit_test(test_syntax_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
