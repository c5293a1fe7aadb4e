/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel-TLS hand-off. Called once per connection at the ESTABLISHED
 * state, when the handshake is complete and no byte past it has been read.
 * It decides who owns the record layer from here on: the kernel (TCP_ULP
 * "tls" with TLS_TX and TLS_RX, then splice forwarding, pump_splice.c), or
 * OpenSSL in userspace (pump_user.c), and says why.
 */
#ifndef KS_DATAPLANE_OFFLOAD_H
#define KS_DATAPLANE_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/settings.h"

struct ks_conn;

/* Start-up probe: which ciphers can this kernel offload? Logged once. */
void ks_offload_probe(enum ks_ktls_mode mode);
/* The probe's result (KS_KTLS_CAP_*) and, when incomplete, why. */
unsigned ks_offload_caps(const char **why);

/*
 * Sets c->rl and writes the reason into why. Returns 0, or -errno when the
 * connection must be refused (--ktls=require, or a socket left half
 * configured by a failed install).
 */
int ks_offload_handoff(struct ks_conn *c, char *why, size_t whylen);

/*
 * The same, transmit side only (TCP_ULP and TLS_TX; c->rl becomes KERNEL):
 * an outbound connection that still reads its server's session ticket
 * through OpenSSL (conn.c). ks_offload_rx then gives the kernel the
 * receive side, from the record after the last one OpenSSL read (*from);
 * -errno when it cannot, and the connection must end (its transmit side
 * is the kernel's already).
 */
int ks_offload_handoff_tx(struct ks_conn *c, char *why, size_t whylen);
int ks_offload_rx(struct ks_conn *c, uint64_t *from);

/* Could c be offloaded at all (mode, kernel, TLS 1.3)? The rest is decided at the hand-off. */
bool ks_offload_possible(const struct ks_conn *c);

/*
 * TLS 1.3 KeyUpdate on the kernel path (RFC 8446 §4.6.3): moves one direction
 * (tx: ours, else the peer's) to its next traffic secret and gives the kernel
 * the new key. -EOPNOTSUPP when this kernel or connection cannot rekey.
 */
int ks_offload_rekey(struct ks_conn *c, bool tx);
/* Can c take a KeyUpdate on the kernel path (a kernel that rekeys, secrets kept)? */
bool ks_offload_can_rekey(const struct ks_conn *c);

#endif
