/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl: talks to a ktls-sidecar over its control socket
 * (proto/ktls/control/v1/control.proto), and runs a development CA (ca.c)
 * and the built-in control plane (agent.c); waits for its admin endpoint's
 * /ready (waitready.c); injects the sidecar into Kubernetes objects
 * (inject.c), offline or as an admission webhook (inject_serve.c).
 *
 * Exit codes: 0 done; 1 the sidecar answered with an error; 2 usage;
 * 3 the sidecar could not be reached or answered garbage (or its socket is
 * unsafe); 4 the sidecar refused this uid; 5 a local file or the CA failed.
 */
#include "ctl/client.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/parse.h"
#include "common/secret.h"
#include "common/version.h"
#include "control/frame.h"
#include "ctl/ticketkeys.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: ktlsctl [--socket PATH] [--timeout DURATION] COMMAND [ARGS]\n"
	    "\n"
	    "Talks to a ktls-sidecar over its control socket; runs a development CA and\n"
	    "the built-in control plane.\n"
	    "\n"
	    "Commands for a sidecar (--socket):\n"
	    "  status                  identity and its expiry, trust bundle fingerprints,\n"
	    "                          kTLS capability, I/O backend, counters, the names of\n"
	    "                          the session ticket keys in force (pushed or own)\n"
	    "  ready                   exit 0 when the sidecar serves: it has an identity that\n"
	    "                          has not expired and is not draining; else exit 1 and\n"
	    "                          say why (a Kubernetes readiness probe)\n"
	    "  connections             open connections: peer ID, direction, cipher,\n"
	    "                          record layer, bytes, age\n"
	    "  push-identity --cert FILE [--key FILE] [--bundle FILE]\n"
	    "                          a chain (leaf first); without --key, the key of the\n"
	    "                          sidecar's pending CSR; --bundle replaces the trust\n"
	    "                          bundle in the same update\n"
	    "  push-bundle [--trust-domain TD] FILE|--none\n"
	    "                          the trust bundle (PEM roots) of our own trust domain;\n"
	    "                          with --trust-domain, a federated trust domain's bundle\n"
	    "                          (--none: end the federation with TD)\n"
	    "  push-crl FILE|--none    the complete set of CRLs in force (PEM); open\n"
	    "                          connections they revoke are closed\n"
	    "  set-policy [--allow PATTERN]... [--outbound LISTEN[,id=PATTERN][,pin=HEX]...]...\n"
	    "             [--destination DEST=PATTERN]... [--refuse-unknown-destinations]\n"
	    "                          replaces the pushed policy: inbound SPIFFE ID patterns\n"
	    "                          (none: own trust domain), per outbound route the\n"
	    "                          server ID and SHA-256 SPKI pins, and per transparent\n"
	    "                          destination (address or CIDR, optional :port) the\n"
	    "                          server ID; destinations none names are refused with\n"
	    "                          --refuse-unknown-destinations\n" KTLSCTL_TICKET_KEYS_USAGE
	    "  drain [--timeout DUR]   drain as on SIGTERM, then the sidecar exits 0: inbound\n"
	    "                          listeners close after its --drain-delay, outbound ones\n"
	    "                          once the app is done; all ends after DUR (default:\n"
	    "                          its --drain-timeout). A SIGTERM during it (the\n"
	    "                          kubelet's, after a preStop hook) changes nothing\n"
	    "\n"
	    "Command for a sidecar's admin endpoint (its --admin; no control socket):\n"
	    "  wait-ready [--admin HOST:PORT] [--timeout DUR] [--interval DUR]\n"
	    "                          polls GET /ready until it answers 200 (default\n"
	    "                          127.0.0.1:15020, every 500ms, for up to 60s); exit 1\n"
	    "                          and the last answer or error if it never does. Needs\n"
	    "                          no shell: a postStart hook (wait-ready --help)\n"
	    "\n"
	    "Kubernetes (no sidecar needed):\n"
	    "  inject [-f FILE] [--config FILE] [--trust-domain TD] [--classic] ...\n"
	    "                          adds the sidecar to the pods of Kubernetes objects\n"
	    "                          read from FILE or stdin, written to stdout\n"
	    "                          (inject --help)\n"
	    "  inject --serve LISTEN --cert FILE --key FILE [--config FILE] [--admin LISTEN]\n"
	    "                          the same as a mutating admission webhook over HTTPS\n"
	    "                          (inject --serve --help)\n"
	    "\n"
	    "Development CA and control plane (not for production keys):\n");
	ktlsctl_ca_usage(out);
	fprintf(
	    out,
	    "  agent --ca DIR --id SPIFFE_ID [--sidecar SOCKET] [--ttl DUR] [--once]\n"
	    "                          the built-in control plane: asks the sidecar for a CSR,\n"
	    "                          signs it, pushes chain and bundle; renews at half the\n"
	    "                          TTL (default 1h); retries with backoff while the\n"
	    "                          sidecar is unreachable. DIR: a signer set (ca\n"
	    "                          export-signer); it warns when DIR holds a root key.\n"
	    "                          Exits 0 once the sidecar is draining or has exited\n"
	    "                          (so that a Job's pod completes)\n"
	    "\n"
	    "Options:\n"
	    "  --socket PATH      control socket (env KTLSCTL_SOCKET);\n"
	    "                     default " KS_CONTROL_SOCKET_DEFAULT "\n"
	    "  --timeout DURATION how long to wait for the sidecar; default 5s\n"
	    "  --sidecar-uid UID  the uid the sidecar runs as (env KTLSCTL_SIDECAR_UID);\n"
	    "                     default: ktlsctl's own. ktlsctl sends nothing to a socket\n"
	    "                     served by another uid than this one or root (exit 4)\n"
	    "  --help, --version\n"
	    "\n"
	    "The socket must be mode 0600 (ktlsctl refuses to use one that group or\n"
	    "others can reach). DURATION is like 500ms, 10s, 5m, 1h.\n"
	    "\n"
	    "Exit status: 0 done; 1 the sidecar answered with an error (the update was\n"
	    "rejected and nothing changed); 2 usage error; 3 the sidecar could not be\n"
	    "reached, answered garbage, or its socket is unsafe; 4 the sidecar does not\n"
	    "allow this uid (--control-allow-uid), or the socket is served by an\n"
	    "unexpected uid (--sidecar-uid); 5 a local file or the CA failed.\n");
}

static void print_status(const Ktls__Control__V1__Status *s)
{
	const Ktls__Control__V1__Counters *c = s->counters;
	const Ktls__Control__V1__KtlsCapability *k = s->ktls;

	printf("sidecar         ktls-sidecar %s\n", s->version);
	if (s->identity) {
		long long left = (long long)s->identity->not_after_unix - (long long)time(NULL);

		printf("identity        %s\n", s->identity->spiffe_id);
		printf("serial          %s\n", s->identity->serial);
		long long a = left < 0 ? -left : left;

		if (a >= 3600)
			printf("expires         %s (%s%lldh%02lldm)\n", s->identity->not_after,
			       left < 0 ? "expired " : "in ", a / 3600, (a % 3600) / 60);
		else
			printf("expires         %s (%s%lldm%02llds)\n", s->identity->not_after,
			       left < 0 ? "expired " : "in ", a / 60, a % 60);
	} else {
		printf("identity        none\n");
	}
	printf("trust bundle    %zu certificate%s\n", s->n_bundle_sha256,
	       s->n_bundle_sha256 == 1 ? "" : "s");
	for (size_t i = 0; i < s->n_bundle_sha256; i++)
		printf("                sha256 %s\n", s->bundle_sha256[i]);
	for (size_t i = 0; i < s->n_federated_bundles; i++) {
		const Ktls__Control__V1__FederatedBundle *f = s->federated_bundles[i];

		printf("federated       %s: %zu certificate%s\n", f->trust_domain,
		       f->n_bundle_sha256, f->n_bundle_sha256 == 1 ? "" : "s");
		for (size_t j = 0; j < f->n_bundle_sha256; j++)
			printf("                sha256 %s\n", f->bundle_sha256[j]);
	}
	if (s->ticket_keys) {
		const Ktls__Control__V1__TicketKeys *t = s->ticket_keys;

		printf("ticket keys     %zu, %s\n", t->n_names,
		       t->pushed ? "pushed (SetTicketKeys)" : "our own (rotated here)");
		for (size_t i = 0; i < t->n_names; i++)
			printf("                name %s%s\n", t->names[i],
			       i == 0 ? " (seals new tickets)" : "");
	} else {
		printf("ticket keys     none (--session-resumption off)\n");
	}
	if (k)
		printf("kTLS            mode %s; aes128gcm %s, aes256gcm %s, chacha20poly1305 %s, "
		       "rekey %s (%s)\n",
		       k->mode, k->aes128gcm ? "yes" : "no", k->aes256gcm ? "yes" : "no",
		       k->chacha20poly1305 ? "yes" : "no", k->rekey ? "yes" : "no", k->detail);
	printf("event loop      %s, %u worker%s\n", s->io_backend, s->workers,
	       s->workers == 1 ? "" : "s");
	printf("state           %s\n", s->draining ? "draining" : "serving");
	if (c) {
		printf("connections     %llu open, %llu refused at handshake\n",
		       (unsigned long long)c->connections_open,
		       (unsigned long long)c->handshakes_rejected);
		if (c->n_handshakes_rejected_by_reason) {
			printf("refused by      ");
			for (size_t i = 0; i < c->n_handshakes_rejected_by_reason; i++)
				printf(
				    "%s%s %llu", i ? ", " : "",
				    c->handshakes_rejected_by_reason[i]->reason,
				    (unsigned long long)c->handshakes_rejected_by_reason[i]->count);
			printf("\n");
		}
		printf("kernel path     %llu closed, %llu bytes, %llu through userspace\n",
		       (unsigned long long)c->kernel_connections,
		       (unsigned long long)c->kernel_bytes,
		       (unsigned long long)c->kernel_userspace_bytes);
		printf("userspace path  %llu closed, %llu bytes, %llu through userspace\n",
		       (unsigned long long)c->userspace_connections,
		       (unsigned long long)c->userspace_bytes,
		       (unsigned long long)c->userspace_userspace_bytes);
		printf("admission       %llu shed (handshake budget), %llu refused (max "
		       "connections), %llu refused (per source), %llu accept failures\n",
		       (unsigned long long)c->shed_max_handshakes,
		       (unsigned long long)c->refused_max_connections,
		       (unsigned long long)c->refused_max_handshakes_per_source,
		       (unsigned long long)c->accept_failed);
		if (c->plaintext_connections)
			printf("plaintext       %llu closed, %llu bytes (permissive inbound, no "
			       "TLS)\n",
			       (unsigned long long)c->plaintext_connections,
			       (unsigned long long)c->plaintext_bytes);
	}
}

static void print_connections(const Ktls__Control__V1__ConnectionList *l)
{
	printf("%-8s %-8s %-10s %-22s %-24s %12s %12s %9s  %s\n", "ID", "DIR", "LAYER", "PEER",
	       "CIPHER", "TO_PEER", "FROM_PEER", "AGE_S", "PEER_ID");
	for (size_t i = 0; i < l->n_connections; i++) {
		const Ktls__Control__V1__Connection *c = l->connections[i];

		printf("%-8llu %-8s %-10s %-22s %-24s %12llu %12llu %9.1f  %s\n",
		       (unsigned long long)c->id, c->direction, c->record_layer, c->peer_addr,
		       c->cipher, (unsigned long long)c->bytes_to_peer,
		       (unsigned long long)c->bytes_from_peer, (double)c->age_ms / 1000.0,
		       c->peer_id[0] ? c->peer_id : "-");
	}
}

/* ktlsctl ready: the readiness probe's verdict. */
static int ready(const Ktls__Control__V1__Status *s)
{
	if (!s->identity) {
		printf("not ready: no identity yet (waiting for the control plane)\n");
		return EX_ANSWER;
	}
	if (s->identity->not_after_unix <= (int64_t)time(NULL)) {
		printf("not ready: identity %s expired at %s\n", s->identity->spiffe_id,
		       s->identity->not_after);
		return EX_ANSWER;
	}
	if (s->draining) {
		printf("not ready: draining\n");
		return EX_ANSWER;
	}
	printf("ready: %s until %s\n", s->identity->spiffe_id, s->identity->not_after);
	return EX_OK;
}

/* set-policy's message and the memory behind it. */
struct policy_args {
	Ktls__Control__V1__SetPolicy sp;
	Ktls__Control__V1__OutboundPolicy *out;
	Ktls__Control__V1__OutboundPolicy **outp;
	Ktls__Control__V1__DestinationPolicy *dest;
	Ktls__Control__V1__DestinationPolicy **destp;
	char **strs;
	size_t nstrs;
};

static char *keep(struct policy_args *pa, char *s)
{
	char **n = realloc(pa->strs, (pa->nstrs + 1) * sizeof(*n));

	if (!n || !s) {
		free(s);
		return NULL;
	}
	pa->strs = n;
	pa->strs[pa->nstrs++] = s;
	return s;
}

static void policy_args_free(struct policy_args *pa)
{
	for (size_t i = 0; i < pa->sp.n_outbound; i++)
		free(pa->out[i].spki_sha256);
	for (size_t i = 0; i < pa->nstrs; i++)
		free(pa->strs[i]);
	free(pa->strs);
	free(pa->out);
	free(pa->outp);
	free(pa->dest);
	free(pa->destp);
	free(pa->sp.inbound_allow);
}

/* LISTEN[,id=PATTERN][,pin=HEX]... */
static int parse_outbound(struct policy_args *pa, const char *arg)
{
	Ktls__Control__V1__OutboundPolicy *o;
	char *copy = keep(pa, strdup(arg)), *save = NULL, *tok;
	size_t n = pa->sp.n_outbound;

	if (!copy)
		return -ENOMEM;
	o = realloc(pa->out, (n + 1) * sizeof(*o));
	if (!o)
		return -ENOMEM;
	pa->out = o;
	o = &pa->out[n];
	ktls__control__v1__outbound_policy__init(o);
	pa->sp.n_outbound++;
	o->destination = strtok_r(copy, ",", &save);
	if (!o->destination)
		return -EINVAL;
	while ((tok = strtok_r(NULL, ",", &save)) != NULL) {
		if (strncmp(tok, "id=", 3) == 0) {
			o->server_id = tok + 3;
		} else if (strncmp(tok, "pin=", 4) == 0) {
			char **p = realloc(o->spki_sha256, (o->n_spki_sha256 + 1) * sizeof(*p));

			if (!p)
				return -ENOMEM;
			o->spki_sha256 = p;
			p[o->n_spki_sha256++] = tok + 4;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

/* DEST=PATTERN (the sidecar checks both halves). */
static int parse_dest(struct policy_args *pa, const char *arg)
{
	Ktls__Control__V1__DestinationPolicy *d;
	char *copy = keep(pa, strdup(arg)), *eq;
	size_t n = pa->sp.n_destinations;

	if (!copy)
		return -ENOMEM;
	eq = strrchr(copy, '=');
	if (!eq || eq == copy)
		return -EINVAL;
	d = realloc(pa->dest, (n + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	pa->dest = d;
	d = &pa->dest[n];
	ktls__control__v1__destination_policy__init(d);
	*eq = '\0';
	d->destination = copy;
	d->server_id = eq + 1;
	pa->sp.n_destinations++;
	return 0;
}

static int parse_set_policy(struct policy_args *pa, int argc, char **argv, int i)
{
	ktls__control__v1__set_policy__init(&pa->sp);
	for (; i < argc; i++) {
		const char *v;

		if ((v = ktlsctl_opt_value(argc, argv, &i, "--allow")) != NULL) {
			char **a = realloc(pa->sp.inbound_allow,
					   (pa->sp.n_inbound_allow + 1) * sizeof(*a));

			if (!a)
				return EX_LOCAL;
			pa->sp.inbound_allow = a;
			a[pa->sp.n_inbound_allow++] = (char *)v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--outbound")) != NULL) {
			int rc = parse_outbound(pa, v);

			if (rc == -EINVAL)
				return ktlsctl_usage_error("set-policy: --outbound '%s': expected "
							   "LISTEN[,id=PATTERN][,pin=HEX]...",
							   v);
			if (rc < 0)
				return EX_LOCAL;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--destination")) != NULL) {
			int rc = parse_dest(pa, v);

			if (rc == -EINVAL)
				return ktlsctl_usage_error(
				    "set-policy: --destination '%s': expected "
				    "DEST=PATTERN",
				    v);
			if (rc < 0)
				return EX_LOCAL;
		} else if (strcmp(argv[i], "--refuse-unknown-destinations") == 0) {
			pa->sp.refuse_unknown_destinations = true;
		} else {
			return ktlsctl_usage_error("set-policy: unknown argument '%s'", argv[i]);
		}
	}
	if (pa->sp.n_destinations) {
		pa->destp = calloc(pa->sp.n_destinations, sizeof(*pa->destp));
		if (!pa->destp)
			return EX_LOCAL;
		for (size_t k = 0; k < pa->sp.n_destinations; k++)
			pa->destp[k] = &pa->dest[k];
	}
	pa->sp.destinations = pa->destp;
	if (pa->sp.n_outbound) {
		pa->outp = calloc(pa->sp.n_outbound, sizeof(*pa->outp));
		if (!pa->outp)
			return EX_LOCAL;
		for (size_t k = 0; k < pa->sp.n_outbound; k++)
			pa->outp[k] = &pa->out[k];
	}
	pa->sp.outbound = pa->outp;
	return EX_OK;
}

/* One command's request, and what it owns until the answer is in. */
struct cmd_ctx {
	Ktls__Control__V1__Request req;
	Ktls__Control__V1__GetStatus gs;
	Ktls__Control__V1__ListConnections lc;
	Ktls__Control__V1__Drain dr;
	Ktls__Control__V1__SetIdentity si;
	Ktls__Control__V1__SetTrustBundle sb;
	Ktls__Control__V1__SetCrl sc;
	Ktls__Control__V1__SetTicketKeys tk;
	struct ktlsctl_ticket_keys keys; /* tk's keys, in wiped memory */
	struct policy_args pa;
	char *files[3]; /* PEM read from files: secret memory (a key among them) */
	const char *cmd;
};

/* Builds ctx->req from argv[i..argc); returns an exit code (EX_OK to send it). */
typedef int (*cmd_build_fn)(struct cmd_ctx *ctx, int argc, char **argv, int i);

static int build_query(struct cmd_ctx *ctx, int argc, char **argv, int i)
{
	if (i < argc)
		return ktlsctl_usage_error("%s takes no arguments (got '%s')", ctx->cmd, argv[i]);
	if (strcmp(ctx->cmd, "connections") == 0) {
		ctx->req.op_case = KTLS__CONTROL__V1__REQUEST__OP_LIST_CONNECTIONS;
		ctx->req.list_connections = &ctx->lc;
	} else {
		ctx->req.op_case = KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS;
		ctx->req.get_status = &ctx->gs;
	}
	return EX_OK;
}

static int build_drain(struct cmd_ctx *ctx, int argc, char **argv, int i)
{
	for (; i < argc; i++) {
		const char *v = ktlsctl_opt_value(argc, argv, &i, "--timeout");

		if (!v || ks_parse_duration_ms(v, &ctx->dr.timeout_ms) < 0)
			return ktlsctl_usage_error(
			    "drain: bad argument '%s' (drain [--timeout DURATION])", argv[i]);
	}
	ctx->req.op_case = KTLS__CONTROL__V1__REQUEST__OP_DRAIN;
	ctx->req.drain = &ctx->dr;
	return EX_OK;
}

static int build_push_identity(struct cmd_ctx *ctx, int argc, char **argv, int i)
{
	static const char *const names[3] = {"--cert", "--key", "--bundle"};

	for (; i < argc; i++) {
		const char *v = NULL;
		int k;

		for (k = 0; k < 3 && !v; k++)
			v = ktlsctl_opt_value(argc, argv, &i, names[k]);
		if (!v)
			return ktlsctl_usage_error("push-identity: unknown argument '%s'", argv[i]);
		ks_secret_free(ctx->files[k - 1]);
		ctx->files[k - 1] = NULL;
		if (ktlsctl_read_file(v, &ctx->files[k - 1]) < 0)
			return EX_LOCAL;
	}
	if (!ctx->files[0])
		return ktlsctl_usage_error("%s", "push-identity: --cert FILE is required");
	ctx->si.chain_pem = ctx->files[0];
	ctx->si.key_pem = ctx->files[1] ? ctx->files[1] : (char *)"";
	ctx->si.bundle_pem = ctx->files[2] ? ctx->files[2] : (char *)"";
	ctx->req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_IDENTITY;
	ctx->req.set_identity = &ctx->si;
	return EX_OK;
}

static int build_push_crl(struct cmd_ctx *ctx, int argc, char **argv, int i)
{
	if (i + 1 != argc)
		return ktlsctl_usage_error("%s takes one argument: FILE or --none", ctx->cmd);
	if (strcmp(argv[i], "--none") == 0)
		ctx->files[0] = ks_secret_strdup("");
	else if (ktlsctl_read_file(argv[i], &ctx->files[0]) < 0)
		return EX_LOCAL;
	if (!ctx->files[0])
		return EX_LOCAL;
	ctx->sc.crl_pem = ctx->files[0];
	ctx->req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_CRL;
	ctx->req.set_crl = &ctx->sc;
	return EX_OK;
}

static int build_push_bundle(struct cmd_ctx *ctx, int argc, char **argv, int i)
{
	const char *file = NULL, *v;

	for (; i < argc; i++) {
		if ((v = ktlsctl_opt_value(argc, argv, &i, "--trust-domain")) != NULL)
			ctx->sb.trust_domain = (char *)v;
		else if (!file)
			file = argv[i];
		else
			return ktlsctl_usage_error("push-bundle: unexpected argument '%s'",
						   argv[i]);
	}
	if (!file)
		return ktlsctl_usage_error("%s", "push-bundle [--trust-domain TD] FILE|--none");
	if (strcmp(file, "--none") == 0) {
		if (!ctx->sb.trust_domain[0])
			return ktlsctl_usage_error("%s",
						   "push-bundle: --none ends a federation: it "
						   "needs --trust-domain (our own bundle "
						   "cannot be empty)");
		ctx->files[0] = ks_secret_strdup("");
	} else if (ktlsctl_read_file(file, &ctx->files[0]) < 0) {
		return EX_LOCAL;
	}
	if (!ctx->files[0])
		return EX_LOCAL;
	ctx->sb.bundle_pem = ctx->files[0];
	ctx->req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_TRUST_BUNDLE;
	ctx->req.set_trust_bundle = &ctx->sb;
	return EX_OK;
}

static int build_set_policy(struct cmd_ctx *ctx, int argc, char **argv, int i)
{
	int rc = parse_set_policy(&ctx->pa, argc, argv, i);

	if (rc != EX_OK)
		return rc;
	ctx->req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_POLICY;
	ctx->req.set_policy = &ctx->pa.sp;
	return EX_OK;
}

static int build_set_ticket_keys(struct cmd_ctx *ctx, int argc, char **argv, int i)
{
	char err[256];

	if (i + 1 != argc)
		return ktlsctl_usage_error("%s takes one argument: FILE or --clear", ctx->cmd);
	ctx->req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_TICKET_KEYS;
	ctx->req.set_ticket_keys = &ctx->tk;
	if (strcmp(argv[i], "--clear") == 0)
		return EX_OK; /* no keys: the sidecar's own again */
	if (ktlsctl_read_file(strcmp(argv[i], "-") == 0 ? "/dev/stdin" : argv[i], &ctx->files[0]) <
	    0)
		return EX_LOCAL;
	if (ktlsctl_ticket_keys_parse(ctx->files[0], &ctx->keys, err, sizeof(err)) < 0) {
		ktlsctl_log("%s: %s", argv[i], err);
		return EX_LOCAL;
	}
	ctx->tk.keys = ctx->keys.ptrs;
	ctx->tk.n_keys = ctx->keys.n;
	return EX_OK;
}

static const struct {
	const char *name;
	cmd_build_fn build;
} commands[] = {
    {"status", build_query},
    {"connections", build_query},
    {"ready", build_query},
    {"drain", build_drain},
    {"push-identity", build_push_identity},
    {"push-bundle", build_push_bundle},
    {"push-crl", build_push_crl},
    {"set-policy", build_set_policy},
    {"set-ticket-keys", build_set_ticket_keys},
};

/* Prints a successful answer as the command wants it; returns the exit code. */
static int print_answer(const struct cmd_ctx *ctx, const Ktls__Control__V1__Response *resp)
{
	if (ctx->req.op_case == KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS) {
		if (resp->result_case != KTLS__CONTROL__V1__RESPONSE__RESULT_STATUS) {
			ktlsctl_log("answer carries no status");
			return EX_UNREACHABLE;
		}
		if (strcmp(ctx->cmd, "ready") == 0)
			return ready(resp->status);
		print_status(resp->status);
		return EX_OK;
	}
	if (ctx->req.op_case == KTLS__CONTROL__V1__REQUEST__OP_LIST_CONNECTIONS) {
		if (resp->result_case != KTLS__CONTROL__V1__RESPONSE__RESULT_CONNECTIONS) {
			ktlsctl_log("answer carries no connection list");
			return EX_UNREACHABLE;
		}
		print_connections(resp->connections);
		return EX_OK;
	}
	printf("%s\n", resp->message);
	return EX_OK;
}

/* Runs one sidecar command: build, call, print. */
static int run_command(const struct ktlsctl_target *to, const char *cmd, int argc, char **argv,
		       int i)
{
	struct cmd_ctx ctx = {.req = KTLS__CONTROL__V1__REQUEST__INIT,
			      .gs = KTLS__CONTROL__V1__GET_STATUS__INIT,
			      .lc = KTLS__CONTROL__V1__LIST_CONNECTIONS__INIT,
			      .dr = KTLS__CONTROL__V1__DRAIN__INIT,
			      .si = KTLS__CONTROL__V1__SET_IDENTITY__INIT,
			      .sb = KTLS__CONTROL__V1__SET_TRUST_BUNDLE__INIT,
			      .sc = KTLS__CONTROL__V1__SET_CRL__INIT,
			      .tk = KTLS__CONTROL__V1__SET_TICKET_KEYS__INIT,
			      .cmd = cmd};
	Ktls__Control__V1__Response *resp = NULL;
	cmd_build_fn build = NULL;
	int rc;

	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]) && !build; k++)
		if (strcmp(cmd, commands[k].name) == 0)
			build = commands[k].build;
	if (!build)
		return ktlsctl_usage_error("unknown command '%s' (see --help)", cmd);
	ctx.req.id = (uint64_t)getpid();
	rc = build(&ctx, argc, argv, i);
	if (rc == EX_OK)
		rc = ktlsctl_call(to, &ctx.req, &resp);
	if (rc == EX_OK)
		rc = resp->code != KTLS__CONTROL__V1__CODE__CODE_OK ? ktlsctl_answer_error(resp)
								    : print_answer(&ctx, resp);
	if (resp)
		ktls__control__v1__response__free_unpacked(resp, NULL);
	for (int k = 0; k < 3; k++)
		ks_secret_free(ctx.files[k]);
	ktlsctl_ticket_keys_free(&ctx.keys);
	policy_args_free(&ctx.pa);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {"sidecar-uid", required_argument, NULL, 'u'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct ktlsctl_target to = {.path = getenv("KTLSCTL_SOCKET"), .timeout_ms = 5000};
	const char *uid = getenv("KTLSCTL_SIDECAR_UID");
	const char *cmd;
	unsigned long v;
	int c;

	if (!to.path || !*to.path)
		to.path = KS_CONTROL_SOCKET_DEFAULT;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			to.path = optarg;
			break;
		case 't':
			if (ks_parse_duration_ms(optarg, &to.timeout_ms) < 0 || !to.timeout_ms)
				return ktlsctl_usage_error(
				    "--timeout '%s': expected a duration like 5s", optarg);
			break;
		case 'u':
			uid = optarg;
			break;
		case 'h':
			usage(stdout);
			return EX_OK;
		case 'V':
			printf("ktlsctl %s\n", ks_version());
			return EX_OK;
		default:
			return ktlsctl_usage_error("%s", "unknown option");
		}
	}
	if (uid && *uid) {
		if (ks_parse_uint(uid, UINT32_MAX - 1, &v) < 0)
			return ktlsctl_usage_error("--sidecar-uid '%s': expected a numeric uid",
						   uid);
		to.sidecar_uid = (uid_t)v;
		to.sidecar_uid_set = true;
	}
	if (optind >= argc)
		return ktlsctl_usage_error("%s", "no command (see --help)");
	if (strlen(to.path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return ktlsctl_usage_error("--socket '%s': path too long", to.path);
	cmd = argv[optind++];
	if (strcmp(cmd, "wait-ready") == 0)
		return ktlsctl_wait_ready_main(argc - optind, argv + optind);
	if (strcmp(cmd, "inject") == 0)
		return ktlsctl_inject_wants_serve(argc - optind, argv + optind)
			   ? ktlsctl_inject_serve_main(argc - optind, argv + optind)
			   : ktlsctl_inject_main(argc - optind, argv + optind);
	if (strcmp(cmd, "ca") == 0)
		return ktlsctl_ca_main(argc - optind, argv + optind);
	if (strcmp(cmd, "gen-ticket-key") == 0)
		return ktlsctl_gen_ticket_key_main(argc - optind, argv + optind);
	if (strcmp(cmd, "agent") == 0)
		return ktlsctl_agent_main(&to, argc - optind, argv + optind);
	return run_command(&to, cmd, argc, argv, optind);
}
