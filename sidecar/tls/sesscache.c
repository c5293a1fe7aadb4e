/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/sesscache.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void ks_sess_cache_init(struct ks_sess_cache *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
}

static void entry_free(struct ks_sess_entry *e)
{
	SSL_SESSION_free(e->sess);
	free(e->facts);
	memset(e, 0, sizeof(*e));
}

/* Drops entry i of b, keeping the rest in order. */
static void drop(struct ks_sess_bucket *b, size_t i)
{
	entry_free(&b->e[i]);
	memmove(&b->e[i], &b->e[i + 1], (b->n - i - 1) * sizeof(b->e[0]));
	b->n--;
	memset(&b->e[b->n], 0, sizeof(b->e[0]));
}

static void bucket_clear(struct ks_sess_bucket *b)
{
	while (b->n)
		drop(b, b->n - 1);
	b->key[0] = '\0';
}

void ks_sess_cache_fini(struct ks_sess_cache *c)
{
	for (size_t i = 0; c->b && i < KS_SESS_KEYS; i++)
		bucket_clear(&c->b[i]);
	free(c->b);
	c->b = NULL;
	pthread_mutex_destroy(&c->mu);
}

/* key's bucket; with make, a free one or the least recently used one, emptied. */
static struct ks_sess_bucket *find(struct ks_sess_cache *c, const char *key, bool make)
{
	struct ks_sess_bucket *lru = NULL;

	if (!c->b) {
		if (!make)
			return NULL;
		c->b = calloc(KS_SESS_KEYS, sizeof(*c->b));
		if (!c->b)
			return NULL;
	}
	for (size_t i = 0; i < KS_SESS_KEYS; i++) {
		struct ks_sess_bucket *b = &c->b[i];

		if (b->key[0] && strcmp(b->key, key) == 0)
			return b;
		if (!lru || (!b->key[0] && lru->key[0]) ||
		    (!b->key[0] == !lru->key[0] && b->used < lru->used))
			lru = b;
	}
	if (!make)
		return NULL;
	bucket_clear(lru);
	memcpy(lru->key, key, strlen(key) + 1);
	return lru;
}

int ks_sess_cache_put(struct ks_sess_cache *c, const char *key, SSL_SESSION *sess,
		      const uint8_t *facts, size_t facts_len, int64_t expires)
{
	struct ks_sess_bucket *b;
	uint8_t *copy;

	if (strlen(key) >= KS_SESS_KEY_MAX)
		return -ENAMETOOLONG;
	copy = malloc(facts_len ? facts_len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, facts, facts_len);
	pthread_mutex_lock(&c->mu);
	b = find(c, key, true);
	if (!b) {
		pthread_mutex_unlock(&c->mu);
		free(copy);
		return -ENOMEM;
	}
	if (b->n == KS_SESS_PER_KEY)
		drop(b, 0);
	b->e[b->n++] = (struct ks_sess_entry){sess, copy, facts_len, expires};
	b->used = ++c->clock;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

SSL_SESSION *ks_sess_cache_take(struct ks_sess_cache *c, const char *key, int64_t now,
				uint8_t **facts, size_t *facts_len)
{
	SSL_SESSION *sess = NULL;
	struct ks_sess_bucket *b;

	*facts = NULL;
	*facts_len = 0;
	pthread_mutex_lock(&c->mu);
	b = find(c, key, false);
	while (b && b->n && !sess) {
		struct ks_sess_entry *e = &b->e[b->n - 1];

		if (e->expires > now) {
			sess = e->sess;
			*facts = e->facts;
			*facts_len = e->facts_len;
			memset(e, 0, sizeof(*e));
			b->n--;
		} else {
			drop(b, b->n - 1);
		}
	}
	if (b) {
		/* Older entries expire first: what is left past the newest
		 * live one is live too, or goes at the next take. */
		b->used = ++c->clock;
	}
	pthread_mutex_unlock(&c->mu);
	return sess;
}

size_t ks_sess_cache_count(struct ks_sess_cache *c)
{
	size_t n = 0;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; c->b && i < KS_SESS_KEYS; i++)
		n += c->b[i].n;
	pthread_mutex_unlock(&c->mu);
	return n;
}
