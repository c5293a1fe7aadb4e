/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One pod's injection options (annotations.c) and the containers and
 * volumes built from them (shape.c). The injection area's own header.
 */
#ifndef KS_INJECT_POD_H
#define KS_INJECT_POD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "inject/cfg.h"

#define KS_POD_MAX_INBOUND 16

struct ks_pod_inbound {
	uint16_t listen; /* the sidecar's mTLS port */
	uint16_t app;	 /* the app's plaintext port on 127.0.0.1 */
};

/* Everything a pod's annotations say, with the injector's defaults where
 * they say nothing. Strings point into the annotations or the config; the
 * json_t members are owned (ks_pod_opts_free). */
struct ks_pod_opts {
	bool opt_out; /* ktls-sidecar.io/inject: "false" */
	struct ks_pod_inbound in[KS_POD_MAX_INBOUND];
	size_t nin;
	json_t *outbound;  /* array of "LOCALPORT=HOST:PORT[,id=...]" */
	json_t *allow;	   /* array of SPIFFE ID patterns */
	json_t *resources; /* the sidecar's, defaults overridden per key */
	const char *inbound_mode;
	const char *ktls;
	const char *log_level;
};

/* Reads the ktls-sidecar.io/... annotations (annotations may be NULL). An
 * unknown ktls-sidecar.io/ key is an error too: a typo would otherwise be a
 * silent default. 0 or -EINVAL (msg names what and the annotation). */
int ks_pod_opts_parse(const json_t *annotations, const struct ks_inject_cfg *cfg, const char *what,
		      struct ks_pod_opts *o, struct ks_inject_msg *msg);
void ks_pod_opts_free(struct ks_pod_opts *o);

/* What the shape adds to one pod. */
struct ks_pod_shape {
	json_t *init;	    /* prepended to spec.initContainers */
	json_t *containers; /* prepended to spec.containers (classic mode) */
	json_t *volumes;    /* appended to spec.volumes */
	long long fs_group; /* the pod's fsGroup to set if it has none, or -1 */
};

/* Builds the shape for a pod: spec is read (grace period, the app's uids
 * and probes, the ports it uses) and never written. owner_kind decides the
 * drain delay (a Job's pods drain with none). */
int ks_pod_shape_build(const struct ks_inject_cfg *cfg, const struct ks_pod_opts *o,
		       const json_t *spec, const char *owner_kind, const char *what,
		       struct ks_pod_shape *shape, struct ks_inject_msg *msg);
void ks_pod_shape_free(struct ks_pod_shape *shape);

#endif
