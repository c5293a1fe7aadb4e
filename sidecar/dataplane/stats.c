/* SPDX-License-Identifier: Apache-2.0 */
/* The label tables of the per-worker counters (stats.h). */
#include "dataplane/stats.h"

/* Prometheus' default buckets start at 5 ms; a handshake on loopback takes
 * about 1 ms, so the finer ones below it are where a healthy mesh lives. */
const uint32_t ks_hs_bucket_ms[KS_HS_BUCKETS] = {1,   2,   5,	10,   25,   50,
						 100, 250, 500, 1000, 2500, 10000};

static const char *const ks_close_names[KS_CLOSE__COUNT] = {
    [KS_CLOSE_DONE] = "done",
    [KS_CLOSE_IDLE_TIMEOUT] = "idle_timeout",
    [KS_CLOSE_SHUTDOWN] = "shutdown",
    [KS_CLOSE_REVOKED] = "revoked",
    [KS_CLOSE_PEER_RESET] = "peer_reset",
    [KS_CLOSE_PEER_ALERT] = "peer_alert",
    [KS_CLOSE_UNCLEAN_EOF] = "unclean_eof",
    [KS_CLOSE_TLS_ERROR] = "tls_error",
    [KS_CLOSE_KEY_UPDATE_UNSUPPORTED] = "key_update_unsupported",
    [KS_CLOSE_APP_RESET] = "app_reset",
    [KS_CLOSE_APP_ERROR] = "app_error",
    [KS_CLOSE_INTERNAL_ERROR] = "internal_error",
    [KS_CLOSE_OTHER] = "other",
};

static const char *const ks_fallback_names[KS_FB__COUNT] = {
    [KS_FB_DISABLED] = "disabled",
    [KS_FB_TLS12] = "tls12",
    [KS_FB_KERNEL] = "kernel_unsupported",
    [KS_FB_CIPHER] = "cipher_unsupported",
    [KS_FB_SECRETS] = "secrets_missing",
    [KS_FB_BYTES_PAST_HANDSHAKE] = "bytes_past_handshake",
    [KS_FB_RECORD_NUMBERS] = "record_numbers_unknown",
    [KS_FB_KEY_DERIVATION] = "key_derivation_failed",
    [KS_FB_SETSOCKOPT] = "setsockopt_failed",
    [KS_FB_KEY_UPDATE] = "key_update",
};

const char *ks_close_reason_name(enum ks_close_reason r)
{
	return (unsigned)r < KS_CLOSE__COUNT ? ks_close_names[r] : "other";
}

const char *ks_fallback_name(enum ks_fallback f)
{
	return (unsigned)f < KS_FB__COUNT ? ks_fallback_names[f] : "other";
}

unsigned ks_hs_bucket_of(uint64_t ms)
{
	unsigned i = 0;

	while (i < KS_HS_BUCKETS && ms > ks_hs_bucket_ms[i])
		i++;
	return i;
}
