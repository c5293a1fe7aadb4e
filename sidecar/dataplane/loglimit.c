/* SPDX-License-Identifier: Apache-2.0 */
#include "dataplane/loglimit.h"

#include <string.h>

#include "common/log.h"
#include "dataplane/admission.h"
#include "dataplane/conn.h"
#include "dataplane/worker.h"

/* FNV-1a, 64-bit: enough to spread keys over a small table. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static bool take(struct ks_ll_bucket *b, uint64_t now_ms, uint32_t burst, uint32_t per_s)
{
	uint64_t full = (uint64_t)burst * 1000, add;

	if (b->last_ms == 0 && b->milli == 0) { /* new: a full burst */
		b->milli = (uint32_t)full;
	} else if (now_ms > b->last_ms) {
		add = (now_ms - b->last_ms) * per_s;
		b->milli = (uint32_t)(b->milli + add > full ? full : b->milli + add);
	}
	b->last_ms = now_ms ? now_ms : 1;
	if (b->milli < 1000)
		return false;
	b->milli -= 1000;
	return true;
}

static struct ks_ll_reason *reason_slot(struct ks_loglimit *l, const char *line, const char *reason)
{
	uint64_t h = fnv(fnv(0xcbf29ce484222325ull, line, strlen(line)), reason, strlen(reason));
	unsigned i = (unsigned)h & (KS_LL_REASONS - 1);

	for (unsigned n = 0; n < KS_LL_REASONS; n++, i = (i + 1) & (KS_LL_REASONS - 1)) {
		struct ks_ll_reason *r = &l->reasons[i];

		if (!r->line) {
			r->line = line;
			r->reason = reason;
			return r;
		}
		if (strcmp(r->line, line) == 0 && strcmp(r->reason, reason) == 0)
			return r;
	}
	return NULL; /* more kinds than slots: not limited per reason */
}

bool ks_loglimit_ok(struct ks_loglimit *l, uint64_t now_ms, const char *line, const char *reason,
		    const uint8_t src[16])
{
	uint64_t tag = fnv(
	    fnv(fnv(0xcbf29ce484222325ull, line, strlen(line)), reason, strlen(reason)), src, 16);
	struct ks_ll_source *s = &l->sources[tag & (KS_LL_SOURCES - 1)];
	struct ks_ll_reason *r = reason_slot(l, line, reason);

	tag |= 1; /* 0 marks a free slot */
	if (s->tag != tag) {
		memset(s, 0, sizeof(*s));
		s->tag = tag;
	}
	/* The source's own budget first: a source that is over it does not
	 * spend the reason's, which others still need. */
	if (take(&s->b, now_ms, KS_LL_SRC_BURST, 1) &&
	    (!r || take(&r->b, now_ms, KS_LL_REASON_BURST, KS_LL_REASON_PER_S)))
		return true;
	if (r) {
		r->suppressed++;
		if (!s->held)
			r->sources++;
	}
	s->held = true;
	return false;
}

void ks_loglimit_flush(struct ks_loglimit *l, uint64_t now_ms, unsigned worker)
{
	if (now_ms < l->next_flush_ms)
		return;
	l->next_flush_ms = now_ms + 1000;
	for (unsigned i = 0; i < KS_LL_REASONS; i++) {
		struct ks_ll_reason *r = &l->reasons[i];

		if (!r->line || !r->suppressed)
			continue;
		ks_warn("event=log_suppressed line=%s reason=%s suppressed=%llu sources=%u "
			"worker=%u",
			r->line, r->reason, (unsigned long long)r->suppressed, r->sources, worker);
		r->suppressed = 0;
		r->sources = 0;
	}
	for (unsigned i = 0; i < KS_LL_SOURCES; i++)
		l->sources[i].held = false;
}

bool ks_loglimit_conn(struct ks_conn *c, const char *line, const char *reason)
{
	uint8_t key[16];

	if (c->route->dir == KS_INBOUND)
		memcpy(key, c->src_key, sizeof(key));
	else
		ks_adm_key((const struct sockaddr *)&c->target.ss, key);
	if (ks_loglimit_ok(&c->wk->loglimit, c->wk->now_ms, line, reason, key))
		return true;
	ks_stat_add(&c->wk->stats.log_suppressed, 1);
	return false;
}

uint64_t ks_loglimit_pending(const struct ks_loglimit *l)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < KS_LL_REASONS; i++)
		n += l->reasons[i].suppressed;
	return n;
}
