/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/expiry.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "common/log.h"
#include "tls/identity.h"

/* Thresholds as fractions num/den of the lifetime. */
static const struct {
	int64_t num, den;
} ks_thresholds[] = {
    [KS_EXPIRY_WARN] = {2, 3},
    [KS_EXPIRY_ERROR] = {9, 10},
    [KS_EXPIRY_EXPIRED] = {1, 1},
};

/* The first second at which level is reached: nb + ceil(lifetime * num / den). */
static int64_t reached_at(int64_t nb, int64_t na, enum ks_expiry_level level)
{
	int64_t span = na - nb, num = ks_thresholds[level].num, den = ks_thresholds[level].den;

	/* span * 9 fits: a validity period is at most a few centuries. */
	return nb + (span * num + den - 1) / den;
}

enum ks_expiry_level ks_expiry_level(int64_t now, int64_t nb, int64_t na)
{
	enum ks_expiry_level l = KS_EXPIRY_NONE;

	if (na <= nb) /* no lifetime to speak of: only the end counts */
		return now >= na ? KS_EXPIRY_EXPIRED : KS_EXPIRY_NONE;
	while (l < KS_EXPIRY_EXPIRED && now >= reached_at(nb, na, l + 1))
		l++;
	return l;
}

int64_t ks_expiry_next(int64_t now, int64_t nb, int64_t na)
{
	enum ks_expiry_level l = ks_expiry_level(now, nb, na);

	if (l == KS_EXPIRY_EXPIRED)
		return INT64_MAX;
	if (na <= nb)
		return na;
	return reached_at(nb, na, l + 1);
}

enum ks_expiry_level ks_expiry_check(struct ks_expiry *st, const char *serial, int64_t nb,
				     int64_t na, int64_t now)
{
	enum ks_expiry_level l = ks_expiry_level(now, nb, na);

	if (!st->seen || strcmp(st->serial, serial) != 0 || st->not_before != nb ||
	    st->not_after != na) {
		/* A new leaf (a renewal, or the first): nothing logged for it yet. */
		st->seen = true;
		snprintf(st->serial, sizeof(st->serial), "%s", serial);
		st->not_before = nb;
		st->not_after = na;
		st->logged = KS_EXPIRY_NONE;
	}
	st->next = ks_expiry_next(now, nb, na);
	if (l <= st->logged)
		return KS_EXPIRY_NONE;
	st->logged = l;
	return l;
}

static int64_t unix_time(const ASN1_TIME *t, bool *ok)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm)) {
		*ok = false;
		return 0;
	}
	return (int64_t)timegm(&tm);
}

static void time_str(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "?");
}

static void log_expiry(enum ks_expiry_level l, const struct ks_identity *id, int64_t nb, int64_t na,
		       int64_t now)
{
	static const char *const what[] = {
	    [KS_EXPIRY_WARN] = "identity_expiring",
	    [KS_EXPIRY_ERROR] = "identity_expiring_soon",
	    [KS_EXPIRY_EXPIRED] = "identity_expired",
	};
	static const char *const why[] = {
	    [KS_EXPIRY_WARN] = "two thirds of the certificate's lifetime have passed and no "
			       "renewal has arrived",
	    [KS_EXPIRY_ERROR] = "90% of the certificate's lifetime has passed and no renewal has "
				"arrived; peers refuse it after not_after",
	    [KS_EXPIRY_EXPIRED] = "the certificate has expired: peers refuse our handshakes until "
				  "a renewal arrives (SIGHUP with new files, or the control plane)",
	};
	char from[32], to[32];
	struct ks_log_field f;
	int64_t span = na - nb;

	time_str(nb, from, sizeof(from));
	time_str(na, to, sizeof(to));
	ks_log(l == KS_EXPIRY_WARN ? KS_LOG_WARN : KS_LOG_ERROR,
	       "event=%s id=%s serial=%s not_before=%s not_after=%s remaining_s=%lld "
	       "lifetime_s=%lld lifetime_used_pct=%lld reason=\"%s\"",
	       what[l], ks_log_field(&f, id->id), id->serial, from, to, (long long)(na - now),
	       (long long)span, span > 0 ? (long long)((now - nb) * 100 / span) : 100LL, why[l]);
}

uint32_t ks_expiry_tick(struct ks_expiry *st, struct ks_identity_slot *slot)
{
	int64_t now = (int64_t)time(NULL), nb, na, wait_s;
	uint64_t gen = atomic_load_explicit(&slot->gen, memory_order_relaxed);
	struct ks_identity *id;
	enum ks_expiry_level l;
	bool ok = true;

	if (st->seen && gen == st->gen && now < st->next)
		goto out;
	id = ks_identity_slot_get(slot, &gen);
	st->gen = gen;
	if (!id->leaf) {
		/* No certificate yet (the control plane's to push): nothing to expire. */
		st->seen = false;
		st->next = INT64_MAX;
		ks_identity_put(id);
		return KS_EXPIRY_POLL_MS;
	}
	nb = unix_time(X509_get0_notBefore(id->leaf), &ok);
	na = unix_time(X509_get0_notAfter(id->leaf), &ok);
	if (ok) {
		l = ks_expiry_check(st, id->serial, nb, na, now);
		if (l != KS_EXPIRY_NONE)
			log_expiry(l, id, nb, na, now);
	}
	ks_identity_put(id);
	if (!ok)
		return KS_EXPIRY_POLL_MS;
out:
	wait_s = st->next - now;
	return wait_s >= KS_EXPIRY_POLL_MS / 1000 ? KS_EXPIRY_POLL_MS : (uint32_t)wait_s * 1000;
}
