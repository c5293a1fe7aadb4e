#!/usr/bin/env bash
# Runs every tests/integration/t_*.sh (or those named on the command line),
# each in its own process with a time limit, and prints a summary line.
# Exit status 77 from a test means "skipped" (a kernel feature is missing);
# the test prints why.
set -u
here=$(cd "$(dirname "$0")" && pwd)
limit=${KS_TEST_TIMEOUT:-600}
pass=0 fail=0 skip=0 failed=()

# Under sanitizers (make asan) every report goes to a file per process, and a
# test fails if any of its processes reported, even one that was stopped by
# the test's cleanup after the test itself had passed.
san_dir=
if [ "${KS_SANITIZED:-0}" = 1 ]; then
	san_dir=$(mktemp -d)
	export ASAN_OPTIONS="${ASAN_OPTIONS:-}:log_path=$san_dir/asan:detect_leaks=1"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:log_path=$san_dir/ubsan:print_stacktrace=1:halt_on_error=1"
fi

if [ "${KS_VALGRIND:-0}" = 1 ]; then
	san_dir=$(mktemp -d)
	export KS_VALGRIND_DIR=$san_dir KS_START_TIMEOUT=60
fi

tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=("$here"/integration/t_*.sh)
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
	case $rc in
	0)
		pass=$((pass + 1)); echo "PASS $name (${dur}s)"
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
