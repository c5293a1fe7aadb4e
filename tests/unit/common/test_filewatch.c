/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file watcher (common/filewatch.h) on a real inotify, in a temporary
 * directory: the kubelet's atomic-writer swap (..data renamed over to a new
 * ..YYYY directory) and then a rewrite inside the new directory (the watch
 * followed the swap), an in-place rewrite, a rename-replace, events for
 * names that are not ours ignored, and the settle: a change is reported
 * once, settle_ms after its last event. Time is the caller's (now_ms), so
 * nothing here depends on how fast the machine is.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/filewatch.h"

#define SETTLE 100

struct fx {
	char dir[64];
	char path[128];
	struct ks_filewatch *w;
};

static char err[512];

static void put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
}

static void pathf(char *out, size_t n, const char *dir, const char *name)
{
	assert_true(snprintf(out, n, "%s/%s", dir, name) < (int)n);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/ks-filewatch.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	ks_filewatch_close(f->w);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void open_watch(struct fx *f, const char *name)
{
	const char *paths[1] = {f->path};

	pathf(f->path, sizeof(f->path), f->dir, name);
	assert_int_equal(ks_filewatch_open(paths, 1, SETTLE, &f->w, err, sizeof(err)), 0);
	assert_int_equal(ks_filewatch_poll(f->w, 0, err, sizeof(err)), 0);
	assert_int_equal(ks_filewatch_timeout_ms(f->w, 0), -1);
}

/* Something of ours happened at t: reported at t + SETTLE, not before, once. */
static void expect_change_at(struct fx *f, uint64_t t)
{
	assert_int_equal(ks_filewatch_poll(f->w, t, err, sizeof(err)), 0);
	assert_int_equal(ks_filewatch_timeout_ms(f->w, t), SETTLE);
	assert_int_equal(ks_filewatch_poll(f->w, t + SETTLE - 1, err, sizeof(err)), 0);
	assert_int_equal(ks_filewatch_poll(f->w, t + SETTLE, err, sizeof(err)), 1);
	assert_int_equal(ks_filewatch_poll(f->w, t + 10 * SETTLE, err, sizeof(err)), 0);
	assert_int_equal(ks_filewatch_timeout_ms(f->w, t + 10 * SETTLE), -1);
}

/* Nothing of ours since the last poll: nothing, however long we wait. */
static void expect_quiet(struct fx *f, uint64_t t)
{
	assert_int_equal(ks_filewatch_poll(f->w, t, err, sizeof(err)), 0);
	assert_int_equal(ks_filewatch_timeout_ms(f->w, t), -1);
	assert_int_equal(ks_filewatch_poll(f->w, t + 100 * SETTLE, err, sizeof(err)), 0);
}

/* The kubelet's atomic writer (k8s.io/kubernetes pkg/volume/util/atomic_writer.go). */
static void write_generation(struct fx *f, const char *gen, const char *text)
{
	char d[128], p[192], tmp[128], data[128];

	pathf(d, sizeof(d), f->dir, gen);
	assert_int_equal(mkdir(d, 0755), 0);
	pathf(p, sizeof(p), d, "tls.crt");
	put(p, text);
	pathf(tmp, sizeof(tmp), f->dir, "..data_tmp");
	pathf(data, sizeof(data), f->dir, "..data");
	assert_int_equal(symlink(gen, tmp), 0);
	assert_int_equal(rename(tmp, data), 0);
}

static void test_atomic_writer_swap(void **state)
{
	struct fx *f = *state;
	char vis[128], old[192], cmd[256], cur[192];

	write_generation(f, "..2026_12_01_00_00_00.1", "one");
	pathf(vis, sizeof(vis), f->dir, "tls.crt");
	assert_int_equal(symlink("..data/tls.crt", vis), 0);
	open_watch(f, "tls.crt");
	/* tls.crt and ..data in the volume, tls.crt in the generation's directory */
	assert_int_equal(ks_filewatch_npairs(f->w), 3);

	write_generation(f, "..2026_12_01_01_00_00.2", "two");
	pathf(old, sizeof(old), f->dir, "..2026_12_01_00_00_00.1");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", old);
	assert_int_equal(system(cmd), 0);
	expect_change_at(f, 1000);

	/* The watch follows ..data to the new directory: a rewrite there counts
	 * (the kubelet never does that, but a hand-made layout can). */
	pathf(cur, sizeof(cur), f->dir, "..2026_12_01_01_00_00.2/tls.crt");
	put(cur, "three");
	expect_change_at(f, 2000);
	assert_int_equal(ks_filewatch_npairs(f->w), 3);
}

static void test_rewrite_in_place(void **state)
{
	struct fx *f = *state;
	char p[128];

	pathf(p, sizeof(p), f->dir, "svid.pem");
	put(p, "one");
	open_watch(f, "svid.pem");
	put(p, "two");
	expect_change_at(f, 1000);
	put(p, "three");
	expect_change_at(f, 2000);
}

static void test_rename_replace(void **state)
{
	struct fx *f = *state;
	char p[128], tmp[128];

	pathf(p, sizeof(p), f->dir, "cert.pem");
	pathf(tmp, sizeof(tmp), f->dir, ".cert.pem.tmp");
	put(p, "one");
	open_watch(f, "cert.pem");
	put(tmp, "two");
	expect_quiet(f, 500); /* the temporary name is not ours */
	assert_int_equal(rename(tmp, p), 0);
	expect_change_at(f, 100000);
}

/* A file that does not exist yet: its arrival is a change. */
static void test_file_appears(void **state)
{
	struct fx *f = *state;
	char p[128];

	open_watch(f, "later.pem");
	pathf(p, sizeof(p), f->dir, "later.pem");
	put(p, "here");
	expect_change_at(f, 1000);
	assert_int_equal(unlink(p), 0);
	expect_change_at(f, 2000);
}

static void test_not_ours_ignored(void **state)
{
	struct fx *f = *state;
	char p[128], other[128], other2[128], sub[128];

	pathf(p, sizeof(p), f->dir, "tls.crt");
	put(p, "one");
	open_watch(f, "tls.crt");
	pathf(other, sizeof(other), f->dir, "tls.crt.bak");
	pathf(other2, sizeof(other2), f->dir, "unrelated");
	pathf(sub, sizeof(sub), f->dir, "..2026_x");
	put(other, "x");
	put(other, "y");
	assert_int_equal(rename(other, other2), 0);
	assert_int_equal(unlink(other2), 0);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(rmdir(sub), 0);
	/* Reading our own file is not a change either. */
	assert_int_equal(access(p, R_OK), 0);
	{
		char b[8];
		int fd = open(p, O_RDONLY);

		assert_true(fd >= 0);
		assert_true(read(fd, b, sizeof(b)) > 0);
		close(fd);
	}
	expect_quiet(f, 1000);
}

/* A writer that keeps writing: reported once, SETTLE after its last write. */
static void test_settle(void **state)
{
	struct fx *f = *state;
	char p[128], k[128];
	const char *paths[2];

	pathf(p, sizeof(p), f->dir, "tls.crt");
	pathf(k, sizeof(k), f->dir, "tls.key");
	put(p, "one");
	put(k, "one");
	paths[0] = p;
	paths[1] = k;
	assert_int_equal(ks_filewatch_open(paths, 2, SETTLE, &f->w, err, sizeof(err)), 0);
	assert_int_equal(ks_filewatch_npairs(f->w), 2);
	for (uint64_t t = 1000; t <= 1600; t += SETTLE / 2) {
		put((t / 50) % 2 ? p : k, "more");
		assert_int_equal(ks_filewatch_poll(f->w, t, err, sizeof(err)), 0);
		assert_int_equal(ks_filewatch_poll(f->w, t + SETTLE / 2 - 1, err, sizeof(err)), 0);
	}
	assert_int_equal(ks_filewatch_timeout_ms(f->w, 1650), SETTLE - 50);
	assert_int_equal(ks_filewatch_poll(f->w, 1699, err, sizeof(err)), 0);
	assert_int_equal(ks_filewatch_poll(f->w, 1700, err, sizeof(err)), 1);
	expect_quiet(f, 1800);
}

/* A directory that is not there, or not a directory: a clear error. */
static void test_open_errors(void **state)
{
	struct fx *f = *state;
	char p[128], q[192];
	const char *paths[1] = {p};

	pathf(p, sizeof(p), f->dir, "missing/tls.crt");
	assert_int_equal(ks_filewatch_open(paths, 1, SETTLE, &f->w, err, sizeof(err)), -ENOENT);
	assert_null(f->w);
	assert_non_null(strstr(err, "cannot watch"));
	assert_non_null(strstr(err, "missing"));

	pathf(q, sizeof(q), f->dir, "file");
	put(q, "x");
	pathf(p, sizeof(p), f->dir, "file/tls.crt");
	assert_int_equal(ks_filewatch_open(paths, 1, SETTLE, &f->w, err, sizeof(err)), -ENOTDIR);
	assert_null(f->w);

	pathf(p, sizeof(p), f->dir, "");
	assert_int_equal(ks_filewatch_open(paths, 1, SETTLE, &f->w, err, sizeof(err)), -EISDIR);
	assert_null(f->w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_atomic_writer_swap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rewrite_in_place, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rename_replace, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_appears, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_ours_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_settle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
