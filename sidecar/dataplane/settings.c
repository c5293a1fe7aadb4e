/* SPDX-License-Identifier: Apache-2.0 */
#include "dataplane/settings.h"

const char *ks_dir_name(enum ks_dir dir)
{
	return dir == KS_INBOUND ? "inbound" : "outbound";
}

const char *ks_ktls_mode_name(enum ks_ktls_mode mode)
{
	return mode == KS_KTLS_OFF ? "off" : mode == KS_KTLS_REQUIRE ? "require" : "auto";
}
