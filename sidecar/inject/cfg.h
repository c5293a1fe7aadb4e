/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The injection area's own view of an InjectorConfig (config.c), for
 * shape.c and object.c. Not for other areas: they use inject.h.
 *
 * The configuration is a jansson tree: the defaults, with the document
 * merged over them key by key (a key the defaults do not have is an error,
 * and so is a value of another JSON type), then checked field by field.
 * Once ks_inject_cfg_check has passed it is never written again, so any
 * number of threads may read one (the webhook swaps in a new one on reload).
 */
#ifndef KS_INJECT_CFG_H
#define KS_INJECT_CFG_H

#include <jansson.h>
#include <stdbool.h>

#include "inject/inject.h"

struct ks_inject_cfg {
	json_t *tree;
};

/* A value by dotted path ("sidecar.adminPort"); the defaults guarantee each
 * path the shape uses exists with its type once loaded. */
const json_t *ks_cfg_get(const struct ks_inject_cfg *cfg, const char *path);
const char *ks_cfg_str(const struct ks_inject_cfg *cfg, const char *path);
long long ks_cfg_int(const struct ks_inject_cfg *cfg, const char *path);
bool ks_cfg_bool(const struct ks_inject_cfg *cfg, const char *path);

/* Formats msg and returns -EINVAL (msg.c). */
int ks_inject_fail(struct ks_inject_msg *msg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Whether s is one of list's strings (list ends with NULL; msg.c). */
bool ks_inject_in_list(const char *s, const char *const *list);

/* Kubernetes quantities (resource.Quantity's grammar: a number with an
 * optional binary or decimal suffix or exponent). */
bool ks_inject_quantity_ok(const char *s);

#endif
