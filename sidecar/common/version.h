/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KS_COMMON_VERSION_H
#define KS_COMMON_VERSION_H

/* The build's version (git describe), the same in every binary. */
const char *ks_version(void);

/* The release: the chart's appVersion (helm/ktls-sidecar/Chart.yaml), which
 * is also the image's tag. The injector puts this image in pods. */
const char *ks_release(void);

#endif
