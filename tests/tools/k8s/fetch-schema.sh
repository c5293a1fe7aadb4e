#!/usr/bin/env bash
# fetch-schema.sh: prints the folder that holds the pinned Kubernetes schema
# packages (build/k8s-schema), installing them first if needed.
#
# The schema data is the npm package kubernetes-models (with its
# apimachinery types and js-yaml), pinned with integrity hashes by
# tests/tools/k8s/package-lock.json and installed with `npm ci` (the npm
# registry is the only package source that CI and the developers reach).
# Idempotent and offline once installed: a stamp holding the lock file's
# SHA-256 says the install is complete and current, so nothing is fetched
# again until the lock changes. Set K8S_SCHEMA_DIR to use another folder.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
dir=${K8S_SCHEMA_DIR:-$root/build/k8s-schema}
want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
if [[ -f $dir/.installed && $(cat "$dir/.installed") == "$want" ]]; then
	echo "$dir"
	exit 0
fi
command -v npm >/dev/null || { echo "fetch-schema: npm is missing (make deps installs nodejs; a Debian nodejs without npm needs apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
rm -f "$dir/.installed"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
# npm ci installs exactly the lock (versions and integrity), and fails
# rather than resolve anything anew. Its cache stays in the build folder.
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
	--cache "$dir/.npm-cache" >&2) ||
	{ echo "fetch-schema: npm ci failed in $dir" >&2; exit 1; }
echo "$want" >"$dir/.installed"
echo "$dir"
