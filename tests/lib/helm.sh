# Helm for the scenarios: helm 4 (tests/tools/fetch-helm.sh), never a
# cluster, the repo's post-renderer plugin (helm/plugins/ktls-inject) and
# the build's ktlsctl behind it. Source after common.sh; sets HELM.
#
# The chart renders its workload with ktls-sidecar.io/* annotations and an
# InjectorConfig; `--post-renderer ktls-inject` (KS_POST) runs
# `ktlsctl inject` over the render, which adds the sidecar. A render with
# the sidecar in it is therefore `"$HELM" template ... $KS_POST`.
HELM=$("$KS_ROOT/tests/tools/fetch-helm.sh") || ks_fail "cannot get helm"
export KUBECONFIG=/nonexistent
# Helm finds plugins in HELM_PLUGINS: the repo's, never the host user's.
export HELM_PLUGINS=$KS_ROOT/helm/plugins
export KTLSCTL=${KS_CTL:-$(dirname "${KS_BIN:-$KS_ROOT/build/ktls-sidecar}")/ktlsctl}
[[ -x $KTLSCTL ]] || ks_fail "ktlsctl is missing at $KTLSCTL (make)"
# A refusal's message: the plugin writes it to Helm's stderr through /proc;
# capture that with `2>>FILE` (append), or Helm's own line overwrites it.
KS_POST="--post-renderer ktls-inject"
