/* SPDX-License-Identifier: Apache-2.0 */
/* Time: CLOCK_MONOTONIC in milliseconds for deadlines and ages. */
#ifndef KS_COMMON_CLOCK_H
#define KS_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

uint64_t ks_mono_ms(void);

/* CLOCK_REALTIME now + ms, for pthread_cond_timedwait. */
struct timespec ks_realtime_after_ms(uint32_t ms);

#endif
