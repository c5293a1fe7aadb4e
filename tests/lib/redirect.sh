# shellcheck shell=bash
# Helpers for the redirect scenarios (t_redirect*.sh), on top of common.sh.
#
# ks_without_ip6tables CMD [ARG...]: runs CMD where ip6tables-restore and
#     ip6tables-save cannot be found, as on a node image without them.
#     ktls-redirect looks in /usr/sbin:/sbin:/usr/bin:/bin whatever PATH
#     says, so PATH alone cannot hide them: CMD runs in a mount namespace of
#     its own (it goes with CMD; the host's mounts are never touched) where
#     /usr/sbin (and /sbin, if it is a directory of its own) is a tmpfs of
#     links to everything there but ip6tables*. Returns CMD's status.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ks_without_ip6tables() {
	local orig rc=0
	orig=$(mktemp -d "${TMPDIR:-/tmp}/ks-sbin.XXXXXX")
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare -m --propagation private bash -c '
		set -e
		orig=$0
		hide() { # DIR: the same files, as links, without ip6tables*
			mkdir -p "$orig/${1//\//_}"
			mount --bind "$1" "$orig/${1//\//_}"
			mount -t tmpfs -o mode=755 ks-sbin "$1"
			for f in "$orig/${1//\//_}"/*; do
				case ${f##*/} in ip6tables*) continue ;; esac
				ln -s "$f" "$1/${f##*/}"
			done
		}
		hide /usr/sbin
		[[ -L /sbin ]] || hide /sbin
		PATH=/usr/sbin:/usr/bin:/sbin:/bin exec "$@"' "$orig" "$@" || rc=$?
	# rmdir, never rm -r: only empty mount points are left here, and
	# nothing can ever delete through one into the real /usr/sbin.
	rmdir "$orig"/_* "$orig" 2>/dev/null || true
	return "$rc"
}
