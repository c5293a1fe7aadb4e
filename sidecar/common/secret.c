/* SPDX-License-Identifier: Apache-2.0 */
#include "common/secret.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void ks_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

void ks_wipe_guard_run(struct ks_wipe_guard *g)
{
	ks_wipe(g->p, g->n);
}

/* The header keeps max_align_t alignment for what follows. */
union ks_secret_hdr {
	size_t n;
	max_align_t align;
};

void *ks_secret_alloc(size_t n)
{
	union ks_secret_hdr *h;

	if (n > SIZE_MAX - sizeof(*h))
		return NULL;
	h = calloc(1, sizeof(*h) + n);
	if (!h)
		return NULL;
	h->n = n;
	return h + 1;
}

static union ks_secret_hdr *hdr_of(void *p)
{
	return (union ks_secret_hdr *)p - 1;
}

void *ks_secret_realloc(void *p, size_t n)
{
	void *q;
	size_t old;

	if (!p)
		return ks_secret_alloc(n);
	q = ks_secret_alloc(n);
	if (!q)
		return NULL;
	old = hdr_of(p)->n;
	memcpy(q, p, old < n ? old : n);
	ks_secret_free(p);
	return q;
}

void ks_secret_free(void *p)
{
	union ks_secret_hdr *h;

	if (!p)
		return;
	h = hdr_of(p);
	ks_wipe(h, sizeof(*h) + h->n);
	free(h);
}

char *ks_secret_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = ks_secret_alloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

void ks_wipe_free_str(char *s)
{
	if (!s)
		return;
	ks_wipe(s, strlen(s));
	free(s);
}
