/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the control API's frame reader and request handling,
 * the same code the server runs (control/frame.c, control/ops.c). The input
 * is a byte stream as a client would send it: 4-byte big-endian lengths,
 * each followed by that many bytes of request, fed to the frame reader in
 * pieces whose sizes come from the input too (a socket returns what it
 * has). A frame over the limit ends the stream, as the server does. Every
 * response must be a well-formed frame that decodes as a Response. The updates (SetIdentity,
 * SetTrustBundle, SetCrl, SetPolicy, CreateCsr) run against a real identity
 * slot, so the PEM parsers and the validation are fuzzed too; the corpus
 * holds real certificates, keys and CRLs from the dev CA. SetTicketKeys
 * runs against a real ticket ring, put back on keys of its own before each
 * input.
 *
 *   make fuzz                       (FUZZ_SECS, default 300)
 *   build/fuzz/fuzz_control tests/fuzz/corpus/control
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "control/control.h"
#include "control/frame.h"
#include "dataplane/settings.h"
#include "tls/identity.h"
#include "tls/resume.h"
#include "ktls/control/v1/control.pb-c.h"

#define FUZZ_MAX_FRAME (1u << 16)

static int fuzz_drain(struct ks_ctl_env *env, uint32_t timeout_ms)
{
	(void)env;
	(void)timeout_ms;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One outbound route, so SetPolicy can get past its destination check. */
static struct ks_route route = {.dir = KS_OUTBOUND, .listen_str = "127.0.0.1:15001"};
static struct ks_dp_config dp = {.routes = &route, .nroutes = 1};
static struct ks_tls_opts tls = {.min_version = TLS1_3_VERSION,
				 .spiffe_id = (char *)"spiffe://example.org/ns/a/sa/web"};
/* Session resumption on (tls.res), as by default. */
static struct ks_resumption res;

/* One whole frame: handle it and check the response. */
static void answer(struct ks_ctl_env *env, const uint8_t *req, size_t len)
{
	Ktls__Control__V1__Response *r;
	uint8_t *out;
	size_t outlen;

	if (ks_ctl_handle(env, req, len, &out, &outlen) < 0)
		abort();
	if (outlen < KS_CTL_HDR || ks_ctl_frame_len(out) != outlen - KS_CTL_HDR)
		abort();
	r = ktls__control__v1__response__unpack(NULL, outlen - KS_CTL_HDR, out + KS_CTL_HDR);
	if (!r)
		abort();
	ktls__control__v1__response__free_unpacked(r, NULL);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ks_ctl_env env = {.drain = fuzz_drain, .dp = &dp, .tls = &tls};
	struct ks_ident_parts none = {0};
	struct ks_identity_slot slot;
	struct ks_identity *id;
	enum ks_ident_reason reason;
	struct ks_frame_rd rd;
	enum ks_frame_st st = KS_FRAME_MORE;
	uint8_t chunk = 0;
	char err[256];

	/* Each input starts from a sidecar with no identity yet: updates run
	 * through the real validation and publication, state included. */
	if (!route.listen.len) {
		/* Every accepted update logs a line: noise at a million runs. */
		ks_log_set_level(KS_LOG_ERROR);
		if (ks_addr_parse(route.listen_str, &route.listen, err, sizeof(err)) < 0)
			abort();
		if (ks_resumption_init(&res, 3600) < 0)
			abort();
		tls.res = &res;
	}
	/* Keys of our own again: no input sees another's pushed keys. */
	if (ks_ticket_ring_set(&res.ring, NULL, 0, err, sizeof(err)) < 0)
		abort();
	if (ks_identity_build(&tls, &none, &id, &reason, err, sizeof(err)) < 0)
		abort();
	ks_identity_slot_init(&slot, id);
	env.ident = &slot;
	ks_frame_rd_init(&rd, FUZZ_MAX_FRAME);

	/* The first byte sets how much each "read" returns (1-8 bytes, or all
	 * that is asked for), so split headers and bodies are covered. */
	if (size) {
		chunk = data[0] & 15;
		data++;
		size--;
	}
	while (size && st == KS_FRAME_MORE) {
		uint8_t *p;
		size_t want, n;

		ks_frame_space(&rd, &p, &want);
		n = chunk && chunk < 9 && chunk < want ? chunk : want;
		if (n > size)
			n = size;
		memcpy(p, data, n);
		data += n;
		size -= n;
		st = ks_frame_advance(&rd, n);
		if (st == KS_FRAME_READY) {
			answer(&env, rd.body, rd.len);
			ks_frame_next(&rd);
			st = KS_FRAME_MORE;
		}
	}
	ks_frame_rd_fini(&rd);
	ks_ctl_env_fini(&env);
	ks_identity_slot_fini(&slot);
	return 0;
}
