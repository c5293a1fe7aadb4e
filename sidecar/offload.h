/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel-TLS hand-off. Called once per connection at the ESTABLISHED
 * state, when the handshake is complete and no byte past it has been read.
 * It decides who owns the record layer from here on: the kernel (TCP_ULP
 * "tls" with TLS_TX/TLS_RX, then splice forwarding), or OpenSSL in userspace.
 * This build always keeps the userspace record layer; kernel offload is the
 * next milestone (see README), and the reason is logged per connection.
 */
#ifndef KS_OFFLOAD_H
#define KS_OFFLOAD_H

struct ks_conn;

/* Start-up probe: can this kernel do TLS offload at all? Logged once. */
void ks_offload_probe(void);

/* Sets c->rl and c->rl_reason. Returns 0, or -errno to refuse the connection. */
int ks_offload_handoff(struct ks_conn *c);

#endif
