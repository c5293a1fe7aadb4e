/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A user namespace's uid_map (user_namespaces(7)), read and applied with no
 * system call, so the unit tests see every case. Each line is
 * "ID-inside-ns ID-outside-ns length"; the outside column is relative to
 * the user namespace of whoever opened the file (ktls-redirect opens it
 * from its own, the host's).
 */
#ifndef KS_REDIRECT_UIDMAP_H
#define KS_REDIRECT_UIDMAP_H

#include <stddef.h>

#include <linux/types.h>

/* The kernel's limit since 4.15 (340 extents; 5 before). */
#define KS_UID_MAP_MAX 340

struct ks_uid_extent {
	__u32 inside, outside, count;
};

struct ks_uid_map {
	struct ks_uid_extent e[KS_UID_MAP_MAX];
	unsigned int n; /* 0: nothing mapped yet */
};

/* Parses /proc/PID/uid_map text. 0, or -EINVAL with the reason in err. */
int ks_uid_map_parse(const char *text, struct ks_uid_map *m, char *err, size_t errlen);

/* uid inside the namespace -> outside (the opener's view); -ENOENT if unmapped. */
int ks_uid_map_to_outside(const struct ks_uid_map *m, __u32 inside, __u32 *outside);

/* uid in the opener's view -> inside the namespace; -ENOENT if unmapped. */
int ks_uid_map_to_inside(const struct ks_uid_map *m, __u32 outside, __u32 *inside);

/* Whether m maps every uid to itself: the initial user namespace's map. */
int ks_uid_map_is_identity(const struct ks_uid_map *m);

/* "0 100000 65536, 65536 200000 1" for messages; "(empty)" when nothing is mapped. */
void ks_uid_map_format(const struct ks_uid_map *m, char *buf, size_t buflen);

#endif
