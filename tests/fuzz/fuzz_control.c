/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the control API's frame decoding and request handling.
 * The input is a byte stream as a client would send it: 4-byte big-endian
 * lengths, each followed by that many bytes of request. Frames over the
 * limit end the stream, as the server does. Every response must be a
 * well-formed frame that decodes as a Response.
 *
 *   make fuzz                       (FUZZ_SECS, default 300)
 *   build/fuzz/fuzz_control tests/fuzz/corpus/control
 */
#include <stdint.h>
#include <stdlib.h>

#include "control.h"
#include "ktls/control/v1/control.pb-c.h"

#define FUZZ_MAX_FRAME (1u << 16)

static int fuzz_drain(struct ks_ctl_env *env, uint32_t timeout_ms)
{
	(void)env;
	(void)timeout_ms;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ks_ctl_env env = {.drain = fuzz_drain};

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
	return 0;
}
