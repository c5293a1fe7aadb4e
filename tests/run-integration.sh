#!/usr/bin/env bash
# Runs every tests/integration/*/t_*.sh (or those named on the command line),
# each in its own process with a time limit, and prints a summary line.
# Exit status 77 from a test means "skipped" (a kernel feature is missing);
# the test prints why. A skip fails the run unless KS_ALLOW_SKIP=1: CI runs
# as root on a kernel with BPF, io_uring and the rest, so a scenario that
# skips there has stopped testing what it claims to (a developer's machine
# that lacks something sets KS_ALLOW_SKIP=1 and reads the SKIP lines).
#
# Each line says what the scenario exercised: the "PATH:" lines a test
# prints (sidecar.sh reports the record layers its sidecars used; the
# redirect tests add the redirect mode), so a pass on the userspace record
# layer is never mistaken for a pass on the kernel one.
set -u
here=$(cd "$(dirname "$0")" && pwd)
limit=${KS_TEST_TIMEOUT:-600}
pass=0 fail=0 skip=0 failed=()

# Under sanitizers (make asan) every report goes to a file per process, and a
# test fails if any of its processes reported, even one that was stopped by
# the test's cleanup after the test itself had passed.
# KS_SANITIZED=tsan does the same for ThreadSanitizer (make tsan).
san_dir=
if [ "${KS_SANITIZED:-0}" = 1 ]; then
	san_dir=$(mktemp -d)
	export ASAN_OPTIONS="${ASAN_OPTIONS:-}:log_path=$san_dir/asan:detect_leaks=1"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:log_path=$san_dir/ubsan:print_stacktrace=1:halt_on_error=1"
elif [ "${KS_SANITIZED:-0}" = tsan ]; then
	san_dir=$(mktemp -d)
	export TSAN_OPTIONS="${TSAN_OPTIONS:-} log_path=$san_dir/tsan"
	export KS_START_TIMEOUT=${KS_START_TIMEOUT:-60}
fi

if [ "${KS_VALGRIND:-0}" = 1 ]; then
	san_dir=$(mktemp -d)
	export KS_VALGRIND_DIR=$san_dir KS_START_TIMEOUT=60
fi

tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=("$here"/integration/*/t_*.sh)
for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	start=$(date +%s)
	out=$(mktemp)
	timeout -k 10 "$limit" bash "$t" >"$out" 2>&1
	rc=$?
	dur=$(($(date +%s) - start))
	# valgrind -q writes nothing unless it found something
	find "$san_dir" -maxdepth 1 -empty -name 'vg.*' -delete 2>/dev/null
	if [ -n "$san_dir" ] && [ -n "$(ls -A "$san_dir")" ]; then
		echo "sanitizer reports:" >>"$out"
		cat "$san_dir"/* >>"$out"
		rm -f "$san_dir"/*
		[ $rc = 0 ] || [ $rc = 77 ] && rc=99
	fi
	what=$(sed -n 's/^PATH: //p' "$out" | paste -sd' ' -)
	[ $rc = 77 ] && [ "${KS_ALLOW_SKIP:-0}" != 1 ] && {
		echo "SKIP is a failure here (KS_ALLOW_SKIP=1 allows it): $(grep -m1 '^SKIP' "$out")" >>"$out"
		rc=78
	}
	case $rc in
	0)
		pass=$((pass + 1)); echo "PASS $name (${dur}s) [${what:-no path reported}]"
		[ "${KS_VERBOSE:-0}" = 1 ] && sed 's/^/    | /' "$out"
		;;
	77) skip=$((skip + 1)); echo "SKIP $name: $(grep -m1 '^SKIP' "$out" || echo 'no reason given')" ;;
	*)
		fail=$((fail + 1)); failed+=("$name")
		[ $rc = 124 ] && echo "FAIL $name: timed out after ${limit}s" || echo "FAIL $name (exit $rc, ${dur}s)"
		sed 's/^/    | /' "$out" | tail -n 60
		;;
	esac
	rm -f "$out"
done
[ -n "$san_dir" ] && rm -rf "$san_dir"
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "integration: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
