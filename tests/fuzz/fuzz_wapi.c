/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: what a Workload API server sends, from the bytes of a
 * stream's DATA to the identity slot: the gRPC framing decoder
 * (wapi/grpc.c), then each message through protobuf-c's X509SVIDResponse
 * decoding, the DER certificate and PKCS#8 key parsing and the federated
 * bundles' trust domains (wapi/svid.c) into ks_identity_build. The first
 * input byte is the size of the chunks the rest is fed in (HTTP/2 cuts DATA
 * anywhere). Checked properties:
 *   - nothing crashes, leaks or reads out of bounds;
 *   - a refused response leaves the slot exactly as it was (same identity,
 *     same generation), with a message;
 *   - the decoder hands over no message larger than its limit.
 *
 *   make fuzz                            (FUZZ_SECS, default 300)
 *   build/fuzz/fuzz_wapi tests/fuzz/corpus/wapi
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "tls/identity.h"
#include "wapi/grpc.h"
#include "wapi/svid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_MSG 8192

static struct ks_tls_opts tls = {.min_version = TLS1_3_VERSION};
static struct ks_identity_slot slot;
static int ready;

static int on_message(void *arg, const uint8_t *msg, size_t len)
{
	struct ks_identity *before = slot.cur;
	uint64_t gen = slot.gen;
	struct ks_wapi_applied a;
	enum ks_ident_reason reason;
	char err[512] = "", kept[80];

	(void)arg;
	if (len > FUZZ_MAX_MSG)
		abort();
	if (ks_wapi_apply(&tls, &slot, msg, len, &a, &reason, err, sizeof(err), kept,
			  sizeof(kept)) < 0) {
		if (slot.cur != before || slot.gen != gen || !err[0])
			abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ks_grpc_dec d;
	char err[256];
	size_t chunk;

	if (!ready) {
		struct ks_ident_parts none = {0};
		struct ks_identity *id;
		enum ks_ident_reason reason;

		OPENSSL_init_ssl(0, NULL);
		if (ks_identity_build(&tls, &none, &id, &reason, err, sizeof(err)) < 0)
			abort();
		ks_identity_slot_init(&slot, id);
		ready = 1;
	}
	if (size < 1)
		return 0;
	chunk = (size_t)data[0] + 1;
	data++;
	size--;
	ks_grpc_dec_init(&d, FUZZ_MAX_MSG);
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (ks_grpc_dec_feed(&d, data + off, n, on_message, NULL, err, sizeof(err)) < 0)
			break;
	}
	ks_grpc_dec_fini(&d);
	return 0;
}
