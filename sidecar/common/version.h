/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KS_COMMON_VERSION_H
#define KS_COMMON_VERSION_H

/* The build's version (git describe), the same in every binary. */
const char *ks_version(void);

#endif
