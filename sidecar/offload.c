/* SPDX-License-Identifier: Apache-2.0 */
#include "offload.h"

#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "log.h"

static const char *ks_offload_reason = "kernel TLS offload not built in yet";

/* Written once by the main thread before the workers start. */
void ks_offload_probe(void)
{
	char ulps[256] = "", words[256], *save = NULL;
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
	bool has_tls = false;

	if (f) {
		if (fgets(ulps, sizeof(ulps), f))
			ulps[strcspn(ulps, "\n")] = '\0';
		fclose(f);
	}
	/* The list only shows loaded ULPs: "tls" may still autoload (tls.rst). */
	snprintf(words, sizeof(words), "%s", ulps);
	for (char *t = strtok_r(words, " ", &save); t; t = strtok_r(NULL, " ", &save))
		has_tls |= strcmp(t, "tls") == 0;
	if (!has_tls)
		ks_offload_reason = "kernel tls ULP not loaded (tcp_available_ulp); "
				    "kernel TLS offload not built in yet";
	ks_info("event=ktls_probe available_ulp=\"%s\" record_layer=userspace reason=\"%s\"", ulps,
		ks_offload_reason);
}

int ks_offload_handoff(struct ks_conn *c)
{
	/* The kernel can only take over if OpenSSL holds no record it read
	 * past the handshake: those bytes have left the socket for good
	 * (ktls-facts.md). Our BIO setup guarantees it; a violation is a bug. */
	if (SSL_has_pending(c->ssl))
		ks_error("event=read_past_handshake conn=%llu pending=%d detail=\"OpenSSL buffered "
			 "bytes beyond the handshake; kernel TLS could not take over\"",
			 (unsigned long long)c->id, SSL_pending(c->ssl));
	c->rl = KS_RL_USERSPACE;
	c->rl_reason = ks_offload_reason;
	return 0;
}
