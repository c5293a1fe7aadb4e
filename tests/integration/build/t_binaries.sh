#!/usr/bin/env bash
# Three binaries, each carrying only its part (README.md, "How it is built"):
#   - ktls-sidecar, the unprivileged daemon: no libbpf, libelf or zlib, and
#     none of the BPF loader's code;
#   - ktls-redirect, the privileged loader: libbpf, and no data plane;
#   - ktlsctl: no liburing, and none of the data plane's code.
# `ktls-sidecar redirect ...` runs ktls-redirect. A later change that links
# something into the wrong binary fails here.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/sidecar.sh"

dir=$(dirname "$KS_BIN")
SIDECAR=$KS_BIN REDIRECT=$dir/ktls-redirect CTL=$dir/ktlsctl
for b in "$SIDECAR" "$REDIRECT" "$CTL"; do
	[[ -x $b ]] || ks_fail "$b is missing (make builds three binaries)"
done
command -v nm >/dev/null || ks_fail "nm (binutils) is not installed: make deps"

T=$(ks_tmpdir)
# libs BINARY: the shared libraries it loads, one name per line.
libs() { ldd "$1" | awk '{print $1}' | sed 's/\.so.*//; s|.*/||'; }
# has_lib BINARY NAME (whole lists first: grep -q must not cut a pipe short
# under pipefail)
has_lib() { libs "$1" >"$T/libs" && grep -qx "$2" "$T/libs"; }
# has_symbol BINARY REGEX: a symbol defined in it.
has_symbol() { nm --defined-only "$1" | awk '{print $3}' >"$T/syms" && grep -Eqx "$2" "$T/syms"; }

for l in libbpf libelf libz; do
	! has_lib "$SIDECAR" "$l" || ks_fail "ktls-sidecar links $l: $(libs "$SIDECAR" | paste -sd' ')"
done
! has_symbol "$SIDECAR" 'ks_redir_bpf_install|ks_redir_ipt_install' ||
	ks_fail "ktls-sidecar carries the redirect loader's code"
has_symbol "$SIDECAR" ks_redirect_manifest_parse ||
	ks_fail "ktls-sidecar lacks the manifest parser its --redirect-check needs (the test is stale?)"
ks_pass "ktls-sidecar: $(libs "$SIDECAR" | grep -v -e vdso -e ld-linux | paste -sd' ' -), no BPF loader"

has_lib "$REDIRECT" libbpf || ks_fail "ktls-redirect does not link libbpf (the test is stale?)"
for s in ks_conn_accept ks_worker_start ks_loop_init ks_control_start ks_identity_build; do
	! has_symbol "$REDIRECT" "$s" || ks_fail "ktls-redirect carries $s"
done
ks_pass "ktls-redirect: $(libs "$REDIRECT" | grep -v -e vdso -e ld-linux | paste -sd' ' -), no data plane"

! has_lib "$CTL" liburing || ks_fail "ktlsctl links liburing: $(libs "$CTL" | paste -sd' ')"
for s in ks_conn_accept ks_worker_start ks_loop_init ks_pump_splice ks_offload_handoff ks_control_start; do
	! has_symbol "$CTL" "$s" || ks_fail "ktlsctl carries the data plane ($s)"
done
has_symbol "$CTL" ktlsctl_call || ks_fail "ktlsctl lacks ktlsctl_call (the test is stale?)"
ks_pass "ktlsctl: $(libs "$CTL" | grep -v -e vdso -e ld-linux | paste -sd' ' -), no data plane"

# The alias runs the loader itself: same help, same exit codes.
"$REDIRECT" --help >"$T/direct.out"
"$SIDECAR" redirect --help >"$T/alias.out"
cmp -s "$T/direct.out" "$T/alias.out" || ks_fail "ktls-sidecar redirect --help differs from ktls-redirect --help"
rc=0
"$SIDECAR" redirect install >/dev/null 2>"$T/err" || rc=$?
((rc == 2)) && grep -q -- '--name NAME is required' "$T/err" ||
	ks_fail "ktls-sidecar redirect install: exit $rc, $(cat "$T/err")"
ks_pass "ktls-sidecar redirect runs ktls-redirect (help and usage exit code agree)"
echo "PATH: build=linkage"
