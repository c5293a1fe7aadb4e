/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/descriptors.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "common/log.h"
#include "dataplane/capacity.h"

/* RLIM_INFINITY cannot be the NOFILE hard limit on Linux (it is capped by
 * fs.nr_open), but if a kernel reports it, plan against nr_open's ceiling. */
#define KS_NOFILE_CEILING (1ull << 20)

int ks_descriptors_plan(struct ks_config *cfg)
{
	struct ks_fd_given given;
	struct ks_fd_plan plan;
	struct rlimit rl;
	uint64_t was, limit;
	char err[512];

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		ks_error("event=start_failed reason=\"getrlimit(RLIMIT_NOFILE): %s\"",
			 strerror(errno));
		return -errno;
	}
	was = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl.rlim_cur = rl.rlim_max;
		else
			ks_warn("event=nofile_raise_failed soft=%llu hard=%llu detail=\"%s\"",
				(unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
				strerror(errno));
	}
	limit = rl.rlim_cur == RLIM_INFINITY ? KS_NOFILE_CEILING : rl.rlim_cur;
	given = (struct ks_fd_given){.max_connections = cfg->max_connections_set,
				     .max_handshakes = cfg->max_handshakes_set,
				     .max_pipes = cfg->max_pipes_set};
	if (ks_fd_fit(&cfg->dp, !cfg->control_none, limit, &given, &plan, err, sizeof(err)) < 0) {
		ks_error("event=start_failed reason=\"%s\"", err);
		return -ERANGE;
	}
	ks_log(plan.lowered ? KS_LOG_WARN : KS_LOG_INFO,
	       "event=capacity nofile=%llu nofile_was=%llu max_connections=%u max_handshakes=%u "
	       "max_pipes=%u fds_per_connection=%u fds_per_handshake=%u fds_pipes=%llu "
	       "fds_fixed=%llu fds_needed=%llu%s",
	       (unsigned long long)limit, (unsigned long long)was, cfg->dp.max_connections,
	       cfg->dp.max_handshakes, cfg->dp.max_pipes, plan.per_conn, plan.per_handshake,
	       (unsigned long long)plan.pipe_fds, (unsigned long long)plan.fixed,
	       (unsigned long long)plan.needed,
	       plan.lowered ? " lowered=\"the defaults did not fit the descriptor limit; "
			      "raise it for more\""
			    : "");
	return 0;
}
