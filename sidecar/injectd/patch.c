/* SPDX-License-Identifier: Apache-2.0 */
/* JSON Patch (RFC 6902) diff and apply: patch.h says what each emits and accepts. */
#include "injectd/patch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ptr {
	char *p;
	size_t len, cap;
};

int ks_patch_pointer_push(char **buf, size_t *len, size_t *cap, const char *key)
{
	size_t need = *len + 2; /* '/' and the NUL */

	for (const char *k = key; *k; k++)
		need += (*k == '~' || *k == '/') ? 2 : 1;
	if (need > *cap) {
		size_t ncap = *cap ? *cap : 64;
		while (ncap < need)
			ncap *= 2;
		char *np = realloc(*buf, ncap);
		if (!np)
			return -ENOMEM;
		*buf = np;
		*cap = ncap;
	}
	char *o = *buf + *len;
	*o++ = '/';
	/* RFC 6901 §3: '~' is "~0" and '/' is "~1". */
	for (const char *k = key; *k; k++) {
		if (*k == '~' || *k == '/') {
			*o++ = '~';
			*o++ = *k == '~' ? '0' : '1';
		} else {
			*o++ = *k;
		}
	}
	*o = '\0';
	*len = (size_t)(o - *buf);
	return 0;
}

static int emit(json_t *ops, const char *op, const struct ptr *at, const json_t *value)
{
	json_t *o = json_object();

	if (!o || json_object_set_new(o, "op", json_string(op)) ||
	    json_object_set_new(o, "path", json_string(at->p ? at->p : "")) ||
	    (value && json_object_set_new(o, "value", json_deep_copy(value))) ||
	    json_array_append_new(ops, o)) {
		json_decref(o);
		return -ENOMEM;
	}
	return 0;
}

/* The new array is the old one with items appended. */
static bool appended(const json_t *a, const json_t *b)
{
	size_t na = json_array_size(a);

	if (json_array_size(b) <= na)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!json_equal(json_array_get(a, i), json_array_get(b, i)))
			return false;
	return true;
}

static int diff(const json_t *a, const json_t *b, struct ptr *at, json_t *ops)
{
	size_t keep = at->len;
	const char *key;
	json_t *va, *vb;
	int rc = 0;

	if (json_equal(a, b))
		return 0;
	if (json_is_array(a) && json_is_array(b) && appended(a, b)) {
		if (ks_patch_pointer_push(&at->p, &at->len, &at->cap, "-"))
			return -ENOMEM;
		for (size_t i = json_array_size(a); i < json_array_size(b) && !rc; i++)
			rc = emit(ops, "add", at, json_array_get(b, i));
		at->len = keep;
		at->p[keep] = '\0';
		return rc;
	}
	if (!json_is_object(a) || !json_is_object(b))
		return emit(ops, "replace", at, b);
	/* const: jansson's iteration macros take non-const objects. */
	json_object_foreach((json_t *)a, key, va)
	{
		if (json_object_get(b, key))
			continue;
		if (ks_patch_pointer_push(&at->p, &at->len, &at->cap, key))
			return -ENOMEM;
		rc = emit(ops, "remove", at, NULL);
		at->len = keep;
		at->p[keep] = '\0';
		if (rc)
			return rc;
	}
	json_object_foreach((json_t *)b, key, vb)
	{
		va = json_object_get(a, key);
		if (va && json_equal(va, vb))
			continue;
		if (ks_patch_pointer_push(&at->p, &at->len, &at->cap, key))
			return -ENOMEM;
		rc = va ? diff(va, vb, at, ops) : emit(ops, "add", at, vb);
		at->len = keep;
		at->p[keep] = '\0';
		if (rc)
			return rc;
	}
	return 0;
}

int ks_patch_diff(const json_t *a, const json_t *b, json_t **out)
{
	struct ptr at = {0};
	json_t *ops = json_array();
	int rc;

	*out = NULL;
	if (!ops)
		return -ENOMEM;
	rc = diff(a, b, &at, ops);
	free(at.p);
	if (rc) {
		json_decref(ops);
		return rc;
	}
	*out = ops;
	return 0;
}

/* ------------------------------------------------------------------ apply */

/* The next reference token of ptr at *pos, unescaped into tok (RFC 6901
 * §4). 1 and *pos past it; 0 at the end; -EINVAL for a bad escape. */
static int next_token(const char *ptr, size_t *pos, char *tok, size_t toklen)
{
	size_t i = *pos, n = 0;

	if (ptr[i] == '\0')
		return 0;
	if (ptr[i] != '/')
		return -EINVAL;
	for (i++; ptr[i] && ptr[i] != '/'; i++) {
		char c = ptr[i];
		if (c == '~') {
			if (ptr[i + 1] != '0' && ptr[i + 1] != '1')
				return -EINVAL;
			c = ptr[++i] == '0' ? '~' : '/';
		}
		if (n + 1 >= toklen)
			return -EINVAL;
		tok[n++] = c;
	}
	tok[n] = '\0';
	*pos = i;
	return 1;
}

/* An array index (RFC 6901 §4: "0" or digits without a leading zero) that
 * is at most max; "-" (past the end) only where dash_ok. */
static int array_index(const char *tok, size_t size, bool dash_ok, size_t *out)
{
	size_t v = 0;

	if (strcmp(tok, "-") == 0) {
		if (!dash_ok)
			return -EINVAL;
		*out = size;
		return 0;
	}
	if (!tok[0] || (tok[0] == '0' && tok[1]))
		return -EINVAL;
	for (const char *t = tok; *t; t++) {
		if (*t < '0' || *t > '9' || v > size)
			return -EINVAL;
		v = v * 10 + (size_t)(*t - '0');
	}
	if (v > size || (!dash_ok && v == size))
		return -EINVAL;
	*out = v;
	return 0;
}

static int apply_one(json_t **doc, const json_t *op, size_t n, char *err, size_t errlen)
{
	const char *name = json_string_value(json_object_get(op, "op"));
	const char *path = json_string_value(json_object_get(op, "path"));
	const json_t *value = json_object_get(op, "value");
	enum { ADD, REMOVE, REPLACE } kind;
	size_t plen, pos = 0, last = 0, idx;
	char *tok = NULL;
	json_t *parent, *v = NULL;
	int rc = -EINVAL;

	if (!json_is_object(op) || !name || !path) {
		snprintf(err, errlen, "operation %zu: not an object with \"op\" and \"path\"", n);
		return -EINVAL;
	}
	if (strcmp(name, "add") == 0)
		kind = ADD;
	else if (strcmp(name, "remove") == 0)
		kind = REMOVE;
	else if (strcmp(name, "replace") == 0)
		kind = REPLACE;
	else {
		snprintf(err, errlen, "operation %zu: op \"%.32s\" is not add, remove or replace",
			 n, name);
		return -EINVAL;
	}
	if (kind != REMOVE && !value) {
		snprintf(err, errlen, "operation %zu (%s): no \"value\"", n, name);
		return -EINVAL;
	}
	plen = strlen(path);
	tok = malloc(plen + 1);
	if (!tok)
		return -ENOMEM;
	if (kind != REMOVE && !(v = json_deep_copy(value))) {
		free(tok);
		return -ENOMEM;
	}
	if (plen == 0) { /* the whole document */
		if (kind == REMOVE) {
			snprintf(err, errlen, "operation %zu: remove of the whole document", n);
			goto out;
		}
		json_decref(*doc);
		*doc = v;
		v = NULL;
		rc = 0;
		goto out;
	}
	/* Walk to the parent: every token but the last. */
	for (size_t p = 0; path[p]; p++)
		if (path[p] == '/')
			last = p;
	parent = *doc;
	while (pos < last) {
		if (next_token(path, &pos, tok, plen + 1) != 1)
			goto bad;
		if (json_is_object(parent))
			parent = json_object_get(parent, tok);
		else if (json_is_array(parent) &&
			 array_index(tok, json_array_size(parent), false, &idx) == 0)
			parent = json_array_get(parent, idx);
		else
			goto bad;
		if (!parent)
			goto bad;
	}
	if (next_token(path, &pos, tok, plen + 1) != 1)
		goto bad;
	if (json_is_object(parent)) {
		bool has = json_object_get(parent, tok) != NULL;
		if (kind != ADD && !has)
			goto bad;
		if (kind == REMOVE)
			rc = json_object_del(parent, tok) ? -EINVAL : 0;
		else
			rc = json_object_set_new(parent, tok, v) ? -ENOMEM : 0;
		v = NULL; /* set_new took it, even on failure */
	} else if (json_is_array(parent)) {
		if (array_index(tok, json_array_size(parent), kind == ADD, &idx))
			goto bad;
		if (kind == REMOVE)
			rc = json_array_remove(parent, idx) ? -EINVAL : 0;
		else if (kind == REPLACE)
			rc = json_array_set_new(parent, idx, v) ? -ENOMEM : 0;
		else
			rc = json_array_insert_new(parent, idx, v) ? -ENOMEM : 0;
		v = NULL;
	} else {
		goto bad;
	}
	goto out;
bad:
	snprintf(err, errlen, "operation %zu (%s): path \"%.200s\" does not name a %s", n, name,
		 path, kind == ADD ? "place to add at" : "member");
	rc = -EINVAL;
out:
	json_decref(v);
	free(tok);
	return rc;
}

int ks_patch_apply(json_t **doc, const json_t *patch, char *err, size_t errlen)
{
	size_t i;
	json_t *op;

	if (!json_is_array(patch)) {
		snprintf(err, errlen, "a patch is an array of operations");
		return -EINVAL;
	}
	json_array_foreach((json_t *)patch, i, op)
	{
		int rc = apply_one(doc, op, i, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}
