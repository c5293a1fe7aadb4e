/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One TLS 1.3 record sealed in userspace (RFC 8446 §5.2): a fatal alert on
 * an established connection. OpenSSL has no call that sends a chosen alert
 * once the handshake is done; SSL_shutdown sends close_notify, which a
 * client reads as a clean, empty answer (curl: "Empty reply from server").
 * When the app behind an inbound connection is down, the client must see an
 * error instead, so the sidecar seals internal_error itself, with the
 * traffic secret the keylog callback captured and the record number the
 * message callback counted (tls/ktls.h), then resets the connection.
 */
#ifndef KS_TLS_RECORD_H
#define KS_TLS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "tls/ktls.h"

/* Header, alert (level, description), inner content type, AEAD tag. */
#define KS_TLS13_ALERT_RECORD_LEN (5 + 2 + 1 + 16)

/*
 * Seals a fatal alert `desc` (RFC 8446 §6) as record number seq under the
 * application traffic secret of our sending direction. Returns 0 or -errno
 * (-EINVAL for a suite it does not know).
 */
int ks_tls13_seal_alert(const struct ks_ktls_suite *suite, const uint8_t *secret, size_t secret_len,
			uint64_t seq, uint8_t desc, uint8_t out[KS_TLS13_ALERT_RECORD_LEN]);

#endif
