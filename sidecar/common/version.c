/* SPDX-License-Identifier: Apache-2.0 */
#include "common/version.h"

/* Written by the Makefile (git describe), and seen by this file alone. */
#include "ks_build_version.h"

const char *ks_version(void)
{
	return KS_VERSION;
}

const char *ks_release(void)
{
	return KS_RELEASE;
}
