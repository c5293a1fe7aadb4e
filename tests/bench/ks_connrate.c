/*
 * ks_connrate: load generator for the ktls-sidecar benchmark harness.
 *
 * Single-threaded, nonblocking, epoll-driven.  Talks plaintext TCP to an
 * echo server (directly, or through a proxy pair) and checks every echoed
 * byte.  Three modes:
 *
 *   conn  --connect ADDR --conns C --duration S [--size N]
 *         C concurrent workers, each looping: connect, write N bytes (default
 *         100), read N bytes back, close.  Through a TLS proxy pair every
 *         connection is a TLS handshake between the proxies (full, or
 *         resumed when the pair resumes sessions).  Prints one summary line:
 *           conn ok=K errors=E secs=T rate=R avg_ms=M [err_REASON=n ...]
 *
 *   lat   --connect ADDR --conns C --duration S [--size N] [--rate R]
 *         C persistent connections; requests of N bytes (default 1024) echoed
 *         back.  --rate R: open loop at R requests/s in total (round robin
 *         over the connections; latency counted from the scheduled send time,
 *         so queueing is not hidden).  Without --rate: closed loop, each
 *         connection sends its next request as soon as the previous returned
 *         (saturation).  Measured with CLOCK_MONOTONIC after a 0.5 s warm-up:
 *           lat n=K errors=E secs=T rate=R p50_us=.. p99_us=.. p999_us=.. max_us=..
 *
 *   hold  --connect ADDR --conns C [--size N] [--pending P] [--timeout S]
 *         Opens C connections, at most P (default 200) still establishing at
 *         once; a connection counts as established when an N-byte (default
 *         16) probe came back.  Then prints
 *           ready established=K errors=E secs=T
 *         and obeys commands on stdin, one per line:
 *           trickle SECS MS   each connection sends N bytes every MS ms
 *                             (random phase) for SECS s, each echo checked;
 *                             prints: trickle established=K errors=E echoes=X late=L
 *           quit (or EOF)     close everything and exit.
 *         Errors after "ready" (a peer closing an idle connection) are counted
 *         and reported by the next command.
 *
 *   echo  --listen IPV4:PORT   (port 0: a free one, printed as "listening on PORT")
 *         Echo server: writes back everything it reads (16 KiB buffer per
 *         connection, reading pauses while it is not flushed); runs until
 *         killed.  epoll, so 10,000+ connections are cheap.
 *
 * Exit status 0 on success (errors are reported, not fatal), 2 on usage or
 * setup errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXMSG	 65536
#define NREASONS 8

enum reason { R_CONNECT, R_RESET, R_EOF, R_MISMATCH, R_TIMEOUT, R_WRITE, R_SOCKET, R_OTHER };
static const char *reason_name[NREASONS] = {"connect", "reset", "eof",	  "mismatch",
					    "timeout", "write", "socket", "other"};

enum state { S_FREE, S_CONNECTING, S_WRITING, S_READING, S_IDLE, S_DEAD };

struct conn {
	int fd;
	enum state st;
	uint32_t id;
	uint32_t seq;	  /* request number on this connection */
	size_t off;	  /* bytes written or read in the current phase */
	double t_start;	  /* connection start (conn mode) */
	double t_req;	  /* scheduled/actual send time of the current request */
	double deadline;  /* current phase must finish before this */
	double next_tick; /* hold/trickle: next send time */
	unsigned queued;  /* lat open loop: requests waiting on this connection */
	double *qtimes;	  /* lat open loop: their scheduled times (ring) */
	unsigned qhead;
	int established; /* hold: first probe came back */
	int want_out;	 /* EPOLLOUT is in the registered event set */
};

static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static int g_ep;
static struct conn *g_conns;
static unsigned g_nconns;
static size_t g_size;
static unsigned long g_err[NREASONS];
static unsigned long g_errors;
static unsigned long g_sched;
static uint8_t g_rbuf[MAXMSG];
static uint8_t g_wbuf[MAXMSG];

#define QCAP 4096u

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("ks_connrate: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void parse_addr(const char *s)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		die("bad address '%s' (want IPV4:PORT)", s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	struct sockaddr_in *sin = (struct sockaddr_in *)&g_addr;
	memset(&g_addr, 0, sizeof(g_addr));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		die("bad IPv4 address '%s'", host);
	g_addrlen = sizeof(*sin);
}

/* The payload of request SEQ on connection ID: deterministic, so the echo can
 * be checked without keeping a copy. */
static uint8_t pat(uint32_t id, uint32_t seq, size_t i)
{
	return (uint8_t)((id * 131u) ^ (seq * 31u) ^ (uint32_t)(i * 7u) ^ (uint32_t)(i >> 8));
}

static void fill(struct conn *c)
{
	for (size_t i = 0; i < g_size; i++)
		g_wbuf[i] = pat(c->id, c->seq, i);
}

static void ep_mod(struct conn *c, uint32_t ev, int op)
{
	struct epoll_event e = {.events = ev, .data.u32 = c->id};
	if (epoll_ctl(g_ep, op, c->fd, &e) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd); /* also removes it from the epoll set */
	c->fd = -1;
	c->st = S_FREE;
}

static void conn_fail(struct conn *c, enum reason r)
{
	g_err[r]++;
	g_errors++;
	conn_close(c);
	c->st = S_DEAD;
}

static int conn_open(struct conn *c, double t, double timeout)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		g_err[R_SOCKET]++;
		g_errors++;
		c->st = S_DEAD;
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->seq = 0;
	c->off = 0;
	c->t_start = t;
	c->deadline = t + timeout;
	c->established = 0;
	if (connect(fd, (struct sockaddr *)&g_addr, g_addrlen) < 0 && errno != EINPROGRESS) {
		conn_fail(c, R_CONNECT);
		return -1;
	}
	c->st = S_CONNECTING;
	c->want_out = 1;
	ep_mod(c, EPOLLOUT, EPOLL_CTL_ADD);
	return 0;
}

/* Starts request c->seq: the caller then calls conn_io(c, EPOLLOUT, ...). */
static void start_write(struct conn *c, double t, double timeout)
{
	c->st = S_WRITING;
	c->off = 0;
	c->deadline = t + timeout;
}

/* Progress on a writable/readable connection.  Returns 1 when a request
 * completed (echo fully read and checked), 0 when still in progress, -1 on
 * failure (connection already closed and counted). */
static int conn_io(struct conn *c, uint32_t ev, double t, double timeout)
{
	if (c->st == S_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_fail(c, R_CONNECT);
			return -1;
		}
		start_write(c, t, timeout);
		ep_mod(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
		ev |= EPOLLOUT;
	}
	if (c->st == S_WRITING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		fill(c);
		while (c->off < g_size) {
			ssize_t n = send(c->fd, g_wbuf + c->off, g_size - c->off, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN) {
					if (!c->want_out) {
						ep_mod(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
						c->want_out = 1;
					}
					return 0;
				}
				conn_fail(c, errno == ECONNRESET || errno == EPIPE ? R_RESET
										   : R_WRITE);
				return -1;
			}
			c->off += (size_t)n;
		}
		c->st = S_READING;
		c->off = 0;
		if (c->want_out) {
			ep_mod(c, EPOLLIN, EPOLL_CTL_MOD);
			c->want_out = 0;
		}
		ev |= EPOLLIN; /* try a read right away: cheap, and usually EAGAIN */
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (c->st != S_READING) {
			/* Idle connection: anything but EAGAIN is the peer going away
			 * or unsolicited data. */
			ssize_t n = recv(c->fd, g_rbuf, sizeof(g_rbuf), 0);
			if (n < 0 && errno == EAGAIN)
				return 0;
			conn_fail(c, n == 0 ? R_EOF : n > 0 ? R_MISMATCH : R_RESET);
			return -1;
		}
		for (;;) {
			size_t want = g_size - c->off;
			ssize_t n = recv(c->fd, g_rbuf, want, 0);
			if (n < 0) {
				if (errno == EAGAIN)
					return 0;
				conn_fail(c, R_RESET);
				return -1;
			}
			if (n == 0) {
				conn_fail(c, R_EOF);
				return -1;
			}
			for (ssize_t i = 0; i < n; i++)
				if (g_rbuf[i] != pat(c->id, c->seq, c->off + (size_t)i)) {
					conn_fail(c, R_MISMATCH);
					return -1;
				}
			c->off += (size_t)n;
			if (c->off == g_size) {
				c->st = S_IDLE;
				c->seq++;
				c->off = 0;
				return 1;
			}
		}
	}
	return 0;
}

static void print_errors(void)
{
	for (int r = 0; r < NREASONS; r++)
		if (g_err[r])
			printf(" err_%s=%lu", reason_name[r], g_err[r]);
	printf("\n");
	fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int wait_events(struct epoll_event *evs, int max, double timeout_s)
{
	struct timespec ts;
	if (timeout_s < 0)
		timeout_s = 0;
	ts.tv_sec = (time_t)timeout_s;
	ts.tv_nsec = (long)((timeout_s - (double)ts.tv_sec) * 1e9);
	int n = epoll_pwait2(g_ep, evs, max, &ts, NULL);
	if (n < 0 && errno != EINTR)
		die("epoll_pwait2: %s", strerror(errno));
	return n < 0 ? 0 : n;
}

static void alloc_conns(unsigned n)
{
	g_nconns = n;
	g_conns = calloc(n, sizeof(*g_conns));
	if (!g_conns)
		die("out of memory");
	for (unsigned i = 0; i < n; i++) {
		g_conns[i].fd = -1;
		g_conns[i].id = i;
	}
}

/* ---- conn mode ---- */
static void run_conn(double duration)
{
	const double timeout = 10.0;
	struct epoll_event evs[256];
	double t0 = now(), end = t0 + duration, sum_lat = 0;
	unsigned long ok = 0, seq_base = 0;
	/* conn->id is the slot number (and epoll cookie); seq, the connection
	 * counter, makes each connection's payload different. */
	for (unsigned i = 0; i < g_nconns; i++) {
		conn_open(&g_conns[i], t0, timeout);
		g_conns[i].seq = (uint32_t)(seq_base++);
	}
	double t = t0;
	while (t < end) {
		int n = wait_events(evs, 256, 0.05);
		t = now();
		for (int k = 0; k < n; k++) {
			struct conn *c = &g_conns[evs[k].data.u32];
			if (c->fd < 0)
				continue;
			int r = conn_io(c, evs[k].events, t, timeout);
			if (r == 1) {
				if (t <= end) {
					ok++;
					sum_lat += t - c->t_start;
				}
				conn_close(c);
			}
		}
		for (unsigned i = 0; i < g_nconns; i++) {
			struct conn *c = &g_conns[i];
			if (c->fd >= 0 && t > c->deadline)
				conn_fail(c, R_TIMEOUT);
			if (c->fd < 0 && t < end) {
				conn_open(c, t, timeout);
				/* vary the payload per connection */
				c->seq = (uint32_t)(seq_base++);
			}
		}
	}
	double secs = end - t0;
	printf("conn ok=%lu errors=%lu secs=%.3f rate=%.1f avg_ms=%.3f", ok, g_errors, secs,
	       (double)ok / secs, ok ? sum_lat / (double)ok * 1e3 : 0.0);
	print_errors();
}

/* ---- lat mode ---- */
static void record(double **lat, size_t *nlat, size_t *cap, double t_req, double t, double warm,
		   double end)
{
	if (t_req < warm || t > end)
		return;
	if (*nlat == *cap) {
		*cap *= 2;
		*lat = realloc(*lat, *cap * sizeof(double));
		if (!*lat)
			die("out of memory");
	}
	(*lat)[(*nlat)++] = t - t_req;
}

static void run_lat(double duration, double rate)
{
	const double timeout = 10.0;
	struct epoll_event evs[256];
	size_t cap = 1 << 16, nlat = 0;
	double *lat = malloc(cap * sizeof(double));
	if (!lat)
		die("out of memory");
	double t = now();
	/* connect and warm up: one echo each */
	for (unsigned i = 0; i < g_nconns; i++) {
		g_conns[i].qtimes = calloc(QCAP, sizeof(double));
		conn_open(&g_conns[i], t, timeout);
	}
	unsigned ready = 0;
	while (ready + (unsigned)g_errors < g_nconns) {
		int n = wait_events(evs, 256, 0.1);
		t = now();
		for (int k = 0; k < n; k++) {
			struct conn *c = &g_conns[evs[k].data.u32];
			if (c->fd >= 0 && conn_io(c, evs[k].events, t, timeout) == 1)
				ready++;
		}
		for (unsigned i = 0; i < g_nconns; i++)
			if (g_conns[i].fd >= 0 && g_conns[i].st != S_IDLE &&
			    t > g_conns[i].deadline)
				conn_fail(&g_conns[i], R_TIMEOUT);
	}
	if (!ready)
		die("no connection could be established");
	double t0 = now(), warm = t0 + 0.5, end = warm + duration;
	double next_sched = t0, interval = rate > 0 ? 1.0 / rate : 0;
	unsigned long rr = 0, dropped = 0;
	t = t0;
	while (t < end) {
		/* open loop: enqueue everything that is due */
		if (rate > 0) {
			while (next_sched <= t) {
				struct conn *c = NULL;
				for (unsigned tries = 0; tries < g_nconns; tries++) {
					c = &g_conns[rr++ % g_nconns];
					if (c->fd >= 0)
						break;
				}
				if (!c || c->fd < 0)
					break;
				if (c->queued < QCAP) {
					c->qtimes[(c->qhead + c->queued) % QCAP] = next_sched;
					c->queued++;
				} else {
					dropped++;
				}
				next_sched += interval;
				g_sched++;
			}
		}
		/* start requests on idle connections */
		int again = 0;
		for (unsigned i = 0; i < g_nconns; i++) {
			struct conn *c = &g_conns[i];
			if (c->fd < 0 || c->st != S_IDLE)
				continue;
			if (rate > 0) {
				if (!c->queued)
					continue;
				c->t_req = c->qtimes[c->qhead];
				c->qhead = (c->qhead + 1) % QCAP;
				c->queued--;
			} else {
				c->t_req = t;
			}
			start_write(c, t, timeout);
			/* the echo may already be there when the write returns */
			if (conn_io(c, EPOLLOUT, t, timeout) == 1) {
				record(&lat, &nlat, &cap, c->t_req, now(), warm, end);
				again = 1;
			}
		}
		double wait = again ? 0 : rate > 0 ? next_sched - now() : 0.05;
		if (wait > 0.05)
			wait = 0.05;
		int n = wait_events(evs, 256, wait);
		t = now();
		for (int k = 0; k < n; k++) {
			struct conn *c = &g_conns[evs[k].data.u32];
			if (c->fd < 0)
				continue;
			if (conn_io(c, evs[k].events, t, timeout) == 1)
				record(&lat, &nlat, &cap, c->t_req, t, warm, end);
		}
		for (unsigned i = 0; i < g_nconns; i++)
			if (g_conns[i].fd >= 0 && g_conns[i].st != S_IDLE &&
			    t > g_conns[i].deadline)
				conn_fail(&g_conns[i], R_TIMEOUT);
	}
	qsort(lat, nlat, sizeof(double), cmp_double);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] * 1e6 : 0.0)
	printf("lat n=%zu errors=%lu secs=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
	       "max_us=%.1f dropped=%lu sched=%lu",
	       nlat, g_errors + dropped, duration, (double)nlat / duration, PCT(0.5), PCT(0.99),
	       PCT(0.999), nlat ? lat[nlat - 1] * 1e6 : 0.0, dropped, g_sched);
	print_errors();
	free(lat);
}

/* ---- hold mode ---- */
static unsigned count_established(void)
{
	unsigned k = 0;
	for (unsigned i = 0; i < g_nconns; i++)
		k += g_conns[i].fd >= 0 && g_conns[i].established;
	return k;
}

static void run_hold(unsigned pending_max, double timeout)
{
	struct epoll_event evs[512];
	double t0 = now(), t = t0;
	unsigned next = 0, pending = 0, done = 0;
	unsigned long echoes = 0, late = 0;
	/* stdin for commands */
	int fl = fcntl(0, F_GETFL);
	fcntl(0, F_SETFL, fl | O_NONBLOCK);
	struct epoll_event se = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	epoll_ctl(g_ep, EPOLL_CTL_ADD, 0, &se);

	/* phase 1: establish */
	while (done < g_nconns) {
		while (next < g_nconns && pending < pending_max) {
			struct conn *c = &g_conns[next++];
			if (conn_open(c, t, timeout) == 0)
				pending++;
			else
				done++;
		}
		int n = wait_events(evs, 512, 0.05);
		t = now();
		for (int k = 0; k < n; k++) {
			if (evs[k].data.u32 == UINT32_MAX)
				continue;
			struct conn *c = &g_conns[evs[k].data.u32];
			if (c->fd < 0)
				continue;
			int was_pending = !c->established;
			int r = conn_io(c, evs[k].events, t, timeout);
			if (r == 1 && was_pending) {
				c->established = 1;
				pending--;
				done++;
			} else if (r < 0) {
				if (was_pending) {
					pending--;
					done++;
				}
			}
		}
		for (unsigned i = 0; i < next; i++) {
			struct conn *c = &g_conns[i];
			if (c->fd >= 0 && !c->established && t > c->deadline) {
				conn_fail(c, R_TIMEOUT);
				pending--;
				done++;
			}
		}
	}
	printf("ready established=%u errors=%lu secs=%.3f", count_established(), g_errors, t - t0);
	print_errors();

	/* phase 2: commands */
	char line[256];
	size_t llen = 0;
	double trickle_end = 0, tick = 1.0;
	for (;;) {
		double wait = 0.2;
		int n = wait_events(evs, 512, trickle_end > 0 ? 0.01 : wait);
		t = now();
		for (int k = 0; k < n; k++) {
			if (evs[k].data.u32 == UINT32_MAX) {
				ssize_t r = read(0, line + llen, sizeof(line) - 1 - llen);
				if (r == 0) {
					strcpy(line, "quit\n");
					llen = 5;
				} else if (r > 0) {
					llen += (size_t)r;
				}
				continue;
			}
			struct conn *c = &g_conns[evs[k].data.u32];
			if (c->fd < 0)
				continue;
			int r = conn_io(c, evs[k].events, t, 10.0);
			if (r == 1)
				echoes++;
		}
		if (trickle_end > 0) {
			for (unsigned i = 0; i < g_nconns; i++) {
				struct conn *c = &g_conns[i];
				if (c->fd < 0)
					continue;
				if (c->st != S_IDLE && t > c->deadline) {
					conn_fail(c, R_TIMEOUT);
					continue;
				}
				if (t < trickle_end && t >= c->next_tick) {
					c->next_tick += tick;
					if (c->st != S_IDLE) {
						late++;
						continue;
					}
					start_write(c, t, 10.0);
					if (conn_io(c, EPOLLOUT, t, 10.0) == 1)
						echoes++;
				}
			}
			if (t >= trickle_end) {
				/* let outstanding echoes come back (bounded) */
				int busy = 0;
				for (unsigned i = 0; i < g_nconns; i++)
					busy |= g_conns[i].fd >= 0 && g_conns[i].st != S_IDLE;
				if (!busy || t > trickle_end + 10) {
					for (unsigned i = 0; i < g_nconns; i++)
						if (g_conns[i].fd >= 0 && g_conns[i].st != S_IDLE)
							conn_fail(&g_conns[i], R_TIMEOUT);
					trickle_end = 0;
					printf(
					    "trickle established=%u errors=%lu echoes=%lu late=%lu",
					    count_established(), g_errors, echoes, late);
					print_errors();
				}
			}
		}
		char *nl;
		while ((nl = memchr(line, '\n', llen))) {
			*nl = 0;
			double secs = 0, ms = 0;
			if (strncmp(line, "quit", 4) == 0) {
				for (unsigned i = 0; i < g_nconns; i++)
					conn_close(&g_conns[i]);
				printf("quit errors=%lu\n", g_errors);
				fflush(stdout);
				return;
			} else if (sscanf(line, "trickle %lf %lf", &secs, &ms) == 2 && ms > 0) {
				tick = ms / 1e3;
				trickle_end = t + secs;
				echoes = late = 0;
				for (unsigned i = 0; i < g_nconns; i++)
					g_conns[i].next_tick = t + tick * (double)rand() / RAND_MAX;
			} else {
				printf("unknown command\n");
				fflush(stdout);
			}
			size_t used = (size_t)(nl - line) + 1;
			memmove(line, nl + 1, llen - used);
			llen -= used;
		}
		if (llen == sizeof(line) - 1)
			llen = 0;
	}
}

/* ---- echo server ---- */
struct econn {
	int fd;
	uint32_t len, off; /* pending bytes buf[off..len) */
	uint8_t buf[16384];
};

static void run_echo(void)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&g_addr, g_addrlen) < 0 ||
	    listen(lfd, 4096) < 0)
		die("echo: listen: %s", strerror(errno));
	/* --listen ...:0 picks a free port: say which, for whoever started us. */
	struct sockaddr_in bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(lfd, (struct sockaddr *)&bound, &blen) < 0)
		die("echo: getsockname: %s", strerror(errno));
	printf("listening on %u\n", ntohs(bound.sin_port));
	fflush(stdout);
	struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(g_ep, EPOLL_CTL_ADD, lfd, &le);
	struct epoll_event evs[512];
	for (;;) {
		int n = epoll_wait(g_ep, evs, 512, -1);
		for (int k = 0; k < n; k++) {
			struct econn *e = evs[k].data.ptr;
			if (!e) {
				for (;;) {
					int fd =
					    accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd < 0)
						break;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					e = malloc(sizeof(*e));
					if (!e) {
						close(fd);
						continue;
					}
					e->fd = fd;
					e->len = e->off = 0;
					struct epoll_event ee = {.events = EPOLLIN, .data.ptr = e};
					epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ee);
				}
				continue;
			}
			int dead = 0;
			for (;;) {
				if (e->off < e->len) {
					ssize_t w = send(e->fd, e->buf + e->off, e->len - e->off,
							 MSG_NOSIGNAL);
					if (w < 0) {
						if (errno != EAGAIN)
							dead = 1;
						break;
					}
					e->off += (uint32_t)w;
					if (e->off < e->len)
						break;
				}
				ssize_t r = recv(e->fd, e->buf, sizeof(e->buf), 0);
				if (r <= 0) {
					if (r == 0 || errno != EAGAIN)
						dead = 1;
					break;
				}
				e->len = (uint32_t)r;
				e->off = 0;
			}
			if (dead) {
				close(e->fd);
				free(e);
				continue;
			}
			struct epoll_event ee = {.events = e->off < e->len ? EPOLLOUT : EPOLLIN,
						 .data.ptr = e};
			epoll_ctl(g_ep, EPOLL_CTL_MOD, e->fd, &ee);
		}
	}
}

static void usage(void)
{
	fputs("usage: ks_connrate echo --listen IPV4:PORT\n"
	      "       ks_connrate conn|lat|hold --connect IPV4:PORT --conns C [--duration S]\n"
	      "       [--size N] [--rate R] [--pending P] [--timeout S]\n"
	      "(see the comment at the top of tests/bench/ks_connrate.c)\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *mode = argv[1], *addr = NULL;
	unsigned conns = 1, pending = 200;
	double duration = 5, rate = 0, timeout = 60;
	long size = -1;
	for (int i = 2; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (!strcmp(a, "--connect") || !strcmp(a, "--listen"))
			addr = v;
		else if (!strcmp(a, "--conns"))
			conns = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--duration"))
			duration = strtod(v, NULL);
		else if (!strcmp(a, "--size"))
			size = strtol(v, NULL, 10);
		else if (!strcmp(a, "--rate"))
			rate = strtod(v, NULL);
		else if (!strcmp(a, "--pending"))
			pending = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--timeout"))
			timeout = strtod(v, NULL);
		else
			usage();
	}
	if (!addr || !conns || pending == 0)
		usage();
	parse_addr(addr);
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	g_ep = epoll_create1(EPOLL_CLOEXEC);
	if (g_ep < 0)
		die("epoll_create1: %s", strerror(errno));
	if (!strcmp(mode, "echo"))
		run_echo();
	alloc_conns(conns);
	if (!strcmp(mode, "conn")) {
		g_size = size < 0 ? 100 : (size_t)size;
		if (g_size == 0 || g_size > MAXMSG)
			die("--size must be 1..%d", MAXMSG);
		run_conn(duration);
	} else if (!strcmp(mode, "lat")) {
		g_size = size < 0 ? 1024 : (size_t)size;
		if (g_size == 0 || g_size > MAXMSG)
			die("--size must be 1..%d", MAXMSG);
		run_lat(duration, rate);
	} else if (!strcmp(mode, "hold")) {
		g_size = size < 0 ? 16 : (size_t)size;
		if (g_size == 0 || g_size > MAXMSG)
			die("--size must be 1..%d", MAXMSG);
		run_hold(pending, timeout);
	} else {
		usage();
	}
	return 0;
}
