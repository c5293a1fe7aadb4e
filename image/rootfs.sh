#!/usr/bin/env bash
# Lays out the image's root filesystem from the build and the host's Debian
# packages (`make image` calls it; image/Containerfile copies the result
# into a FROM scratch image):
#
#   image/rootfs.sh ROOTFS BINARY...
#
#   /usr/bin/BINARY...                the build's binaries
#   /usr/lib/x86_64-linux-gnu/*.so*   the shared libraries they link (ldd,
#                                     recursively), each with its symlinks
#   /usr/lib64/ld-linux-x86-64.so.2   the dynamic loader (the binaries'
#                                     PT_INTERP is /lib64/...)
#   /usr/sbin/ip{,6}tables-{restore,save}  iptables (nf_tables), five of its
#                                     extensions, for ktls-redirect
#   /lib, /lib64                      symlinks into /usr, as on Debian 12
#   /etc/passwd, /etc/group           root, ktls (1337:1337), nobody
#   /etc/nsswitch.conf                hosts: files dns, for getaddrinfo
#   /usr/share/doc/PKG/copyright      the licence of every Debian package a
#                                     library comes from
#   /tmp (1777), /run                 mount points and scratch space
#
# Nothing else: no shell, no package manager, no coreutils. Everything is
# owned by root and not writable by uid 1337.
set -euo pipefail

if (($# < 2)); then
	echo "usage: $0 ROOTFS BINARY..." >&2
	exit 2
fi
root=$1
shift
[[ $(uname -m) == x86_64 ]] || { echo "$0: the image is amd64 only (this is $(uname -m))" >&2; exit 1; }
[[ ! -e $root ]] || { echo "$0: $root exists (make image removes it first)" >&2; exit 1; }

umask 022
install -d -m 0755 "$root"/usr/bin "$root"/usr/lib/x86_64-linux-gnu "$root"/usr/lib64 \
	"$root"/etc "$root"/run "$root"/usr/share/doc
install -d -m 1777 "$root"/tmp
ln -s usr/lib "$root"/lib
ln -s usr/lib64 "$root"/lib64

# copy_lib PATH: PATH (as ldd names it) and the file it resolves to, under
# their canonical /usr directories; every symlink on the way stays a symlink.
pkgs=()
copy_lib() {
	local p=$1 dir real
	while :; do
		dir=$(realpath -e "$(dirname "$p")")
		[[ -e $root$dir/$(basename "$p") || -L $root$dir/$(basename "$p") ]] ||
			cp -P --preserve=mode,links "$dir/$(basename "$p")" "$root$dir/"
		[[ -L $dir/$(basename "$p") ]] || break
		real=$(readlink "$dir/$(basename "$p")")
		[[ $real == /* ]] || real=$dir/$real
		p=$real
	done
	pkgs+=("$(pkg_of "$dir/$(basename "$p")")")
}
# pkg_of FILE: the Debian package that owns FILE. dpkg knows Debian 12's
# libraries by their /lib paths (merged /usr is a symlink), so try both.
pkg_of() {
	local f
	for f in "$1" "${1#/usr}"; do
		dpkg-query -S "$f" 2>/dev/null | sed -n '1s/:.*//p' && return 0
	done
	echo "$0: no Debian package owns $1 (its licence cannot be shipped)" >&2
	return 1
}

# copy_libs_of FILE: every library FILE loads. ldd lists the whole closure
# (libssl's libcrypto, libbpf's libelf and libz), the vDSO (no file) and the
# loader (an absolute path).
copy_libs_of() {
	local lib
	while read -r lib; do
		copy_lib "$lib"
	done < <(ldd "$1" | sed -n 's/.*=> \(\/[^ ]*\) (0x.*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p')
}

for bin in "$@"; do
	[[ -x $bin ]] || { echo "$0: no binary at $bin" >&2; exit 1; }
	install -m 0755 "$bin" "$root/usr/bin/$(basename "$bin")"
	copy_libs_of "$bin"
done
[[ -L $root/usr/lib64/ld-linux-x86-64.so.2 ]] || { echo "$0: the dynamic loader was not copied" >&2; exit 1; }

# iptables, for `ktls-redirect install --mode iptables` (the chart's
# redirect init container runs this image): iptables-restore and
# iptables-save for both families, which are all ktls-redirect executes
# (sidecar/redirect/iptables.c), as Debian 12 has them: links to the
# nf_tables multi-call binary, which picks its job from argv[0]. nf_tables
# rather than the legacy tables, which some distributions drop. Of the
# 120-odd extensions only those our rules name (-p tcp, -m tcp, comment,
# owner, -j REDIRECT, and the standard targets for RETURN and jumps); the
# test runs the installer in the image, so a missing one fails there.
xt=/usr/sbin/xtables-nft-multi
xtdir=/usr/lib/x86_64-linux-gnu/xtables
[[ -x $xt ]] || { echo "$0: $xt is missing (make deps installs iptables)" >&2; exit 1; }
install -d -m 0755 "$root"/usr/sbin "$root$xtdir"
install -m 0755 "$xt" "$root$xt"
for l in iptables-restore iptables-save ip6tables-restore ip6tables-save; do
	ln -s xtables-nft-multi "$root/usr/sbin/$l"
done
for e in standard tcp comment owner REDIRECT; do
	install -m 0644 "$xtdir/libxt_$e.so" "$root$xtdir/libxt_$e.so"
done
for f in "$xt" "$xtdir"/libxt_{standard,tcp,comment,owner,REDIRECT}.so; do
	copy_libs_of "$f"
done
pkgs+=("$(pkg_of "$xt")")

for p in $(printf '%s\n' "${pkgs[@]}" | sort -u); do
	[[ -r /usr/share/doc/$p/copyright ]] || { echo "$0: /usr/share/doc/$p/copyright is missing" >&2; exit 1; }
	install -d -m 0755 "$root/usr/share/doc/$p"
	install -m 0644 "/usr/share/doc/$p/copyright" "$root/usr/share/doc/$p/copyright"
done

# No login shell exists in the image: the shell field names nologin as
# Debian does, a path that is not there.
cat >"$root"/etc/passwd <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
ktls:x:1337:1337:ktls-sidecar:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$root"/etc/group <<'EOF'
root:x:0:
ktls:x:1337:
nogroup:x:65534:
EOF
# glibc >= 2.34 has the files and dns modules inside libc.so.6, so no
# libnss_*.so is needed; without this file glibc would ask DNS before
# /etc/hosts ("dns [!UNAVAIL=return] files"), and "localhost" would leave
# the pod. The sidecar resolves outbound names at connect time.
cat >"$root"/etc/nsswitch.conf <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$root"/etc/passwd "$root"/etc/group "$root"/etc/nsswitch.conf
