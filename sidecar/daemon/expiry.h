/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Certificate expiry is visible before it bites. The identity in force
 * (tls/identity.h) is checked by the main thread: once two thirds of its
 * leaf's lifetime have passed with no renewal, a warning
 * (event=identity_expiring); at 90%, an error (event=identity_expiring_soon);
 * past notAfter, an error (event=identity_expired), since peers then refuse
 * our handshakes. Each threshold is logged once per identity (serial and
 * validity period): a renewal resets it, and a new identity that is already
 * late is logged as soon as it is seen. A CRL or bundle update keeps the
 * leaf, so it does not repeat a line.
 *
 * Two thirds is where a renewal should long have happened: SPIRE rotates
 * X509-SVIDs at half their lifetime, cert-manager renews at two thirds.
 */
#ifndef KS_DAEMON_EXPIRY_H
#define KS_DAEMON_EXPIRY_H

#include <stdbool.h>
#include <stdint.h>

struct ks_identity_slot;

/* Thresholds, in order; each is logged at most once per identity. */
enum ks_expiry_level {
	KS_EXPIRY_NONE,	   /* before two thirds of the lifetime */
	KS_EXPIRY_WARN,	   /* two thirds: warn */
	KS_EXPIRY_ERROR,   /* 90%: error */
	KS_EXPIRY_EXPIRED, /* past notAfter: error */
};

/* The longest wait between two checks, so that an identity pushed over the
 * control API (another thread) is looked at within this long. */
#define KS_EXPIRY_POLL_MS 1000

/* The main thread's record: the identity last looked at and what was logged. */
struct ks_expiry {
	bool seen;	 /* an identity with a certificate was looked at */
	uint64_t gen;	 /* the slot's generation then */
	char serial[80]; /* its leaf: serial and validity period (Unix seconds) */
	int64_t not_before, not_after;
	enum ks_expiry_level logged; /* the highest threshold logged for it */
	int64_t next;		     /* when its next threshold is reached */
};

/* The threshold reached at now by a certificate valid from nb to na. */
enum ks_expiry_level ks_expiry_level(int64_t now, int64_t nb, int64_t na);

/* The first second after now at which a higher threshold is reached;
 * INT64_MAX when past notAfter (nothing left to reach). */
int64_t ks_expiry_next(int64_t now, int64_t nb, int64_t na);

/*
 * The decision, without I/O: given the leaf in force (serial, nb, na) at
 * now, what to log (KS_EXPIRY_NONE: nothing). A leaf other than st's
 * starts afresh; the same leaf logs only a threshold higher than the one
 * logged (a clock that steps back logs nothing again). Updates st.
 */
enum ks_expiry_level ks_expiry_check(struct ks_expiry *st, const char *serial, int64_t nb,
				     int64_t na, int64_t now);

/*
 * Checks the identity now in slot and logs what ks_expiry_check says.
 * Returns how long to wait before the next call, in ms (at most
 * KS_EXPIRY_POLL_MS). Cheap when nothing changed (one atomic load and
 * time(2)), so a loop that wakes more often may call it every time.
 * Main thread only (st is not shared).
 */
uint32_t ks_expiry_tick(struct ks_expiry *st, struct ks_identity_slot *slot);

#endif
