/* SPDX-License-Identifier: Apache-2.0 */
/* What both record-layer pumps share: how a connection ends, and its idle clock. */
#include "dataplane/pump.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "dataplane/loglimit.h"
#include "dataplane/worker.h"

enum ks_pump_status ks_pump_close(struct ks_conn *c, enum ks_close_reason reason, enum ks_side rst,
				  const char *fmt, ...)
{
	va_list ap;

	/* The first verdict stands: a later one is a consequence of it. */
	if (c->end.decided)
		return KS_PUMP_CLOSE;
	c->end.decided = true;
	c->end.reason = reason;
	c->end.rst = rst;
	va_start(ap, fmt);
	vsnprintf(c->end.detail, sizeof(c->end.detail), fmt, ap);
	va_end(ap);
	return KS_PUMP_CLOSE;
}

enum ks_pump_status ks_pump_app_failed(struct ks_conn *c, int err)
{
	return ks_pump_close(
	    c, err == ECONNRESET || err == EPIPE ? KS_CLOSE_APP_RESET : KS_CLOSE_APP_ERROR,
	    KS_SIDE_TLS, "%s", strerror(err));
}

void ks_pump_unclean_eof(struct ks_conn *c)
{
	c->tls_eof = 1;
	c->tls_unclean = 1;
	if (!ks_loglimit_conn(c, "tls_unclean_eof", "unclean_eof"))
		return;
	ks_warn("event=tls_unclean_eof conn=%llu peer=%s detail=\"peer closed without "
		"close_notify; possible truncation\"",
		(unsigned long long)c->id, c->peer_str);
}

static bool finish(struct ks_conn *c, bool t2p_flushed, bool *progress)
{
	/* close_notify (or unclean EOF) -> FIN to the app, once flushed */
	if (c->tls_eof && t2p_flushed && !c->plain_wr_shut) {
		shutdown(c->plain_fd, SHUT_WR);
		c->plain_wr_shut = 1;
		*progress = true;
	}
	if (!c->plain_wr_shut || !(c->tls_wr_shut || c->tls_unclean))
		return false;
	if (c->tls_unclean)
		ks_pump_close(c, KS_CLOSE_UNCLEAN_EOF, KS_SIDE_NONE,
			      "peer closed without close_notify");
	else
		ks_pump_close(c, KS_CLOSE_DONE, KS_SIDE_NONE, "%s", "");
	return true;
}

void ks_conn_touch(struct ks_conn *c)
{
	uint32_t idle = c->wk->sh->cfg->idle_timeout_ms;
	uint64_t now = c->wk->now_ms;

	/* Re-queue at most once a second: the LRU order only needs that precision. */
	if (idle == 0 || c->deadline_ms >= now + idle - (idle > 1000 ? 1000 : 0))
		return;
	c->deadline_ms = now + idle;
	ks_list_del(&c->link);
	ks_list_add_tail(&c->wk->lists[KS_WL_IDLE], &c->link);
}

enum ks_round ks_pump_round(struct ks_conn *c, bool t2p_flushed, bool progress, int budget)
{
	if (finish(c, t2p_flushed, &progress))
		return KS_ROUND_CLOSE;
	if (!progress)
		return KS_ROUND_WAIT;
	ks_conn_touch(c);
	return budget > 0 ? KS_ROUND_AGAIN : KS_ROUND_YIELD;
}
