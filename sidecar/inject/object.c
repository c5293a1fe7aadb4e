/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which objects hold a pod, where, and what injecting one does to it.
 *
 * A re-injection removes what an earlier one added (the "ktls-" names, the
 * version annotation) before adding the shape again, so the result depends
 * only on the object as its owner wrote it and on the configuration:
 * injecting twice changes nothing, and a newer injector updates in place.
 * The names "ktls-*" of containers and volumes are therefore reserved.
 */
#include "inject/pod.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/version.h"

void ks_inject_describe(const json_t *obj, char *out, size_t len)
{
	const json_t *meta = json_object_get(obj, "metadata");
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	const char *ns = json_string_value(json_object_get(meta, "namespace"));
	const char *name = json_string_value(json_object_get(meta, "name"));

	if (!name)
		name = json_string_value(json_object_get(meta, "generateName"));
	snprintf(out, len, "%s %s%s%s", kind ? kind : "object", ns ? ns : "", ns ? "/" : "",
		 name ? name : "(no name)");
}

/* Another mesh's proxy: two sidecars would each take the pod's traffic. */
static const char *other_mesh(const json_t *meta, const json_t *spec)
{
	static const char *const proxies[] = {"istio-proxy", "linkerd-proxy", NULL};
	static const char *const lists[] = {"containers", "initContainers", NULL};
	const json_t *ann = json_object_get(meta, "annotations");

	for (const char *const *l = lists; *l; l++) {
		size_t i;
		json_t *c;
		json_array_foreach(json_object_get(spec, *l), i, c)
		{
			const char *n = json_string_value(json_object_get(c, "name"));
			for (const char *const *p = proxies; n && *p; p++)
				if (strcmp(n, *p) == 0)
					return *p;
		}
	}
	if (json_object_get(ann, "sidecar.istio.io/status"))
		return "istio-proxy";
	if (json_object_get(ann, "linkerd.io/proxy-version"))
		return "linkerd-proxy";
	return NULL;
}

/* Removes the entries an earlier injection added: names "ktls-*". */
static int strip(json_t *list)
{
	if (!list)
		return 0;
	if (!json_is_array(list))
		return -EINVAL;
	for (size_t i = json_array_size(list); i-- > 0;) {
		const char *n = json_string_value(json_object_get(json_array_get(list, i), "name"));
		if (n && strncmp(n, "ktls-", 5) == 0 && json_array_remove(list, i))
			return -ENOMEM;
	}
	return 0;
}

/* A list field of spec that the shape adds to: the existing one, or a new
 * one placed next to spec.containers (initContainers before it, volumes
 * after it, where people write them). The place does not depend on what
 * else the spec has, so a re-injection, which starts from the spec with
 * such lists dropped but with keys an earlier injection added (its
 * securityContext), puts them where a fresh injection does. */
static json_t *list_near_containers(json_t *spec, const char *key, bool before)
{
	json_t *l = json_object_get(spec, key);
	if (l)
		return json_is_array(l) ? l : NULL;
	json_t *copy = json_object();
	l = json_array();
	int rc = copy && l ? 0 : -ENOMEM;
	const char *k;
	json_t *v;
	json_object_foreach(spec, k, v)
	{
		bool at = strcmp(k, "containers") == 0;
		if (rc == 0 && at && before)
			rc = json_object_set(copy, key, l);
		if (rc == 0)
			rc = json_object_set(copy, k, v);
		if (rc == 0 && at && !before)
			rc = json_object_set(copy, key, l);
	}
	if (rc == 0 && !json_object_get(copy, key)) /* no containers: at the end */
		rc = json_object_set(copy, key, l);
	if (rc == 0) {
		json_object_clear(spec);
		rc = json_object_update(spec, copy);
	}
	json_decref(copy);
	json_decref(l); /* spec holds it now */
	return rc ? NULL : json_object_get(spec, key);
}

static int prepend(json_t *list, const json_t *items)
{
	for (size_t i = json_array_size(items); i-- > 0;)
		if (json_array_insert(list, 0, json_array_get(items, i)))
			return -ENOMEM;
	return 0;
}

static int append(json_t *list, const json_t *items)
{
	return json_array_extend(list, (json_t *)items) ? -ENOMEM : 0;
}

/* YAML's "key:" with nothing after it is null, which Kubernetes reads as
 * absent: charts render `volumes:` or `annotations:` so when a conditional
 * block comes out empty. */
static bool is_list_or_absent(const json_t *spec, const char *key)
{
	const json_t *v = json_object_get(spec, key);
	return !v || json_is_null(v) || json_is_array(v);
}

/* Removes the keys whose value is null (absent, as above) or an empty
 * list: what a strip leaves where an earlier injection made the list, so
 * that the next one starts from the object as its owner wrote it. */
static void drop_empty(json_t *obj, const char *const *keys)
{
	for (; *keys; keys++) {
		json_t *v = json_object_get(obj, *keys);
		if (v && (json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0)))
			json_object_del(obj, *keys);
	}
}

/* Takes back the fsGroup an earlier injection set (its annotation says
 * which, and the pod still has that one): the owner's pod had none. An
 * owner's own fsGroup, or one changed since, stays. */
static void unstrip_fs_group(json_t *spec, const json_t *ann)
{
	const char *was = json_string_value(json_object_get(ann, KS_INJECT_ANN_FSGROUP));
	json_t *psc = json_object_get(spec, "securityContext");
	json_t *fs = json_object_get(psc, "fsGroup");

	if (!was || !json_is_integer(fs))
		return;
	char now[32];
	snprintf(now, sizeof(now), "%" JSON_INTEGER_FORMAT, json_integer_value(fs));
	if (strcmp(was, now) != 0)
		return;
	json_object_del(psc, "fsGroup");
	if (json_object_size(psc) == 0)
		json_object_del(spec, "securityContext");
}

int ks_inject_pod(json_t *meta, json_t *spec, const char *owner_kind, const char *what,
		  const struct ks_inject_cfg *cfg, struct ks_inject_msg *msg)
{
	struct ks_pod_opts o;
	struct ks_pod_shape shape = {.fs_group = -1};
	bool fs_added = false;
	int rc;

	if (!json_is_object(meta) || !json_is_object(spec))
		return ks_inject_fail(msg, "%s: no pod metadata or spec to inject", what);
	static const char *const lists[] = {"containers", "initContainers", "volumes", NULL};
	for (const char *const *l = lists; *l; l++)
		if (!is_list_or_absent(spec, *l))
			return ks_inject_fail(msg, "%s: spec.%s is not a list", what, *l);
	if (json_array_size(json_object_get(spec, "containers")) == 0)
		return ks_inject_fail(msg, "%s: the pod has no containers", what);

	json_t *ann = json_object_get(meta, "annotations");
	rc = ks_pod_opts_parse(ann, cfg, what, &o, msg);
	if (rc)
		goto out;
	if (o.opt_out) {
		ks_inject_fail(msg, "%s: skipped: annotation ktls-sidecar.io/inject is \"false\"",
			       what);
		rc = KS_INJECT_SKIPPED;
		goto out;
	}
	if (json_is_true(json_object_get(spec, "hostNetwork"))) {
		/* The redirect and the sidecar's listeners would be the node's. */
		ks_inject_fail(msg, "%s: skipped: a hostNetwork pod shares the node's network",
			       what);
		rc = KS_INJECT_SKIPPED;
		goto out;
	}
	const char *mesh = other_mesh(meta, spec);
	if (mesh) {
		ks_inject_fail(msg, "%s: skipped: the pod already has another mesh's proxy (%s)",
			       what, mesh);
		rc = KS_INJECT_SKIPPED;
		goto out;
	}
	if (o.nin == 0 && json_array_size(o.outbound) == 0 &&
	    !ks_cfg_bool(cfg, "redirect.enabled")) {
		ks_inject_fail(msg,
			       "%s: skipped: nothing for a sidecar to carry: annotate the pod with "
			       "ktls-sidecar.io/inbound and/or ktls-sidecar.io/outbound (or enable "
			       "the redirect)",
			       what);
		rc = KS_INJECT_SKIPPED;
		goto out;
	}

	/* Work on a copy of the spec, so that a refusal leaves the object as
	 * it was. */
	json_t *work = json_deep_copy(spec);
	if (!work) {
		rc = -ENOMEM;
		goto out;
	}
	/* Strip what an earlier injection added, and drop the lists that
	 * leaves empty (and nulls): the shape is then added to the object as
	 * its owner wrote it, lists it needs made at the end, whatever mode or
	 * configuration injected it before. */
	static const char *const optional[] = {"initContainers", "volumes", "securityContext",
					       NULL};
	unstrip_fs_group(work, ann);
	drop_empty(work, optional);
	json_t *ctrs = json_object_get(work, "containers");
	if (strip(json_object_get(work, "initContainers")) || strip(ctrs) ||
	    strip(json_object_get(work, "volumes"))) {
		json_decref(work);
		rc = -ENOMEM;
		goto out;
	}
	drop_empty(work, optional);
	if (json_array_size(ctrs) == 0) {
		json_decref(work);
		rc = ks_inject_fail(msg, "%s: the pod has no containers of its own", what);
		goto out;
	}
	rc = ks_pod_shape_build(cfg, &o, work, owner_kind, what, &shape, msg);
	if (rc == 0 && json_array_size(shape.init)) {
		json_t *init = list_near_containers(work, "initContainers", true);
		rc = init ? prepend(init, shape.init) : -ENOMEM;
	}
	if (rc == 0)
		rc = prepend(ctrs, shape.containers);
	if (rc == 0 && json_array_size(shape.volumes)) {
		json_t *vols = list_near_containers(work, "volumes", false);
		rc = vols ? append(vols, shape.volumes) : -ENOMEM;
	}
	if (rc == 0 && shape.fs_group >= 0) {
		json_t *psc = json_object_get(work, "securityContext");
		if (!psc) {
			psc = json_object();
			if (!psc || json_object_set_new(work, "securityContext", psc))
				rc = -ENOMEM;
		}
		if (rc == 0 && !json_is_object(psc))
			rc = ks_inject_fail(msg, "%s: spec.securityContext is not a mapping", what);
		if (rc == 0 && !json_object_get(psc, "fsGroup")) {
			rc = json_object_set_new(psc, "fsGroup", json_integer(shape.fs_group))
				 ? -ENOMEM
				 : 0;
			fs_added = true;
		}
	}
	if (rc == 0) {
		if (!json_is_object(ann)) { /* absent or null */
			ann = json_object();
			if (!ann || json_object_set_new(meta, "annotations", ann))
				rc = -ENOMEM;
		}
		if (rc == 0 &&
		    json_object_set_new(ann, KS_INJECT_ANN_VERSION, json_string(ks_release())))
			rc = -ENOMEM;
		json_object_del(ann, KS_INJECT_ANN_FSGROUP);
		if (rc == 0 && fs_added &&
		    json_object_set_new(ann, KS_INJECT_ANN_FSGROUP,
					json_sprintf("%lld", shape.fs_group)))
			rc = -ENOMEM;
	}
	/* The spec becomes work, keys in work's order: an update alone would
	 * keep the keys work dropped (a native sidecar's initContainers when
	 * re-injecting in classic mode). */
	if (rc == 0) {
		json_object_clear(spec);
		rc = json_object_update(spec, work) ? -ENOMEM : 0;
	}
	json_decref(work);
out:
	ks_pod_shape_free(&shape);
	ks_pod_opts_free(&o);
	return rc;
}

/* Where a kind keeps its pod: the path of the pod template (metadata and
 * spec under it), or "" for a Pod itself. */
static const char *template_path(const char *kind)
{
	static const struct {
		const char *kind, *path;
	} kinds[] = {
	    {"Pod", ""},
	    {"Deployment", "spec.template"},
	    {"StatefulSet", "spec.template"},
	    {"DaemonSet", "spec.template"},
	    {"ReplicaSet", "spec.template"},
	    {"ReplicationController", "spec.template"},
	    {"Job", "spec.template"},
	    {"CronJob", "spec.jobTemplate.spec.template"},
	};
	for (size_t i = 0; kind && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kind, kinds[i].kind) == 0)
			return kinds[i].path;
	return NULL;
}

static json_t *walk(json_t *obj, const char *path)
{
	char key[32];
	while (obj && *path) {
		size_t n = strcspn(path, ".");
		snprintf(key, sizeof(key), "%.*s", (int)n, path);
		obj = json_object_get(obj, key);
		path += n + (path[n] == '.');
	}
	return obj;
}

bool ks_inject_holds_pod(const json_t *obj)
{
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	if (kind && strcmp(kind, "List") == 0) {
		size_t i;
		json_t *item;
		json_array_foreach(json_object_get(obj, "items"), i, item)
		{
			if (ks_inject_holds_pod(item))
				return true;
		}
		return false;
	}
	return template_path(kind) != NULL;
}

/* A bare Pod's controller owner (a pod a ReplicaSet or a Job made, as the
 * webhook sees it), so that the CLI and the webhook agree on a pod. */
static const char *owner_of(const json_t *meta)
{
	size_t i;
	json_t *ref;
	json_array_foreach(json_object_get(meta, "ownerReferences"), i, ref)
	{
		if (json_is_true(json_object_get(ref, "controller")))
			return json_string_value(json_object_get(ref, "kind"));
	}
	return "";
}

int ks_inject_object(json_t *obj, const struct ks_inject_cfg *cfg, ks_inject_note_fn note,
		     void *note_arg, struct ks_inject_msg *msg)
{
	char what[300];

	if (!json_is_object(obj))
		return ks_inject_fail(msg,
				      "a document that is not a mapping: not a Kubernetes object");
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	ks_inject_describe(obj, what, sizeof(what));
	if (kind && strcmp(kind, "List") == 0) {
		size_t i;
		json_t *item;
		int any = KS_INJECT_PASSED;
		json_array_foreach(json_object_get(obj, "items"), i, item)
		{
			int rc = ks_inject_object(item, cfg, note, note_arg, msg);
			if (rc < 0)
				return rc;
			if (rc == KS_INJECT_DONE)
				any = KS_INJECT_DONE;
		}
		return any;
	}
	const char *path = template_path(kind);
	if (!path)
		return KS_INJECT_PASSED;
	json_t *tmpl = *path ? walk(obj, path) : obj;
	if (!json_is_object(tmpl))
		return ks_inject_fail(msg, "%s: no %s to inject", what, *path ? path : "pod");
	/* A template without metadata gets one only if it is injected: a
	 * skipped or refused object stays as it was. */
	json_t *meta = json_object_get(tmpl, "metadata");
	if (json_is_null(meta)) /* "metadata:" with nothing: absent */
		meta = NULL;
	json_t *fresh = meta ? NULL : json_object();
	if (!meta && !fresh)
		return -ENOMEM;
	const char *owner = strcmp(kind, "Pod") == 0 ? owner_of(meta) : kind;
	int rc = ks_inject_pod(meta ? meta : fresh, json_object_get(tmpl, "spec"), owner, what, cfg,
			       msg);
	if (rc == KS_INJECT_DONE && fresh && json_object_set(tmpl, "metadata", fresh))
		rc = -ENOMEM;
	json_decref(fresh);
	if (rc == KS_INJECT_SKIPPED && note)
		note(note_arg, msg->text);
	return rc;
}
