/* SPDX-License-Identifier: Apache-2.0 */
#include "redirect/uidmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/parse.h"
#include "common/sbuf.h"

/* One "inside outside count" line, already cut at its newline. */
static int parse_line(char *line, struct ks_uid_extent *e, char *err, size_t errlen)
{
	unsigned long v[3];
	char *save = NULL, *tok;
	int n = 0;

	for (tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (n == 3 || ks_parse_uint(tok, UINT32_MAX, &v[n]) < 0) {
			snprintf(err, errlen, "uid_map: '%s' is not three numbers", line);
			return -EINVAL;
		}
		n++;
	}
	if (n != 3) {
		snprintf(err, errlen, "uid_map: a line with %d numbers, not 3", n);
		return -EINVAL;
	}
	/* The kernel refuses empty extents and ones that wrap past 2^32 - 1. */
	if (v[2] == 0 || v[0] + v[2] > UINT32_MAX || v[1] + v[2] > UINT32_MAX) {
		snprintf(err, errlen, "uid_map: extent %lu %lu %lu is empty or wraps", v[0], v[1],
			 v[2]);
		return -EINVAL;
	}
	*e = (struct ks_uid_extent){
	    .inside = (__u32)v[0], .outside = (__u32)v[1], .count = (__u32)v[2]};
	return 0;
}

int ks_uid_map_parse(const char *text, struct ks_uid_map *m, char *err, size_t errlen)
{
	char line[128];

	memset(m, 0, sizeof(*m));
	for (const char *p = text; *p;) {
		size_t len = strcspn(p, "\n");
		int rc;

		if (len >= sizeof(line)) {
			snprintf(err, errlen, "uid_map: a line of %zu characters", len);
			return -EINVAL;
		}
		memcpy(line, p, len);
		line[len] = '\0';
		p += len + (p[len] == '\n');
		if (line[strspn(line, " \t")] == '\0')
			continue;
		if (m->n == KS_UID_MAP_MAX) {
			snprintf(err, errlen, "uid_map: more than %d lines", KS_UID_MAP_MAX);
			return -EINVAL;
		}
		rc = parse_line(line, &m->e[m->n], err, errlen);
		if (rc < 0)
			return rc;
		m->n++;
	}
	return 0;
}

int ks_uid_map_to_outside(const struct ks_uid_map *m, __u32 inside, __u32 *outside)
{
	for (unsigned int i = 0; i < m->n; i++) {
		const struct ks_uid_extent *e = &m->e[i];

		if (inside >= e->inside && inside - e->inside < e->count) {
			*outside = e->outside + (inside - e->inside);
			return 0;
		}
	}
	return -ENOENT;
}

int ks_uid_map_to_inside(const struct ks_uid_map *m, __u32 outside, __u32 *inside)
{
	for (unsigned int i = 0; i < m->n; i++) {
		const struct ks_uid_extent *e = &m->e[i];

		if (outside >= e->outside && outside - e->outside < e->count) {
			*inside = e->inside + (outside - e->outside);
			return 0;
		}
	}
	return -ENOENT;
}

int ks_uid_map_is_identity(const struct ks_uid_map *m)
{
	/* The initial namespace's one line (kernel/user.c, init_user_ns). */
	return m->n == 1 && m->e[0].inside == 0 && m->e[0].outside == 0 &&
	       m->e[0].count == UINT32_MAX;
}

void ks_uid_map_format(const struct ks_uid_map *m, char *buf, size_t buflen)
{
	struct ks_sbuf b = {.p = buf, .cap = buflen};

	if (buflen == 0)
		return;
	buf[0] = '\0';
	if (m->n == 0)
		ks_sb_printf(&b, "(empty)");
	for (unsigned int i = 0; i < m->n; i++)
		ks_sb_printf(&b, "%s%u %u %u", i ? ", " : "", m->e[i].inside, m->e[i].outside,
			     m->e[i].count);
}
