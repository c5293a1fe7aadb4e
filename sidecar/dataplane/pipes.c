/* SPDX-License-Identifier: Apache-2.0 */
#include "dataplane/pipes.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"

void ks_pipes_init(struct ks_pipe_pool *p, uint32_t max)
{
	memset(p, 0, sizeof(*p));
	p->max = max;
	ks_list_init(&p->waiters);
}

void ks_pipes_fini(struct ks_pipe_pool *p)
{
	while (p->ncache) {
		p->ncache--;
		close(p->cache[p->ncache][0]);
		close(p->cache[p->ncache][1]);
	}
}

int ks_pipe_take(struct ks_pipe_pool *p, int fds[2])
{
	if (p->ncache) {
		p->ncache--;
		fds[0] = p->cache[p->ncache][0];
		fds[1] = p->cache[p->ncache][1];
	} else {
		if (p->held >= p->max) {
			p->failed++;
			return -ENOSPC;
		}
		if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
			p->failed++;
			return -errno;
		}
		p->created++;
	}
	p->held++;
	return 0;
}

void ks_pipe_give(struct ks_pipe_pool *p, int fds[2])
{
	int left = -1;

	if (fds[0] < 0)
		return;
	p->held--;
	p->returned = true;
	if (p->ncache < KS_PIPE_CACHE && ioctl(fds[0], FIONREAD, &left) == 0 && left == 0) {
		p->cache[p->ncache][0] = fds[0];
		p->cache[p->ncache][1] = fds[1];
		p->ncache++;
	} else {
		close(fds[0]);
		close(fds[1]);
	}
	fds[0] = fds[1] = -1;
}

void ks_pipe_wait(struct ks_pipe_pool *p, struct ks_list *link, int err, uint64_t now_ms,
		  unsigned worker)
{
	uint64_t suppressed;

	if (!link->next) /* not waiting yet (common/list.h: unlinked nodes are NULL) */
		ks_list_add_tail(&p->waiters, link);
	if (ks_ratelimit_ok(&p->rl, now_ms, 1000, &suppressed))
		ks_warn("event=pipe_unavailable detail=\"%s%s\" waiting=true held=%llu "
			"failed_total=%llu suppressed=%llu worker=%u",
			err == ENOSPC ? "all in use (--max-pipes)" : "pipe2: ",
			err == ENOSPC ? "" : strerror(err), (unsigned long long)p->held,
			(unsigned long long)p->failed, (unsigned long long)suppressed, worker);
}
