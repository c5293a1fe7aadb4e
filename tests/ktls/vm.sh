#!/usr/bin/env bash
# tests/ktls/vm.sh - run commands inside a QEMU (TCG) VM booting Debian's own
# kernels, which (unlike the host kernel) have CONFIG_TLS=m.
#
#   tests/ktls/vm.sh fetch                  download + unpack kernels (cached)
#   tests/ktls/vm.sh list                   kernels available in the cache
#   tests/ktls/vm.sh run KERNEL -- CMD...   boot KERNEL (6.1 | 6.12 | newest), run CMD in a
#                                           chroot of the host root, exit with its status
#   tests/ktls/vm.sh selftest [KERNEL...]   harness checks + tests/ktls/smoke.py
#
# Exit status of `run`: CMD's status, or
#   2  usage / setup error (kernel not fetched, missing host tool)
#   3  VM did not report an exit status (boot failure, panic, timeout, init error)
#
# Environment: KS_VM_TIMEOUT (s, default 900), KS_VM_MEM (MiB, 2048), KS_VM_SMP (2),
#   KS_VM_KEEP=1 (keep the per-run initramfs + print its path), KS_VM_SHELL=1
#   (interactive shell in the chroot after CMD, no timeout), KS_VM_ENV="VAR ..."
#   (host variables to pass into the guest), KS_VM_CACHE=loose|mmap|none (9p cache
#   mode, default loose), KS_VM_QUIET=1 (do not echo the console to stdout; log only),
#   KS_VM_APPEND (extra kernel command line), KS_VM_OUT=DIR (host dir shared
#   read-write at /ks-out in the guest; everything else written there is discarded),
#   KS_VM_TCG_THREAD=multi|single (TCG threading, default multi; see below),
#   KS_VM_BOOT_RETRIES (2) and KS_VM_RACE_RETRIES (1): guests run again after
#   an oops before the guest is ready, or after TCG's text-patching flaw.
#   See tests/ktls/README.md.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
ROOT=$(cd "$HERE/../.." && pwd)
VMDIR=${KS_VM_DIR:-$ROOT/build/ktls-vm}
CACHE=$VMDIR/cache
KTREES=$VMDIR/kernels
APTDIR=$VMDIR/apt
KFILE=$VMDIR/kernels.txt

# Modules wanted in every initramfs (missing or built-in ones are skipped).
# Dependencies are pulled in recursively from `modinfo -F depends`.
WANT_MODULES="virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev
 virtio_console 9pnet 9pnet_virtio 9p netfs fscache overlay tls
 gcm ccm ctr ghash-generic ghash-clmulni-intel aesni-intel aes_generic
 chacha20poly1305 chacha chacha_generic chacha-x86_64 poly1305_generic poly1305-x86_64
 libchacha20poly1305 libchacha libpoly1305 cryptd crypto_simd sm4_generic
 sm4-aesni-avx-x86_64 sm3_generic af_alg algif_aead algif_skcipher algif_hash veth"
# Loaded by /init (in this order); the AEADs also autoload on TLS_TX/TLS_RX.
# (6.15+ merged chacha_generic/chacha_x86_64 into "chacha": one or the other exists.)
LOAD_MODULES="virtio_pci 9pnet_virtio 9p overlay tls
 aesni_intel ghash_clmulni_intel gcm ccm chacha20poly1305 chacha chacha_x86_64 poly1305_x86_64 veth"

log() { printf 'vm.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit "${2:-2}"; }

# ---------------------------------------------------------------- host setup
ensure_host_packages() {
    local missing=() p
    for p in qemu-system-x86 busybox-static cpio xz-utils kmod; do
        if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing host packages (need root to install): ${missing[*]}"
    log "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# apt with a private state dir holding one suite (download only): the host's
# apt configuration is never touched. APT_STATE picks the dir.
priv_apt() {
    local tool=$1; shift
    "$tool" -o Dir::Etc::SourceList="$APT_STATE/sources.list" \
        -o Dir::Etc::SourceParts="$APT_STATE/sources.list.d" \
        -o Dir::State::Lists="$APT_STATE/lists" \
        -o Dir::Cache="$APT_STATE/cache" \
        -o Dir::State::status=/dev/null \
        -o APT::Sandbox::User=root "$@"
}

priv_update() {   # suite
    mkdir -p "$APT_STATE/sources.list.d" "$APT_STATE/lists/partial" "$APT_STATE/cache/archives/partial"
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\(.*debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1 || true)
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
        "$uri" "$1" > "$APT_STATE/sources.list"
    # Refresh at most once a day.
    if [ -n "$(find "$APT_STATE/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null)" ]; then
        return 0
    fi
    log "apt-get update (private, $1 only)"
    priv_apt apt-get -q update >&2
}
bpo_update() { APT_STATE=$APTDIR priv_update bookworm-backports; }
bpo_apt() { APT_STATE=$APTDIR priv_apt "$@"; }
tbpo_update() { APT_STATE=$APTDIR-trixie-bpo priv_update trixie-backports; }
tbpo_apt() { APT_STATE=$APTDIR-trixie-bpo priv_apt "$@"; }

# newest "linux-image-<abi>-amd64-unsigned" matching a name regex; prints "pkg version"
pick_kernel() {   # $1 = apt-cache tool function/command, $2 = regex
    local tool=$1 re=$2 pkg ver
    pkg=$($tool search --names-only "$re" 2>/dev/null | awk '{print $1}' | sort -V | tail -1)
    [ -n "$pkg" ] || return 1
    ver=$($tool policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
    echo "$pkg $ver"
}
host_apt_cache() { apt-cache "$@"; }
bpo_apt_cache() { bpo_apt apt-cache "$@"; }
tbpo_apt_cache() { tbpo_apt apt-cache "$@"; }

# download + unpack one kernel; appends a line to $KFILE.new. Bookworm ships a
# kernel as one linux-image-*-unsigned package; trixie-backports splits it
# into linux-binary-* (vmlinuz) and linux-modules-*, listed as extra packages.
fetch_one() {   # name pkg version apt-get-wrapper [extra-pkg...]
    local name=$1 pkg=$2 ver=$3 getter=$4
    shift 4
    local deb debs=() kver tree p stamp
    for p in "${@:-$pkg}"; do
        deb=$(ls "$CACHE/${p}_"*.deb 2>/dev/null | grep -F "_$(echo "$ver" | sed 's/:/%3a/')_" | head -1 || true)
        if [ -z "$deb" ]; then
            log "downloading $p=$ver"
            (cd "$CACHE" && $getter download "$p=$ver" >&2) || die "apt-get download $p=$ver failed"
            deb=$(ls -t "$CACHE/${p}_"*.deb | head -1)
        fi
        debs+=("$deb")
    done
    stamp=$(for deb in "${debs[@]}"; do basename "$deb"; done | paste -sd,)
    tree=$KTREES/$name
    if [ ! -f "$tree/.deb" ] || [ "$(cat "$tree/.deb")" != "$stamp" ]; then
        log "unpacking $stamp -> $tree"
        rm -rf "$tree" && mkdir -p "$tree"
        for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$tree"; done
        echo "$stamp" > "$tree/.deb"
        rm -f "$VMDIR/initramfs-$name.cpio.gz"    # new kernel: rebuild its initramfs
    fi
    # Merged-/usr packages: modules and vmlinuz live in usr/lib/modules/KVER.
    [ -d "$tree/lib/modules" ] || [ ! -d "$tree/usr/lib/modules" ] || ln -sfn usr/lib "$tree/lib"
    kver=$(ls "$tree/lib/modules" | head -1)
    if [ ! -f "$tree/boot/vmlinuz-$kver" ] && [ -f "$tree/lib/modules/$kver/vmlinuz" ]; then
        mkdir -p "$tree/boot" && ln -sfn "../lib/modules/$kver/vmlinuz" "$tree/boot/vmlinuz-$kver"
    fi
    [ -f "$tree/boot/vmlinuz-$kver" ] || die "no vmlinuz in $stamp"
    printf '%s %s %s %s %s\n' "$name" "$pkg" "$ver" "$kver" "$stamp" >> "$KFILE.new"
}

# Keeps a cached kernel when its suite cannot be reached, else fails.
keep_cached() {   # name why
    if [ -f "$KFILE" ] && grep -q "^$1 " "$KFILE" && [ -d "$KTREES/$1" ]; then
        log "warning: $2; keeping the cached $1 kernel"
        grep "^$1 " "$KFILE" >> "$KFILE.new"
    else
        die "could not fetch the $1 kernel: $2"
    fi
}

cmd_fetch() {
    ensure_host_packages
    mkdir -p "$CACHE" "$KTREES"
    : > "$KFILE.new"
    local r
    # 6.1: the host's own apt configuration (bookworm, -updates, -security).
    r=$(pick_kernel host_apt_cache '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$') \
        || die "no linux-image-6.1.0-*-amd64-unsigned in the host's apt lists"
    fetch_one 6.1 $r "apt-get -o APT::Sandbox::User=root"
    # 6.12: bookworm-backports via the private apt state.
    if bpo_update && r=$(pick_kernel bpo_apt_cache '^linux-image-6\.12\.[0-9]+\+(deb12|bpo)-amd64-unsigned$'); then
        fetch_one 6.12 $r "bpo_apt apt-get"
    else
        keep_cached 6.12 "bookworm-backports unavailable"
    fi
    # newest: trixie-backports' newest kernel. Neither bookworm kernel can
    # replace a kTLS key (TLS 1.3 KeyUpdate support arrived in 6.14).
    local v
    if tbpo_update && r=$(pick_kernel tbpo_apt_cache '^linux-image-[0-9]+\.[0-9]+\.[0-9]+\+deb13-amd64$'); then
        v=${r%% *}; v=${v#linux-image-}
        fetch_one newest $r "tbpo_apt apt-get" "linux-binary-$v" "linux-modules-$v"
    else
        keep_cached newest "trixie-backports unavailable"
    fi
    mv "$KFILE.new" "$KFILE"
    local n
    for n in $(awk '{print $1}' "$KFILE"); do build_initramfs "$n"; done
    cmd_list
}

cmd_list() {
    [ -f "$KFILE" ] || { log "no kernels fetched yet: run '$0 fetch'"; return 1; }
    printf '%-6s %-44s %-22s %s\n' NAME PACKAGE VERSION UNAME
    awk '{printf "%-6s %-44s %-22s %s\n", $1, $2, $3, $4}' "$KFILE"
}

kernel_field() {   # name fieldno
    [ -f "$KFILE" ] || return 1
    awk -v n="$1" -v f="$2" '$1 == n {print $f}' "$KFILE"
}

# ---------------------------------------------------------------- initramfs
modname() { basename "$1" | sed -e 's/\.ko\(\.xz\|\.zst\|\.gz\)\?$//' -e 's/-/_/g'; }

build_initramfs() {
    local name=$1 kver tree out stamp
    kver=$(kernel_field "$name" 4)
    [ -n "$kver" ] || die "kernel '$name' not fetched (run: $0 fetch)"
    tree=$KTREES/$name
    out=$VMDIR/initramfs-$name.cpio.gz
    stamp=$(sha256sum "$SELF" | cut -c1-16)
    if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then return 0; fi
    log "building initramfs for $name ($kver)"
    local stage; stage=$(mktemp -d "$VMDIR/stage.XXXXXX")
    local mdir=$tree/lib/modules/$kver
    # index: module name -> file
    local idx=$stage/.idx
    find "$mdir/kernel" -name '*.ko*' | awk '{ n = $0; sub(/.*\//, "", n); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", n); gsub(/-/, "_", n); print n, $0 }' > "$idx"
    mkdir -p "$stage"/{bin,sbin,dev,proc,sys,host,lower,rw,etc,ks,lib/modules/"$kver"}
    cp /bin/busybox "$stage/bin/busybox"
    local a
    for a in sh mount umount mkdir modprobe insmod ip poweroff sleep cat echo chroot \
             grep ls mknod setsid cttyhack reboot sync uname dmesg ln sed tr seq unshare; do
        ln -sf busybox "$stage/bin/$a"
    done
    # resolve modules + deps
    local todo=() done_list=" " m f deps
    for m in $WANT_MODULES; do todo+=("$(echo "$m" | tr - _)"); done
    while [ ${#todo[@]} -gt 0 ]; do
        m=${todo[0]}; todo=("${todo[@]:1}")
        case "$done_list" in *" $m "*) continue;; esac
        done_list="$done_list$m "
        f=$(awk -v m="$m" '$1 == m {print $2; exit}' "$idx")
        [ -n "$f" ] || continue          # built in or absent in this kernel
        local rel=${f#"$mdir/"} dst
        dst=$stage/lib/modules/$kver/$rel
        mkdir -p "$(dirname "$dst")"
        case "$f" in
            *.ko.xz)  xz -dc "$f" > "${dst%.xz}" ;;
            *.ko.zst) zstd -qdc "$f" > "${dst%.zst}" ;;
            *.ko.gz)  gzip -dc "$f" > "${dst%.gz}" ;;
            *)        cp "$f" "$dst" ;;
        esac
        deps=$(modinfo -F depends "$f" 2>/dev/null | tr ',' ' ')
        for d in $deps; do todo+=("$(echo "$d" | tr - _)"); done
    done
    local k
    for k in modules.builtin modules.builtin.modinfo modules.order; do
        [ -f "$mdir/$k" ] && cp "$mdir/$k" "$stage/lib/modules/$kver/"
    done
    depmod -b "$stage" "$kver" || die "depmod failed for $kver"
    rm -f "$idx"
    echo "$kver" > "$stage/etc/kver"
    echo "$LOAD_MODULES" > "$stage/etc/modules"
    write_init > "$stage/init"
    chmod 755 "$stage/init"
    (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -6) > "$stage.cpio.gz"
    mv "$stage.cpio.gz" "$out"
    echo "$stamp" > "$out.stamp"
    rm -rf "$stage"
    log "initramfs $out ($(du -h "$out" | cut -f1), $(find "$VMDIR/initramfs-$name.cpio.gz" -printf '%s') bytes)"
}

# The guest's /init (busybox sh). Per-run settings come from /ks/run.env and
# /ks/cmd.sh, which vm.sh appends as a second cpio archive.
write_init() {
cat <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
. /ks/run.env
fail() {
    echo "KS-VM-INIT-ERROR: $*"
    echo; echo "KS-VM-EXIT-$KS_NONCE=init-error"
    sync; poweroff -f; echo o > /proc/sysrq-trigger; sleep 5
}
ip link set lo up
for m in $(cat /etc/modules); do
    modprobe "$m" 2>/dev/null || [ -d "/sys/module/$m" ] || echo "ks-init: note: modprobe $m failed"
done
grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp || echo "ks-init: WARNING: tls ULP not available"
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=$KS_9P_CACHE hostroot /lower \
    || fail "cannot mount the host root over 9p"
mount -t tmpfs -o size=75%,mode=755 rw /rw
mkdir -p /rw/upper /rw/work
if mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /host 2>/dev/null; then
    :
else
    echo "ks-init: overlayfs unavailable: read-only root with tmpfs on /tmp, /root, /var/tmp"
    mount --bind /lower /host || fail "bind mount"
    for d in /tmp /root /var/tmp; do mount -t tmpfs -o mode=1777 tmp "/host$d"; done
fi
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 shm /host/dev/shm
# What udev would add: bash's process substitution needs /dev/fd.
ln -sf /proc/self/fd /host/dev/fd
ln -sf /proc/self/fd/0 /host/dev/stdin
ln -sf /proc/self/fd/1 /host/dev/stdout
ln -sf /proc/self/fd/2 /host/dev/stderr
# No fresh tmpfs on /tmp: the overlay already makes it writable, and the
# repository itself may live under the host's /tmp (CI clones it anywhere).
mount -t tmpfs -o mode=755 run /host/run 2>/dev/null
if [ -n "$KS_REPO_SHARE" ]; then
    # The repository is on another host filesystem than /: share it apart.
    mkdir -p "/host$KS_CWD" 2>/dev/null
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=$KS_9P_CACHE repo "/host$KS_CWD" \
        || fail "cannot mount the repository share"
fi
if [ -n "$KS_OUT" ]; then
    mkdir -p "/host$KS_OUT" 2>/dev/null
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 ksout "/host$KS_OUT" \
        || echo "ks-init: cannot mount the output share"
fi
mount -t debugfs none /host/sys/kernel/debug 2>/dev/null
# The BPF redirect test (t_redirect) needs a cgroup v2 hierarchy and bpffs.
mount -t cgroup2 none /host/sys/fs/cgroup 2>/dev/null || echo "ks-init: note: no cgroup2 mount"
mount -t bpf bpf /host/sys/fs/bpf 2>/dev/null || echo "ks-init: note: no bpffs mount"
mkdir -p /host/.ks
cp /ks/cmd.sh /host/.ks/cmd.sh 2>/dev/null || fail "cannot write into the chroot"
# The command runs with /host as the root of a mount namespace of its own
# (moved onto /, then chroot ., as switch_root does), not in a plain chroot:
# the kernel creates no user namespace for a chrooted process
# (kernel/user_namespace.c, create_user_ns: current_chrooted()), and
# t_redirect_userns needs them. This namespace keeps the initramfs for us.
ENTER='cd /host && mount -o move . / && exec chroot . "$@"'
in_root() { unshare -m --propagation private sh -c "$ENTER" sh "$@"; }
echo "KS-VM-READY uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"
if [ "$KS_SHELL" = 1 ]; then
    if [ "$KS_HAVE_CMD" = 1 ]; then
        in_root /usr/bin/env -i /bin/bash /.ks/cmd.sh </dev/null
        echo "ks-init: command exited $?"
    fi
    echo "ks-init: KS_VM_SHELL=1: interactive shell in the chroot; exit to power off"
    setsid -c unshare -m --propagation private sh -c "$ENTER" sh \
        /usr/bin/env -i PATH="$KS_PATH" HOME=/root TERM="${KS_TERM:-vt100}" \
        TMPDIR=/tmp KS_VM=1 /bin/bash -c "cd '$KS_CWD' 2>/dev/null; exec /bin/bash -i" \
        </dev/console >/dev/console 2>&1
    rc=$?
else
    in_root /usr/bin/env -i /bin/bash /.ks/cmd.sh </dev/null
    rc=$?
fi
sync
echo
echo "KS-VM-EXIT-$KS_NONCE=$rc"
poweroff -f
echo o > /proc/sysrq-trigger
sleep 10
INIT
}

# ---------------------------------------------------------------- run
# int3_race LOG: whether the guest died of multi-threaded TCG's flaw with
# the kernel's live text patching (tests/ktls/README.md). Its signature: the
# first "Oops: int3" trapped just past a byte that is no longer an int3
# (0xcc). The oops dump's Code: line shows the bytes around the trap, the one
# at the trap's RIP in <>; an int3 trap's RIP is one past the int3. So the
# kernel had finished patching that site and this vCPU ran a stale copy. A
# real int3 (padding reached by a wild jump, a kprobe) still reads 0xcc.
int3_race() {
    tr -d '\r' <"$1" | awk 'BEGIN { r = 1 }
        /Oops: int3/ { o = 1 }
        o && /Code: / { for (i = 2; i <= NF; i++) if ($i ~ /^</) { r = ($(i - 1) == "cc"); break } exit }
        END { exit r }'
}
int3_race_where() {
    tr -d '\r' <"$1" | sed -n 's/.*RIP: [0-9a-f]*:\([^ ]*\).*/Oops: int3 at \1/p' | head -1
}

# SeaBIOS/the guest send terminal resets (ESC c, ESC[?7l = no line wrap): drop them.
strip_esc() { sed -u -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g'; }

cmd_run() {
    local name=${1:-}; shift || true
    [ "${1:-}" = "--" ] && shift
    [ -n "$name" ] || die "usage: $0 run KERNEL -- CMD..."
    [ $# -gt 0 ] || [ "${KS_VM_SHELL:-0}" = 1 ] || die "usage: $0 run KERNEL -- CMD..."
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (run: $0 fetch)"
    local tcg_thread=${KS_VM_TCG_THREAD:-multi}
    case "$tcg_thread" in
        multi|single) ;;
        *) die "KS_VM_TCG_THREAD must be multi or single, not '$tcg_thread'" ;;
    esac
    local kver deb
    kver=$(kernel_field "$name" 4) || true
    [ -n "$kver" ] || die "kernel '$name' not in cache (run: $0 fetch; available: $(awk '{printf "%s ", $1}' "$KFILE" 2>/dev/null))"
    build_initramfs "$name"
    local vmlinuz=$KTREES/$name/boot/vmlinuz-$kver
    local timeout=${KS_VM_TIMEOUT:-900}
    local nonce; nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    # 9p shares one filesystem: a repository on another mount needs its own share.
    local repo_share=
    [ "$(findmnt -n -o TARGET --target "$ROOT")" = / ] || repo_share=1
    local run; run=$(mktemp -d "$VMDIR/run.XXXXXX")
    [ "${KS_VM_KEEP:-0}" = 1 ] || trap 'rm -rf "'"$run"'"' EXIT
    mkdir -p "$run/ks"
    # per-run environment for /init
    {
        printf 'KS_NONCE=%s\n' "$nonce"
        printf 'KS_SHELL=%q\n' "${KS_VM_SHELL:-0}"
        printf 'KS_HAVE_CMD=%q\n' "$(( $# > 0 ))"
        printf 'KS_CWD=%q\n' "$ROOT"
        printf 'KS_PATH=%q\n' "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        printf 'KS_9P_CACHE=%q\n' "${KS_VM_CACHE:-loose}"
        printf 'KS_TERM=%q\n' "${TERM:-vt100}"
        printf 'KS_OUT=%q\n' "${KS_VM_OUT:+/ks-out}"
        printf 'KS_REPO_SHARE=%q\n' "$repo_share"
    } > "$run/ks/run.env"
    # the command, run by bash inside the chroot
    {
        echo '#!/bin/bash'
        printf 'export PATH=%q HOME=/root TMPDIR=/tmp LANG=C.UTF-8 TERM=dumb KS_VM=1 KS_VM_KERNEL=%q\n' \
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "$name"
        [ -n "${KS_VM_OUT:-}" ] && echo 'export KS_VM_OUT=/ks-out'
        local v
        for v in ${KS_VM_ENV:-}; do
            [ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"
        done
        printf 'cd %q || exit 125\n' "$ROOT"
        printf 'exec'; printf ' %q' "$@"; printf '\n'
    } > "$run/ks/cmd.sh"
    (cd "$run" && find ks | cpio -o -H newc --quiet -R 0:0 | gzip -1) > "$run/ks.cpio.gz"
    cat "$VMDIR/initramfs-$name.cpio.gz" "$run/ks.cpio.gz" > "$run/initrd.gz"

    # TCG threading. multi (MTTCG, one host thread per vCPU) is the default:
    # a 2-vCPU guest then uses both of a CI machine's cores. But MTTCG in
    # Debian 12's QEMU (7.2) does not keep the kernel's int3-based live text
    # patching (arch/x86/kernel/alternative.c, text_poke_bp / smp_text_poke)
    # safe: a vCPU that runs a patched site while another vCPU flips a static
    # key can trap on an int3 the kernel has already removed, and the guest
    # dies with "Oops: int3" in that site. Every kernel we boot shows it (6.12
    # and 7.3 alike): flipping the CFS bandwidth key (cpu.max on a cgroup) 100
    # times panics a 2- or 3-vCPU guest within seconds. With thread=single
    # (all vCPUs take turns on one host thread) it never did (3 of 3 runs).
    # A guest whose test flips a static key in a hot path (t_workers: cpu.max,
    # read by the scheduler on every CPU) boots with single. Checked at the
    # top of cmd_run.
    local logf=$run/console.log last=$VMDIR/last-$name.log
    local qemu=(qemu-system-x86_64 -accel "tcg,thread=$tcg_thread" -cpu max -smp "${KS_VM_SMP:-2}" -m "${KS_VM_MEM:-2048}"
        -nographic -no-reboot -kernel "$vmlinuz" -initrd "$run/initrd.gz"
        -append "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic ${KS_VM_APPEND:-}"
        -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
        -nic none -device virtio-rng-pci)
    [ -n "$repo_share" ] &&
        qemu+=(-virtfs "local,path=$ROOT,mount_tag=repo,security_model=none,readonly=on,multidevs=remap")
    if [ -n "${KS_VM_OUT:-}" ]; then
        mkdir -p "$KS_VM_OUT"
        qemu+=(-virtfs "local,path=$(readlink -f "$KS_VM_OUT"),mount_tag=ksout,security_model=none,multidevs=remap")
    fi
    local t0 t1 qrc status ready attempt=0 races=0
    # A kernel that oopses before the guest is ready (our /init never ran)
    # is boot trouble, not a test result: TCG's multi-threaded emulation
    # occasionally trips the kernel's int3-based text patching at boot
    # ("Oops: int3" in a scheduler function, seen on 7.3 with -smp 2).
    # Such a boot is retried, loudly (KS_VM_BOOT_RETRIES). After KS-VM-READY
    # the one death retried is that same flaw, told apart by int3_race below
    # (KS_VM_RACE_RETRIES, once by default): the whole command runs again in
    # a fresh guest, since nothing of the first one's survives it.
    while :; do
        attempt=$((attempt + 1))
        qrc=0
        log "booting $name ($kver, ${KS_VM_SMP:-2} vCPUs, TCG thread=$tcg_thread), timeout ${timeout}s, log $last$([ "$attempt" -gt 1 ] && echo " (attempt $attempt)")"
        t0=$(date +%s.%N)
        if [ "${KS_VM_SHELL:-0}" = 1 ]; then
            "${qemu[@]}" 2>&1 | tee "$logf" || qrc=$?
        elif [ "${KS_VM_QUIET:-0}" = 1 ]; then
            # Under pipefail a failing pipeline runs the || branch, and
            # PIPESTATUS still holds its statuses there (not after "|| true").
            timeout -k 10 "$timeout" "${qemu[@]}" </dev/null 2>&1 | strip_esc >"$logf" ||
                qrc=${PIPESTATUS[0]}
        else
            timeout -k 10 "$timeout" "${qemu[@]}" </dev/null 2>&1 | strip_esc | tee "$logf" ||
                qrc=${PIPESTATUS[0]}
        fi
        t1=$(date +%s.%N)
        cp "$logf" "$last.tmp.$$" && mv "$last.tmp.$$" "$last"
        status=$(tr -d '\r' < "$last" | sed -n "s/^.*KS-VM-EXIT-$nonce=\([0-9a-z-]*\)\$/\1/p" | tail -1)
        ready=$(tr -d '\r' < "$last" | sed -n 's/^.*KS-VM-READY uptime=\([0-9.]*\).*/\1/p' | tail -1)
        if [ -z "$status" ] && [ -z "$ready" ] && [ "$qrc" != 124 ] && [ "$qrc" != 137 ] &&
            grep -q 'Kernel panic\|Oops' "$last" && [ "$attempt" -le "${KS_VM_BOOT_RETRIES:-2}" ]; then
            log "boot of $name failed before the guest was ready ($(grep -m1 -o 'Oops: [^[]*\|Kernel panic - [^,]*' "$last")); retrying"
            cp "$last" "$last.boot-failure.$attempt"
            continue
        fi
        if [ -z "$status" ] && [ -n "$ready" ] && [ "$tcg_thread" = multi ] && int3_race "$last" &&
            [ "$races" -lt "${KS_VM_RACE_RETRIES:-1}" ]; then
            races=$((races + 1))
            log "WARNING: the guest on $name died after it was ready of the TCG text-patching flaw ($(int3_race_where "$last"); tests/ktls/README.md); running the command again in a fresh guest"
            cp "$last" "$last.int3-race.$races"
            continue
        fi
        break
    done
    if [ "${KS_VM_KEEP:-0}" = 1 ]; then
        log "kept per-run files in $run (initrd.gz = base initramfs + ks/ overlay)"
    fi
    logf=$last
    local wall; wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    if [ -z "$status" ]; then
        if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
            log "FAIL: timeout after ${timeout}s (KS_VM_TIMEOUT) without an exit marker; see $logf"
        elif grep -q 'Kernel panic' "$logf"; then
            log "FAIL: kernel panic, no exit marker; see $logf"
        else
            log "FAIL: VM exited (qemu status $qrc) without an exit marker; see $logf"
        fi
        exit 3
    fi
    case "$status" in
        ''|*[!0-9]*) log "FAIL: guest init error ($status); see $logf"; exit 3 ;;
    esac
    log "$name: command exited $status (guest ready at ${ready:-?}s uptime, ${wall}s wall incl. boot)"
    exit "$status"
}

# ---------------------------------------------------------------- selftest
cmd_selftest() {
    local kernels=("$@") k rc fails=0
    [ ${#kernels[@]} -gt 0 ] || mapfile -t kernels < <(awk '{print $1}' "$KFILE" 2>/dev/null)
    [ ${#kernels[@]} -gt 0 ] || die "no kernels fetched (run: $0 fetch)"
    check() {   # expected-status description cmd...
        local want=$1 what=$2; shift 2
        rc=0; KS_VM_QUIET=1 KS_VM_TIMEOUT=${KS_VM_TIMEOUT:-300} "$SELF" "$@" >/dev/null 2>&1 || rc=$?
        if [ "$rc" = "$want" ]; then echo "PASS  $what (status $rc)"
        else echo "FAIL  $what (status $rc, want $want)"; fails=$((fails + 1)); fi
    }
    for k in "${kernels[@]}"; do
        echo "=== $k ($(kernel_field "$k" 2) $(kernel_field "$k" 3))"
        check 0 "$k: true"  run "$k" -- true
        check 1 "$k: false" run "$k" -- false
        check 7 "$k: exit 7 + argument quoting" run "$k" -- sh -c 'test "$1" = "a b'"'"'c" && exit 7' x "a b'c"
        check 0 "$k: tls ULP + tls_stat + writable tmp/root" run "$k" -- sh -c \
            'grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp && test -r /proc/net/tls_stat &&
             echo x > "$TMPDIR/f" && echo y > /etc/ks-test && test "$(pwd)" = "'"$ROOT"'"'
        check 3 "$k: panic (no marker) is a failure" run "$k" -- sh -c 'echo c > /proc/sysrq-trigger'
        rc=0; KS_VM_QUIET=1 KS_VM_TIMEOUT=${KS_VM_TIMEOUT:-300} "$SELF" run "$k" -- python3 "$HERE/smoke.py" || rc=$?
        if [ "$rc" = 0 ]; then echo "PASS  $k: smoke.py (kTLS round trip)"
        else echo "FAIL  $k: smoke.py (status $rc; log $VMDIR/last-$k.log)"; fails=$((fails + 1)); fi
        tr -d '\r' < "$VMDIR/last-$k.log" | sed -n 's/^smoke: /      /p'
    done
    # The TCG text-patching flaw (README): the stress dies on multi, is run
    # again once, and the dead guest's log is kept; on single it survives.
    # On the newest kernel, which oopses (6.1 can hang instead: a timeout).
    local sk=${kernels[${#kernels[@]}-1]}
    rm -f "$VMDIR/last-$sk.log.int3-race."*
    KS_VM_SMP=3 check 3 "$sk: static-key stress on multi-threaded TCG dies (Oops: int3)" \
        run "$sk" -- "$HERE/static-key-stress.sh"
    if [ -f "$VMDIR/last-$sk.log.int3-race.1" ]; then
        echo "PASS  $sk: that death was told apart as the flaw and run again once"
    else
        echo "FAIL  $sk: no int3-race.1 log: the flaw was not recognised"; fails=$((fails + 1))
    fi
    KS_VM_SMP=3 KS_VM_TCG_THREAD=single check 0 "$sk: static-key stress on single-threaded TCG" \
        run "$sk" -- "$HERE/static-key-stress.sh"
    KS_VM_TCG_THREAD=bogus check 2 "${kernels[0]}: a bad KS_VM_TCG_THREAD is a usage error" \
        run "${kernels[0]}" -- true
    # timeout handling: a 2 s timeout cannot reach the command
    rc=0; KS_VM_QUIET=1 KS_VM_TIMEOUT=2 "$SELF" run "${kernels[0]}" -- true >/dev/null 2>&1 || rc=$?
    if [ "$rc" = 3 ]; then echo "PASS  ${kernels[0]}: timeout is a failure (status 3)"
    else echo "FAIL  ${kernels[0]}: timeout (status $rc, want 3)"; fails=$((fails + 1)); fi
    [ "$fails" = 0 ] && echo "selftest: all passed" || echo "selftest: $fails failure(s)"
    [ "$fails" = 0 ]
}

case "${1:-}" in
    fetch) shift; cmd_fetch "$@" ;;
    list) shift; cmd_list "$@" ;;
    run) shift; cmd_run "$@" ;;
    selftest) shift; cmd_selftest "$@" ;;
    initramfs) shift; for k in "$@"; do rm -f "$VMDIR/initramfs-$k.cpio.gz.stamp"; build_initramfs "$k"; done ;;
    *) sed -n '2,28s/^# \{0,1\}//p' "$SELF"; exit 2 ;;
esac
