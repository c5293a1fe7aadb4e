/* SPDX-License-Identifier: Apache-2.0 */
#include "common/ratelimit.h"

bool ks_ratelimit_ok(struct ks_ratelimit *r, uint64_t now_ms, uint32_t interval_ms,
		     uint64_t *suppressed)
{
	if (now_ms < r->next_ms) {
		r->suppressed++;
		return false;
	}
	*suppressed = r->suppressed;
	r->suppressed = 0;
	r->next_ms = now_ms + interval_ms;
	return true;
}

uint32_t ks_backoff_fail(struct ks_backoff *b, uint32_t min_ms, uint32_t max_ms)
{
	if (b->cur_ms < min_ms)
		b->cur_ms = min_ms;
	else if (b->cur_ms < max_ms)
		b->cur_ms = b->cur_ms > max_ms / 2 ? max_ms : b->cur_ms * 2;
	return b->cur_ms;
}
