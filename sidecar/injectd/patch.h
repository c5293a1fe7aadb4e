/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON Patch (RFC 6902) between two jansson values: what the webhook
 * answers with, so that the API server turns the pod it sent into the pod
 * ks_inject_pod made of it.
 *
 * The diff emits add, remove and replace only, with RFC 6901 pointers
 * ("~" is written "~0" and "/" "~1": ktls-sidecar.io/injected-version is
 * /metadata/annotations/ktls-sidecar.io~1injected-version).
 *  - Objects are compared key by key: a key only in the old is removed, one
 *    only in the new is added, one in both is recursed into when both
 *    values are objects and replaced otherwise (a changed type, a scalar).
 *  - Arrays are not diffed element by element. An array whose old items are
 *    the new one's first items gets the rest appended ("add" at "/-", one op
 *    per item, in order); any other change replaces the array whole. The
 *    injector prepends its containers (a native sidecar must start before
 *    the app's init containers), which no append can express, and an
 *    element-wise diff of a prepend is a replace of every element anyway:
 *    one "replace" of the list is shorter and says what happened. The
 *    patch is applied by the API server to the very object it sent us, so a
 *    whole-array replace races with nothing.
 * Keys are emitted in the new object's order, removals first, so the patch
 * is deterministic for a given pair.
 */
#ifndef KS_INJECTD_PATCH_H
#define KS_INJECTD_PATCH_H

#include <jansson.h>
#include <stddef.h>

/* The patch that turns a into b: a new JSON array of operations (empty when
 * they are equal) in *out. Values in the operations are copies. 0 or
 * -ENOMEM. Recursion follows the nesting of a and b: callers bound their
 * depth first (admission.c's pre-scan). */
int ks_patch_diff(const json_t *a, const json_t *b, json_t **out);

/* Applies patch (an array of add/remove/replace operations) to *doc in
 * place; a replace or add at the root ("") replaces *doc itself. Used by
 * the tests and the fuzzer to prove apply(diff(a, b), a) == b, and strict
 * as RFC 6902 says: a missing path, a bad pointer (~ not followed by 0 or
 * 1, an index with a leading zero or past the end), an unknown op or a
 * missing member fails it with -EINVAL and err saying which operation; the
 * document may then be partly patched (RFC 6902 §5 lets a failed patch
 * leave no trace; the callers here throw it away). 0, -EINVAL or -ENOMEM. */
int ks_patch_apply(json_t **doc, const json_t *patch, char *err, size_t errlen);

/* One key as an RFC 6901 reference token appended to the pointer
 * buf[0..*len) ("/" then the escaped key). 0 or -ENOMEM (buf grows). */
int ks_patch_pointer_push(char **buf, size_t *len, size_t *cap, const char *key);

#endif
