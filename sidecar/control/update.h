/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control API operations that change state: CreateCsr, SetIdentity,
 * SetTrustBundle, SetCrl and SetPolicy. Each one validates completely, then
 * publishes one new identity (identity.h) or changes nothing: a handshake
 * sees the state before the update or after it, never a mix. SetTicketKeys
 * changes the session ticket keys (tls/tickets.h), which live beside the
 * identity, in one step of their own.
 */
#ifndef KS_CONTROL_UPDATE_H
#define KS_CONTROL_UPDATE_H

#include "control/control.h"
#include "ktls/control/v1/control.pb-c.h"
#include "tls/tickets.h"

struct ks_ctl_result {
	int code;   /* Ktls__Control__V1__Code */
	int reason; /* Ktls__Control__V1__Reason */
	char msg[768];
};

/* *csr_pem is malloc'ed on success. */
void ks_ctl_create_csr(struct ks_ctl_env *env, const char *spiffe_id, char **csr_pem,
		       struct ks_ctl_result *res);
void ks_ctl_set_identity(struct ks_ctl_env *env, const Ktls__Control__V1__SetIdentity *m,
			 struct ks_ctl_result *res);
void ks_ctl_set_bundle(struct ks_ctl_env *env, const Ktls__Control__V1__SetTrustBundle *m,
		       struct ks_ctl_result *res);
void ks_ctl_set_crl(struct ks_ctl_env *env, const char *crl_pem, struct ks_ctl_result *res);
void ks_ctl_set_policy(struct ks_ctl_env *env, const Ktls__Control__V1__SetPolicy *m,
		       struct ks_ctl_result *res);
/* env->tls->res's ticket keys; FAILED_PRECONDITION when resumption is off. */
void ks_ctl_set_ticket_keys(struct ks_ctl_env *env, const Ktls__Control__V1__SetTicketKeys *m,
			    struct ks_ctl_result *res);

/* Hex of a ticket key's name (sent in every ticket in the clear: not a secret). */
void ks_ctl_ticket_name_hex(const uint8_t *name, char out[2 * KS_TICKET_NAME_LEN + 1]);

#endif
