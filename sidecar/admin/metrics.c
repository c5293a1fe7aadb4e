/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /metrics: the Prometheus text exposition format, version 0.0.4
 * (prometheus.io/docs/instrumenting/exposition_formats). Names follow the
 * Prometheus conventions: a ktls_sidecar_ prefix, base units (seconds,
 * bytes), _total on counters. Every label value comes from a fixed table
 * (dataplane/stats.h, the reject and admission names), never from a peer,
 * so the number of series is bounded by the code and the routes.
 *
 * Every series of a family is written, zeros included: a rate() over a
 * series that appears only after its first event misses that event.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "admin/admin.h"
#include "common/version.h"
#include "dataplane/admission.h"
#include "dataplane/offload.h"
#include "dataplane/stats.h"
#include "dataplane/worker.h"
#include "tls/identity.h"
#include "tls/ktls.h"
#include "tls/tickets.h"

#define P "ktls_sidecar_"

struct ks_msum {
	uint64_t opened[KS_DIR__COUNT][KS_RL__COUNT];
	uint64_t closed[KS_DIR__COUNT][KS_RL__COUNT];
	uint64_t closed_by[KS_DIR__COUNT][KS_CLOSE__COUNT];
	uint64_t hs_failed[KS_DIR__COUNT][KS_REJ__COUNT];
	uint64_t hs_bucket[KS_DIR__COUNT][KS_HS_BUCKETS + 1];
	uint64_t hs_sum_ms[KS_DIR__COUNT];
	uint64_t bytes[KS_DIR__COUNT][KS_FLOW__COUNT];
	uint64_t ubytes[KS_RL__COUNT];
	uint64_t fallbacks[KS_FB__COUNT];
	uint64_t handshakes[KS_DIR__COUNT][2];
	uint64_t resume_refused[KS_DIR__COUNT][KS_RES__COUNT];
	uint64_t log_suppressed;
	uint64_t adm[KS_ADM__COUNT];
};

#define SUM_INTO(dst, src, n)                                                                      \
	do {                                                                                       \
		for (size_t i_ = 0; i_ < (n); i_++)                                                \
			(dst)[i_] += ks_stat_get(&(src)[i_]);                                      \
	} while (0)

static void sum(const struct ks_admin_src *src, struct ks_msum *m)
{
	memset(m, 0, sizeof(*m));
	for (unsigned w = 0; w < src->nworkers; w++) {
		const struct ks_wstats *s = &src->workers[w].stats;

		/* closed before opened: an open gauge never goes below zero
		 * for a connection that closed between the two reads. */
		for (int d = 0; d < KS_DIR__COUNT; d++) {
			SUM_INTO(m->closed[d], s->closed[d], KS_RL__COUNT);
			SUM_INTO(m->opened[d], s->opened[d], KS_RL__COUNT);
			SUM_INTO(m->closed_by[d], s->closed_by[d], KS_CLOSE__COUNT);
			SUM_INTO(m->hs_failed[d], s->hs_failed[d], KS_REJ__COUNT);
			SUM_INTO(m->hs_bucket[d], s->hs_bucket[d], KS_HS_BUCKETS + 1);
			SUM_INTO(m->bytes[d], s->bytes[d], KS_FLOW__COUNT);
			SUM_INTO(m->handshakes[d], s->handshakes[d], 2);
			SUM_INTO(m->resume_refused[d], s->resume_refused[d], KS_RES__COUNT);
			m->hs_sum_ms[d] += ks_stat_get(&s->hs_sum_ms[d]);
		}
		SUM_INTO(m->ubytes, s->ubytes, KS_RL__COUNT);
		SUM_INTO(m->fallbacks, s->fallbacks, KS_FB__COUNT);
		m->log_suppressed += ks_stat_get(&s->log_suppressed);
		SUM_INTO(m->adm, src->workers[w].adm.counts, KS_ADM__COUNT);
	}
}

static void family(struct ks_sbuf *b, const char *name, const char *type, const char *help)
{
	ks_sb_printf(b, "# HELP " P "%s %s\n# TYPE " P "%s %s\n", name, help, name, type);
}

/* The same, for the unprefixed standard names (process_*). */
static void family_std(struct ks_sbuf *b, const char *name, const char *type, const char *help)
{
	ks_sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *yes(bool v)
{
	return v ? "true" : "false";
}

static void info(struct ks_sbuf *b)
{
	const char *why;
	unsigned caps = ks_offload_caps(&why);
	bool on = (caps & KS_KTLS_CAP_ALL) != 0;

	family(b, "build_info", "gauge", "Always 1: the build's version and OpenSSL's.");
	ks_sb_printf(b, P "build_info{version=\"%s\",openssl=\"%s\"} 1\n", ks_version(),
		     OpenSSL_version(OPENSSL_VERSION_STRING));
	/* Both directions are installed together or not at all (offload.c). */
	family(b, "kernel_tls_info", "gauge",
	       "Always 1: whether this kernel offloads TLS records (tx, rx) and takes new keys "
	       "(rekey, KeyUpdate on the kernel path).");
	ks_sb_printf(b, P "kernel_tls_info{tx=\"%s\",rx=\"%s\",rekey=\"%s\"} 1\n", yes(on), yes(on),
		     yes(caps & KS_KTLS_CAP_REKEY));
}

static void connections(struct ks_sbuf *b, const struct ks_msum *m)
{
	family(b, "connections_open", "gauge",
	       "Connections forwarding now (authenticated, or permissive plaintext).");
	for (int d = 0; d < KS_DIR__COUNT; d++)
		for (int r = 0; r < KS_RL__COUNT; r++)
			ks_sb_printf(
			    b, P "connections_open{direction=\"%s\",record_layer=\"%s\"} %llu\n",
			    ks_dir_name((enum ks_dir)d), ks_rl_name((enum ks_record_layer)r),
			    (unsigned long long)(m->opened[d][r] > m->closed[d][r]
						     ? m->opened[d][r] - m->closed[d][r]
						     : 0));
	family(b, "connections_total", "counter", "Connections that started forwarding.");
	for (int d = 0; d < KS_DIR__COUNT; d++)
		for (int r = 0; r < KS_RL__COUNT; r++)
			ks_sb_printf(
			    b, P "connections_total{direction=\"%s\",record_layer=\"%s\"} %llu\n",
			    ks_dir_name((enum ks_dir)d), ks_rl_name((enum ks_record_layer)r),
			    (unsigned long long)m->opened[d][r]);
	family(b, "connections_closed_total", "counter",
	       "Forwarding connections closed, by the reason= of their conn_close log line.");
	for (int d = 0; d < KS_DIR__COUNT; d++)
		for (int r = 0; r < KS_CLOSE__COUNT; r++)
			ks_sb_printf(
			    b, P "connections_closed_total{direction=\"%s\",reason=\"%s\"} %llu\n",
			    ks_dir_name((enum ks_dir)d),
			    ks_close_reason_name((enum ks_close_reason)r),
			    (unsigned long long)m->closed_by[d][r]);
}

static void handshakes(struct ks_sbuf *b, const struct ks_msum *m)
{
	family(b, "handshake_failures_total", "counter",
	       "Connections refused before forwarding, by the reason= of their "
	       "handshake_rejected log line.");
	for (int d = 0; d < KS_DIR__COUNT; d++)
		for (int r = KS_REJ_NONE + 1; r < KS_REJ__COUNT; r++)
			ks_sb_printf(
			    b, P "handshake_failures_total{direction=\"%s\",reason=\"%s\"} %llu\n",
			    ks_dir_name((enum ks_dir)d), ks_reject_name((enum ks_reject)r),
			    (unsigned long long)m->hs_failed[d][r]);
	family(b, "handshake_duration_seconds", "histogram",
	       "From accept to forwarding: outbound includes the TCP connect to the remote, "
	       "inbound the connect to the app.");
	for (int d = 0; d < KS_DIR__COUNT; d++) {
		const char *dir = ks_dir_name((enum ks_dir)d);
		uint64_t cum = 0;

		for (int i = 0; i < KS_HS_BUCKETS; i++) {
			cum += m->hs_bucket[d][i];
			ks_sb_printf(
			    b,
			    P "handshake_duration_seconds_bucket{direction=\"%s\",le=\"%g\"} "
			      "%llu\n",
			    dir, ks_hs_bucket_ms[i] / 1000.0, (unsigned long long)cum);
		}
		cum += m->hs_bucket[d][KS_HS_BUCKETS];
		ks_sb_printf(
		    b, P "handshake_duration_seconds_bucket{direction=\"%s\",le=\"+Inf\"} %llu\n",
		    dir, (unsigned long long)cum);
		ks_sb_printf(b, P "handshake_duration_seconds_sum{direction=\"%s\"} %.3f\n", dir,
			     m->hs_sum_ms[d] / 1000.0);
		ks_sb_printf(b, P "handshake_duration_seconds_count{direction=\"%s\"} %llu\n", dir,
			     (unsigned long long)cum);
	}
}

static void bytes(struct ks_sbuf *b, const struct ks_msum *m)
{
	static const char *const flows[KS_FLOW__COUNT] = {"to_peer", "from_peer"};

	family(b, "bytes_total", "counter",
	       "Application bytes forwarded, counted as they move: to_peer toward the other "
	       "sidecar, from_peer toward the local app.");
	for (int d = 0; d < KS_DIR__COUNT; d++)
		for (int f = 0; f < KS_FLOW__COUNT; f++)
			ks_sb_printf(b, P "bytes_total{direction=\"%s\",flow=\"%s\"} %llu\n",
				     ks_dir_name((enum ks_dir)d), flows[f],
				     (unsigned long long)m->bytes[d][f]);
	family(b, "userspace_bytes_total", "counter",
	       "Payload bytes that passed through the sidecar's own memory. On the kernel record "
	       "layer only TLS control records (KeyUpdate, alerts): the zero-copy proof.");
	for (int r = 0; r < KS_RL__COUNT; r++)
		ks_sb_printf(b, P "userspace_bytes_total{record_layer=\"%s\"} %llu\n",
			     ks_rl_name((enum ks_record_layer)r), (unsigned long long)m->ubytes[r]);
	family(b, "ktls_fallbacks_total", "counter",
	       "TLS connections that stayed on the userspace record layer, by why.");
	for (int f = 0; f < KS_FB__COUNT; f++)
		ks_sb_printf(b, P "ktls_fallbacks_total{reason=\"%s\"} %llu\n",
			     ks_fallback_name((enum ks_fallback)f),
			     (unsigned long long)m->fallbacks[f]);
}

static void resumption(struct ks_sbuf *b, const struct ks_msum *m)
{
	static const char *const resumed[2] = {"no", "yes"};

	family(b, "tls_handshakes_total", "counter",
	       "TLS connections that reached forwarding: resumed=yes for a TLS 1.3 resumption "
	       "(psk_dhe_ke, re-validated), no for a full handshake.");
	for (int d = 0; d < KS_DIR__COUNT; d++)
		for (int r = 0; r < 2; r++)
			ks_sb_printf(
			    b, P "tls_handshakes_total{direction=\"%s\",resumed=\"%s\"} %llu\n",
			    ks_dir_name((enum ks_dir)d), resumed[r],
			    (unsigned long long)m->handshakes[d][r]);
	family(b, "tls_resumptions_refused_total", "counter",
	       "Session tickets not used, by why: offered by us (outbound) or to us (inbound) "
	       "and refused by re-validation, its lifetime or an unknown key. A full handshake "
	       "follows each.");
	for (int d = 0; d < KS_DIR__COUNT; d++)
		for (int r = 1; r < KS_RES__COUNT; r++)
			ks_sb_printf(
			    b,
			    P "tls_resumptions_refused_total{direction=\"%s\",reason=\"%s\"} "
			      "%llu\n",
			    ks_dir_name((enum ks_dir)d), ks_resume_why_name((enum ks_resume_why)r),
			    (unsigned long long)m->resume_refused[d][r]);
}

/*
 * Session ticket keys (tls/tickets.h). Zeros with --session-resumption off,
 * so that the series exist either way. Alert on rotation failures (the RNG
 * failed, and the key in force keeps sealing past its period) and, where a
 * control plane pushes keys, on source="own" above zero in any replica: it
 * cannot open the other replicas' tickets.
 */
static void tickets(struct ks_sbuf *b, const struct ks_admin_src *src)
{
	struct ks_ticket_stats st = {0};

	if (src->tickets)
		ks_ticket_ring_stats(src->tickets, &st);
	family(b, "tls_ticket_keys", "gauge",
	       "Session ticket keys in force (one seals, the rest only open), by whose they "
	       "are: our own (rotated every --session-lifetime) or pushed by the control plane "
	       "(SetTicketKeys).");
	ks_sb_printf(b, P "tls_ticket_keys{source=\"own\"} %zu\n", st.pushed ? 0 : st.nkeys);
	ks_sb_printf(b, P "tls_ticket_keys{source=\"pushed\"} %zu\n", st.pushed ? st.nkeys : 0);
	family(b, "tls_ticket_key_rotations_total", "counter",
	       "New session ticket keys of our own, one a --session-lifetime (the first at "
	       "start-up not counted).");
	ks_sb_printf(b, P "tls_ticket_key_rotations_total %llu\n",
		     (unsigned long long)st.rotations);
	family(b, "tls_ticket_key_rotation_failures_total", "counter",
	       "Rotations that could not make a key (the RNG failed): the key in force kept "
	       "sealing.");
	ks_sb_printf(b, P "tls_ticket_key_rotation_failures_total %llu\n",
		     (unsigned long long)st.rotation_failures);
}

static void admission(struct ks_sbuf *b, const struct ks_msum *m)
{
	family(b, "admission_refusals_total", "counter",
	       "Connections turned away by the admission limits (--max-handshakes sheds the "
	       "oldest pending one, --max-connections, --max-handshakes-per-source), and "
	       "accept(2) failures (descriptors or memory).");
	for (int r = 0; r < KS_ADM__COUNT; r++)
		ks_sb_printf(b, P "admission_refusals_total{reason=\"%s\"} %llu\n",
			     ks_adm_reason_name((enum ks_adm_reason)r),
			     (unsigned long long)m->adm[r]);
	family(b, "log_lines_suppressed_total", "counter",
	       "Per-connection warning lines held back by the log rate limiter (each "
	       "summarised by an event=log_suppressed line).");
	ks_sb_printf(b, P "log_lines_suppressed_total %llu\n",
		     (unsigned long long)m->log_suppressed);
}

static void identity(struct ks_sbuf *b, const struct ks_admin_src *src)
{
	struct ks_identity_slot *slot = &src->sh->ident;
	struct ks_identity *id = ks_identity_slot_get(slot, NULL);

	family(b, "identity_cert_expiration_timestamp_seconds", "gauge",
	       "notAfter of the certificate in force (Unix time); absent until one is loaded.");
	if (id->leaf)
		ks_sb_printf(b, P "identity_cert_expiration_timestamp_seconds %lld\n",
			     (long long)id->not_after_unix);
	ks_identity_put(id);
	family(b, "identity_updates_total", "counter",
	       "Updates of the identity, trust bundles, CRLs, policy or session ticket keys: "
	       "from the files on SIGHUP (file) or when they change (files), from the control "
	       "API, or from the SPIFFE Workload API (workload_api).");
	for (int s = 0; s < KS_IDSRC__COUNT; s++)
		for (int ok = 1; ok >= 0; ok--)
			ks_sb_printf(b,
				     P "identity_updates_total{source=\"%s\",result=\"%s\"} %llu\n",
				     ks_ident_source_name((enum ks_ident_source)s),
				     ok ? "accepted" : "rejected",
				     (unsigned long long)atomic_load_explicit(
					 &slot->updates[s][ok], memory_order_relaxed));
}

static void process(struct ks_sbuf *b, const struct ks_admin_src *src)
{
	family(b, "draining", "gauge", "1 while the sidecar drains (SIGTERM, Drain, /drain).");
	ks_sb_printf(b, P "draining %d\n",
		     atomic_load_explicit(&src->sh->drain, memory_order_acquire) ? 1 : 0);
	family(b, "workers", "gauge", "Worker threads (event loops).");
	ks_sb_printf(b, P "workers %u\n", src->nworkers);
}

/*
 * The standard process_* metrics of Prometheus' client libraries, from
 * /proc/self (proc(5)): what the sidecar costs its pod, comparable across
 * proxies that export the same names (Envoy does not; HAProxy's exporter
 * and Go proxies do).
 */
static void process_std(struct ks_sbuf *b)
{
	char buf[1024], *p;
	unsigned long long utime, stime, start;
	long long rss;
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	struct rlimit rl;
	struct dirent *e;
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	unsigned fds = 0;
	DIR *d;

	if (f)
		fclose(f);
	buf[n] = '\0';
	/* Fields after the command name, which may hold spaces: from the last ')'. */
	p = strrchr(buf, ')');
	if (p && tck > 0 &&
	    sscanf(p + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
		   "%*d %llu %*u %lld",
		   &utime, &stime, &start, &rss) == 4) {
		struct timespec boot_rt, mono;

		family_std(b, "process_cpu_seconds_total", "counter", "User and system CPU time.");
		ks_sb_printf(b, "process_cpu_seconds_total %.2f\n",
			     (double)(utime + stime) / (double)tck);
		family_std(b, "process_resident_memory_bytes", "gauge", "Resident set size.");
		ks_sb_printf(b, "process_resident_memory_bytes %lld\n", rss * page);
		/* starttime is in ticks since boot: boot time is now minus uptime. */
		clock_gettime(CLOCK_REALTIME, &boot_rt);
		clock_gettime(CLOCK_BOOTTIME, &mono);
		family_std(b, "process_start_time_seconds", "gauge", "Start time, Unix seconds.");
		ks_sb_printf(b, "process_start_time_seconds %.2f\n",
			     (double)boot_rt.tv_sec - (double)mono.tv_sec +
				 (double)(boot_rt.tv_nsec - mono.tv_nsec) / 1e9 +
				 (double)start / (double)tck);
	}
	d = opendir("/proc/self/fd");
	if (d) {
		while ((e = readdir(d)))
			fds += e->d_name[0] != '.';
		closedir(d);
		family_std(b, "process_open_fds", "gauge", "Open file descriptors.");
		ks_sb_printf(b, "process_open_fds %u\n",
			     fds > 0 ? fds - 1 : 0); /* not the DIR's own */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		family_std(b, "process_max_fds", "gauge", "RLIMIT_NOFILE.");
		ks_sb_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
}

int ks_metrics_render(const struct ks_admin_src *src, struct ks_sbuf *b)
{
	struct ks_msum m;

	sum(src, &m);
	info(b);
	connections(b, &m);
	handshakes(b, &m);
	bytes(b, &m);
	resumption(b, &m);
	tickets(b, src);
	admission(b, &m);
	identity(b, src);
	process(b, src);
	process_std(b);
	return ks_sb_result(b) < 0 ? -ENOSPC : 0;
}
