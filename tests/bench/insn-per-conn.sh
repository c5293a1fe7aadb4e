#!/usr/bin/env bash
# Instructions per new connection of one proxy of a pair, counted by
# callgrind: a figure that does not depend on this machine's noise, to say
# where a timed result of bench.py comes from (issue 18's profile).
#
#   tests/bench/insn-per-conn.sh ktls|nginx a|b [resume|full]
#
# Builds the pair bench.py builds for that peer (its templates, one worker,
# the epoll backend for ktls-sidecar), runs the side asked for under
# `valgrind --tool=callgrind`, the other one natively, and drives it with
# `ks_connrate conn --conns 1` (connect, 100 bytes echoed, close, in a loop)
# twice, for INSN_SECS (default "6 12") seconds. Both runs count start-up and
# shut-down alike, so the slope between them is the cost of one connection:
#
#   insn-per-conn ktls b resume: 85 conns 544540318 instr, 223 conns 1362104939 instr: 5925000 per conn
#
# The library is whatever the dynamic linker finds: LD_LIBRARY_PATH=DIR runs
# every process of the pair on another OpenSSL 3.x build (same ABI).
# Environment: KS_BIN, BENCH_BUILD (ks_connrate), INSN_PORT_BASE (25900).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KS_BIN=${KS_BIN:-$ROOT/build/ktls-sidecar}
BENCH_BUILD=${BENCH_BUILD:-$ROOT/build/bench}
PEER=${1:-} SIDE=${2:-} VARIANT=${3:-resume}
SECS=(${INSN_SECS:-6 12})
BASE=${INSN_PORT_BASE:-25900}
SERVER_ID=spiffe://example.org/ns/b/sa/server
CLIENT_ID=spiffe://example.org/ns/a/sa/client

usage() {
	sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
[[ $PEER == ktls || $PEER == nginx ]] || usage
[[ $SIDE == a || $SIDE == b ]] || usage
[[ $VARIANT == resume || $VARIANT == full ]] || usage
((${#SECS[@]} == 2 && SECS[0] < SECS[1])) || { echo "INSN_SECS: two durations, shorter first" >&2; exit 2; }
for t in valgrind callgrind_annotate; do
	command -v $t >/dev/null || { echo "insn-per-conn: $t missing (apt-get install valgrind)" >&2; exit 1; }
done
[[ $PEER == nginx ]] && ! command -v nginx >/dev/null && { echo "insn-per-conn: nginx missing" >&2; exit 1; }
for b in "$KS_BIN" "$BENCH_BUILD/ks_connrate"; do
	[[ -x $b ]] || { echo "insn-per-conn: $b missing: run make first" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/ks-insn.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

"$ROOT/tests/lib/pki.sh" ca "$WORK/pki" >/dev/null
"$ROOT/tests/lib/pki.sh" issue "$WORK/pki" client "$CLIENT_ID" >/dev/null
"$ROOT/tests/lib/pki.sh" issue "$WORK/pki" server "$SERVER_ID" >/dev/null

SINK_BULK=$BASE SINK_ECHO=$((BASE + 1)) PA_BULK=$((BASE + 2)) PA_ECHO=$((BASE + 3))
PB_BULK=$((BASE + 4)) PB_ECHO=$((BASE + 5))

# The templates are filled in by bench.py's own render() (it refuses a
# placeholder left unfilled). nginx runs without a master process here, so
# that the process under callgrind is the one that does the work.
render() { # template dir
	python3 - "$HERE" "$1" "$2" "$VARIANT" <<-EOF | sed 's#master_process on#master_process off#'
		import sys
		sys.path.insert(0, sys.argv[1])
		import bench
		tmpl, d, variant = sys.argv[2:5]
		subst = dict(PKI=d + "/../pki", DIR=d, WORKERS=1, IO="epoll", KS_BIN="$KS_BIN",
		             SERVER_ID="$SERVER_ID", KS_MAXCONN=1000, NGINX_CONNS=1000,
		             KS_SESSION="--session-resumption " + ("on" if variant == "resume" else "off"),
		             SINK_BULK=$SINK_BULK, SINK_ECHO=$SINK_ECHO, PA_BULK=$PA_BULK,
		             PA_ECHO=$PA_ECHO, PB_BULK=$PB_BULK, PB_ECHO=$PB_ECHO)
		bench.render(tmpl, "/dev/stdout", subst, "full" if variant == "full" else "resume")
	EOF
}

listening() {
	local out
	out=$(ss -Hltn)
	for p in "$@"; do grep -q "127.0.0.1:$p " <<<"$out" || return 1; done
}

# One run of SECS seconds: writes "CONNS INSTRUCTIONS" to $WORK/result.$1.
run_once() {
	local secs=$1 dir=$WORK/run$1 side argv pid vg=() a_pid b_pid ok
	mkdir -p "$dir"
	"$BENCH_BUILD/ks_connrate" echo --listen 127.0.0.1:$SINK_ECHO >/dev/null 2>&1 &
	PIDS+=($!)
	"$BENCH_BUILD/ks_connrate" echo --listen 127.0.0.1:$SINK_BULK >/dev/null 2>&1 &
	PIDS+=($!)
	for side in b a; do
		vg=()
		[[ $side == "$SIDE" ]] && vg=(valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out")
		if [[ $PEER == ktls ]]; then
			render "ktls-$side.args.in" "$dir" | grep -v '^[[:space:]]*#' | grep . >"$dir/$side.args"
			read -r -a argv <"$dir/$side.args"
		else
			render "nginx-$side.conf.in" "$dir" >"$dir/nginx-$side.conf"
			argv=(nginx -c "$dir/nginx-$side.conf" -p "$dir/" -e "$dir/nginx-$side.err")
		fi
		"${vg[@]}" "${argv[@]}" >"$dir/$side.log" 2>&1 &
		pid=$!
		PIDS+=($pid)
		if [[ $side == a ]]; then a_pid=$pid; else b_pid=$pid; fi
	done
	for _ in $(seq 300); do
		listening $PA_ECHO $PB_ECHO && break
		sleep 0.1
	done
	listening $PA_ECHO $PB_ECHO || { echo "insn-per-conn: the pair did not start; logs:" >&2; tail -n 5 "$dir"/*.log >&2; exit 1; }
	ok=$("$BENCH_BUILD/ks_connrate" conn --connect 127.0.0.1:$PA_ECHO --conns 1 --duration "$secs" |
		sed -n 's/^conn ok=\([0-9]*\) errors=0 .*/\1/p')
	[[ -n $ok ]] || { echo "insn-per-conn: connections failed; logs in $dir" >&2; tail -n 5 "$dir"/*.log >&2; exit 1; }
	# SIGINT: nginx's fast shutdown, and ktls-sidecar's drain. Without a
	# master, nginx under valgrind may miss the first one: it is sent again
	# until both are gone (callgrind writes its counts on exit).
	for i in $(seq 60); do
		kill -0 "$a_pid" 2>/dev/null || kill -0 "$b_pid" 2>/dev/null || break
		((i % 10 == 1)) && kill -INT "$a_pid" "$b_pid" 2>/dev/null
		sleep 0.2
	done
	if kill -0 "$a_pid" 2>/dev/null || kill -0 "$b_pid" 2>/dev/null; then
		echo "insn-per-conn: the pair did not stop on SIGINT; logs in $dir" >&2
		exit 1
	fi
	wait "$a_pid" "$b_pid" 2>/dev/null || true
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	PIDS=()
	echo "$ok $(sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$dir/cg.out" | head -n 1)" \
		>"$WORK/result.$secs"
}

run_once "${SECS[0]}"
run_once "${SECS[1]}"
read -r n1 i1 <"$WORK/result.${SECS[0]}"
read -r n2 i2 <"$WORK/result.${SECS[1]}"
[[ -n ${i1:-} && -n ${i2:-} ]] || { echo "insn-per-conn: no callgrind totals" >&2; exit 1; }
((n2 > n1)) || { echo "insn-per-conn: the longer run made no more connections ($n1, $n2)" >&2; exit 1; }
echo "insn-per-conn $PEER $SIDE $VARIANT: $n1 conns $i1 instr, $n2 conns $i2 instr: $(((i2 - i1) / (n2 - n1))) per conn"
