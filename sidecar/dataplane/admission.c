/* SPDX-License-Identifier: Apache-2.0 */
#include "dataplane/admission.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static const char *const ks_adm_names[KS_ADM__COUNT] = {
    [KS_ADM_SHED_HANDSHAKES] = "max_handshakes",
    [KS_ADM_REFUSED_CONNECTIONS] = "max_connections",
    [KS_ADM_REFUSED_SOURCE] = "max_handshakes_per_source",
    [KS_ADM_ACCEPT_FAILED] = "accept_failed",
};

const char *ks_adm_reason_name(enum ks_adm_reason r)
{
	return (unsigned)r < KS_ADM__COUNT ? ks_adm_names[r] : "?";
}

int ks_adm_pool_init(struct ks_adm_pool *p, const struct ks_dp_config *cfg)
{
	uint32_t slots = 16;

	memset(p, 0, sizeof(*p));
	p->budget = cfg->max_handshakes;
	p->per_source = cfg->max_handshakes_per_source;
	/* Never fuller than half: at most budget (+ one per worker) inbound
	 * sources are pending. */
	while (slots < 2 * (p->budget + 256) && slots < (1u << 24))
		slots <<= 1;
	p->src = calloc(slots, sizeof(*p->src));
	if (!p->src)
		return -ENOMEM;
	p->src_mask = slots - 1;
	pthread_mutex_init(&p->mu, NULL);
	return 0;
}

void ks_adm_pool_fini(struct ks_adm_pool *p)
{
	if (!p->src)
		return;
	pthread_mutex_destroy(&p->mu);
	free(p->src);
	p->src = NULL;
}

void ks_adm_init(struct ks_admission *a, struct ks_adm_pool *pool)
{
	memset(a, 0, sizeof(*a));
	a->pool = pool;
}

void ks_adm_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

/* FNV-1a: sources are not secret, and a table that is never more than half
 * full keeps probes short even when they cluster. */
static uint32_t slot_of(const struct ks_adm_pool *p, const uint8_t key[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h & p->src_mask;
}

/* The slot holding key, or the free slot where it would go. Under p->mu. */
static struct ks_adm_source *lookup(const struct ks_adm_pool *p, const uint8_t key[16])
{
	uint32_t i = slot_of(p, key);

	while (p->src[i].count && memcmp(p->src[i].addr, key, 16) != 0)
		i = (i + 1) & p->src_mask;
	return &p->src[i];
}

uint32_t ks_adm_source_pending(struct ks_admission *a, const uint8_t key[16])
{
	uint32_t n;

	pthread_mutex_lock(&a->pool->mu);
	n = lookup(a->pool, key)->count;
	pthread_mutex_unlock(&a->pool->mu);
	return n;
}

uint32_t ks_adm_pending(struct ks_admission *a, enum ks_dir dir)
{
	uint32_t n;

	pthread_mutex_lock(&a->pool->mu);
	n = a->pool->pending[dir];
	pthread_mutex_unlock(&a->pool->mu);
	return n;
}

enum ks_adm_verdict ks_adm_pending_add(struct ks_admission *a, enum ks_dir dir,
				       const uint8_t key[16])
{
	struct ks_adm_pool *p = a->pool;
	enum ks_adm_verdict v = KS_ADM_OK;
	struct ks_adm_source *s = NULL;

	pthread_mutex_lock(&p->mu);
	if (dir == KS_INBOUND) {
		s = lookup(p, key);
		if (s->count >= p->per_source) {
			pthread_mutex_unlock(&p->mu);
			return KS_ADM_SOURCE_FULL;
		}
		if (!s->count)
			memcpy(s->addr, key, 16);
		s->count++;
	}
	if (++p->pending[dir] > p->budget)
		v = KS_ADM_OVER_BUDGET;
	pthread_mutex_unlock(&p->mu);
	return v;
}

void ks_adm_pending_del(struct ks_admission *a, enum ks_dir dir, const uint8_t key[16])
{
	struct ks_adm_pool *p = a->pool;
	struct ks_adm_source *s;
	uint32_t i, j;

	pthread_mutex_lock(&p->mu);
	p->pending[dir]--;
	if (dir != KS_INBOUND)
		goto out;
	s = lookup(p, key);
	if (!s->count || --s->count)
		goto out;
	/* Deleted from a linear-probing table: shift later entries of the
	 * cluster back so every lookup still finds its key (Knuth 6.4, R). */
	i = (uint32_t)(s - p->src);
	for (j = (i + 1) & p->src_mask; p->src[j].count; j = (j + 1) & p->src_mask) {
		uint32_t home = slot_of(p, p->src[j].addr);

		/* Move j to i unless its home lies cyclically in (i, j]. */
		if ((i <= j) ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		p->src[i] = p->src[j];
		p->src[j].count = 0;
		i = j;
	}
out:
	pthread_mutex_unlock(&p->mu);
}

bool ks_adm_count(struct ks_admission *a, enum ks_adm_reason r, uint64_t now_ms, uint64_t *total,
		  uint64_t *since_last_line)
{
	uint64_t suppressed;

	*total = atomic_fetch_add_explicit(&a->counts[r], 1, memory_order_relaxed) + 1;
	if (!ks_ratelimit_ok(&a->rl[r], now_ms, 1000, &suppressed))
		return false;
	*since_last_line = suppressed + 1;
	return true;
}

void ks_adm_note(struct ks_admission *a, enum ks_adm_reason r, uint64_t now_ms, unsigned worker,
		 const char *listen, uint32_t limit)
{
	uint64_t total, since;

	if (!ks_adm_count(a, r, now_ms, &total, &since))
		return;
	ks_warn("event=%s reason=%s limit=%u listen=%s %s_total=%llu since_last_line=%llu "
		"worker=%u",
		r == KS_ADM_SHED_HANDSHAKES ? "conn_shed" : "conn_refused", ks_adm_names[r], limit,
		listen, r == KS_ADM_SHED_HANDSHAKES ? "shed" : "refused", (unsigned long long)total,
		(unsigned long long)since, worker);
}
