/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secrets wiped by construction, not by remembering to.
 *
 *   - KS_WIPE_AT_EXIT(var): var (any object: a key array, a crypto_info
 *     union) is wiped when the enclosing block ends, by every path out of
 *     it, early returns included (GCC/Clang's cleanup attribute). Declare it
 *     right after var.
 *   - ks_secret_alloc / ks_secret_free: heap memory that is wiped when
 *     freed; the size is kept in front of the block, so a caller that only
 *     holds the pointer (protobuf-c's allocator, a string) still wipes all
 *     of it. For buffers that may hold a private key: control frames, the
 *     messages decoded from them, PEM text read from files.
 *
 * The wipe is explicit_bzero(3): a store the compiler may not drop because
 * the memory is about to die (a plain memset before free may be removed).
 */
#ifndef KS_COMMON_SECRET_H
#define KS_COMMON_SECRET_H

#include <stddef.h>

void ks_wipe(void *p, size_t n);

struct ks_wipe_guard {
	void *p;
	size_t n;
};
void ks_wipe_guard_run(struct ks_wipe_guard *g);

#define KS_CAT_(a, b) a##b
#define KS_CAT(a, b)  KS_CAT_(a, b)
#define KS_WIPE_AT_EXIT(var)                                                                       \
	struct ks_wipe_guard KS_CAT(ks_wipe_guard_, __LINE__)                                      \
	    __attribute__((cleanup(ks_wipe_guard_run), unused)) = {&(var), sizeof(var)}

/* NULL on failure; the memory is zeroed. */
void *ks_secret_alloc(size_t n);
/* Grows (or shrinks) to n, wiping the old block; NULL (p untouched) on failure. */
void *ks_secret_realloc(void *p, size_t n);
/* Wipes and frees; NULL is fine. */
void ks_secret_free(void *p);
/* A copy of s in secret memory; NULL on failure. */
char *ks_secret_strdup(const char *s);
/* For a string from plain malloc that held a secret: wipes it, then free(3). */
void ks_wipe_free_str(char *s);

#endif
