/* SPDX-License-Identifier: Apache-2.0 */
#include "inject/manifest.h"

#include "inject/cfg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define fail	  ks_inject_fail
#define is_one_of ks_inject_in_list

/* ------------------------------------------------------------ scalars */

/* YAML 1.1's booleans and nulls as go-yaml v2 (which sigs.k8s.io/yaml, and
 * so kubectl and the API server, use) resolves them. "yes", "on" and "y"
 * are booleans there: a port name "on" must be quoted to stay a string. */
static const char *const k_true[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
				     "on",   "On",   "ON",   "y",   "Y",   NULL};
static const char *const k_false[] = {"false", "False", "FALSE", "no", "No", "NO",
				      "off",   "Off",	"OFF",	 "n",  "N",  NULL};
static const char *const k_null[] = {"", "~", "null", "Null", "NULL", NULL};

static bool all_digits(const char *s, const char *set)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s != '_' && !strchr(set, *s))
			return false;
	return true;
}

/* A plain scalar that reads as an integer: decimal, 0x hex, 0o or 0-led
 * octal, 0b binary (YAML 1.1 int, as go-yaml v2 takes it). */
static bool plain_int(const char *s, json_int_t *out)
{
	const char *p = s;
	int base = 10;
	bool neg = false;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
		if (!all_digits(p, "0123456789abcdefABCDEF"))
			return false;
	} else if (p[0] == '0' && p[1] == 'b') {
		base = 2;
		p += 2;
		if (!all_digits(p, "01"))
			return false;
	} else if (p[0] == '0' && p[1] == 'o') {
		base = 8;
		p += 2;
		if (!all_digits(p, "01234567"))
			return false;
	} else if (p[0] == '0' && p[1]) {
		base = 8;
		if (!all_digits(p, "01234567"))
			return false;
	} else if (!all_digits(p, "0123456789")) {
		return false;
	}
	char digits[64];
	size_t n = 0;
	for (; *p; p++) {
		if (*p == '_')
			continue;
		if (n + 1 >= sizeof(digits))
			return false; /* too long: a string */
		digits[n++] = *p;
	}
	digits[n] = '\0';
	errno = 0;
	char *end;
	long long v = strtoll(digits, &end, base);
	if (errno || *end)
		return false; /* out of range: go-yaml keeps it a string (or a float) */
	*out = neg ? -v : v;
	return true;
}

static bool plain_float(const char *s, double *out)
{
	static const char *const inf[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
	static const char *const ninf[] = {"-.inf", "-.Inf", "-.INF", NULL};
	static const char *const nan[] = {".nan", ".NaN", ".NAN", NULL};

	if (is_one_of(s, inf) || is_one_of(s, ninf) || is_one_of(s, nan)) {
		*out = is_one_of(s, nan) ? NAN : is_one_of(s, inf) ? INFINITY : -INFINITY;
		return true;
	}
	/* go-yaml v2's yamlStyleFloat, on the text without its '_':
	 * [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
	 * It is tried after the integers, so digits alone match only what is
	 * no integer: "08" and "09" (not octal) and what overflows int64 are
	 * floats there, and must be here, or a string "08" would be written
	 * plain and read back by kubectl as the number 8. */
	char buf[64];
	size_t n = 0;
	for (const char *q = s; *q; q++) {
		if (*q == '_')
			continue;
		if (n + 1 >= sizeof(buf))
			return false;
		buf[n++] = *q;
	}
	buf[n] = '\0';
	const char *p = buf;
	if (*p == '-' || *p == '+')
		p++;
	size_t ip = strspn(p, "0123456789");
	p += ip;
	size_t fp = 0;
	bool dot = *p == '.';
	if (dot) {
		p++;
		fp = strspn(p, "0123456789");
		p += fp;
	}
	if (ip == 0 && fp == 0)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		size_t ep = strspn(p, "0123456789");
		if (ep == 0)
			return false;
		p += ep;
	}
	if (*p)
		return false;
	*out = strtod(buf, NULL);
	return true;
}

/* What a plain scalar means; NULL for a value jansson cannot hold (NaN, an
 * infinity: JSON has neither, and no Kubernetes field takes one). */
static json_t *resolve_plain(const char *s, bool *bad)
{
	json_int_t i;
	double d;

	*bad = false;
	if (is_one_of(s, k_null))
		return json_null();
	if (is_one_of(s, k_true))
		return json_true();
	if (is_one_of(s, k_false))
		return json_false();
	if (plain_int(s, &i))
		return json_integer(i);
	if (plain_float(s, &d)) {
		if (!isfinite(d)) {
			*bad = true;
			return NULL;
		}
		return json_real(d);
	}
	return json_string(s);
}

/* ------------------------------------------------------------ YAML in */

struct frame {
	json_t *node;
	char *key; /* a mapping's pending key, NULL when the next scalar is a key */
};

struct loader {
	struct frame stack[KS_MANIFEST_MAX_DEPTH + 1];
	int depth; /* frames in use */
	json_t *root;
	struct ks_inject_msg *msg;
};

static int add_value(struct loader *ld, json_t *v, const yaml_event_t *ev)
{
	if (!v)
		return fail(ld->msg, "line %zu: out of memory", ev->start_mark.line + 1);
	if (ld->depth == 0) {
		ld->root = v;
		return 0;
	}
	struct frame *top = &ld->stack[ld->depth - 1];
	if (json_is_array(top->node))
		return json_array_append_new(top->node, v) ? -ENOMEM : 0;
	/* A mapping: v is the value of the pending key. */
	if (json_object_get(top->node, top->key)) {
		json_decref(v);
		return fail(ld->msg, "line %zu: key '%s' appears twice in one mapping",
			    ev->start_mark.line + 1, top->key);
	}
	int rc = json_object_set_new(top->node, top->key, v) ? -ENOMEM : 0;
	free(top->key);
	top->key = NULL;
	return rc;
}

static bool core_tag(const char *tag)
{
	static const char *const ok[] = {YAML_STR_TAG, YAML_INT_TAG, YAML_BOOL_TAG,  YAML_NULL_TAG,
					 YAML_MAP_TAG, YAML_SEQ_TAG, YAML_FLOAT_TAG, NULL};
	return !tag || strcmp(tag, "!") == 0 || is_one_of(tag, ok);
}

static int on_scalar(struct loader *ld, const yaml_event_t *ev)
{
	const char *s = (const char *)ev->data.scalar.value;
	const char *tag = (const char *)ev->data.scalar.tag;
	size_t line = ev->start_mark.line + 1;

	if (strlen(s) != ev->data.scalar.length)
		return fail(ld->msg, "line %zu: a NUL byte in a scalar", line);
	struct frame *top = ld->depth ? &ld->stack[ld->depth - 1] : NULL;
	if (top && json_is_object(top->node) && !top->key) {
		/* A key. Kubernetes' keys are strings; a plain 8080 as a key is
		 * the string "8080" there too (JSON has no other keys). */
		top->key = strdup(s);
		return top->key ? 0 : -ENOMEM;
	}
	bool quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
	bool bad = false;
	json_t *v;
	if (quoted || (tag && strcmp(tag, YAML_STR_TAG) == 0))
		v = json_string(s);
	else
		v = resolve_plain(s, &bad);
	if (bad)
		return fail(ld->msg, "line %zu: '%s' is not a number JSON can hold", line, s);
	if (!v) /* json_string refuses invalid UTF-8 (or is out of memory) */
		return fail(ld->msg, "line %zu: '%.40s' is not valid UTF-8", line, s);
	return add_value(ld, v, ev);
}

static int on_open(struct loader *ld, const yaml_event_t *ev, bool map)
{
	size_t line = ev->start_mark.line + 1;
	struct frame *top = ld->depth ? &ld->stack[ld->depth - 1] : NULL;

	if (top && json_is_object(top->node) && !top->key)
		return fail(ld->msg, "line %zu: a mapping key must be a scalar", line);
	if (ld->depth >= KS_MANIFEST_MAX_DEPTH)
		return fail(ld->msg, "line %zu: nested deeper than %d levels", line,
			    KS_MANIFEST_MAX_DEPTH);
	json_t *node = map ? json_object() : json_array();
	if (!node)
		return -ENOMEM;
	int rc = add_value(ld, json_incref(node), ev);
	if (rc) {
		json_decref(node);
		return rc;
	}
	ld->stack[ld->depth].node = node;
	ld->stack[ld->depth].key = NULL;
	ld->depth++;
	return 0;
}

static void on_close(struct loader *ld)
{
	struct frame *top = &ld->stack[--ld->depth];
	json_decref(top->node);
	free(top->key);
	top->key = NULL;
}

static void loader_reset(struct loader *ld)
{
	while (ld->depth)
		on_close(ld);
	json_decref(ld->root);
	ld->root = NULL;
}

static int parse_yaml(const char *buf, size_t len, json_t *docs, struct ks_inject_msg *msg)
{
	yaml_parser_t parser;
	struct loader ld = {.msg = msg};
	int rc = 0;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	for (bool done = false; !done && rc == 0;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			/* libyaml finds an unterminated quote or bracket where the
			 * stream ends: the line where it opened is the useful one. */
			char from[48] = "";
			if (parser.context && parser.context_mark.line != parser.problem_mark.line)
				snprintf(from, sizeof(from), " that starts on line %zu",
					 parser.context_mark.line + 1);
			rc = fail(msg, "line %zu: %s%s%s%s", parser.problem_mark.line + 1,
				  parser.problem ? parser.problem : "not YAML",
				  parser.context ? " " : "", parser.context ? parser.context : "",
				  from);
			break;
		}
		const char *anchor = NULL, *tag = NULL;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_END_EVENT:
			/* An empty document ("---" alone) is nothing, as kubectl sees it. */
			if (ld.root && !json_is_null(ld.root) && json_array_append(docs, ld.root))
				rc = -ENOMEM;
			json_decref(ld.root);
			ld.root = NULL;
			break;
		case YAML_ALIAS_EVENT:
			/* Aliases let a few bytes expand into gigabytes ("billion
			 * laughs"), and no Kubernetes manifest needs one. */
			rc = fail(msg, "line %zu: YAML aliases (*%s) are not accepted",
				  ev.start_mark.line + 1, (const char *)ev.data.alias.anchor);
			break;
		case YAML_SCALAR_EVENT:
			anchor = (const char *)ev.data.scalar.anchor;
			tag = (const char *)ev.data.scalar.tag;
			goto node;
		case YAML_SEQUENCE_START_EVENT:
			anchor = (const char *)ev.data.sequence_start.anchor;
			tag = (const char *)ev.data.sequence_start.tag;
			goto node;
		case YAML_MAPPING_START_EVENT:
			anchor = (const char *)ev.data.mapping_start.anchor;
			tag = (const char *)ev.data.mapping_start.tag;
		node:
			if (anchor) {
				rc = fail(msg, "line %zu: YAML anchors (&%s) are not accepted",
					  ev.start_mark.line + 1, anchor);
				break;
			}
			if (!core_tag(tag)) {
				rc = fail(msg, "line %zu: the tag %s is not a core YAML type",
					  ev.start_mark.line + 1, tag);
				break;
			}
			if (ev.type == YAML_SCALAR_EVENT)
				rc = on_scalar(&ld, &ev);
			else
				rc = on_open(&ld, &ev, ev.type == YAML_MAPPING_START_EVENT);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			on_close(&ld);
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	loader_reset(&ld);
	yaml_parser_delete(&parser);
	return rc;
}

/* ------------------------------------------------------------ JSON in */

static int parse_json(const char *buf, size_t len, json_t *docs, struct ks_inject_msg *msg)
{
	size_t off = 0;

	/* One document or several, one after the other (as kubectl writes a
	 * stream); JSON_DISABLE_EOF_CHECK stops at the end of each. */
	while (off < len) {
		off += strspn(buf + off, " \t\r\n");
		if (off >= len)
			break;
		json_error_t jerr;
		json_t *doc = json_loadb(buf + off, len - off,
					 JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &jerr);
		if (!doc)
			return fail(msg, "line %d: %s", jerr.line, jerr.text);
		off += jerr.position;
		int rc = json_array_append_new(docs, doc) ? -ENOMEM : 0;
		if (rc)
			return rc;
	}
	return 0;
}

/* JSON depth is bounded the same way as YAML's: jansson's own limit is
 * 2048 levels, deeper than anything a manifest has any use for. depth
 * counts the collections down to v, v included: as in YAML, a scalar adds
 * no level (the documents' array is level 0). */
static int json_depth_ok(const json_t *v, int depth)
{
	if (!json_is_object(v) && !json_is_array(v))
		return 1;
	if (depth > KS_MANIFEST_MAX_DEPTH)
		return 0;
	if (json_is_object(v)) {
		const char *k;
		json_t *c;
		json_object_foreach((json_t *)v, k, c)
		{
			if (!json_depth_ok(c, depth + 1))
				return 0;
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *c;
		json_array_foreach(v, i, c)
		{
			if (!json_depth_ok(c, depth + 1))
				return 0;
		}
	}
	return 1;
}

int ks_manifest_parse(const char *buf, size_t len, json_t **out, enum ks_manifest_format *fmt,
		      struct ks_inject_msg *msg)
{
	json_t *docs = json_array();
	int rc;

	if (!docs)
		return -ENOMEM;
	size_t lead = 0;
	while (lead < len && strchr(" \t\r\n", buf[lead]) && buf[lead])
		lead++;
	bool json = lead < len && (buf[lead] == '{' || buf[lead] == '[');
	if (memchr(buf, '\0', len)) {
		rc = fail(msg, "the input holds a NUL byte: not a manifest");
		goto out;
	}
	rc = json ? parse_json(buf, len, docs, msg) : parse_yaml(buf, len, docs, msg);
	if (rc == 0 && json && !json_depth_ok(docs, 0))
		rc = fail(msg, "nested deeper than %d levels", KS_MANIFEST_MAX_DEPTH);
out:
	if (rc) {
		json_decref(docs);
		return rc;
	}
	*out = docs;
	if (fmt)
		*fmt = json ? KS_MANIFEST_JSON : KS_MANIFEST_YAML;
	return 0;
}

/* ------------------------------------------------------------ YAML out */

/* A string that would read back as something else when plain is quoted. */
static bool needs_quotes(const char *s)
{
	bool bad;
	json_t *v = resolve_plain(s, &bad);
	bool str = v && json_is_string(v);
	json_decref(v);
	return bad || !str;
}

static int emit(yaml_emitter_t *em, yaml_event_t *ev)
{
	return yaml_emitter_emit(em, ev) ? 0 : -EIO;
}

static int emit_scalar(yaml_emitter_t *em, const char *s, yaml_scalar_style_t style)
{
	yaml_event_t ev;
	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1,
					  style))
		return -ENOMEM;
	return emit(em, &ev);
}

static int emit_value(yaml_emitter_t *em, const json_t *v)
{
	char num[64];
	yaml_event_t ev;

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
							 YAML_BLOCK_MAPPING_STYLE))
			return -ENOMEM;
		int rc = emit(em, &ev);
		const char *k;
		json_t *c;
		json_object_foreach((json_t *)v, k, c)
		{
			if (rc == 0)
				rc = emit_scalar(em, k,
						 needs_quotes(k) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
								 : YAML_ANY_SCALAR_STYLE);
			if (rc == 0)
				rc = emit_value(em, c);
		}
		if (rc)
			return rc;
		yaml_mapping_end_event_initialize(&ev);
		return emit(em, &ev);
	}
	case JSON_ARRAY: {
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
							  YAML_BLOCK_SEQUENCE_STYLE))
			return -ENOMEM;
		int rc = emit(em, &ev);
		size_t i;
		json_t *c;
		json_array_foreach(v, i, c)
		{
			if (rc == 0)
				rc = emit_value(em, c);
		}
		if (rc)
			return rc;
		yaml_sequence_end_event_initialize(&ev);
		return emit(em, &ev);
	}
	case JSON_STRING: {
		const char *s = json_string_value(v);
		yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
		if (needs_quotes(s))
			style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
		else if (strchr(s, '\n'))
			style = YAML_LITERAL_SCALAR_STYLE; /* libyaml falls back when it cannot */
		return emit_scalar(em, s, style);
	}
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return emit_scalar(em, num, YAML_PLAIN_SCALAR_STYLE);
	case JSON_REAL: {
		/* The shortest text that reads back as the same double, always
		 * with a '.' or an exponent so that it stays a float. */
		double d = json_real_value(v);
		for (int prec = 1; prec <= 17; prec++) {
			snprintf(num, sizeof(num), "%.*g", prec, d);
			if (strtod(num, NULL) == d)
				break;
		}
		if (!strpbrk(num, ".eE"))
			strcat(num, ".0");
		return emit_scalar(em, num, YAML_PLAIN_SCALAR_STYLE);
	}
	case JSON_TRUE:
		return emit_scalar(em, "true", YAML_PLAIN_SCALAR_STYLE);
	case JSON_FALSE:
		return emit_scalar(em, "false", YAML_PLAIN_SCALAR_STYLE);
	case JSON_NULL:
	default:
		return emit_scalar(em, "null", YAML_PLAIN_SCALAR_STYLE);
	}
}

static int write_handler(void *data, unsigned char *buf, size_t size)
{
	FILE *out = data;
	return fwrite(buf, 1, size, out) == size;
}

struct strbuf {
	char *p;
	size_t len, cap;
};

static int string_handler(void *data, unsigned char *buf, size_t size)
{
	struct strbuf *sb = data;
	if (sb->len + size + 1 > sb->cap) {
		size_t cap = (sb->cap ? sb->cap * 2 : 4096) + size;
		char *p = realloc(sb->p, cap);
		if (!p)
			return 0;
		sb->p = p;
		sb->cap = cap;
	}
	memcpy(sb->p + sb->len, buf, size);
	sb->len += size;
	sb->p[sb->len] = '\0';
	return 1;
}

static int emit_docs(yaml_emitter_t *em, const json_t *docs)
{
	yaml_event_t ev;
	int rc;

	yaml_emitter_set_unicode(em, 1);
	yaml_emitter_set_width(em, -1); /* never fold a long string */
	yaml_emitter_set_indent(em, 2);
	if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING))
		return -ENOMEM;
	if ((rc = emit(em, &ev)))
		return rc;
	size_t i;
	json_t *doc;
	json_array_foreach(docs, i, doc)
	{
		/* Every document after the first starts with "---". */
		if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, i == 0))
			return -ENOMEM;
		if ((rc = emit(em, &ev)) || (rc = emit_value(em, doc)))
			return rc;
		if (!yaml_document_end_event_initialize(&ev, 1))
			return -ENOMEM;
		if ((rc = emit(em, &ev)))
			return rc;
	}
	yaml_stream_end_event_initialize(&ev);
	if ((rc = emit(em, &ev)))
		return rc;
	return yaml_emitter_flush(em) ? 0 : -EIO;
}

int ks_manifest_write(FILE *out, const json_t *docs, enum ks_manifest_format fmt)
{
	if (fmt == KS_MANIFEST_JSON) {
		size_t i;
		json_t *doc;
		json_array_foreach(docs, i, doc)
		{
			if (json_dumpf(doc, out, JSON_INDENT(2)) || fputc('\n', out) == EOF)
				return -EIO;
		}
		return fflush(out) ? -errno : 0;
	}
	yaml_emitter_t em;
	if (!yaml_emitter_initialize(&em))
		return -ENOMEM;
	yaml_emitter_set_output(&em, write_handler, out);
	int rc = emit_docs(&em, docs);
	yaml_emitter_delete(&em);
	if (rc == 0 && fflush(out))
		rc = -errno;
	return rc;
}

char *ks_manifest_yaml_dump(const json_t *doc)
{
	struct strbuf sb = {0};
	yaml_emitter_t em;
	json_t *docs = json_pack("[O]", doc);

	if (!docs)
		return NULL;
	if (!yaml_emitter_initialize(&em)) {
		json_decref(docs);
		return NULL;
	}
	yaml_emitter_set_output(&em, string_handler, &sb);
	int rc = emit_docs(&em, docs);
	yaml_emitter_delete(&em);
	json_decref(docs);
	if (rc) {
		free(sb.p);
		return NULL;
	}
	return sb.p;
}
