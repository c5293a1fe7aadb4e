/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-worker counters behind the admin endpoint's /metrics (admin/metrics.c).
 *
 * Each worker owns one struct ks_wstats and is its only writer, so a counter
 * is bumped with a relaxed load and store (a plain move on x86, no locked
 * instruction on the data path); readers on the control thread load them
 * relaxed and sum over the workers. A reader may see one counter a moment
 * ahead of another, never a torn value.
 *
 * Every label value comes from a fixed table here: a metric's cardinality is
 * bounded by the code, never by peers (no per-peer or per-connection label).
 */
#ifndef KS_DATAPLANE_STATS_H
#define KS_DATAPLANE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "dataplane/conn.h"
#include "tls/handshake.h"
#include "tls/resume.h"

#define KS_DIR__COUNT 2 /* enum ks_dir: inbound, outbound */

/* Why a TLS connection stayed on the userspace record layer (offload.c). */
enum ks_fallback {
	KS_FB_DISABLED,		    /* --ktls=off */
	KS_FB_TLS12,		    /* kernel offload is for TLS 1.3 only (here) */
	KS_FB_KERNEL,		    /* the kernel has no kTLS (the start-up probe) */
	KS_FB_CIPHER,		    /* the kernel cannot offload the negotiated cipher */
	KS_FB_SECRETS,		    /* traffic secrets were not captured */
	KS_FB_BYTES_PAST_HANDSHAKE, /* OpenSSL read past the handshake */
	KS_FB_RECORD_NUMBERS,	    /* Finished not seen: record numbers unknown */
	KS_FB_KEY_DERIVATION,	    /* key derivation failed */
	KS_FB_SETSOCKOPT,	    /* the kernel refused TCP_ULP, TLS_TX or TLS_RX */
	KS_FB_KEY_UPDATE,	    /* a KeyUpdate went by under OpenSSL before the hand-off */
	KS_FB__COUNT
};

/* Handshake duration buckets (upper bounds, ms): accept to forwarding. */
#define KS_HS_BUCKETS 12
extern const uint32_t ks_hs_bucket_ms[KS_HS_BUCKETS];

enum ks_flow { KS_FLOW_TO_PEER, KS_FLOW_FROM_PEER, KS_FLOW__COUNT };

struct ks_wstats {
	/* Connections that reached forwarding, and those of them closed. */
	_Atomic uint64_t opened[KS_DIR__COUNT][KS_RL__COUNT];
	_Atomic uint64_t closed[KS_DIR__COUNT][KS_RL__COUNT];
	_Atomic uint64_t closed_by[KS_DIR__COUNT][KS_CLOSE__COUNT];
	/* Connections refused before forwarding, by enum ks_reject. */
	_Atomic uint64_t hs_failed[KS_DIR__COUNT][KS_REJ__COUNT];
	/* Accept to forwarding, per bucket (not cumulative), sum in ms. */
	_Atomic uint64_t hs_bucket[KS_DIR__COUNT][KS_HS_BUCKETS + 1];
	_Atomic uint64_t hs_sum_ms[KS_DIR__COUNT];
	/* Application bytes, as they move (not at close). */
	_Atomic uint64_t bytes[KS_DIR__COUNT][KS_FLOW__COUNT];
	/* Payload bytes that passed through our own memory, by record layer. */
	_Atomic uint64_t ubytes[KS_RL__COUNT];
	_Atomic uint64_t fallbacks[KS_FB__COUNT];
	/* TLS connections that reached forwarding: [0] full handshake, [1] resumed. */
	_Atomic uint64_t handshakes[KS_DIR__COUNT][2];
	/* Tickets offered (outbound) or received (inbound) and not used, by why. */
	_Atomic uint64_t resume_refused[KS_DIR__COUNT][KS_RES__COUNT];
	/* Warning lines the per-worker limiter held back (loglimit.h). */
	_Atomic uint64_t log_suppressed;
	/* CLOCK_MONOTONIC ms of the loop's last turn: /live. */
	_Atomic uint64_t heartbeat_ms;
};

/* The only writer's increment: no read-modify-write needed. */
static inline void ks_stat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t ks_stat_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* The reason= of event=conn_close and the metric's reason label. */
const char *ks_close_reason_name(enum ks_close_reason r);
const char *ks_fallback_name(enum ks_fallback f);
/* The bucket (0..KS_HS_BUCKETS; the last is +Inf) of a duration. */
unsigned ks_hs_bucket_of(uint64_t ms);

#endif
