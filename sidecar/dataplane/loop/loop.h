/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The event loop: one per worker thread, never shared. It delivers readiness
 * of file descriptors ("watches") to callbacks. Two backends implement it:
 * io_uring (IORING_OP_POLL_ADD, batched submission, one syscall per loop
 * turn) and epoll (the fallback for seccomp profiles that block io_uring).
 *
 * Lifetime: a watch is registered with ks_loop_add() and must be removed with
 * ks_loop_del() before its fd is closed and its memory freed. Events that
 * are already queued for a removed watch (in the same epoll batch, or an
 * io_uring completion still in flight) are recognised by a generation
 * number in the user data and dropped, so a callback may free any watch,
 * including one whose event is next in the batch.
 */
#ifndef KS_DATAPLANE_LOOP_H
#define KS_DATAPLANE_LOOP_H

#include <poll.h>
#include <stdint.h>

enum ks_io_mode { KS_IO_AUTO, KS_IO_URING, KS_IO_EPOLL };

struct ks_loop;
struct ks_watch;

/* Readiness bits are poll(2)'s; epoll's EPOLLIN/OUT/ERR/HUP have the same values. */
#define KS_EV_IN  POLLIN
#define KS_EV_OUT POLLOUT
#define KS_EV_ERR POLLERR
#define KS_EV_HUP POLLHUP

typedef void (*ks_watch_fn)(struct ks_watch *w, uint32_t revents);

struct ks_watch {
	int fd;
	uint32_t want;	  /* what the owner waits for (KS_EV_IN | KS_EV_OUT) */
	uint32_t armed;	  /* backend: what is registered with the kernel */
	uint32_t slot;	  /* index in the loop's slot table, 0 = not registered */
	uint32_t gen;	  /* generation of that slot when registered */
	uint8_t inflight; /* io_uring: a poll request is outstanding */
	/* A listener several loops share: wake one of them per event
	 * (EPOLLEXCLUSIVE). Its interest is only ever added or removed,
	 * never modified (epoll refuses EPOLL_CTL_MOD on it). */
	uint8_t exclusive;
	ks_watch_fn fn;
	void *owner;
};

struct ks_loop_ops {
	const char *name;
	int (*init)(struct ks_loop *l);
	void (*fini)(struct ks_loop *l);
	/* Registers or updates the kernel's interest to w->want. */
	int (*arm)(struct ks_loop *l, struct ks_watch *w);
	/* Drops the kernel's interest; w may be freed right after. */
	void (*disarm)(struct ks_loop *l, struct ks_watch *w);
	/* Waits up to timeout_ms and dispatches ready watches. */
	int (*run_once)(struct ks_loop *l, int timeout_ms);
};

struct ks_loop {
	const struct ks_loop_ops *ops;
	void *backend;
	/* slot table: user data = (gen << 32) | index */
	struct ks_watch **slots;
	uint32_t *gens;
	uint32_t nslots, cap;
	uint32_t *free_idx;
	uint32_t nfree;
	/* The owner's clock (CLOCK_MONOTONIC ms), refreshed when a wait ends and
	 * before its events are dispatched, so every callback sees the time it
	 * runs at, not the time before a wait of up to a second. NULL: none. */
	uint64_t *clock;
};

/*
 * Creates a loop with the backend mode asks for. In KS_IO_AUTO mode a failing
 * io_uring_setup (EPERM, ENOSYS, ...) falls back to epoll; *fallback_reason
 * then says why. Returns 0 or -errno.
 */
int ks_loop_init(struct ks_loop *l, enum ks_io_mode mode, const char **fallback_reason,
		 int *fallback_err);
void ks_loop_fini(struct ks_loop *l);
const char *ks_loop_backend(const struct ks_loop *l);

int ks_loop_add(struct ks_loop *l, struct ks_watch *w, int fd, ks_watch_fn fn, void *owner);
/* Sets what the owner waits for; 0 means nothing (the registration stays). */
int ks_loop_want(struct ks_loop *l, struct ks_watch *w, uint32_t want);
void ks_loop_del(struct ks_loop *l, struct ks_watch *w);
int ks_loop_run_once(struct ks_loop *l, int timeout_ms);

/* The slot table (slots.c): a watch's registration, 0 or -ENOMEM. */
int ks_loop_slot_alloc(struct ks_loop *l, struct ks_watch *w);
void ks_loop_slot_free(struct ks_loop *l, struct ks_watch *w);

/* For backends: the wait is over, events come next (refreshes l->clock). */
void ks_loop_woke(struct ks_loop *l);

/* For backends: resolve user data to a live watch, NULL if stale. */
struct ks_watch *ks_loop_lookup(struct ks_loop *l, uint64_t data);
static inline uint64_t ks_watch_data(const struct ks_watch *w)
{
	return ((uint64_t)w->gen << 32) | w->slot;
}
/* For backends: deliver revents to a watch, filtered by what it wants. */
void ks_loop_dispatch(struct ks_loop *l, uint64_t data, uint32_t revents);

extern const struct ks_loop_ops ks_loop_epoll_ops;
extern const struct ks_loop_ops ks_loop_uring_ops;

#endif
