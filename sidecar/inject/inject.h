/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sidecar injection: the one place that knows the shape of an injected pod.
 * `ktlsctl inject` (offline, Istio's kube-inject), the admission webhook
 * (`ktlsctl inject --serve`) and the chart (helm/ktls-sidecar renders
 * through `ktlsctl inject` as a Helm post-renderer) all call this, so the
 * three can never drift.
 *
 * Objects are jansson values (manifest.c turns YAML and JSON into them and
 * back). Injection edits an object in place. It is deterministic and
 * idempotent: everything it adds is named "ktls-..." (containers, init
 * containers, volumes) or keyed "ktls-sidecar.io/..." (annotations), and a
 * re-injection first removes those, then adds them again from the current
 * configuration, so injecting an injected object gives the same bytes, and
 * a newer version replaces an older one in place.
 *
 * Configuration comes from two places:
 *  - the injector's: an InjectorConfig document (config.c; the schema is
 *    the README's "Injection"), immutable once loaded; a reload builds a
 *    new one and swaps it (the webhook's threading model is in serve.c);
 *  - the pod's: annotations on the pod template, ktls-sidecar.io/<name>
 *    (annotations.c). A bad value is an error naming the object and the
 *    annotation, never a silent default.
 *
 * Errors: functions return 0 (or a KS_INJECT_* result) or -errno, and fill
 * a struct ks_inject_msg with one line for a human: "Deployment shop/cart:
 * annotation ktls-sidecar.io/inbound: '80x' is not LISTEN=APP (ports)".
 */
#ifndef KS_INJECT_INJECT_H
#define KS_INJECT_INJECT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define KS_INJECT_ANN_PREFIX "ktls-sidecar.io/"
/* The annotation recording what injected the pod: the injector's version. */
#define KS_INJECT_ANN_VERSION "ktls-sidecar.io/injected-version"
/* The pod's fsGroup when the injector set it (the pod had none): a
 * re-injection that needs none (another identity source) removes it. */
#define KS_INJECT_ANN_FSGROUP "ktls-sidecar.io/injected-fs-group"
#define KS_INJECT_MSG_MAX     512

struct ks_inject_msg {
	char text[KS_INJECT_MSG_MAX];
};

struct ks_inject_cfg;

/* What happened to one pod template (or one object). */
enum ks_inject_result {
	KS_INJECT_DONE = 0,    /* injected (or re-injected) */
	KS_INJECT_SKIPPED = 1, /* opt-out, hostNetwork or another mesh: msg says which */
	KS_INJECT_PASSED = 2,  /* a kind that holds no pod: unchanged */
};

/* Loads an InjectorConfig document (apiVersion ktls-sidecar.io/v1alpha1,
 * kind InjectorConfig). Unknown keys and bad values are errors. A NULL doc
 * gives the defaults (which need a trust domain from the caller:
 * ks_inject_cfg_set_trust_domain). 0 or -EINVAL (msg says why). */
int ks_inject_cfg_load(const json_t *doc, struct ks_inject_cfg **out, struct ks_inject_msg *msg);
void ks_inject_cfg_free(struct ks_inject_cfg *cfg);
/* Command-line overrides of the loaded document (ktlsctl inject's flags). */
int ks_inject_cfg_set(struct ks_inject_cfg *cfg, const char *key, const char *value,
		      struct ks_inject_msg *msg);
/* 0, or -EINVAL when the configuration cannot inject (no trust domain, a
 * files source without a Secret, ...). */
int ks_inject_cfg_check(const struct ks_inject_cfg *cfg, struct ks_inject_msg *msg);

/* Injects one pod: meta is the pod's (or the pod template's) metadata
 * object, spec its spec. owner_kind is the kind of the object that holds
 * the template ("Pod", "Deployment", "Job", "CronJob", ... or, for the
 * webhook, the kind of the pod's controller owner, "" if none): a Job's
 * pod drains with no delay. what names the object in messages
 * ("Deployment shop/cart"). Returns a ks_inject_result or -EINVAL. */
int ks_inject_pod(json_t *meta, json_t *spec, const char *owner_kind, const char *what,
		  const struct ks_inject_cfg *cfg, struct ks_inject_msg *msg);

/* Injects any object: the workload kinds (Pod, Deployment, StatefulSet,
 * DaemonSet, ReplicaSet, Job, CronJob) through their pod template, a List
 * item by item; anything else is KS_INJECT_PASSED. A List reports the
 * first error; *skipped (may be NULL) counts the pods skipped, with each
 * one's reason printed to the skip callback (may be NULL). */
typedef void (*ks_inject_note_fn)(void *arg, const char *line);
int ks_inject_object(json_t *obj, const struct ks_inject_cfg *cfg, ks_inject_note_fn note,
		     void *note_arg, struct ks_inject_msg *msg);

/* Whether obj is (or, a List, holds) a kind with a pod: an input without
 * one needs no configuration (the chart with workload.enabled=false). */
bool ks_inject_holds_pod(const json_t *obj);

/* "Kind namespace/name" of an object, for messages ("Deployment cart"
 * without a namespace). */
void ks_inject_describe(const json_t *obj, char *out, size_t len);

#endif
