/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The webhook's listeners (serve.h).
 *
 * Threading model:
 *  - The main thread owns everything long-lived: the two listening
 *    sockets, the file watch on --cert, --key and --config, and a signalfd
 *    for SIGTERM/SIGINT. It poll(2)s those, accepts, reloads, and turns
 *    at least once a second (its heartbeat is /live).
 *  - Each accepted connection gets a small detached thread of its own,
 *    up to KS_INJECTD_MAX_CONNS (HTTPS) and KS_INJECTD_MAX_ADMIN (admin)
 *    at once. The thread does the TLS handshake, reads one request, answers
 *    it and closes ("Connection: close": no keep-alive, so an idle
 *    connection never holds a slot). Its socket is non-blocking and every
 *    wait is a poll(2) bounded by the connection's one deadline,
 *    KS_INJECTD_REQUEST_MS after the accept: a slow client (slowloris)
 *    costs a slot for that long at most.
 *  - What the threads share is behind one mutex: the current SSL_CTX and
 *    the current InjectorConfig (each immutable once built; a reload
 *    builds a new one and swaps the pointer, and a thread keeps the one it
 *    took until it is done: SSL_new holds a reference on its SSL_CTX, a
 *    struct cfg_ref counts the config's users), and the connection
 *    counts. Counters for /metrics are atomics.
 *  - SIGTERM: the listeners close (new connections are refused), /ready
 *    turns 503, the threads in flight finish (each within its deadline),
 *    and ks_injectd_run returns 0.
 * Certificate reload: when the watch reports a change, the pair is loaded
 * into a new SSL_CTX; a pair that does not load, or whose key does not
 * match, is refused with a log line and the old one stays in force (a
 * writer half way through is reported again when it finishes).
 */
#include "injectd/serve.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "common/filewatch.h"
#include "common/http.h"
#include "common/log.h"
#include "common/net.h"
#include "common/sbuf.h"
#include "common/version.h"
#include "inject/inject.h"
#include "inject/manifest.h"
#include "injectd/admission.h"
#include "tls/pem.h"

/* After the answer: close_notify, then drop what the client still sends
 * for up to this long (or this many bytes), so that closing a socket with
 * unread input (a refused body) does not reset the answer away (RFC 9112
 * §9.6). */
#define LINGER_MS    1000
#define LINGER_BYTES (8u << 20)
/* A change to the watched files must be quiet this long before a reload. */
#define SETTLE_MS 200
/* /live fails when the main loop has not turned for this long. */
#define STALL_MS 10000

enum { RELOAD_OK, RELOAD_REFUSED, RELOAD__COUNT };
static const char *const reload_names[RELOAD__COUNT] = {"ok", "refused"};

static int read_small_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return -errno;
	buf = malloc((1u << 20) + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, 1u << 20, f);
	if (ferror(f) || !feof(f)) {
		int e = ferror(f) ? -EIO : -EFBIG;
		free(buf);
		fclose(f);
		return e;
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* What a file held at the last load attempt: a reload runs only when the
 * bytes of one of its files changed since. The watch reports the set, not
 * which file, and the kubelet's atomic writer (the chart's projected
 * volume holds the certificate and the configuration) replaces every file
 * of a volume at each update. */
struct file_id {
	unsigned char sha256[32];
	int err;
};

static struct file_id file_id_of(const char *path)
{
	struct file_id f = {{0}, 0};
	char *buf = NULL;
	size_t len = 0;
	int rc = read_small_file(path, &buf, &len);

	if (rc) {
		f.err = -rc;
		return f;
	}
	if (EVP_Digest(buf, len, f.sha256, NULL, EVP_sha256(), NULL) != 1)
		f.err = EIO;
	OPENSSL_cleanse(buf, len); /* the key's file too */
	free(buf);
	return f;
}

/* Updates *seen; true when it changed (an unreadable file counts as a
 * change: the reload says why it failed). */
static bool file_changed(const char *path, struct file_id *seen)
{
	struct file_id now = file_id_of(path);
	bool changed = now.err || seen->err || memcmp(now.sha256, seen->sha256, 32) != 0;

	*seen = now;
	return changed;
}

struct cfg_ref {
	struct ks_inject_cfg *cfg;
	unsigned refs; /* under srv.mu */
};

struct srv {
	const struct ks_injectd_opts *o;
	pthread_mutex_t mu;
	pthread_cond_t idle;
	SSL_CTX *ctx;	     /* under mu */
	struct cfg_ref *cfg; /* under mu */
	unsigned nconns, nadmin;
	atomic_bool draining;
	atomic_uint_fast64_t heartbeat_ms;
	atomic_int_fast64_t not_after; /* the served certificate's, Unix seconds */
	atomic_uint_fast64_t requests[KS_ADM__COUNT];
	atomic_uint_fast64_t http_errors;   /* HTTPS requests refused before a review */
	atomic_uint_fast64_t tls_failures;  /* handshakes that failed or timed out */
	atomic_uint_fast64_t refused_conns; /* over the cap */
	atomic_uint_fast64_t cert_reloads[RELOAD__COUNT];
	atomic_uint_fast64_t config_reloads[RELOAD__COUNT];
	time_t started;
	struct file_id cert_id, key_id, config_id; /* main thread only */
};

/* ------------------------------------------------------------ loading */

static int load_ctx(const struct ks_injectd_opts *o, SSL_CTX **out, int64_t *not_after, char *err,
		    size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	const ASN1_TIME *na;
	struct tm tm;

	*out = NULL;
	if (!ctx) {
		ks_ssl_err(err, errlen, "SSL_CTX_new");
		return -ENOMEM;
	}
	/* The API server speaks TLS 1.2 and 1.3 (Go's crypto/tls). */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
		ks_ssl_err(err, errlen, "--cert");
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
		/* A writer half way through a rotation looks like this too. */
		bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
		ks_ssl_err(err, errlen, mismatch ? "--key does not match --cert" : "--key");
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ks_ssl_err(err, errlen, "--key does not match --cert");
		goto fail;
	}
	na = X509_get0_notAfter(SSL_CTX_get0_certificate(ctx));
	if (!na || ASN1_TIME_to_tm(na, &tm) != 1) {
		snprintf(err, errlen, "--cert: unreadable notAfter");
		goto fail;
	}
	*not_after = (int64_t)timegm(&tm);
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -EINVAL;
}

/* The InjectorConfig: the file (if any), then the command line's settings. */
static int load_cfg(const struct ks_injectd_opts *o, struct ks_inject_cfg **out, char *err,
		    size_t errlen)
{
	struct ks_inject_msg msg = {{0}};
	json_t *docs = NULL;
	const json_t *doc = NULL;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (o->config) {
		enum ks_manifest_format fmt;
		rc = read_small_file(o->config, &buf, &len);
		if (rc) {
			snprintf(err, errlen, "--config %s: %s", o->config,
				 rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
			return -EINVAL;
		}
		rc = ks_manifest_parse(buf, len, &docs, &fmt, &msg);
		free(buf);
		if (rc) {
			snprintf(err, errlen, "--config %s: %s", o->config, msg.text);
			return -EINVAL;
		}
		doc = json_array_get(docs, 0);
		if (json_array_size(docs) != 1 || !json_is_object(doc) ||
		    strcmp(json_string_value(json_object_get(doc, "kind")) ?: "",
			   "InjectorConfig")) {
			snprintf(err, errlen, "--config %s: expected one InjectorConfig document",
				 o->config);
			json_decref(docs);
			return -EINVAL;
		}
	}
	rc = ks_inject_cfg_load(doc, out, &msg);
	json_decref(docs);
	for (size_t i = 0; rc == 0 && i < o->nsets; i++)
		rc = ks_inject_cfg_set(*out, o->sets[i].key, o->sets[i].value, &msg);
	if (rc == 0)
		rc = ks_inject_cfg_check(*out, &msg);
	if (rc) {
		snprintf(err, errlen, "%s%s%s", o->config ? "--config " : "",
			 o->config ? o->config : "", o->config ? ": " : "");
		size_t n = strlen(err);
		snprintf(err + n, errlen - n, "%s", msg.text);
		ks_inject_cfg_free(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

static void cfg_put(struct srv *s, struct cfg_ref *r)
{
	bool last;

	if (!r)
		return;
	pthread_mutex_lock(&s->mu);
	last = --r->refs == 0;
	pthread_mutex_unlock(&s->mu);
	if (last) {
		ks_inject_cfg_free(r->cfg);
		free(r);
	}
}

static struct cfg_ref *cfg_get(struct srv *s)
{
	struct cfg_ref *r;

	pthread_mutex_lock(&s->mu);
	r = s->cfg;
	r->refs++;
	pthread_mutex_unlock(&s->mu);
	return r;
}

static void reload_cert(struct srv *s)
{
	char err[512];
	struct ks_log_field f;
	SSL_CTX *ctx, *old;
	int64_t na = 0;

	if (load_ctx(s->o, &ctx, &na, err, sizeof(err))) {
		atomic_fetch_add(&s->cert_reloads[RELOAD_REFUSED], 1);
		ks_warn("event=cert_reload result=refused reason=\"%s\" (the previous certificate "
			"stays in force)",
			ks_log_field(&f, err));
		return;
	}
	pthread_mutex_lock(&s->mu);
	old = s->ctx;
	s->ctx = ctx;
	pthread_mutex_unlock(&s->mu);
	SSL_CTX_free(old); /* connections in flight hold their own reference */
	atomic_store(&s->not_after, na);
	atomic_fetch_add(&s->cert_reloads[RELOAD_OK], 1);
	ks_info("event=cert_reload result=ok not_after=%lld", (long long)na);
}

static void reload_cfg(struct srv *s)
{
	char err[KS_INJECT_MSG_MAX + 256];
	struct ks_log_field f;
	struct ks_inject_cfg *cfg;
	struct cfg_ref *r, *old;

	if (load_cfg(s->o, &cfg, err, sizeof(err))) {
		atomic_fetch_add(&s->config_reloads[RELOAD_REFUSED], 1);
		ks_warn("event=config_reload result=refused reason=\"%s\" (the previous "
			"configuration stays in force)",
			ks_log_field(&f, err));
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		ks_inject_cfg_free(cfg);
		atomic_fetch_add(&s->config_reloads[RELOAD_REFUSED], 1);
		ks_warn("event=config_reload result=refused reason=\"out of memory\"");
		return;
	}
	r->cfg = cfg;
	r->refs = 1;
	pthread_mutex_lock(&s->mu);
	old = s->cfg;
	s->cfg = r;
	pthread_mutex_unlock(&s->mu);
	cfg_put(s, old);
	atomic_fetch_add(&s->config_reloads[RELOAD_OK], 1);
	ks_info("event=config_reload result=ok");
}

/* ------------------------------------------------------ one connection */

struct conn {
	struct srv *s;
	int fd;
	SSL *ssl; /* NULL on the admin listener */
	uint64_t deadline_ms;
	char peer[KS_ADDRSTRLEN];
	char *buf;
	size_t len, cap;
};

/* Waits until fd is ready for ev, within the connection's deadline. */
static int wait_io(struct conn *c, short ev)
{
	for (;;) {
		uint64_t now = ks_mono_ms();
		struct pollfd p = {.fd = c->fd, .events = ev};
		int n;

		if (now >= c->deadline_ms)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(c->deadline_ms - now));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* After an SSL call failed with e: wait and retry (0), or the error. */
static int ssl_wait(struct conn *c, int e)
{
	if (e == SSL_ERROR_WANT_READ)
		return wait_io(c, POLLIN);
	if (e == SSL_ERROR_WANT_WRITE)
		return wait_io(c, POLLOUT);
	if (e == SSL_ERROR_ZERO_RETURN)
		return -ECONNRESET;
	return -EPROTO;
}

/* Up to n bytes: > 0 read, 0 the peer closed, -errno. */
static ssize_t conn_read(struct conn *c, char *buf, size_t n)
{
	for (;;) {
		if (c->ssl) {
			size_t got = 0;
			ERR_clear_error();
			if (SSL_read_ex(c->ssl, buf, n, &got) == 1)
				return (ssize_t)got;
			int e = SSL_get_error(c->ssl, 0);
			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			int rc = ssl_wait(c, e);
			if (rc)
				return rc;
		} else {
			ssize_t got = recv(c->fd, buf, n, MSG_DONTWAIT);
			if (got >= 0)
				return got;
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
			int rc = wait_io(c, POLLIN);
			if (rc)
				return rc;
		}
	}
}

static int conn_write(struct conn *c, const char *buf, size_t n)
{
	size_t off = 0;

	while (off < n) {
		if (c->ssl) {
			size_t put = 0;
			ERR_clear_error();
			if (SSL_write_ex(c->ssl, buf + off, n - off, &put) == 1) {
				off += put;
				continue;
			}
			int rc = ssl_wait(c, SSL_get_error(c->ssl, 0));
			if (rc)
				return rc;
		} else {
			int rc = ks_send_pending(c->fd, buf, n, &off);
			if (rc == -EAGAIN)
				rc = wait_io(c, POLLOUT);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int respond(struct conn *c, int status, const char *ctype, const char *body, size_t blen,
		   bool head_only, const char *extra)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
			 status, ks_http_reason(status), ctype, blen, extra ? extra : "");
	int rc;

	if (n < 0 || (size_t)n >= sizeof(hdr))
		return -EINVAL;
	/* One write when it is small: one TLS record, one segment. */
	if (!head_only && blen && blen <= 16384) {
		char *all = malloc((size_t)n + blen);
		if (all) {
			memcpy(all, hdr, (size_t)n);
			memcpy(all + n, body, blen);
			rc = conn_write(c, all, (size_t)n + blen);
			free(all);
			return rc;
		}
	}
	rc = conn_write(c, hdr, (size_t)n);
	if (rc == 0 && !head_only && blen)
		rc = conn_write(c, body, blen);
	return rc;
}

static int respond_text(struct conn *c, int status, const char *text, bool head_only)
{
	return respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head_only, NULL);
}

static int respond_status(struct conn *c, int status)
{
	char body[96];

	snprintf(body, sizeof(body), "%d %s\n", status, ks_http_reason(status));
	return respond_text(c, status, body, false);
}

/* Reads one request: 1 (req filled, body at c->buf + head_len), or the
 * HTTP status to refuse it with (> 1), or -errno (nothing to answer). */
static int read_request(struct conn *c, uint64_t max_body, struct ks_http_req *req)
{
	for (;;) {
		int rc = ks_http_parse(c->buf, c->len, max_body, req);
		size_t want;

		if (rc < 0)
			return -rc;
		want = rc == 1 ? req->head_len + req->content_length : KS_HTTP_MAX_HEAD;
		if (rc == 1 && c->len >= want)
			return 1;
		if (want > c->cap) {
			char *nb = realloc(c->buf, want);
			if (!nb)
				return 500;
			c->buf = nb;
			c->cap = want;
		}
		ssize_t n = conn_read(c, c->buf + c->len, c->cap - c->len);
		if (n == 0)
			return -ECONNRESET;
		if (n == -ETIMEDOUT)
			return 408;
		if (n < 0)
			return (int)n;
		c->len += (size_t)n;
	}
}

static const char *not_ready(struct srv *s)
{
	return atomic_load(&s->draining) ? "draining" : NULL;
}

static void serve_inject(struct conn *c, const struct ks_http_req *req)
{
	struct srv *s = c->s;
	struct cfg_ref *cr = cfg_get(s);
	struct ks_adm_answer a;
	struct ks_log_field f1, f2;
	char uid[sizeof(a.uid)];
	uint64_t t0 = ks_mono_ms();

	ks_admission_handle(c->buf + req->head_len, (size_t)req->content_length, cr->cfg, &a);
	cfg_put(s, cr);
	atomic_fetch_add(&s->requests[a.result], 1);
	if (!a.body) {
		respond_status(c, 500);
	} else {
		(void)respond(c, a.http_status, a.content_type, a.body, a.len, false, NULL);
	}
	ks_log(a.result == KS_ADM_ERROR ? KS_LOG_WARN : KS_LOG_INFO,
	       "event=admission result=%s http=%d uid=\"%s\" what=\"%s\" patch_ops=%zu ms=%llu "
	       "peer=%s message=\"%s\"",
	       ks_adm_result_name(a.result), a.http_status, ks_log_clean(uid, sizeof(uid), a.uid),
	       ks_log_field(&f1, a.what), a.patch_ops, (unsigned long long)(ks_mono_ms() - t0),
	       c->peer, ks_log_field(&f2, a.msg));
	ks_adm_answer_free(&a);
}

static void route_https(struct conn *c, const struct ks_http_req *req)
{
	bool head = req->method == KS_HTTP_HEAD;
	const char *nr;

	if (strcmp(req->path, "/inject") == 0) {
		if (req->method != KS_HTTP_POST) {
			respond(c, 405, "text/plain; charset=utf-8", "use POST\n", 9, head,
				"Allow: POST\r\n");
			return;
		}
		serve_inject(c, req);
		return;
	}
	if (strcmp(req->path, "/ready") == 0) {
		if (req->method != KS_HTTP_GET && !head) {
			respond(c, 405, "text/plain; charset=utf-8", "use GET\n", 8, false,
				"Allow: GET, HEAD\r\n");
			return;
		}
		nr = not_ready(c->s);
		respond_text(c, nr ? 503 : 200, nr ? "not ready: draining\n" : "ready\n", head);
		return;
	}
	respond_text(c, 404, "not found: POST /inject, GET /ready\n", head);
}

static void put_family(struct ks_sbuf *b, const char *name, const char *type, const char *help)
{
	ks_sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the DIR's own */
}

static long rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * sysconf(_SC_PAGESIZE);
}

/* The Prometheus text format, version 0.0.4. Every series is written,
 * zeros included (a rate() over a series that appears late misses its
 * first events); label values come from fixed tables only. */
static int render_metrics(struct srv *s, struct ks_sbuf *b)
{
	struct rusage ru;
	unsigned conns, admin;

	put_family(b, "ktls_injector_requests_total", "counter",
		   "AdmissionReview requests by outcome: injected (allowed, patched), skipped "
		   "(allowed, unchanged), refused (allowed: false), error (no review to answer)");
	for (int r = 0; r < KS_ADM__COUNT; r++)
		ks_sb_printf(b, "ktls_injector_requests_total{result=\"%s\"} %llu\n",
			     ks_adm_result_name(r),
			     (unsigned long long)atomic_load(&s->requests[r]));
	put_family(b, "ktls_injector_http_errors_total", "counter",
		   "HTTPS requests refused before any review: malformed, too large, too slow, "
		   "wrong path or method");
	ks_sb_printf(b, "ktls_injector_http_errors_total %llu\n",
		     (unsigned long long)atomic_load(&s->http_errors));
	put_family(b, "ktls_injector_tls_handshake_failures_total", "counter",
		   "TLS handshakes that failed or did not finish in time");
	ks_sb_printf(b, "ktls_injector_tls_handshake_failures_total %llu\n",
		     (unsigned long long)atomic_load(&s->tls_failures));
	put_family(b, "ktls_injector_connections_refused_total", "counter",
		   "connections closed at once: the listener was at its cap");
	ks_sb_printf(b, "ktls_injector_connections_refused_total %llu\n",
		     (unsigned long long)atomic_load(&s->refused_conns));
	pthread_mutex_lock(&s->mu);
	conns = s->nconns;
	admin = s->nadmin;
	pthread_mutex_unlock(&s->mu);
	put_family(b, "ktls_injector_connections", "gauge", "connections open now, per listener");
	ks_sb_printf(b, "ktls_injector_connections{listener=\"https\"} %u\n", conns);
	ks_sb_printf(b, "ktls_injector_connections{listener=\"admin\"} %u\n", admin);
	put_family(b, "ktls_injector_cert_reloads_total", "counter",
		   "--cert/--key changes: ok (now served) or refused (the previous pair stays)");
	for (int r = 0; r < RELOAD__COUNT; r++)
		ks_sb_printf(b, "ktls_injector_cert_reloads_total{result=\"%s\"} %llu\n",
			     reload_names[r], (unsigned long long)atomic_load(&s->cert_reloads[r]));
	put_family(b, "ktls_injector_config_reloads_total", "counter",
		   "--config changes: ok (now used) or refused (the previous one stays)");
	for (int r = 0; r < RELOAD__COUNT; r++)
		ks_sb_printf(b, "ktls_injector_config_reloads_total{result=\"%s\"} %llu\n",
			     reload_names[r],
			     (unsigned long long)atomic_load(&s->config_reloads[r]));
	put_family(b, "ktls_injector_cert_not_after_seconds", "gauge",
		   "notAfter of the served certificate, Unix time");
	ks_sb_printf(b, "ktls_injector_cert_not_after_seconds %lld\n",
		     (long long)atomic_load(&s->not_after));
	put_family(b, "ktls_injector_build_info", "gauge", "the injector's version and release");
	ks_sb_printf(b, "ktls_injector_build_info{version=\"%s\",release=\"%s\"} 1\n", ks_version(),
		     ks_release());
	put_family(b, "process_start_time_seconds", "gauge", "start time, Unix time");
	ks_sb_printf(b, "process_start_time_seconds %lld\n", (long long)s->started);
	getrusage(RUSAGE_SELF, &ru);
	put_family(b, "process_cpu_seconds_total", "counter", "user and system CPU time");
	ks_sb_printf(b, "process_cpu_seconds_total %.3f\n",
		     (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
			 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	put_family(b, "process_resident_memory_bytes", "gauge", "resident set size");
	ks_sb_printf(b, "process_resident_memory_bytes %ld\n", rss_bytes());
	put_family(b, "process_open_fds", "gauge", "open file descriptors");
	ks_sb_printf(b, "process_open_fds %u\n", count_fds());
	return ks_sb_result(b) < 0 ? -ENOSPC : 0;
}

static void route_admin(struct conn *c, const struct ks_http_req *req)
{
	bool head = req->method == KS_HTTP_HEAD;
	const char *nr;

	if (strcmp(req->path, "/ready") != 0 && strcmp(req->path, "/live") != 0 &&
	    strcmp(req->path, "/metrics") != 0) {
		respond_text(c, 404, "not found: GET /ready /live /metrics\n", head);
		return;
	}
	if (req->method != KS_HTTP_GET && !head) {
		respond(c, 405, "text/plain; charset=utf-8", "use GET\n", 8, false,
			"Allow: GET, HEAD\r\n");
		return;
	}
	if (strcmp(req->path, "/ready") == 0) {
		nr = not_ready(c->s);
		respond_text(c, nr ? 503 : 200, nr ? "not ready: draining\n" : "ready\n", head);
	} else if (strcmp(req->path, "/live") == 0) {
		uint64_t hb = atomic_load(&c->s->heartbeat_ms), now = ks_mono_ms();
		if (now > hb && now - hb > STALL_MS)
			respond_text(c, 503, "the main loop has stalled\n", head);
		else
			respond_text(c, 200, "live\n", head);
	} else {
		struct ks_sbuf b = {0};
		int rc = -ENOSPC;
		for (size_t cap = 16384; cap <= (1u << 20) && rc == -ENOSPC; cap *= 2) {
			free(b.p);
			b = (struct ks_sbuf){.p = malloc(cap), .cap = cap};
			if (!b.p)
				break;
			rc = render_metrics(c->s, &b);
		}
		if (rc == 0)
			respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len,
				head, NULL);
		else
			respond_status(c, 500);
		free(b.p);
	}
}

/* After the answer: close_notify, half-close, and drain the rest (see LINGER_MS). */
static void linger(struct conn *c)
{
	char sink[16384];
	size_t dropped = 0;

	if (c->ssl) {
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl);
	}
	shutdown(c->fd, SHUT_WR);
	uint64_t end = ks_mono_ms() + LINGER_MS;
	if (end < c->deadline_ms)
		c->deadline_ms = end;
	while (dropped < LINGER_BYTES) {
		ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n > 0) {
			dropped += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR) || wait_io(c, POLLIN))
			break;
	}
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct srv *s = c->s;
	struct ks_http_req req;
	int rc = 0;

	c->cap = 16384;
	c->buf = malloc(c->cap);
	if (!c->buf)
		goto done;
	if (c->ssl) {
		for (;;) {
			ERR_clear_error();
			int r = SSL_accept(c->ssl);
			if (r == 1)
				break;
			rc = ssl_wait(c, SSL_get_error(c->ssl, r));
			if (rc) {
				char err[256];
				struct ks_log_field f;
				if (rc == -ETIMEDOUT)
					snprintf(err, sizeof(err), "not done within %d ms",
						 KS_INJECTD_REQUEST_MS);
				else
					ks_ssl_err(err, sizeof(err), "handshake");
				atomic_fetch_add(&s->tls_failures, 1);
				ks_info("event=tls_handshake_failed peer=%s reason=\"%s\"", c->peer,
					ks_log_field(&f, err));
				goto done;
			}
		}
	}
	rc = read_request(c, c->ssl ? KS_INJECTD_MAX_BODY : 0, &req);
	if (rc > 1) {
		if (c->ssl) {
			atomic_fetch_add(&s->http_errors, 1);
			ks_warn("event=http_refused status=%d peer=%s%s", rc, c->peer,
				rc == 413 ? " reason=\"body larger than 4 MiB\"" : "");
		}
		if (respond_status(c, rc) == 0)
			linger(c);
		goto done;
	}
	if (rc < 0)
		goto done;
	if (c->ssl) {
		if (strcmp(req.path, "/inject") != 0 || req.method != KS_HTTP_POST)
			atomic_fetch_add(&s->http_errors, strcmp(req.path, "/ready") != 0);
		route_https(c, &req);
	} else {
		route_admin(c, &req);
	}
	linger(c);
done:
	if (c->ssl)
		SSL_free(c->ssl);
	close(c->fd);
	free(c->buf);
	pthread_mutex_lock(&s->mu);
	if (c->ssl)
		s->nconns--;
	else
		s->nadmin--;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->mu);
	free(c);
	return NULL;
}

/* ------------------------------------------------------------ main loop */

/* Accepts what is pending. Returns true when accept(2) ran out of
 * descriptors or memory: the caller rests the listener a while, as
 * poll(2) would report it readable again at once (a busy loop). */
static bool accept_all(struct srv *s, int lfd, bool tls)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd;

	while ((fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
	       0) {
		struct conn *c = NULL;
		pthread_attr_t attr;
		pthread_t th;
		bool room;

		sl = sizeof(ss);
		pthread_mutex_lock(&s->mu);
		room = tls ? s->nconns < KS_INJECTD_MAX_CONNS : s->nadmin < KS_INJECTD_MAX_ADMIN;
		if (room)
			c = calloc(1, sizeof(*c));
		if (c && tls) {
			c->ssl = SSL_new(s->ctx);
			if (!c->ssl) {
				free(c);
				c = NULL;
			}
		}
		if (c) {
			if (tls)
				s->nconns++;
			else
				s->nadmin++;
		}
		pthread_mutex_unlock(&s->mu);
		if (!c) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
						   "Content-Length: 0\r\nConnection: close\r\n\r\n";
			if (!tls)
				(void)!send(fd, busy, sizeof(busy) - 1,
					    MSG_DONTWAIT | MSG_NOSIGNAL);
			close(fd);
			atomic_fetch_add(&s->refused_conns, 1);
			continue;
		}
		c->s = s;
		c->fd = fd;
		c->deadline_ms = ks_mono_ms() + KS_INJECTD_REQUEST_MS;
		ks_addr_str((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
		if (c->ssl)
			SSL_set_fd(c->ssl, fd);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, conn_main, c) != 0) {
			pthread_attr_destroy(&attr);
			pthread_mutex_lock(&s->mu);
			if (tls)
				s->nconns--;
			else
				s->nadmin--;
			pthread_mutex_unlock(&s->mu);
			SSL_free(c->ssl);
			close(fd);
			free(c);
			atomic_fetch_add(&s->refused_conns, 1);
			continue;
		}
		pthread_attr_destroy(&attr);
	}
	return errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
}

static int open_listener(const char *flag, const char *spec, char *addr_out, char *err,
			 size_t errlen)
{
	struct ks_addr a;
	char aerr[256];
	int fd;

	if (ks_addr_parse(spec, &a, aerr, sizeof(aerr)) < 0) {
		snprintf(err, errlen, "%s %s: %s", flag, spec, aerr);
		return -EINVAL;
	}
	fd = ks_listen(&a, 128, false);
	if (fd < 0) {
		snprintf(err, errlen, "%s %s: cannot listen: %s", flag, spec, strerror(-fd));
		return fd;
	}
	ks_addr_str((struct sockaddr *)&a.ss, addr_out, KS_ADDRSTRLEN);
	return fd;
}

int ks_injectd_run(const struct ks_injectd_opts *o)
{
	struct srv s = {.o = o};
	struct ks_filewatch *fw = NULL;
	struct ks_inject_cfg *cfg = NULL;
	const char *paths[3];
	char err[KS_INJECT_MSG_MAX + 256], addr[KS_ADDRSTRLEN], aaddr[KS_ADDRSTRLEN];
	struct ks_log_field f;
	int lfd = -1, afd = -1, sfd = -1, rc;
	int64_t na = 0;
	size_t npaths = 0;
	uint64_t rest_until[2] = {0, 0};
	struct signalfd_siginfo si = {0};
	sigset_t set;
	bool admin = !(o->admin && strcmp(o->admin, "none") == 0);

	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.idle, NULL);
	s.started = time(NULL);
	atomic_store(&s.heartbeat_ms, ks_mono_ms());
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Before any thread exists: they inherit the mask, so only the
	 * signalfd sees these. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		rc = -errno;
		snprintf(err, sizeof(err), "signalfd: %s", strerror(errno));
		goto fail;
	}
	/* Before the loads: a change after them is a change. */
	s.cert_id = file_id_of(o->cert);
	s.key_id = file_id_of(o->key);
	if (o->config)
		s.config_id = file_id_of(o->config);
	if ((rc = load_ctx(o, &s.ctx, &na, err, sizeof(err))))
		goto fail;
	atomic_store(&s.not_after, na);
	if ((rc = load_cfg(o, &cfg, err, sizeof(err))))
		goto fail;
	s.cfg = calloc(1, sizeof(*s.cfg));
	if (!s.cfg) {
		ks_inject_cfg_free(cfg);
		rc = -ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	s.cfg->cfg = cfg;
	s.cfg->refs = 1;
	paths[npaths++] = o->cert;
	paths[npaths++] = o->key;
	if (o->config)
		paths[npaths++] = o->config;
	if ((rc = ks_filewatch_open(paths, npaths, SETTLE_MS, &fw, err, sizeof(err))))
		goto fail;
	lfd = open_listener("--serve", o->listen ? o->listen : KS_INJECTD_LISTEN_DEFAULT, addr, err,
			    sizeof(err));
	if (lfd < 0) {
		rc = lfd;
		goto fail;
	}
	if (admin) {
		afd = open_listener("--admin", o->admin ? o->admin : KS_INJECTD_ADMIN_DEFAULT,
				    aaddr, err, sizeof(err));
		if (afd < 0) {
			rc = afd;
			goto fail;
		}
	}
	ks_info("event=injectd_listen listen=%s admin=%s not_after=%lld version=%s release=%s",
		addr, admin ? aaddr : "none", (long long)na, ks_version(), ks_release());

	for (;;) {
		uint64_t now = ks_mono_ms();
		/* A negative fd is ignored by poll(2): a resting listener. */
		struct pollfd p[4] = {{.fd = sfd, .events = POLLIN},
				      {.fd = ks_filewatch_fd(fw), .events = POLLIN},
				      {.fd = now < rest_until[0] ? -1 : lfd, .events = POLLIN},
				      {.fd = now < rest_until[1] ? -1 : afd, .events = POLLIN}};
		int t = ks_filewatch_timeout_ms(fw, now);

		atomic_store(&s.heartbeat_ms, now);
		if (t < 0 || t > 1000)
			t = 1000;
		if (poll(p, afd >= 0 ? 4 : 3, t) < 0 && errno != EINTR) {
			rc = -errno;
			snprintf(err, sizeof(err), "poll: %s", strerror(errno));
			goto fail;
		}
		if (p[0].revents & POLLIN) {
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
			    si.ssi_signo != SIGHUP)
				break;
		}
		now = ks_mono_ms();
		rc = ks_filewatch_poll(fw, now, err, sizeof(err));
		if (rc < 0)
			ks_warn("event=filewatch_error reason=\"%s\"", ks_log_field(&f, err));
		if (rc == 1) {
			/* Both ids are brought up to date, whichever changed. */
			bool cert = file_changed(o->cert, &s.cert_id);
			bool key = file_changed(o->key, &s.key_id);
			if (cert || key)
				reload_cert(&s);
			if (o->config && file_changed(o->config, &s.config_id))
				reload_cfg(&s);
		}
		if ((p[2].revents & POLLIN) && accept_all(&s, lfd, true))
			rest_until[0] = ks_mono_ms() + 250;
		if (afd >= 0 && (p[3].revents & POLLIN) && accept_all(&s, afd, false))
			rest_until[1] = ks_mono_ms() + 250;
	}

	/* The drain: no new connections, the ones in flight finish. */
	atomic_store(&s.draining, true);
	close(lfd);
	lfd = -1;
	if (afd >= 0)
		close(afd);
	afd = -1;
	pthread_mutex_lock(&s.mu);
	unsigned inflight = s.nconns + s.nadmin;
	/* Logged once the listeners are closed: a connection after this line
	 * is refused. */
	ks_info("event=drain signal=%s connections=%u", strsignal((int)si.ssi_signo), inflight);
	while (s.nconns + s.nadmin) {
		struct timespec ts = ks_realtime_after_ms(1000);
		pthread_cond_timedwait(&s.idle, &s.mu, &ts);
	}
	pthread_mutex_unlock(&s.mu);
	ks_info("event=drained connections_waited=%u", inflight);
	rc = 0;
	goto out;
fail:
	ks_error("event=injectd_failed reason=\"%s\"", ks_log_field(&f, err));
out:
	if (lfd >= 0)
		close(lfd);
	if (afd >= 0)
		close(afd);
	if (sfd >= 0)
		close(sfd);
	ks_filewatch_close(fw);
	SSL_CTX_free(s.ctx);
	if (s.cfg)
		cfg_put(&s, s.cfg);
	pthread_cond_destroy(&s.idle);
	pthread_mutex_destroy(&s.mu);
	return rc;
}
