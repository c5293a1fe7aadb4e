# shellcheck shell=bash
# Helpers for ktls-sidecar integration tests.  Source it from a test script:
#
#   #!/usr/bin/env bash
#   set -euo pipefail
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Sourcing installs an EXIT trap (plus INT/TERM traps that exit through it)
# which stops every process started with ks_bg and then runs the commands
# registered with ks_cleanup_add.  Tests must not install their own EXIT
# trap; register cleanup with ks_cleanup_add instead.
#
# bash runs traps only after the current foreground command returns, so a
# test killed by its runner cleans up once that command ends: keep
# foreground commands bounded (e.g. ks-stream client --timeout).
#
# Registries live in files, not shell variables, because the natural call
# forms `pid=$(ks_bg ...)` and `dir=$(ks_tmpdir)` run in a subshell whose
# variable changes would be lost.
#
# Exit codes follow the automake convention: 0 pass, 1 fail, 77 skip.
#
# Environment:
#   KS_BIN       sidecar binary (default $KS_ROOT/build/ktls-sidecar)
#   KS_STREAM    traffic tool   (default $KS_ROOT/build/tests/ks-stream)
#   KS_KEEP_TMP  if 1, keep the directories made by ks_tmpdir (path is printed)

# Sourcing twice would install the trap twice and reset the registries.
if [[ -n ${_KS_COMMON_LOADED:-} ]]; then
	return 0
fi
_KS_COMMON_LOADED=1

if ((BASH_VERSINFO[0] < 5)); then
	echo "common.sh: bash >= 5 required (EPOCHREALTIME)" >&2
	exit 1
fi

# Repository root, from this file's location (tests/lib/common.sh), so tests
# work from any current directory.
KS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KS_BIN=${KS_BIN:-$KS_ROOT/build/ktls-sidecar}
KS_STREAM=${KS_STREAM:-$KS_ROOT/build/tests/ks-stream}
KS_PKI=$KS_ROOT/tests/lib/pki.sh
export KS_ROOT KS_BIN KS_STREAM KS_PKI

_KS_STATE=$(mktemp -d "${TMPDIR:-/tmp}/ks-state.XXXXXX")
: >"$_KS_STATE/pids"
: >"$_KS_STATE/cleanup"

# _ks_usec SECONDS: prints SECONDS (integer or decimal) in microseconds.
_ks_usec() {
	local s=$1 int frac=''
	if [[ ! $s =~ ^[0-9]*(\.[0-9]*)?$ || $s == . || -z $s ]]; then
		echo "common.sh: bad timeout '$s'" >&2
		return 1
	fi
	int=${s%%.*}
	[[ $s != *.* ]] || frac=${s#*.}
	frac=${frac}000000
	echo $((10#${int:-0} * 1000000 + 10#${frac:0:6}))
}

# _ks_now_usec: monotonic enough for test timeouts, and fork-free.
_ks_now_usec() {
	echo "${EPOCHREALTIME/./}"
}

# _ks_alive PID: true while PID exists and is not a zombie.  kill -0 alone
# would report an exited-but-unreaped child of ours as alive forever.
_ks_alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# Stops all ks_bg processes (TERM, then KILL after 5 s), then runs cleanup
# commands in reverse registration order, preserving the script's status.
_ks_on_exit() {
	local rc=$? pid i deadline
	local -a pids=() cmds=()
	set +e
	trap - EXIT

	mapfile -t pids <"$_KS_STATE/pids"
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	deadline=$(($(_ks_now_usec) + 5000000))
	for pid in "${pids[@]}"; do
		while _ks_alive "$pid" && (($(_ks_now_usec) < deadline)); do
			sleep 0.05
		done
		if _ks_alive "$pid"; then
			echo "common.sh: pid $pid ignored SIGTERM, sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null
		fi
		# Reaps our own children; returns at once for anything else.
		wait "$pid" 2>/dev/null
	done

	# A library may report what the scenario exercised (sidecar.sh).
	declare -F _ks_report_path >/dev/null && _ks_report_path

	mapfile -t cmds <"$_KS_STATE/cleanup"
	for ((i = ${#cmds[@]} - 1; i >= 0; i--)); do
		eval "${cmds[i]}"
	done
	rm -rf -- "$_KS_STATE"
	exit "$rc"
}
trap _ks_on_exit EXIT
# Without these, a signal would kill bash without running the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

# ks_cleanup_add CMD [ARG...]: runs CMD ARGS at exit (after background
# processes are stopped), last registered first.  Arguments are quoted, so
# no second round of word splitting happens.
ks_cleanup_add() {
	(($#)) || { echo "ks_cleanup_add: missing command" >&2; return 1; }
	printf '%q ' "$@" >>"$_KS_STATE/cleanup"
	printf '\n' >>"$_KS_STATE/cleanup"
}

_ks_note_kept() {
	echo "kept test directory: $1" >&2
}

# ks_tmpdir: creates and prints a fresh directory under ${TMPDIR:-/tmp}
# named after the test script; it is removed at exit unless KS_KEEP_TMP=1.
ks_tmpdir() {
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/ks-$(basename "$0" .sh).XXXXXX") || return 1
	echo "$dir" >>"$_KS_STATE/tmpdirs"
	if [[ ${KS_KEEP_TMP:-0} == 1 ]]; then
		ks_cleanup_add _ks_note_kept "$dir"
	else
		ks_cleanup_add rm -rf -- "$dir"
	fi
	echo "$dir"
}

# ks_bg LOGFILE CMD [ARG...]: starts CMD in the background with stdin from
# /dev/null and stdout+stderr to LOGFILE, registers it for the exit-time
# stop, prints its pid, and sets KS_BG_PID (visible only when not called
# via $(...)).  CMD should be a program, not a shell function or pipeline:
# only the registered pid gets signalled, so wrap pipelines in
# `bash -c 'exec ...'`.
ks_bg() {
	(($# >= 2)) || { echo "ks_bg: usage: ks_bg LOGFILE CMD [ARG...]" >&2; return 1; }
	local log=$1
	shift
	"$@" </dev/null >"$log" 2>&1 &
	KS_BG_PID=$!
	echo "$KS_BG_PID" >>"$_KS_STATE/pids"
	echo "$KS_BG_PID"
}

# ks_make ARGS...: the repo's make, run as a top-level make: a scenario runs
# under make test's sub-make, whose MAKEFLAGS and MAKELEVEL would make this
# one print "Entering directory" lines into the output that it captures.
ks_make() {
	env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s --no-print-directory -C "$KS_ROOT" "$@"
}

# ks_wait_log FILE REGEX [TIMEOUT_S=10]: waits until FILE has a line matching
# the extended REGEX.  On timeout prints the tail of FILE to stderr and
# returns 1 (which fails the test under set -e).
ks_wait_log() {
	local file=$1 regex=$2 timeout=${3:-10} deadline
	deadline=$(($(_ks_now_usec) + $(_ks_usec "$timeout")))
	until grep -Eq -- "$regex" "$file" 2>/dev/null; do
		if (($(_ks_now_usec) >= deadline)); then
			{
				echo "ks_wait_log: no line matching /$regex/ in $file after ${timeout}s; last lines:"
				tail -n 30 -- "$file" 2>&1 | sed 's/^/  | /'
			} >&2
			return 1
		fi
		sleep 0.05
	done
}

# ks_wait_port HOST PORT [TIMEOUT_S=10]: waits until a TCP connect to
# HOST:PORT succeeds (the probe connection is closed at once; note that a
# `ks-stream server --count` counts it, and the sidecar may log it).
ks_wait_port() {
	local host=$1 port=$2 timeout=${3:-10} deadline
	deadline=$(($(_ks_now_usec) + $(_ks_usec "$timeout")))
	# `timeout` bounds a connect that hangs rather than being refused.
	# shellcheck disable=SC2016 # $0/$1 are meant for the inner bash
	until timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null; do
		if (($(_ks_now_usec) >= deadline)); then
			echo "ks_wait_port: $host:$port not accepting connections after ${timeout}s" >&2
			return 1
		fi
		sleep 0.05
	done
}

# ks_pass MSG: reports a passed check on stdout; does not exit.
ks_pass() {
	echo "PASS: $*"
}

# ks_fail MSG: reports failure on stderr and exits 1 (cleanup runs).
ks_fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# ks_skip MSG: reports a skipped test and exits 77 (cleanup runs).
ks_skip() {
	echo "SKIP: $*"
	exit 77
}

# ks_assert_grep FILE REGEX MSG: fails the test with MSG unless FILE has a
# line matching the extended REGEX; shows the file's tail to help debugging.
ks_assert_grep() {
	local file=$1 regex=$2 msg=$3
	grep -Eq -- "$regex" "$file" 2>/dev/null && return 0
	{
		echo "  no line matching /$regex/ in $file; last lines:"
		tail -n 30 -- "$file" 2>&1 | sed 's/^/  | /'
	} >&2
	ks_fail "$msg"
}

# ks_expect_exit RC REGEX CMD...: runs CMD, wants exit status RC and a
# line matching the extended REGEX on its stderr; shows that stderr if not.
ks_expect_exit() {
	local want=$1 re=$2 rc=0 err msg=
	shift 2
	err=$(mktemp "${TMPDIR:-/tmp}/ks-expect.XXXXXX")
	"$@" >/dev/null 2>"$err" || rc=$?
	if ((rc != want)); then
		cat "$err" >&2
		msg="$* exited $rc, want $want"
	elif ! grep -Eq -- "$re" "$err"; then
		msg="$*: stderr '$(cat "$err")' lacks /$re/"
	fi
	rm -f "$err"
	[[ -z $msg ]] || ks_fail "$msg"
}

# ks_assert_not_grep FILE REGEX MSG: fails the test with MSG if FILE has a
# line matching the extended REGEX; shows the offending lines.  A missing
# FILE is an error rather than a vacuous pass.
ks_assert_not_grep() {
	local file=$1 regex=$2 msg=$3
	[[ -r $file ]] || ks_fail "$msg (cannot read $file)"
	grep -Eq -- "$regex" "$file" || return 0
	{
		echo "  unexpected lines matching /$regex/ in $file:"
		grep -En -m 10 -- "$regex" "$file" | sed 's/^/  | /'
	} >&2
	ks_fail "$msg"
}
