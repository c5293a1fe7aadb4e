/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the control API's frame decoding and request handling.
 * The input is a byte stream as a client would send it: 4-byte big-endian
 * lengths, each followed by that many bytes of request. Frames over the
 * limit end the stream, as the server does. Every response must be a
 * well-formed frame that decodes as a Response. The updates (SetIdentity,
 * SetTrustBundle, SetCrl, SetPolicy, CreateCsr) run against a real identity
 * slot, so the PEM parsers and the validation are fuzzed too; the corpus
 * holds real certificates, keys and CRLs from the dev CA.
 *
 *   make fuzz                       (FUZZ_SECS, default 300)
 *   build/fuzz/fuzz_control tests/fuzz/corpus/control
 */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "control.h"
#include "identity.h"
#include "log.h"
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
static struct ks_config cfg = {.routes = &route,
			       .nroutes = 1,
			       .tls_min_version = TLS1_3_VERSION,
			       .spiffe_id = (char *)"spiffe://example.org/ns/a/sa/web"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ks_ctl_env env = {.drain = fuzz_drain, .cfg = &cfg};
	struct ks_ident_parts none = {0};
	struct ks_identity_slot slot;
	struct ks_identity *id;
	enum ks_ident_reason reason;
	char err[256];

	/* Each input starts from a sidecar with no identity yet: updates run
	 * through the real validation and publication, state included. */
	if (!route.listen.len) {
		/* Every accepted update logs a line: noise at a million runs. */
		ks_log_set_level(KS_LOG_ERROR);
		if (ks_addr_parse(route.listen_str, &route.listen, err, sizeof(err)) < 0)
			abort();
	}
	if (ks_identity_build(&cfg, &none, &id, &reason, err, sizeof(err)) < 0)
		abort();
	ks_identity_slot_init(&slot, id);
	env.ident = &slot;

	while (size >= KS_CTL_HDR) {
		uint32_t len = ks_ctl_frame_len(data);
		Ktls__Control__V1__Response *r;
		uint8_t *out;
		size_t outlen;

		data += KS_CTL_HDR;
		size -= KS_CTL_HDR;
		if (len > FUZZ_MAX_FRAME || len > size)
			break;
		if (ks_ctl_handle(&env, data, len, &out, &outlen) < 0)
			abort();
		if (outlen < KS_CTL_HDR || ks_ctl_frame_len(out) != outlen - KS_CTL_HDR)
			abort();
		r = ktls__control__v1__response__unpack(NULL, outlen - KS_CTL_HDR,
							out + KS_CTL_HDR);
		if (!r)
			abort();
		ktls__control__v1__response__free_unpacked(r, NULL);
		free(out);
		data += len;
		size -= len;
	}
	ks_ctl_env_fini(&env);
	ks_identity_slot_fini(&slot);
	return 0;
}
