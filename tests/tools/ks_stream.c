/*
 * ks-stream: deterministic TCP traffic generator / verifier for the
 * ktls-sidecar integration tests.
 *
 * Build: cc -std=gnu11 -O2 -Wall -Wextra -Werror -o ks-stream ks_stream.c -lcrypto
 *
 * One process, one thread, nonblocking sockets driven by poll(), so a single
 * run can hold >1000 concurrent connections.  Payload bytes come from
 * xoshiro256** seeded per connection, and every write is cut at a random size,
 * so the proxy under test sees arbitrary record/segment boundaries while both
 * ends can still agree on content through SHA-256.  Run `ks-stream --help`
 * for the full CLI.
 */
/* The Makefile passes -D_GNU_SOURCE; a bare #define would be a redefinition. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define DEFAULT_MAX_CHUNK   65536u
#define MAX_MAX_CHUNK	    (16u << 20)
#define DEFAULT_REPLY_BYTES (1u << 20)
#define DEFAULT_TIMEOUT_S   300.0
#define ECHO_BUF_SIZE	    (256u << 10)
#define SCRATCH_SIZE	    (256u << 10)
/* Bounded per-wakeup work so one fast connection cannot starve the others. */
#define IO_BURST 16
/* Keeps the chunk-size stream independent of the data stream for one seed. */
#define CHUNK_SEED_SALT 0x6b732d73747265ULL
#define REASON_LEN	96

static const char *prog = "ks-stream";

/* Shared I/O scratch: single-threaded, and data is consumed before the next read. */
static uint8_t scratch[SCRATCH_SIZE];
static uint8_t expect_buf[SCRATCH_SIZE];
static EVP_MD *sha256_md;

/* ------------------------------------------------------------------------ */
/* Utilities                                                                */
/* ------------------------------------------------------------------------ */

static void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fatal(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", prog);
	exit(2);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Status reasons end up inside a space-separated key=value line, so use the
 * errno symbol (no spaces) rather than strerror() text. */
static const char *errname(int err)
{
	static char buf[24];
	const char *name = strerrorname_np(err);

	if (name)
		return name;
	snprintf(buf, sizeof(buf), "errno%d", err);
	return buf;
}

static int sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

/* The default soft limit (often 1024) is too low for 1000 connections plus
 * the peer process's fds when both ends run in one test; the hard limit is
 * usually generous. */
static rlim_t raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		return false;
	*out = v;
	return true;
}

/* Byte counts accept K/M/G (binary) suffixes so tests can say "64M". */
static bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	default:
		break;
	}
	if (*end)
		return false;
	if (shift && v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static uint64_t opt_size(const char *name, const char *arg, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (!parse_size(arg, &v) || v < min || v > max)
		usage_error("invalid value for --%s: '%s'", name, arg);
	return v;
}

/* Accepts "IPv4:PORT", "[IPv6]:PORT" and "host:PORT". */
static void resolve(const char *spec, bool passive, struct sockaddr_storage *ss, socklen_t *sslen)
{
	char host[256];
	const char *port;
	struct addrinfo hints, *res;
	int rc;

	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host))
			usage_error("bad address '%s' (want [IPv6]:PORT)", spec);
		memcpy(host, spec + 1, (size_t)(close - spec - 1));
		host[close - spec - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(spec, ':');

		if (!colon || (size_t)(colon - spec) >= sizeof(host))
			usage_error("bad address '%s' (want HOST:PORT)", spec);
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port = colon + 1;
	}
	if (!*host || !*port)
		usage_error("bad address '%s'", spec);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		usage_error("cannot resolve '%s': %s", spec, gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
}

/* ------------------------------------------------------------------------ */
/* PRNG: xoshiro256** seeded through splitmix64                             */
/* ------------------------------------------------------------------------ */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform enough in [1, max]: modulo bias is irrelevant for chunk sizes. */
static size_t rng_chunk(struct rng *r, size_t max)
{
	return 1 + (size_t)(rng_next(r) % max);
}

/* Byte stream over the PRNG.  Leftover bytes of a 64-bit word are carried
 * over so the stream content is independent of how callers slice it; the
 * client's on-the-fly echo check depends on that. */
struct bytegen {
	struct rng r;
	uint8_t word[8];
	unsigned avail;
};

static void bytegen_seed(struct bytegen *g, uint64_t seed)
{
	rng_seed(&g->r, seed);
	g->avail = 0;
}

static void bytegen_fill(struct bytegen *g, uint8_t *out, size_t n)
{
	while (n && g->avail) {
		*out++ = g->word[8 - g->avail];
		g->avail--;
		n--;
	}
	while (n >= 8) {
		uint64_t v = rng_next(&g->r);

		memcpy(out, &v, 8);
		out += 8;
		n -= 8;
	}
	if (n) {
		uint64_t v = rng_next(&g->r);

		memcpy(g->word, &v, 8);
		memcpy(out, g->word, n);
		g->avail = 8 - (unsigned)n;
	}
}

/* ------------------------------------------------------------------------ */
/* SHA-256 helpers                                                          */
/* ------------------------------------------------------------------------ */

static EVP_MD_CTX *hash_new(void)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx || !EVP_DigestInit_ex(ctx, sha256_md, NULL))
		fatal("EVP_DigestInit_ex(SHA-256) failed");
	return ctx;
}

static void hash_update(EVP_MD_CTX *ctx, const void *p, size_t n)
{
	if (!EVP_DigestUpdate(ctx, p, n))
		fatal("EVP_DigestUpdate failed");
}

static void hash_hex(EVP_MD_CTX *ctx, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!EVP_DigestFinal_ex(ctx, md, &len) || len != 32)
		fatal("EVP_DigestFinal_ex failed");
	for (unsigned i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void tune_socket(int fd)
{
	int one = 1;

	/* Without Nagle each random-sized write tends to leave as its own
	 * segment, which is the fragmentation we want the proxy to see. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

enum smode { MODE_ECHO, MODE_SINK, MODE_EOF_REPLY };

struct server_opts {
	const char *listen;
	enum smode mode;
	uint64_t reply_bytes;
	uint64_t seed;
	uint64_t count;
	size_t max_chunk;
	const char *ready_file;
};

struct sconn {
	int fd;
	unsigned idx;
	bool rd_eof;
	bool done;
	bool failed;
	char reason[REASON_LEN];
	uint64_t rx_bytes, tx_bytes;
	EVP_MD_CTX *rx, *tx;
	struct rng chunk;
	/* echo: pending bytes buf[head, tail); eof-reply: current chunk buf[head, tail). */
	uint8_t *buf;
	size_t head, tail;
	struct bytegen data;
	uint64_t reply_left;
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void sconn_fail(struct sconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sconn_fail(struct sconn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->done)
		return;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
	c->failed = true;
	c->done = true;
}

static void sconn_free(struct sconn *c)
{
	close(c->fd);
	EVP_MD_CTX_free(c->rx);
	EVP_MD_CTX_free(c->tx);
	free(c->buf);
	free(c);
}

static void sconn_finish(struct sconn *c)
{
	char rxh[65], txh[65];

	hash_hex(c->rx, rxh);
	hash_hex(c->tx, txh);
	printf("server conn=%u recv_bytes=%" PRIu64 " recv_sha256=%s sent_bytes=%" PRIu64
	       " sent_sha256=%s status=%s%s\n",
	       c->idx, c->rx_bytes, rxh, c->tx_bytes, txh, c->failed ? "error:" : "ok",
	       c->failed ? c->reason : "");
	fflush(stdout);
	sconn_free(c);
}

static void server_read(const struct server_opts *o, struct sconn *c)
{
	for (int i = 0; i < IO_BURST && !c->rd_eof && !c->done; i++) {
		uint8_t *dst = scratch;
		size_t room = sizeof(scratch);
		ssize_t n;

		if (o->mode == MODE_ECHO) {
			/* Allocated on first data so idle connections stay cheap. */
			if (!c->buf && !(c->buf = malloc(ECHO_BUF_SIZE)))
				fatal("out of memory");
			if (c->head == c->tail)
				c->head = c->tail = 0;
			if (c->tail == ECHO_BUF_SIZE && c->head > 0) {
				memmove(c->buf, c->buf + c->head, c->tail - c->head);
				c->tail -= c->head;
				c->head = 0;
			}
			room = ECHO_BUF_SIZE - c->tail;
			/* Full buffer: stop reading so TCP flow control pushes back. */
			if (room == 0)
				return;
			dst = c->buf + c->tail;
		}
		n = recv(c->fd, dst, room, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			sconn_fail(c, "read:%s", errname(errno));
			return;
		}
		if (n == 0) {
			c->rd_eof = true;
			return;
		}
		hash_update(c->rx, dst, (size_t)n);
		c->rx_bytes += (uint64_t)n;
		if (o->mode == MODE_ECHO)
			c->tail += (size_t)n;
	}
}

static void server_write(const struct server_opts *o, struct sconn *c)
{
	for (int i = 0; i < IO_BURST && !c->done; i++) {
		size_t len;
		ssize_t n;

		if (o->mode == MODE_EOF_REPLY && c->head == c->tail) {
			if (c->reply_left == 0)
				return;
			len = rng_chunk(&c->chunk, o->max_chunk);
			if (len > c->reply_left)
				len = (size_t)c->reply_left;
			bytegen_fill(&c->data, c->buf, len);
			c->head = 0;
			c->tail = len;
			c->reply_left -= len;
		}
		len = c->tail - c->head;
		if (len == 0)
			return;
		/* Echo is re-cut at random sizes too, so the return direction is
		 * fragmented independently of how the request arrived. */
		if (o->mode == MODE_ECHO) {
			size_t k = rng_chunk(&c->chunk, o->max_chunk);

			if (k < len)
				len = k;
		}
		n = send(c->fd, c->buf + c->head, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			sconn_fail(c, "write:%s", errname(errno));
			return;
		}
		hash_update(c->tx, c->buf + c->head, (size_t)n);
		c->tx_bytes += (uint64_t)n;
		c->head += (size_t)n;
	}
}

/* Decides whether the connection has reached its natural end. */
static void server_advance(const struct server_opts *o, struct sconn *c)
{
	if (c->done || !c->rd_eof)
		return;
	switch (o->mode) {
	case MODE_SINK:
		c->done = true;
		return;
	case MODE_EOF_REPLY:
		if (!c->buf) {
			c->buf = malloc(o->max_chunk);
			if (!c->buf)
				fatal("out of memory");
			c->head = c->tail = 0;
		}
		if (c->reply_left || c->head != c->tail)
			return;
		break;
	case MODE_ECHO:
		if (c->head != c->tail)
			return;
		break;
	}
	/* The peer already half-closed (we saw EOF), so once our side is shut
	 * down both directions are finished and close() cannot cause an RST:
	 * there is no unread data left to discard. */
	if (shutdown(c->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
		sconn_fail(c, "shutdown:%s", errname(errno));
		return;
	}
	c->done = true;
}

static short server_events(const struct server_opts *o, const struct sconn *c)
{
	short ev = 0;

	switch (o->mode) {
	case MODE_ECHO:
		if (!c->rd_eof && c->tail - c->head < ECHO_BUF_SIZE)
			ev |= POLLIN;
		if (c->head != c->tail)
			ev |= POLLOUT;
		break;
	case MODE_SINK:
		ev |= POLLIN;
		break;
	case MODE_EOF_REPLY:
		ev |= c->rd_eof ? POLLOUT : POLLIN;
		break;
	}
	return ev;
}

static void server_step(const struct server_opts *o, struct sconn *c, short rev)
{
	if (rev & POLLERR) {
		int err = sock_error(c->fd);

		sconn_fail(c, "socket:%s", errname(err ? err : EIO));
		return;
	}
	if (!c->rd_eof && (rev & (POLLIN | POLLHUP)))
		server_read(o, c);
	server_advance(o, c);
	/* POLLHUP while output is pending: let send() report the real error. */
	if (!c->done && (rev & (POLLOUT | POLLHUP)))
		server_write(o, c);
	server_advance(o, c);
}

static int server_listen(const struct server_opts *o, uint16_t *port_out)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, one = 1;

	resolve(o->listen, true, &ss, &sslen);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fatal("socket: %s", strerror(errno));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		fatal("SO_REUSEADDR: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&ss, sslen) < 0)
		fatal("bind %s: %s", o->listen, strerror(errno));
	if (listen(fd, SOMAXCONN) < 0)
		fatal("listen: %s", strerror(errno));

	sslen = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0)
		fatal("getsockname: %s", strerror(errno));
	*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						   : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* Write-then-rename so a test polling the file never reads a partial line. */
static void write_ready_file(const char *path, uint16_t port)
{
	char tmp[PATH_MAX];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
		fatal("--ready-file path too long");
	f = fopen(tmp, "w");
	if (!f)
		fatal("cannot create %s: %s", tmp, strerror(errno));
	fprintf(f, "%u\n", (unsigned)port);
	if (fclose(f) != 0)
		fatal("cannot write %s: %s", tmp, strerror(errno));
	if (rename(tmp, path) < 0)
		fatal("cannot rename %s to %s: %s", tmp, path, strerror(errno));
}

struct server {
	const struct server_opts *o;
	struct sconn **conns;
	struct pollfd *pfds; /* listener + one slot per connection */
	size_t nconns, cap;
	uint64_t accepted, ended, failed;
};

static void server_add(struct server *s, int fd)
{
	const struct server_opts *o = s->o;
	struct sconn *c;

	if (s->nconns == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->conns = realloc(s->conns, s->cap * sizeof(*s->conns));
		s->pfds = realloc(s->pfds, (s->cap + 1) * sizeof(*s->pfds));
		if (!s->conns || !s->pfds)
			fatal("out of memory");
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		fatal("out of memory");
	tune_socket(fd);
	c->fd = fd;
	c->idx = (unsigned)s->accepted++;
	c->rx = hash_new();
	c->tx = hash_new();
	rng_seed(&c->chunk, (o->seed + c->idx) ^ CHUNK_SEED_SALT);
	if (o->mode == MODE_EOF_REPLY) {
		bytegen_seed(&c->data, o->seed + c->idx);
		c->reply_left = o->reply_bytes;
	}
	s->conns[s->nconns++] = c;
}

/* Returns false when accepting must pause because we are out of fds. */
static bool server_accept(struct server *s, int lfd)
{
	const struct server_opts *o = s->o;

	while (!(o->count && s->accepted >= o->count)) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			server_add(s, fd);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE) {
			/* The pending connection stays in the backlog; retry once
			 * one of ours has closed instead of spinning on POLLIN. */
			fprintf(stderr, "%s server: accept: %s (pausing)\n", prog, strerror(errno));
			return s->nconns == 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED &&
		    errno != EINTR)
			fprintf(stderr, "%s server: accept: %s\n", prog, strerror(errno));
		break;
	}
	return true;
}

static int run_server(const struct server_opts *o)
{
	struct server s = {.o = o};
	bool accepting = true;
	sigset_t block, orig;
	struct sigaction sa;
	uint16_t port;
	int lfd;

	raise_nofile();
	lfd = server_listen(o, &port);
	if (o->ready_file)
		write_ready_file(o->ready_file, port);
	fprintf(stderr, "%s server: listening on port %u\n", prog, (unsigned)port);

	/* Signals stay blocked except inside ppoll(), so a SIGTERM can never
	 * slip in between checking the flag and going to sleep. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &orig);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	s.cap = 64;
	s.conns = malloc(s.cap * sizeof(*s.conns));
	s.pfds = malloc((s.cap + 1) * sizeof(*s.pfds));
	if (!s.conns || !s.pfds)
		fatal("out of memory");

	while (!stop_requested && !(o->count && s.ended >= o->count)) {
		struct pollfd *cpfds = s.pfds + 1;
		size_t i, j;
		int rc;

		/* A negative fd makes poll() skip the listener slot. */
		s.pfds[0] = (struct pollfd){.fd = accepting ? lfd : -1, .events = POLLIN};
		for (i = 0; i < s.nconns; i++)
			cpfds[i] = (struct pollfd){.fd = s.conns[i]->fd,
						   .events = server_events(o, s.conns[i])};
		rc = ppoll(s.pfds, s.nconns + 1, NULL, &orig);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			fatal("ppoll: %s", strerror(errno));
		}

		for (i = 0, j = 0; i < s.nconns; i++) {
			struct sconn *c = s.conns[i];

			server_step(o, c, cpfds[i].revents);
			if (!c->done) {
				s.conns[j++] = c;
				continue;
			}
			s.failed += c->failed;
			s.ended++;
			sconn_finish(c);
			accepting = lfd >= 0;
		}
		s.nconns = j;

		/* Accept last: new connections have no pollfd slot this round. */
		if (lfd >= 0 && (s.pfds[0].revents & POLLIN))
			accepting = server_accept(&s, lfd);
		if (o->count && s.accepted >= o->count && lfd >= 0) {
			close(lfd);
			lfd = -1;
			accepting = false;
		}
	}

	if (s.nconns)
		fprintf(stderr, "%s server: stopping with %zu connection(s) still open\n", prog,
			s.nconns);
	for (size_t i = 0; i < s.nconns; i++)
		sconn_free(s.conns[i]);
	free(s.conns);
	free(s.pfds);
	if (lfd >= 0)
		close(lfd);
	if (!o->count)
		return 0;
	/* With --count, stopping early by signal counts as failure too. */
	return s.failed || s.ended < o->count ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

enum expect { EXPECT_ECHO, EXPECT_NONE, EXPECT_REPLY };

struct client_opts {
	const char *connect;
	uint64_t bytes;
	uint64_t conns;
	uint64_t seed;
	size_t max_chunk;
	enum expect expect;
	bool half_close;
	uint64_t rate;
	double timeout_s;
	uint64_t hold_ms;
	uint64_t linger_ms;
};

enum cstate { C_CONNECTING, C_OPEN, C_DONE };

struct cconn {
	int fd;
	unsigned idx;
	enum cstate state;
	bool wr_done, rd_eof, failed;
	char reason[REASON_LEN];
	int64_t send_at;
	int64_t close_at; /* --linger-ms: when the echoed connection closes (0: not yet due) */
	uint64_t generated, sent, recvd;
	EVP_MD_CTX *tx, *rx;
	struct bytegen data, verify;
	struct rng chunk;
	uint8_t *out;
	size_t out_off, out_len;
};

struct client {
	const struct client_opts *o;
	double tokens, burst;
	int64_t last_refill;
	unsigned ok, failed;
};

static void cconn_fail(struct cconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cconn_fail(struct cconn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->state == C_DONE)
		return;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
	c->failed = true;
	c->state = C_DONE;
}

static void cconn_finish(struct client *cl, struct cconn *c)
{
	char txh[65], rxh[65];

	hash_hex(c->tx, txh);
	hash_hex(c->rx, rxh);
	if (!c->failed && cl->o->expect == EXPECT_ECHO && strcmp(txh, rxh) != 0) {
		/* Unreachable if the byte-wise check works; kept as a cross-check. */
		c->failed = true;
		snprintf(c->reason, sizeof(c->reason), "sha256-mismatch");
	}
	printf("client conn=%u sent_bytes=%" PRIu64 " sent_sha256=%s recv_bytes=%" PRIu64
	       " recv_sha256=%s status=%s%s\n",
	       c->idx, c->sent, txh, c->recvd, rxh, c->failed ? "error:" : "ok",
	       c->failed ? c->reason : "");
	fflush(stdout);
	if (c->failed)
		cl->failed++;
	else
		cl->ok++;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	EVP_MD_CTX_free(c->tx);
	EVP_MD_CTX_free(c->rx);
	c->tx = c->rx = NULL;
	free(c->out);
	c->out = NULL;
}

/* Checks echoed bytes against what we sent, regenerated from the seed, so
 * corruption is reported with its exact offset.  Returns false (and fails
 * the connection) on the first wrong or surplus byte. */
static bool echo_verify(struct cconn *c, const uint8_t *p, size_t n)
{
	/* An echo can never run ahead of what we have sent. */
	size_t avail = (size_t)(c->sent - c->recvd < n ? c->sent - c->recvd : n);

	bytegen_fill(&c->verify, expect_buf, avail);
	if (memcmp(p, expect_buf, avail) != 0) {
		size_t i = 0;

		while (p[i] == expect_buf[i])
			i++;
		cconn_fail(c, "mismatch-at-offset-%" PRIu64, c->recvd + i);
		return false;
	}
	if (avail < n) {
		cconn_fail(c, "excess-data");
		return false;
	}
	return true;
}

static void client_read(struct client *cl, struct cconn *c)
{
	const struct client_opts *o = cl->o;

	for (int i = 0; i < IO_BURST && c->state == C_OPEN && !c->rd_eof; i++) {
		ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);
		bool ok;

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			/* --expect none only promises that our writes went through;
			 * how the peer tears down afterwards is not its concern. */
			if (o->expect == EXPECT_NONE && c->wr_done) {
				c->rd_eof = true;
				return;
			}
			cconn_fail(c, "read:%s", errname(errno));
			return;
		}
		if (n == 0) {
			c->rd_eof = true;
			if (!c->wr_done && o->expect != EXPECT_NONE)
				cconn_fail(c, "eof-before-write-complete");
			return;
		}
		/* Verify before counting: echo_verify() reports offsets relative to recvd. */
		ok = o->expect != EXPECT_ECHO || echo_verify(c, scratch, (size_t)n);
		hash_update(c->rx, scratch, (size_t)n);
		c->recvd += (uint64_t)n;
		if (!ok)
			return;
	}
}

static void client_refill(struct client *cl, int64_t now)
{
	if (!cl->o->rate)
		return;
	cl->tokens += (double)(now - cl->last_refill) * 1e-9 * (double)cl->o->rate;
	if (cl->tokens > cl->burst)
		cl->tokens = cl->burst;
	cl->last_refill = now;
}

static void client_write(struct client *cl, struct cconn *c)
{
	const struct client_opts *o = cl->o;

	for (int i = 0; i < IO_BURST && c->state == C_OPEN; i++) {
		size_t len;
		ssize_t n;

		if (c->out_off == c->out_len) {
			if (c->generated == o->bytes)
				return;
			if (!c->out) {
				c->out = malloc(o->max_chunk);
				if (!c->out)
					fatal("out of memory");
			}
			len = rng_chunk(&c->chunk, o->max_chunk);
			if (len > o->bytes - c->generated)
				len = (size_t)(o->bytes - c->generated);
			bytegen_fill(&c->data, c->out, len);
			c->generated += len;
			c->out_off = 0;
			c->out_len = len;
		}
		len = c->out_len - c->out_off;
		if (o->rate) {
			if (cl->tokens < 1.0)
				return;
			if ((double)len > cl->tokens)
				len = (size_t)cl->tokens;
		}
		n = send(c->fd, c->out + c->out_off, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			cconn_fail(c, "write:%s", errname(errno));
			return;
		}
		hash_update(c->tx, c->out + c->out_off, (size_t)n);
		c->out_off += (size_t)n;
		c->sent += (uint64_t)n;
		if (o->rate)
			cl->tokens -= (double)n;
	}
}

static void client_finish_write(struct client *cl, struct cconn *c)
{
	const struct client_opts *o = cl->o;

	/* For --expect none we always half-close and drain to EOF: the
	 * process then exits only after the server has seen all our bytes,
	 * which keeps test assertions on the server log race-free. */
	if (o->half_close || o->expect == EXPECT_NONE) {
		if (shutdown(c->fd, SHUT_WR) < 0) {
			cconn_fail(c, "shutdown:%s", errname(errno));
			return;
		}
	}
	c->wr_done = true;
	free(c->out);
	c->out = NULL;
}

static void client_check_complete(struct client *cl, struct cconn *c, int64_t now)
{
	const struct client_opts *o = cl->o;

	if (c->state != C_OPEN || !c->wr_done)
		return;
	if (o->expect == EXPECT_ECHO && !o->half_close) {
		/* Without a half-close the server cannot send EOF first, so the
		 * echo is complete as soon as every byte has come back. */
		if (c->rd_eof && c->recvd != c->sent) {
			cconn_fail(c, "unexpected-eof");
			return;
		}
		if (c->recvd != c->sent)
			return;
		/* --linger-ms: an idle connection that has carried data (a
		 * surplus byte or an EOF meanwhile still fails it). */
		if (o->linger_ms && !c->close_at)
			c->close_at = now + (int64_t)o->linger_ms * 1000000;
		if (c->rd_eof && o->linger_ms)
			cconn_fail(c, "eof-while-lingering");
		else if (now >= c->close_at)
			c->state = C_DONE;
		return;
	}
	if (!c->rd_eof)
		return;
	if (o->expect == EXPECT_ECHO && c->recvd != c->sent) {
		cconn_fail(c, "unexpected-eof");
		return;
	}
	c->state = C_DONE;
}

static void client_step(struct client *cl, struct cconn *c, short rev, int64_t now, int64_t hold_ns)
{
	if (c->state == C_CONNECTING) {
		int err;

		if (!(rev & (POLLOUT | POLLERR | POLLHUP)))
			return;
		err = sock_error(c->fd);
		if (err) {
			cconn_fail(c, "connect:%s", errname(err));
			return;
		}
		c->state = C_OPEN;
		c->send_at = now + hold_ns;
		rev = 0; /* POLLOUT here meant "connected", not "writable" */
	}
	if (rev & POLLERR) {
		int err = sock_error(c->fd);

		cconn_fail(c, "socket:%s", errname(err ? err : EIO));
		return;
	}
	if (!c->rd_eof && (rev & (POLLIN | POLLHUP)))
		client_read(cl, c);
	if (c->state != C_OPEN)
		return;
	if (!c->wr_done && now >= c->send_at) {
		if (rev & POLLOUT)
			client_write(cl, c);
		if (c->state != C_OPEN)
			return;
		if (c->generated == cl->o->bytes && c->out_off == c->out_len)
			client_finish_write(cl, c);
		else if (c->rd_eof && (rev & POLLHUP))
			/* Peer is fully gone; without this we would spin on POLLHUP
			 * while the rate limiter keeps POLLOUT off. */
			cconn_fail(c, "write:peer-closed");
	}
	client_check_complete(cl, c, now);
}

static const char *client_phase(const struct cconn *c, int64_t now)
{
	if (c->state == C_CONNECTING)
		return "connecting";
	if (!c->wr_done)
		return now < c->send_at ? "holding" : "writing";
	return c->close_at ? "lingering" : "reading";
}

static void client_connect(struct cconn *c, const struct sockaddr_storage *ss, socklen_t sslen)
{
	c->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		cconn_fail(c, "socket:%s", errname(errno));
		return;
	}
	tune_socket(c->fd);
	if (connect(c->fd, (const struct sockaddr *)ss, sslen) < 0 && errno != EINPROGRESS)
		cconn_fail(c, "connect:%s", errname(errno));
}

/* What c waits for now; moves *wake earlier if it must be woken by time. */
static struct pollfd client_pollfd(const struct client *cl, const struct cconn *c, int64_t now,
				   int64_t *wake)
{
	const struct client_opts *o = cl->o;
	short ev = 0;

	if (c->state == C_CONNECTING)
		return (struct pollfd){.fd = c->fd, .events = POLLOUT};
	if (!c->rd_eof)
		ev |= POLLIN;
	if (c->wr_done) {
		if (c->close_at && c->close_at < *wake)
			*wake = c->close_at;
		return (struct pollfd){.fd = c->fd, .events = ev};
	}
	if (now < c->send_at) {
		if (c->send_at < *wake)
			*wake = c->send_at;
	} else if (o->rate && cl->tokens < 1.0) {
		int64_t t = now + (int64_t)((1.0 - cl->tokens) * 1e9 / (double)o->rate) + 1;

		if (t < *wake)
			*wake = t;
	} else {
		ev |= POLLOUT;
	}
	return (struct pollfd){.fd = c->fd, .events = ev};
}

static int run_client(const struct client_opts *o)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct client cl = {.o = o};
	struct cconn *conns;
	size_t *active;
	struct pollfd *pfds;
	size_t nactive = 0, rot = 0;
	bool lingering_said = false;
	int64_t start, deadline, hold_ns = (int64_t)o->hold_ms * 1000000;
	rlim_t nofile;

	nofile = raise_nofile();
	if (o->conns + 16 > nofile)
		fatal("--conns %" PRIu64 " exceeds the open-file limit (%llu)", o->conns,
		      (unsigned long long)nofile);
	resolve(o->connect, false, &ss, &sslen);

	conns = calloc(o->conns, sizeof(*conns));
	active = calloc(o->conns, sizeof(*active));
	pfds = calloc(o->conns, sizeof(*pfds));
	if (!conns || !active || !pfds)
		fatal("out of memory");

	start = now_ns();
	deadline = start + (int64_t)(o->timeout_s * 1e9);
	cl.last_refill = start;
	/* ~100 ms of burst keeps the aggregate rate smooth without forcing
	 * byte-sized writes at low rates. */
	cl.burst = (double)o->rate / 10.0 < 1.0 ? 1.0 : (double)o->rate / 10.0;
	cl.tokens = cl.burst;

	for (size_t i = 0; i < o->conns; i++) {
		struct cconn *c = &conns[i];

		c->idx = (unsigned)i;
		c->fd = -1;
		c->state = C_CONNECTING;
		c->tx = hash_new();
		c->rx = hash_new();
		bytegen_seed(&c->data, o->seed + i);
		bytegen_seed(&c->verify, o->seed + i);
		rng_seed(&c->chunk, (o->seed + i) ^ CHUNK_SEED_SALT);
		client_connect(c, &ss, sslen);
		if (c->state == C_DONE)
			cconn_finish(&cl, c);
		else
			active[nactive++] = i;
	}

	while (nactive > 0) {
		int64_t now = now_ns(), wake = deadline;
		size_t i, j;
		int timeout_ms, rc;

		client_refill(&cl, now);
		for (i = 0; i < nactive; i++)
			pfds[i] = client_pollfd(&cl, &conns[active[i]], now, &wake);
		timeout_ms = wake <= now ? 0 : (int)((wake - now + 999999) / 1000000);
		rc = poll(pfds, nactive, timeout_ms);
		if (rc < 0 && errno != EINTR)
			fatal("poll: %s", strerror(errno));
		if (rc < 0)
			continue;

		now = now_ns();
		client_refill(&cl, now);
		/* Rotating the start spreads scarce rate-limit tokens fairly. */
		for (i = 0; i < nactive; i++) {
			size_t k = (i + rot) % nactive;

			client_step(&cl, &conns[active[k]], pfds[k].revents, now, hold_ns);
		}
		rot++;
		if (now >= deadline) {
			for (i = 0; i < nactive; i++) {
				struct cconn *c = &conns[active[i]];

				cconn_fail(c, "timeout-while-%s", client_phase(c, now));
			}
		}
		for (i = 0, j = 0; i < nactive; i++) {
			struct cconn *c = &conns[active[i]];

			if (c->state == C_DONE)
				cconn_finish(&cl, c);
			else
				active[j++] = active[i];
		}
		nactive = j;
		if (o->linger_ms && !lingering_said) {
			size_t lingering = 0;

			for (i = 0; i < nactive; i++)
				lingering += conns[active[i]].close_at != 0;
			/* Every connection still open has been echoed: the caller
			 * can measure idle connections that carried data now. */
			if (lingering == nactive) {
				fprintf(stderr, "%s: lingering conns=%zu failed=%u\n", prog,
					lingering, cl.failed);
				lingering_said = true;
			}
		}
	}

	printf("client summary conns=%" PRIu64 " ok=%u failed=%u\n", o->conns, cl.ok, cl.failed);
	fflush(stdout);
	free(conns);
	free(active);
	free(pfds);
	return cl.failed ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */
/* ------------------------------------------------------------------------ */

static void print_help(void)
{
	printf("Usage:\n"
	       "  %s server --listen ADDR --mode echo|sink|eof-reply [--reply-bytes N]\n"
	       "            [--seed S] [--count K] [--ready-file PATH] [--max-chunk M]\n"
	       "  %s client --connect ADDR --bytes N [--conns C] [--seed S] [--max-chunk M]\n"
	       "            [--expect echo|none|reply] [--half-close] [--rate BYTES_PER_SEC]\n"
	       "            [--timeout SEC] [--hold-ms MS] [--linger-ms MS]\n"
	       "  %s --help\n"
	       "\n",
	       prog, prog, prog);
	/* Separate literals keep each below C99's 4095-byte minimum limit. */
	fputs(
	    "Deterministic TCP traffic generator/verifier for ktls-sidecar integration tests.\n"
	    "Single-threaded, nonblocking, poll()-driven; handles thousands of connections.\n"
	    "\n"
	    "ADDR is IPV4:PORT, [IPV6]:PORT or HOSTNAME:PORT (e.g. 127.0.0.1:8080, [::1]:8080).\n"
	    "Sizes (N, M, R = BYTES_PER_SEC) accept the binary suffixes K, M, G (KiB, MiB, GiB).\n"
	    "\n"
	    "Data: connection I sends bytes from xoshiro256** seeded via splitmix64(S + I)\n"
	    "(S = --seed, default 0).  Each write has a random size in [1, M] (M = --max-chunk,\n"
	    "default 65536, max 16M) from a separate PRNG stream, so data is cut at random\n"
	    "points.  Identical options reproduce identical byte streams.\n"
	    "\n"
	    "server\n"
	    "  --listen ADDR       Address to bind (SO_REUSEADDR); port 0 picks a free port.\n"
	    "  --mode MODE         echo:      write back everything read (256 KiB buffer per\n"
	    "                                 connection; reading pauses while it is full).  On\n"
	    "                                 client EOF: flush, shutdown(SHUT_WR), close.\n"
	    "                      sink:      read until EOF, then close.\n"
	    "                      eof-reply: read until EOF, then send --reply-bytes of\n"
	    "                                 pseudo-random data (seed S + I) in random chunks,\n"
	    "                                 shutdown(SHUT_WR), close.\n"
	    "  --reply-bytes N     Reply size for eof-reply (default 1M).\n"
	    "  --seed S            Seed for reply data and chunk sizes (default 0).\n"
	    "  --count K           Exit after K connections have ended: status 0 if all were\n"
	    "                      ok, 1 otherwise.  Without it, run until SIGTERM/SIGINT (exit "
	    "0).\n"
	    "  --ready-file PATH   After listen(), atomically write \"PORT\\n\" (the bound port).\n"
	    "  --max-chunk M       Maximum write size for echo/eof-reply writes (default 65536).\n"
	    "  Output, one line per ended connection (I counts accepted connections from 0):\n"
	    "    server conn=I recv_bytes=N recv_sha256=HEX sent_bytes=N sent_sha256=HEX "
	    "status=ok|error:REASON\n"
	    "  A \"listening on port P\" note goes to stderr.\n"
	    "\n",
	    stdout);
	fputs(
	    "client\n"
	    "  --connect ADDR      Server address.\n"
	    "  --bytes N           Bytes to send on each connection (0 allowed).\n"
	    "  --conns C           Concurrent connections (default 1), all opened at once.\n"
	    "  --seed S            Base seed (default 0); connection I uses S + I.\n"
	    "  --max-chunk M       Maximum write size (default 65536).\n"
	    "  --expect MODE       echo (default): receive exactly the bytes sent; checked byte "
	    "by\n"
	    "                        byte and by SHA-256.  Without --half-close the connection is\n"
	    "                        closed as soon as all N bytes came back; with it, the client\n"
	    "                        half-closes and the echo must be complete at EOF.\n"
	    "                      reply: success iff the server's EOF arrives cleanly after all\n"
	    "                        bytes were written; compare recv_sha256 with the server's\n"
	    "                        sent_sha256.  Use --half-close with an eof-reply server (it\n"
	    "                        waits for our EOF); without it the client just reads to EOF.\n"
	    "                      none: success iff all writes succeed.  The client always\n"
	    "                        half-closes after writing and drains until EOF, so when it\n"
	    "                        exits the server has read everything; received data is only\n"
	    "                        hashed, and errors after the last write are ignored.\n"
	    "  --half-close        After writing, shutdown(SHUT_WR), then read until EOF.\n"
	    "  --rate R            Limit the aggregate write rate of all connections (bytes/s).\n"
	    "  --timeout SEC       Overall deadline (default 300, fractions allowed); unfinished\n"
	    "                      connections fail with timeout-while-PHASE.\n"
	    "  --hold-ms MS        Stay idle MS ms after connecting before sending (still\n"
	    "                      reading), e.g. to build many concurrent idle connections.\n"
	    "  --linger-ms MS      With --expect echo and no --half-close: once every byte has\n"
	    "                      come back, stay open and idle MS ms more before closing\n"
	    "                      (idle connections that have carried data); an EOF from\n"
	    "                      the server meanwhile fails it (eof-while-lingering).\n"
	    "                      Once every connection still open is lingering, stderr\n"
	    "                      says \"ks-stream: lingering conns=L failed=F\".\n"
	    "  Reading always continues while writing, so echo can never deadlock.\n"
	    "  Output, one line per connection as it ends, then a summary:\n"
	    "    client conn=I sent_bytes=N sent_sha256=HEX recv_bytes=N recv_sha256=HEX "
	    "status=ok|error:REASON\n"
	    "    client summary conns=C ok=X failed=Y\n"
	    "  Exit status 0 iff every connection is ok.\n"
	    "\n"
	    "Error reasons (no spaces): connect:ERRNO, read:ERRNO, write:ERRNO, socket:ERRNO,\n"
	    "shutdown:ERRNO (e.g. read:ECONNRESET), unexpected-eof (echo ended short),\n"
	    "eof-before-write-complete, excess-data, mismatch-at-offset-N, sha256-mismatch,\n"
	    "write:peer-closed, eof-while-lingering,\n"
	    "timeout-while-connecting|holding|writing|reading|lingering.\n"
	    "\n"
	    "Exit status: 0 success, 1 some connection failed, 2 usage or setup error.\n",
	    stdout);
}

enum {
	OPT_HELP = 'h',
	OPT_LISTEN = 256,
	OPT_MODE,
	OPT_REPLY_BYTES,
	OPT_SEED,
	OPT_COUNT,
	OPT_READY_FILE,
	OPT_MAX_CHUNK,
	OPT_CONNECT,
	OPT_BYTES,
	OPT_CONNS,
	OPT_EXPECT,
	OPT_HALF_CLOSE,
	OPT_RATE,
	OPT_TIMEOUT,
	OPT_HOLD_MS,
	OPT_LINGER_MS,
};

static int server_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, OPT_LISTEN},
	    {"mode", required_argument, NULL, OPT_MODE},
	    {"reply-bytes", required_argument, NULL, OPT_REPLY_BYTES},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"count", required_argument, NULL, OPT_COUNT},
	    {"ready-file", required_argument, NULL, OPT_READY_FILE},
	    {"max-chunk", required_argument, NULL, OPT_MAX_CHUNK},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	struct server_opts o = {
	    .mode = MODE_ECHO,
	    .reply_bytes = DEFAULT_REPLY_BYTES,
	    .max_chunk = DEFAULT_MAX_CHUNK,
	};
	bool have_mode = false;
	int ch;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_LISTEN:
			o.listen = optarg;
			break;
		case OPT_MODE:
			have_mode = true;
			if (strcmp(optarg, "echo") == 0)
				o.mode = MODE_ECHO;
			else if (strcmp(optarg, "sink") == 0)
				o.mode = MODE_SINK;
			else if (strcmp(optarg, "eof-reply") == 0)
				o.mode = MODE_EOF_REPLY;
			else
				usage_error("invalid --mode '%s'", optarg);
			break;
		case OPT_REPLY_BYTES:
			o.reply_bytes = opt_size("reply-bytes", optarg, 0, UINT64_MAX);
			break;
		case OPT_SEED:
			if (!parse_u64(optarg, &o.seed))
				usage_error("invalid --seed '%s'", optarg);
			break;
		case OPT_COUNT:
			if (!parse_u64(optarg, &o.count) || o.count == 0)
				usage_error("invalid --count '%s'", optarg);
			break;
		case OPT_READY_FILE:
			o.ready_file = optarg;
			break;
		case OPT_MAX_CHUNK:
			o.max_chunk = (size_t)opt_size("max-chunk", optarg, 1, MAX_MAX_CHUNK);
			break;
		case OPT_HELP:
			print_help();
			return 0;
		default:
			usage_error("bad server arguments");
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!o.listen)
		usage_error("server needs --listen");
	if (!have_mode)
		usage_error("server needs --mode");
	return run_server(&o);
}

static int client_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"connect", required_argument, NULL, OPT_CONNECT},
	    {"bytes", required_argument, NULL, OPT_BYTES},
	    {"conns", required_argument, NULL, OPT_CONNS},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"max-chunk", required_argument, NULL, OPT_MAX_CHUNK},
	    {"expect", required_argument, NULL, OPT_EXPECT},
	    {"half-close", no_argument, NULL, OPT_HALF_CLOSE},
	    {"rate", required_argument, NULL, OPT_RATE},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"hold-ms", required_argument, NULL, OPT_HOLD_MS},
	    {"linger-ms", required_argument, NULL, OPT_LINGER_MS},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	struct client_opts o = {
	    .conns = 1,
	    .max_chunk = DEFAULT_MAX_CHUNK,
	    .expect = EXPECT_ECHO,
	    .timeout_s = DEFAULT_TIMEOUT_S,
	};
	bool have_bytes = false;
	char *end;
	int ch;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_CONNECT:
			o.connect = optarg;
			break;
		case OPT_BYTES:
			o.bytes = opt_size("bytes", optarg, 0, UINT64_MAX);
			have_bytes = true;
			break;
		case OPT_CONNS:
			o.conns = opt_size("conns", optarg, 1, 1000000);
			break;
		case OPT_SEED:
			if (!parse_u64(optarg, &o.seed))
				usage_error("invalid --seed '%s'", optarg);
			break;
		case OPT_MAX_CHUNK:
			o.max_chunk = (size_t)opt_size("max-chunk", optarg, 1, MAX_MAX_CHUNK);
			break;
		case OPT_EXPECT:
			if (strcmp(optarg, "echo") == 0)
				o.expect = EXPECT_ECHO;
			else if (strcmp(optarg, "none") == 0)
				o.expect = EXPECT_NONE;
			else if (strcmp(optarg, "reply") == 0)
				o.expect = EXPECT_REPLY;
			else
				usage_error("invalid --expect '%s'", optarg);
			break;
		case OPT_HALF_CLOSE:
			o.half_close = true;
			break;
		case OPT_RATE:
			o.rate = opt_size("rate", optarg, 1, UINT64_MAX);
			break;
		case OPT_TIMEOUT:
			errno = 0;
			o.timeout_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(o.timeout_s > 0) ||
			    o.timeout_s > 1e8)
				usage_error("invalid --timeout '%s'", optarg);
			break;
		case OPT_HOLD_MS:
			o.hold_ms = opt_size("hold-ms", optarg, 0, 100000000);
			break;
		case OPT_LINGER_MS:
			o.linger_ms = opt_size("linger-ms", optarg, 0, 100000000);
			break;
		case OPT_HELP:
			print_help();
			return 0;
		default:
			usage_error("bad client arguments");
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!o.connect)
		usage_error("client needs --connect");
	if (!have_bytes)
		usage_error("client needs --bytes");
	if (o.linger_ms && (o.expect != EXPECT_ECHO || o.half_close))
		usage_error("--linger-ms needs --expect echo without --half-close");
	return run_client(&o);
}

int main(int argc, char **argv)
{
	int rc;

	if (argc < 2)
		usage_error("missing subcommand (server or client)");
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		print_help();
		return 0;
	}
	/* Backpressure and peer resets must surface as EPIPE, not kill us;
	 * MSG_NOSIGNAL covers send(), this covers anything else. */
	signal(SIGPIPE, SIG_IGN);
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!sha256_md)
		fatal("cannot fetch SHA-256 from OpenSSL");

	if (strcmp(argv[1], "server") == 0)
		rc = server_main(argc - 1, argv + 1);
	else if (strcmp(argv[1], "client") == 0)
		rc = client_main(argc - 1, argv + 1);
	else
		usage_error("unknown subcommand '%s'", argv[1]);
	EVP_MD_free(sha256_md);
	return rc;
}
