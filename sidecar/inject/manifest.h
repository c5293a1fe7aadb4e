/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kubernetes manifests in and out: YAML (libyaml) or JSON (jansson), one
 * document or many, as jansson values.
 *
 * YAML scalars are typed the way Kubernetes' own decoder (sigs.k8s.io/yaml,
 * YAML 1.1 through go-yaml) types them: a plain (unquoted) null, ~, true,
 * false, integer or float is that JSON type, and everything else, and every
 * quoted scalar, is a string. Anchors and aliases are refused (a billion
 * laughs costs nothing to write), and so are tags other than the core ones,
 * and documents deeper than KS_MANIFEST_MAX_DEPTH.
 *
 * Output: JSON in, JSON out (pretty, keys in the order they came); YAML
 * in, YAML out, block style, strings quoted wherever a plain scalar would
 * read back as another type.
 */
#ifndef KS_INJECT_MANIFEST_H
#define KS_INJECT_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "inject/inject.h"

#define KS_MANIFEST_MAX_DEPTH 64

enum ks_manifest_format { KS_MANIFEST_YAML, KS_MANIFEST_JSON };

/* Parses buf (len bytes) into an array of documents; empty YAML documents
 * are dropped. The format is JSON when the first non-space byte is '{' or
 * '[', YAML otherwise. 0, or -EINVAL with msg naming the line. */
int ks_manifest_parse(const char *buf, size_t len, json_t **docs, enum ks_manifest_format *fmt,
		      struct ks_inject_msg *msg);

/* Writes the documents: YAML separated by "---", or JSON (one document
 * as it is, several as a "List"-less stream of pretty documents). 0 or -errno. */
int ks_manifest_write(FILE *out, const json_t *docs, enum ks_manifest_format fmt);

/* One value as YAML into a malloc'd string (tests, the chart's
 * comparisons). NULL on failure. */
char *ks_manifest_yaml_dump(const json_t *doc);

#endif
