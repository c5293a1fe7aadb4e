/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KS_DAEMON_DESCRIPTORS_H
#define KS_DAEMON_DESCRIPTORS_H

#include "daemon/config.h"

/*
 * Raises the soft RLIMIT_NOFILE to the hard limit (the soft limit is
 * usually 1024, for select(2), which nothing here uses), fits cfg's
 * connection limits into it (dataplane/capacity.h) and logs the plan as
 * event=capacity. 0, or -ERANGE with a start-up error logged.
 */
int ks_descriptors_plan(struct ks_config *cfg);

#endif
