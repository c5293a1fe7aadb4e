/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Two designs for the kTLS forwarding path, compared on what a build machine
 * can measure (its kernel has no kTLS, and the kTLS VM is emulated, so the
 * kernel's TLS work is the same for both designs and is left out here):
 *
 *   uring:  IORING_OP_SPLICE socket -> pipe, linked with pipe -> socket,
 *           resubmitted as each pair completes;
 *   direct: wait for readiness (poll), then splice(2) with SPLICE_F_NONBLOCK
 *           (what sidecar/dataplane/pump_splice.c does).
 *
 * Throughput: one relay moving --bytes from a writer thread through
 * socket -> pipe -> socket to a reader thread, on loopback; reports Gbit/s,
 * the relay thread's CPU time per MiB (RUSAGE_THREAD) and the whole
 * process's (RUSAGE_SELF: for uring it includes the io-wq workers).
 * Idle cost: --idle N connections with nothing to read; the uring design
 * has a splice pending on each, the direct design a poll. Reports the
 * io_uring worker threads (iou-wrk-*) the process holds.
 *
 *   splice_designs bulk uring|direct [--bytes N]
 *   splice_designs idle uring|direct [--idle N]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int listener(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)a, sizeof(*a)) < 0 || listen(l, 4096) < 0 ||
	    getsockname(l, (struct sockaddr *)a, &len) < 0)
		die("listener");
	return l;
}

/* A connected pair: *c is the connecting end, returns the accepted end. */
static int pair(int l, const struct sockaddr_in *a, int *c)
{
	int s;

	*c = socket(AF_INET, SOCK_STREAM, 0);
	if (*c < 0 || connect(*c, (const struct sockaddr *)a, sizeof(*a)) < 0)
		die("connect");
	s = accept(l, NULL, NULL);
	if (s < 0)
		die("accept");
	return s;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(int who)
{
	struct rusage ru;

	getrusage(who, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct io {
	int fd;
	uint64_t bytes;
};

static void *writer(void *arg)
{
	struct io *w = arg;
	static char buf[CHUNK];
	uint64_t left = w->bytes;

	memset(buf, 'x', sizeof(buf));
	while (left) {
		ssize_t n = write(w->fd, buf, left < sizeof(buf) ? left : sizeof(buf));

		if (n <= 0)
			die("write");
		left -= (uint64_t)n;
	}
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

static void *reader(void *arg)
{
	struct io *r = arg;
	static char buf[CHUNK];
	ssize_t n;

	while ((n = read(r->fd, buf, sizeof(buf))) > 0)
		r->bytes += (uint64_t)n;
	return NULL;
}

/* Relays src -> pipe -> dst until EOF; returns bytes moved. */
static uint64_t relay_direct(int src, int dst, int p[2])
{
	uint64_t moved = 0;
	size_t inpipe = 0;
	bool eof = false;

	fcntl(src, F_SETFL, O_NONBLOCK);
	fcntl(dst, F_SETFL, O_NONBLOCK);
	while (!eof || inpipe) {
		struct pollfd pf[1];
		ssize_t n;

		if (!eof && inpipe < CHUNK) {
			n = splice(src, NULL, p[1], NULL, CHUNK - inpipe,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0)
				inpipe += (size_t)n;
			else if (n == 0)
				eof = true;
			else if (errno != EAGAIN)
				die("splice in");
		}
		if (inpipe) {
			n = splice(p[0], NULL, dst, NULL, inpipe,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n > 0) {
				inpipe -= (size_t)n;
				moved += (uint64_t)n;
				continue;
			}
			if (n < 0 && errno != EAGAIN)
				die("splice out");
			pf[0] = (struct pollfd){.fd = dst, .events = POLLOUT};
			poll(pf, 1, -1);
			continue;
		}
		if (!eof) {
			pf[0] = (struct pollfd){.fd = src, .events = POLLIN};
			poll(pf, 1, -1);
		}
	}
	return moved;
}

static uint64_t relay_uring(int src, int dst, int p[2])
{
	struct io_uring ring;
	uint64_t moved = 0;
	bool eof = false;

	if (io_uring_queue_init(8, &ring, 0) < 0)
		die("io_uring_queue_init");
	while (!eof) {
		struct io_uring_sqe *sqe;
		struct io_uring_cqe *cqe;
		int in = 0;

		sqe = io_uring_get_sqe(&ring);
		io_uring_prep_splice(sqe, src, -1, p[1], -1, CHUNK, SPLICE_F_MOVE);
		sqe->flags |= IOSQE_IO_LINK;
		sqe->user_data = 1;
		io_uring_submit_and_wait(&ring, 1);
		/* The pipe -> socket half must move exactly what came in. */
		if (io_uring_wait_cqe(&ring, &cqe) < 0)
			die("wait");
		in = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		if (in <= 0) {
			eof = true;
			break;
		}
		while (in > 0) {
			sqe = io_uring_get_sqe(&ring);
			io_uring_prep_splice(sqe, p[0], -1, dst, -1, (unsigned)in, SPLICE_F_MOVE);
			sqe->user_data = 2;
			io_uring_submit_and_wait(&ring, 1);
			if (io_uring_wait_cqe(&ring, &cqe) < 0 || cqe->res <= 0)
				die("splice out");
			in -= cqe->res;
			moved += (uint64_t)cqe->res;
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	io_uring_queue_exit(&ring);
	return moved;
}

static int count_iou_workers(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d))) {
		char path[300], comm[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (f) {
			if (fgets(comm, sizeof(comm), f) && strncmp(comm, "iou-wrk", 7) == 0)
				n++;
			fclose(f);
		}
	}
	if (d)
		closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a;
	uint64_t bytes = 1ull << 30;
	int idle = 1000, l;

	if (argc < 3) {
		fprintf(stderr, "usage: %s bulk|idle uring|direct [--bytes N|--idle N]\n", argv[0]);
		return 2;
	}
	if (argc >= 5 && strcmp(argv[3], "--bytes") == 0)
		bytes = strtoull(argv[4], NULL, 0);
	if (argc >= 5 && strcmp(argv[3], "--idle") == 0)
		idle = atoi(argv[4]);
	l = listener(&a);

	if (strcmp(argv[1], "bulk") == 0) {
		int wc, ws = pair(l, &a, &wc), rc, rs = pair(l, &a, &rc), p[2];
		struct io w = {.fd = wc, .bytes = bytes}, r = {.fd = rc};
		pthread_t tw, tr;
		double t0, c0, t1, c1, p0, p1;
		uint64_t moved;

		if (pipe2(p, O_NONBLOCK) < 0)
			die("pipe2");
		pthread_create(&tr, NULL, reader, &r);
		pthread_create(&tw, NULL, writer, &w);
		t0 = now();
		c0 = cpu(RUSAGE_THREAD);
		p0 = cpu(RUSAGE_SELF);
		moved = strcmp(argv[2], "uring") == 0 ? relay_uring(ws, rs, p)
						      : relay_direct(ws, rs, p);
		c1 = cpu(RUSAGE_THREAD);
		shutdown(rs, SHUT_WR);
		pthread_join(tw, NULL);
		pthread_join(tr, NULL);
		t1 = now();
		p1 = cpu(RUSAGE_SELF);
		if (moved != bytes || r.bytes != bytes) {
			fprintf(stderr, "moved %llu, read %llu, want %llu\n",
				(unsigned long long)moved, (unsigned long long)r.bytes,
				(unsigned long long)bytes);
			return 1;
		}
		/* process CPU includes the writer and reader threads (the same for
		 * both designs) and, for uring, the io-wq workers doing the splices */
		printf("design=%s bytes=%llu gbit_s=%.2f relay_cpu_us_per_mib=%.1f "
		       "process_cpu_us_per_mib=%.1f io_workers=%d\n",
		       argv[2], (unsigned long long)bytes, bytes * 8 / (t1 - t0) / 1e9,
		       (c1 - c0) * 1e6 / (bytes / 1048576.0), (p1 - p0) * 1e6 / (bytes / 1048576.0),
		       count_iou_workers());
		return 0;
	}

	/* idle: N connections, nothing ever sent */
	{
		struct io_uring ring;
		struct pollfd *pfd = calloc((size_t)idle, sizeof(*pfd));
		int *cs = calloc((size_t)idle, sizeof(int)),
		    (*pipes)[2] = calloc((size_t)idle, sizeof(*pipes));
		bool uring = strcmp(argv[2], "uring") == 0;

		if (uring && io_uring_queue_init(4096, &ring, 0) < 0)
			die("io_uring_queue_init");
		for (int i = 0; i < idle; i++) {
			int s = pair(l, &a, &cs[i]);

			if (pipe2(pipes[i], O_NONBLOCK) < 0)
				die("pipe2");
			if (uring) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

				if (!sqe) {
					io_uring_submit(&ring);
					sqe = io_uring_get_sqe(&ring);
				}
				io_uring_prep_splice(sqe, s, -1, pipes[i][1], -1, CHUNK,
						     SPLICE_F_MOVE);
			} else {
				fcntl(s, F_SETFL, O_NONBLOCK);
				pfd[i] = (struct pollfd){.fd = s, .events = POLLIN};
			}
		}
		if (uring)
			io_uring_submit(&ring);
		else
			poll(pfd, (nfds_t)idle, 0);
		sleep(2);
		printf("design=%s idle_connections=%d io_workers=%d\n", argv[2], idle,
		       count_iou_workers());
		return 0;
	}
}
