#!/usr/bin/env python3
"""ktls-sidecar benchmark harness (issue 3): the orchestrator behind run.sh.

Topology per peer, all on 127.0.0.1:
    load generator -> proxy A (plaintext in, mTLS out) -> proxy B (mTLS in,
    client certificate required, plaintext out) -> sink (iperf3 server for
    bulk, ks_connrate echo server otherwise)

Python 3 standard library only.  Reports, never asserts.  See README.md.
"""
import datetime
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "build", "bench")
KS_BIN = os.environ.get("KS_BIN") or os.path.join(ROOT, "build", "ktls-sidecar")
KS_STREAM = os.environ.get("KS_STREAM") or os.path.join(ROOT, "build", "tests", "ks-stream")
PKI_SH = os.path.join(ROOT, "tests", "lib", "pki.sh")
LOADGEN = os.path.join(BUILD, "ks_connrate")

CLIENT_ID = "spiffe://example.org/ns/a/sa/client"
SERVER_ID = "spiffe://example.org/ns/b/sa/server"

ENV = os.environ
QUICK = ENV.get("BENCH_QUICK", "") == "1"
ROUNDS = int(ENV.get("BENCH_ROUNDS") or (1 if QUICK else 3))
BULK_SECS = float(ENV.get("BENCH_BULK_SECS") or (3 if QUICK else 10))
RUN_SECS = float(ENV.get("BENCH_RUN_SECS") or (3 if QUICK else 5))
TRICKLE_SECS = float(ENV.get("BENCH_TRICKLE_SECS") or (5 if QUICK else 10))
WORKERS = int(ENV.get("BENCH_WORKERS") or 1)
LAT_RATE = float(ENV.get("BENCH_LAT_RATE") or 2000)
LAT_CONNS = int(ENV.get("BENCH_LAT_CONNS") or 4)
MEM_SMALL = int(ENV.get("BENCH_MEM_SMALL") or 1000)
SCALE_WANT = int(ENV.get("BENCH_SCALE_CONNS") or 10000)
KS_MAXCONN = 65536  # ktls-sidecar's --max-connections, fitted to RLIMIT_NOFILE in main()
FORK_MAX = int(ENV.get("BENCH_FORK_MAX_CONNS") or 1000)
STRACE_BYTES = ENV.get("BENCH_STRACE_BYTES") or ("64M" if QUICK else "256M")
PORT_BASE = int(ENV.get("BENCH_PORT_BASE") or 21000)

ALL_PEERS = ["direct", "plain", "ktls-uring", "ktls-epoll", "stunnel", "haproxy", "nginx", "socat"]
ALL_WORKLOADS = ["bulk", "connrate", "latency", "memory", "scale", "syscalls"]
# Peers the ktls-sidecar ratios are taken against (references excluded).
REAL_PEERS = ["stunnel", "haproxy", "nginx", "socat"]
KTLS = ["ktls-uring", "ktls-epoll"]
FORKING = {"socat", "plain"}  # one process per connection

STARTED = []  # every Popen we started, for cleanup


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def spawn(argv, logpath, env=None, stdin=subprocess.DEVNULL, stdout=None):
    f = open(logpath, "ab")
    p = subprocess.Popen(argv, stdin=stdin, stdout=stdout if stdout is not None else f,
                         stderr=f, env=env, start_new_session=True)
    f.close()
    STARTED.append(p)
    return p


def stop(p, timeout=5.0):
    """Ends a process we started, and its process group (its forks/workers)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # stragglers (socat children)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(2)
    except subprocess.TimeoutExpired:
        pass
    if p in STARTED:
        STARTED.remove(p)


def cleanup():
    for p in list(STARTED):
        stop(p, 2)


def proc_table():
    """pid -> (ppid, utime+stime+cutime+cstime in ticks)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(")") + 2:].split()
        # fields after comm: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17)
        table[int(d)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return table


def tree(roots, table=None):
    table = table or proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(roots):
    table = proc_table()
    return sum(table[p][1] for p in tree(roots, table)) / TICK


def rss_kib(roots):
    total = 0
    for pid in tree(roots):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def listening(ports):
    want = set(ports)
    have = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A":
                        have.add(int(parts[1].split(":")[1], 16))
        except OSError:
            pass
    return want <= have


def wait_listening(ports, timeout=10.0, procs=()):
    end = time.time() + timeout
    while time.time() < end:
        if listening(ports):
            return True
        if any(p.poll() is not None for p in procs):
            return False
        time.sleep(0.05)
    return False


class Lines:
    """Line reader with timeouts on a subprocess's stdout pipe."""

    def __init__(self, p):
        self.p, self.buf = p, b""

    def readline(self, timeout):
        end = time.time() + timeout
        while b"\n" not in self.buf:
            left = end - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")


def kv(line):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line or "")}


# ---------------------------------------------------------------- peers

def render(template, dest, subst):
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for k, v in subst.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError("%s: unfilled %s" % (template, left))
    with open(dest, "w") as f:
        f.write(text)
    return dest


def args_lines(path):
    with open(path) as f:
        return [shlex.split(l) for l in f if l.strip() and not l.lstrip().startswith("#")]


class Peer:
    def __init__(self, name, index, work, pki):
        self.name, self.work, self.pki = name, work, pki
        self.kind = name.split("-")[0]
        self.tls = name not in ("direct", "plain")
        base = PORT_BASE + 100 + 10 * index
        self.ports = dict(PA_BULK=base, PA_ECHO=base + 1, PB_BULK=base + 2, PB_ECHO=base + 3)
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.a, self.b = [], []
        self.status, self.checks = "ok", {}
        if name == "direct":
            self.entry_bulk, self.entry_echo = SINK_BULK, SINK_ECHO
        else:
            self.entry_bulk, self.entry_echo = self.ports["PA_BULK"], self.ports["PA_ECHO"]

    def subst(self):
        d = dict(self.ports, SINK_BULK=SINK_BULK, SINK_ECHO=SINK_ECHO, PKI=self.pki, DIR=self.dir,
                 WORKERS=WORKERS, KS_BIN=KS_BIN, SERVER_ID=SERVER_ID,
                 MAXCONN=min(30000, (NOFILE - 100) // 2), NGINX_CONNS=min(60000, NOFILE - 50),
                 KS_MAXCONN=KS_MAXCONN)
        if self.kind == "ktls":
            d["IO"] = self.name.split("-")[1]
        return d

    def start(self):
        if self.name == "direct":
            return True
        s, d = self.subst(), self.dir
        env = dict(os.environ)
        for side in ("a", "b"):
            logp = os.path.join(d, "%s.log" % side)
            procs = []
            if self.kind in ("ktls", "socat", "plain"):
                if self.kind == "socat":
                    env["OPENSSL_CONF"] = render("socat-openssl.cnf.in",
                                                 os.path.join(d, "openssl.cnf"), s)
                path = render("%s-%s.args.in" % (self.kind, side),
                              os.path.join(d, "%s.args" % side), s)
                for argv in args_lines(path):
                    procs.append(spawn(argv, logp, env=env))
            elif self.kind == "stunnel":
                conf = render("stunnel-%s.conf.in" % side, os.path.join(d, "stunnel-%s.conf" % side), s)
                procs.append(spawn(["stunnel", conf], logp))
            elif self.kind == "haproxy":
                conf = render("haproxy-%s.cfg.in" % side, os.path.join(d, "haproxy-%s.cfg" % side), s)
                procs.append(spawn(["haproxy", "-db", "-f", conf], logp))
            elif self.kind == "nginx":
                conf = render("nginx-%s.conf.in" % side, os.path.join(d, "nginx-%s.conf" % side), s)
                procs.append(spawn(["nginx", "-c", conf, "-p", d + "/",
                                    "-e", os.path.join(d, "nginx-%s.err" % side)], logp))
            if side == "a":
                self.a = procs
            else:
                self.b = procs
        ports = list(self.ports.values())
        # Ready = all four listeners up.  (ktls-sidecar logs event=ready at
        # info level, which the benchmark turns off.)
        ok = wait_listening(ports, 15, self.a + self.b)
        if not ok:
            log("%s: did not start; logs in %s" % (self.name, d))
            self.stop()
        return ok

    def stop(self):
        for p in self.a + self.b:
            stop(p)
        self.a, self.b = [], []
        # Give listeners time to go away before the next start.
        end = time.time() + 5
        while time.time() < end and self.name != "direct" and any(
                listening([p]) for p in self.ports.values()):
            time.sleep(0.05)

    def roots(self, side):
        return [p.pid for p in (self.a if side == "a" else self.b)]

    def cpu(self):
        if self.name == "direct":
            return (0.0, 0.0)
        return (cpu_seconds(self.roots("a")), cpu_seconds(self.roots("b")))

    def rss(self):
        if self.name == "direct":
            return (0, 0)
        return (rss_kib(self.roots("a")), rss_kib(self.roots("b")))

    def alive(self):
        return all(p.poll() is None for p in self.a + self.b)


# ---------------------------------------------------------------- checks

def s_client(port, with_cert, pki, timeout=4.0):
    """Sends a line through s_client to the echo route of a B; returns
    (echoed, ciphersuite, protocol, stderr tail)."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_3", "-brief",
            "-CAfile", os.path.join(pki, "bundle.crt"), "-verify_return_error"]
    if with_cert:
        argv += ["-cert", os.path.join(pki, "client.crt"), "-key", os.path.join(pki, "client.key"),
                 "-cert_chain", os.path.join(pki, "int.crt")]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    STARTED.append(p)
    token = b"mtls-check-%d\n" % os.getpid()
    echoed = False
    try:
        time.sleep(0.3)
        p.stdin.write(token)
        p.stdin.flush()
    except BrokenPipeError:
        pass
    rd = Lines(p)
    end = time.time() + timeout
    while time.time() < end:
        line = rd.readline(end - time.time())
        if line is None:
            break
        if line.encode() + b"\n" == token:
            echoed = True
            break
    stop(p, 1)
    err = p.stderr.read().decode(errors="replace")
    suite = re.search(r"Ciphersuite: (\S+)", err)
    proto = re.search(r"Protocol version: (\S+)", err)
    return echoed, suite.group(1) if suite else None, proto.group(1) if proto else None, err[-300:]


def established_by(pids, peer_port):
    """Number of established TCP sockets owned by PIDS whose peer port is PEER_PORT."""
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                         text=True).stdout
    want, n = set(str(p) for p in pids), 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[3].endswith(":%d" % peer_port):
            continue
        if set(re.findall(r"pid=(\d+)", line)) & want:
            n += 1
    return n


def check_peer(peer, pki):
    """mTLS enforcement on B, then the data path: traffic must cross both
    proxies (sockets A->B and B->sink exist while a transfer runs) and come
    back intact (ks-stream verifies every byte)."""
    c = peer.checks
    if peer.tls:
        ok_echo, suite, proto, _ = s_client(peer.ports["PB_ECHO"], True, pki)
        no_echo, _, _, err = s_client(peer.ports["PB_ECHO"], False, pki)
        c.update(with_cert_echo=ok_echo, ciphersuite=suite, protocol=proto,
                 without_cert_echo=no_echo)
        if not ok_echo:
            peer.status = "excluded: B did not echo for a client with a valid certificate"
            return False
        if no_echo:
            peer.status = "excluded: B let a client without a certificate through (no mTLS)"
            return False
        if suite != "TLS_AES_128_GCM_SHA256" or proto != "TLSv1.3":
            log("%s: negotiated %s %s (expected TLSv1.3 TLS_AES_128_GCM_SHA256)" % (
                peer.name, proto, suite))
    if peer.name == "direct":
        return True
    cl = spawn([KS_STREAM, "client", "--connect", "127.0.0.1:%d" % peer.entry_echo,
                "--bytes", "1M", "--conns", "4", "--hold-ms", "1500", "--expect", "echo",
                "--timeout", "30"], os.path.join(peer.dir, "pathcheck.log"))
    time.sleep(0.9)
    tbl = proc_table()
    a_pids, b_pids = tree(peer.roots("a"), tbl), tree(peer.roots("b"), tbl)
    c["a_to_b_sockets"] = established_by(a_pids, peer.ports["PB_ECHO"])
    c["b_to_sink_sockets"] = established_by(b_pids, SINK_ECHO)
    try:
        rc = cl.wait(40)
    except subprocess.TimeoutExpired:
        rc = -1
    stop(cl)
    c["integrity_4x1MiB_echo"] = rc == 0
    if c["a_to_b_sockets"] < 4 or c["b_to_sink_sockets"] < 4 or rc != 0:
        peer.status = "excluded: data path check failed %s" % json.dumps(c)
        return False
    return True


# ---------------------------------------------------------------- workloads

R = {}  # metric -> peer -> [values]
NOTES = {}  # metric -> peer -> note


def rec(metric, peer, value):
    if value is not None:
        R.setdefault(metric, {}).setdefault(peer.name, []).append(value)


def note(metric, peer, text):
    NOTES.setdefault(metric, {})[peer.name] = text


def iperf_server():
    p = spawn(["iperf3", "-s", "-1", "-p", str(SINK_BULK)], os.path.join(WORK, "iperf3-s.log"))
    if not wait_listening([SINK_BULK], 5, [p]):
        raise RuntimeError("iperf3 server did not start")
    return p


def iperf_client(peer, extra):
    srv = iperf_server()
    try:
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(peer.entry_bulk), "-J"] + extra,
                           capture_output=True, text=True, timeout=120)
        j = json.loads(r.stdout)
        if "error" in j:
            raise RuntimeError(j["error"])
        s = j["end"]["sum_received"]
        return s["bits_per_second"], s["bytes"]
    finally:
        try:
            srv.wait(3)
        except subprocess.TimeoutExpired:
            pass
        stop(srv)


def w_bulk(peer):
    for streams, key in ((1, "bulk1"), (4, "bulk4")):
        c0 = peer.cpu()
        try:
            bps, nbytes = iperf_client(peer, ["-t", str(BULK_SECS), "-P", str(streams)])
        except Exception as e:  # report, do not abort the run
            log("%s bulk %d: %s" % (peer.name, streams, e))
            note(key + "_gbps", peer, "error")
            continue
        c1 = peer.cpu()
        rec(key + "_gbps", peer, bps / 1e9)
        mib = nbytes / 2**20
        if peer.name != "direct":
            rec("cpu_%s_a_us_mib" % key, peer, (c1[0] - c0[0]) * 1e6 / mib)
            rec("cpu_%s_b_us_mib" % key, peer, (c1[1] - c0[1]) * 1e6 / mib)


def loadgen(args, timeout):
    r = subprocess.run([LOADGEN] + args, capture_output=True, text=True, timeout=timeout)
    return kv(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "")


def w_connrate(peer):
    for conns in (1, 8):
        c0 = peer.cpu()
        k = loadgen(["conn", "--connect", "127.0.0.1:%d" % peer.entry_echo, "--conns", str(conns),
                     "--duration", str(RUN_SECS)], RUN_SECS + 60)
        c1 = peer.cpu()
        ok = int(k.get("ok", 0))
        rec("conn%d_cps" % conns, peer, float(k.get("rate", 0)))
        rec("conn%d_errors" % conns, peer, int(k.get("errors", 0)))
        if ok and peer.name != "direct":
            rec("cpu_conn%d_a_us" % conns, peer, (c1[0] - c0[0]) * 1e6 / ok)
            rec("cpu_conn%d_b_us" % conns, peer, (c1[1] - c0[1]) * 1e6 / ok)


def w_latency(peer):
    for key, extra in (("latfix", ["--rate", str(LAT_RATE)]), ("latsat", [])):
        c0 = peer.cpu()
        k = loadgen(["lat", "--connect", "127.0.0.1:%d" % peer.entry_echo, "--conns",
                     str(LAT_CONNS), "--duration", str(RUN_SECS)] + extra, RUN_SECS + 60)
        c1 = peer.cpu()
        if not k:
            note(key + "_p99", peer, "error")
            continue
        for p in ("p50", "p99", "p999"):
            rec("%s_%s" % (key, p), peer, float(k[p + "_us"]))
        rec(key + "_errors", peer, int(k.get("errors", 0)))
        n = int(k.get("n", 0))
        if key == "latsat":
            rec("latsat_rps", peer, float(k["rate"]))
            if n and peer.name != "direct":
                rec("cpu_latsat_ab_us", peer, ((c1[0] - c0[0]) + (c1[1] - c0[1])) * 1e6 / n)


def hold(peer, n, trickle):
    """Fresh peer; RSS per connection at N idle established connections
    (A and B), and optionally a trickle phase.  Returns a dict."""
    peer.stop()
    if not peer.start():
        return None
    try:
        # Warm up once so lazy initialisation is in the baseline.
        loadgen(["conn", "--connect", "127.0.0.1:%d" % peer.entry_echo, "--conns", "1",
                 "--duration", "0.3"], 30)
        time.sleep(0.5)
        base = peer.rss()
        p = spawn([LOADGEN, "hold", "--connect", "127.0.0.1:%d" % peer.entry_echo, "--conns",
                   str(n), "--pending", "200", "--timeout", "60"],
                  os.path.join(peer.dir, "hold.log"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        rd = Lines(p)
        out = {}
        try:
            line = rd.readline(n / 20 + 120)
            ready = kv(line)
            DETAILS.setdefault(peer.name, []).append("hold %d: %s" % (n, line))
            if not ready:
                out["error"] = "no ready line"
                return out
            est = int(ready["established"])
            time.sleep(1.0)
            now_rss = peer.rss()
            out.update(established=est, errors=int(ready["errors"]),
                       rss_a=(now_rss[0] - base[0]) / max(est, 1),
                       rss_b=(now_rss[1] - base[1]) / max(est, 1),
                       base_a=base[0], base_b=base[1], alive=peer.alive())
            if trickle:
                p.stdin.write(b"trickle %g 1000\n" % TRICKLE_SECS)
                p.stdin.flush()
                line = rd.readline(TRICKLE_SECS + 60)
                DETAILS.setdefault(peer.name, []).append("hold %d: %s" % (n, line))
                t = kv(line)
                out.update(trickle_errors=int(t.get("errors", -1)) if t else -1,
                           trickle_echoes=int(t.get("echoes", 0)) if t else 0,
                           trickle_established=int(t.get("established", 0)) if t else 0,
                           late=int(t.get("late", 0)) if t else 0)
            p.stdin.write(b"quit\n")
            p.stdin.flush()
            rd.readline(30)
        finally:
            stop(p)
        return out
    finally:
        peer.stop()


def w_memory(peer, selected):
    sizes = [MEM_SMALL] + ([] if "scale" in selected else [SCALE])
    for n in sizes:
        key = "mem%s" % label_n(n)
        if peer.name in FORKING and n > FORK_MAX:
            note(key + "_a_kib", peer, "skipped (fork per conn)")
            continue
        r = hold(peer, n, False)
        record_mem(peer, key, n, r)


def record_mem(peer, key, n, r):
    if not r or "error" in r:
        note(key + "_a_kib", peer, "error")
        return
    if peer.name != "direct":
        rec(key + "_a_kib", peer, r["rss_a"])
        rec(key + "_b_kib", peer, r["rss_b"])
    rec(key + "_errors", peer, r["errors"] + (n - r["established"] - r["errors"]))


def w_scale(peer, selected):
    key = "mem%s" % label_n(SCALE)
    if peer.name in FORKING and SCALE > FORK_MAX:
        note("scale_errors", peer, "skipped (fork per conn)")
        note(key + "_a_kib", peer, "skipped (fork per conn)")
        return
    r = hold(peer, SCALE, True)
    if "memory" in selected:
        record_mem(peer, key, SCALE, r)
    if not r or "error" in r:
        note("scale_errors", peer, "error")
        return
    # errors: failed to establish, plus anything that failed while idle or
    # trickling (the tool's error counter is cumulative).
    errs = max(r.get("trickle_errors", 0), r["errors"]) + (SCALE - r["established"] - r["errors"])
    rec("scale_errors", peer, errs)
    rec("scale_echoes", peer, r.get("trickle_echoes", 0))


def w_syscalls(peer):
    """strace -c -f on every process of A and of B during a bulk transfer of
    STRACE_BYTES: syscalls per MiB forwarded (userspace path)."""
    if peer.name == "direct":
        return
    tbl = proc_table()
    res = {}
    tracers = []
    for side in ("a", "b"):
        out = os.path.join(peer.dir, "strace-%s.txt" % side)
        if os.path.exists(out):
            os.unlink(out)
        argv = ["strace", "-c", "-f", "-o", out]
        for pid in tree(peer.roots(side), tbl):
            for tid in os.listdir("/proc/%d/task" % pid):
                argv += ["-p", tid]
        tracers.append((side, out, spawn(argv, os.path.join(peer.dir, "strace.log"))))
    time.sleep(1.0)
    try:
        bps, nbytes = iperf_client(peer, ["-n", STRACE_BYTES])
    except Exception as e:
        log("%s syscalls: %s" % (peer.name, e))
        nbytes = 0
    for side, out, p in tracers:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            pass
        stop(p)
        calls, top = None, []
        try:
            with open(out) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 5 and parts[-1] == "total":
                        calls = int(parts[3])
                    elif len(parts) >= 5 and re.match(r"^[\d.]+$", parts[0]) and parts[3].isdigit():
                        top.append((int(parts[3]), parts[-1]))
        except OSError:
            pass
        if calls and nbytes:
            mib = nbytes / 2**20
            rec("sys_%s_per_mib" % side, peer, calls / mib)
            top.sort(reverse=True)
            res[side] = ", ".join("%s %.1f" % (name, c / mib) for c, name in top[:4])
    if res:
        SYSCALL_DETAIL[peer.name] = res


SYSCALL_DETAIL = {}
DETAILS = {}  # peer -> load generator summary lines of the memory/scale runs


def label_n(n):
    return "%dk" % (n // 1000) if n % 1000 == 0 else str(n)


# ---------------------------------------------------------------- report

def metric_table():
    rows = [
        ("bulk1_gbps", "Bulk, 1 stream (Gbit/s)", "hi"),
        ("bulk4_gbps", "Bulk, 4 streams (Gbit/s)", "hi"),
        ("conn1_cps", "New mTLS conns/s, concurrency 1", "hi"),
        ("conn1_errors", "  errors, concurrency 1", None),
        ("conn8_cps", "New mTLS conns/s, concurrency 8", "hi"),
        ("conn8_errors", "  errors, concurrency 8", None),
        ("latfix_p50", "Latency @%d req/s p50 (µs)" % LAT_RATE, "lo"),
        ("latfix_p99", "Latency @%d req/s p99 (µs)" % LAT_RATE, "lo"),
        ("latfix_p999", "Latency @%d req/s p99.9 (µs)" % LAT_RATE, "lo"),
        ("latfix_errors", "  errors @%d req/s" % LAT_RATE, None),
        ("latsat_rps", "Saturation, %d conns (req/s)" % LAT_CONNS, "hi"),
        ("latsat_p50", "Latency at saturation p50 (µs)", "lo"),
        ("latsat_p99", "Latency at saturation p99 (µs)", "lo"),
        ("latsat_p999", "Latency at saturation p99.9 (µs)", "lo"),
        ("latsat_errors", "  errors at saturation", None),
    ]
    for n in (MEM_SMALL, SCALE):
        k = "mem%s" % label_n(n)
        rows += [(k + "_a_kib", "RSS per idle conn @%s, A (KiB)" % label_n(n), "lo"),
                 (k + "_b_kib", "RSS per idle conn @%s, B (KiB)" % label_n(n), "lo"),
                 (k + "_errors", "  conns not established @%s" % label_n(n), None)]
    rows += [
        ("scale_errors", "Scale: %d conns trickling %gs, errors" % (SCALE, TRICKLE_SECS), None),
        ("scale_echoes", "  echoes checked", None),
        ("cpu_bulk1_a_us_mib", "CPU A per MiB, bulk 1 stream (µs)", "lo"),
        ("cpu_bulk1_b_us_mib", "CPU B per MiB, bulk 1 stream (µs)", "lo"),
        ("cpu_bulk4_a_us_mib", "CPU A per MiB, bulk 4 streams (µs)", "lo"),
        ("cpu_bulk4_b_us_mib", "CPU B per MiB, bulk 4 streams (µs)", "lo"),
        ("cpu_conn8_a_us", "CPU A per conn, concurrency 8 (µs)", "lo"),
        ("cpu_conn8_b_us", "CPU B per conn, concurrency 8 (µs)", "lo"),
        ("cpu_latsat_ab_us", "CPU A+B per request at saturation (µs)", "lo"),
        ("sys_a_per_mib", "Syscalls per MiB, A (strace -c -f)", "lo"),
        ("sys_b_per_mib", "Syscalls per MiB, B (strace -c -f)", "lo"),
    ]
    return rows


def fmt(v):
    if v is None:
        return "–"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    return "%.2f" % v


def cell(metric, peer):
    vals = R.get(metric, {}).get(peer)
    if not vals:
        return NOTES.get(metric, {}).get(peer, "")
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return "%s [%s–%s]" % (fmt(med), fmt(min(vals)), fmt(max(vals)))


def ratios(rows, peers):
    out = []
    for key, label, better in rows:
        if not better or key not in R:
            continue
        meds = {p: statistics.median(v) for p, v in R[key].items() if v}
        cands = {p: m for p, m in meds.items() if p in REAL_PEERS}
        if not cands:
            continue
        best = (max if better == "hi" else min)(cands, key=cands.get)
        parts = []
        for k in KTLS:
            if k in meds and cands[best]:
                parts.append("%s %.2f×" % (k, meds[k] / cands[best]))
        if parts:
            out.append((key, "%s: %s the best peer (%s, %s); %s is better" % (
                label, ", ".join(parts), best, fmt(cands[best]),
                "higher" if better == "hi" else "lower")))
    return out


def report(peers, meta, selected):
    names = [p.name for p in peers]
    rows = [r for r in metric_table() if r[0] in R or r[0] in NOTES]
    L = []
    L.append("# ktls-sidecar benchmark results")
    L.append("")
    for k in ("date", "machine", "kernel", "cpu", "nproc", "command", "settings", "fd_limit"):
        L.append("- %s: %s" % (k, meta[k]))
    L.append("")
    L.append("Median [min–max] over %d round(s); peers interleaved within each round. "
             "Shared 2-core loopback machine: compare columns of this run, not absolute numbers."
             % ROUNDS)
    L.append("")
    L.append("| workload | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))
    for key, label, _ in rows:
        L.append("| %s | %s |" % (label, " | ".join(cell(key, n) for n in names)))
    L.append("")
    L.append("## ktls-sidecar / best peer (%s)" % ", ".join(p for p in REAL_PEERS if p in names))
    L.append("")
    rat = ratios(rows, names)
    for _, line in rat:
        L.append("- " + line)
    if not rat:
        L.append("- (needs ktls-sidecar and at least one peer)")
    L.append("")
    L.append("## Peer checks")
    L.append("")
    for p in peers:
        L.append("- %s: %s %s" % (p.name, p.status, json.dumps(p.checks, sort_keys=True)))
    if DETAILS:
        L.append("")
        L.append("## Memory/scale load generator lines (errors by reason)")
        L.append("")
        for name, lines in DETAILS.items():
            bad = [l for l in lines if "err_" in (l or "")]
            L.append("- %s: %d runs, %s" % (name, len(lines), "; ".join(bad) if bad else "no errors"))
    if SYSCALL_DETAIL:
        L.append("")
        L.append("## Top syscalls per MiB (strace -c -f, bulk %s)" % STRACE_BYTES)
        L.append("")
        for name, d in SYSCALL_DETAIL.items():
            L.append("- %s: A: %s; B: %s" % (name, d.get("a", "–"), d.get("b", "–")))
    L.append("")
    text = "\n".join(L)
    print(text)
    with open(os.path.join(BUILD, "results.md"), "w") as f:
        f.write(text)
    js = {"meta": meta, "rounds": ROUNDS, "peers": {p.name: {"status": p.status, "checks": p.checks}
                                                    for p in peers},
          "metrics": {}, "ratios": [l for _, l in rat], "syscall_detail": SYSCALL_DETAIL,
          "hold_details": DETAILS}
    for key, label, better in metric_table():
        if key not in R and key not in NOTES:
            continue
        m = {"label": label, "better": {"hi": "higher", "lo": "lower"}.get(better),
             "values": R.get(key, {}), "notes": NOTES.get(key, {})}
        m["median"] = {p: statistics.median(v) for p, v in R.get(key, {}).items() if v}
        m["min"] = {p: min(v) for p, v in R.get(key, {}).items() if v}
        m["max"] = {p: max(v) for p, v in R.get(key, {}).items() if v}
        js["metrics"][key] = m
    with open(os.path.join(BUILD, "results.json"), "w") as f:
        json.dump(js, f, indent=1, sort_keys=True)
    log("wrote %s and results.json" % os.path.join(BUILD, "results.md"))


# ---------------------------------------------------------------- main

def raise_nofile(want=200000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (want, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    global WORK, SINK_BULK, SINK_ECHO, SCALE
    peers_sel = (ENV.get("BENCH_PEERS") or " ".join(ALL_PEERS)).split()
    wl_sel = (ENV.get("BENCH_WORKLOADS") or " ".join(ALL_WORKLOADS)).split()
    for p in peers_sel:
        if p not in ALL_PEERS:
            sys.exit("unknown peer %r (known: %s)" % (p, " ".join(ALL_PEERS)))
    for w in wl_sel:
        if w not in ALL_WORKLOADS:
            sys.exit("unknown workload %r (known: %s)" % (w, " ".join(ALL_WORKLOADS)))
    for b in (KS_BIN, KS_STREAM, LOADGEN):
        if not os.access(b, os.X_OK):
            sys.exit("missing %s (run make, then tests/bench/run.sh)" % b)

    global NOFILE
    soft, hard = raise_nofile()
    NOFILE = soft
    # A proxy holds two descriptors per proxied connection: with a low hard
    # limit that cannot be raised, cap the 10k rows instead of failing them,
    # leaving 1,500 for what else the proxies hold (ktls-sidecar: its pending
    # and pipe budgets, below).
    SCALE = min(SCALE_WANT, (soft - 1500) // 2)
    # ktls-sidecar checks its limits against RLIMIT_NOFILE at start-up (README,
    # "Descriptors"): 2 per connection, 3 per pending pair (256 each way), 2 per
    # pipe (256), and about 100 fixed. What is left is its --max-connections.
    global KS_MAXCONN
    KS_MAXCONN = min(65536, (soft - 100 - 3 * 256 - 2 * 256) // 2)
    fd_note = "RLIMIT_NOFILE %d" % soft
    if SCALE < SCALE_WANT:
        fd_note += (" (could not raise it: %d connections need %d descriptors in A, so the "
                    "%d-connection rows run with %d)" % (SCALE_WANT, 2 * SCALE_WANT, SCALE_WANT,
                                                         SCALE))
        log(fd_note)

    WORK = tempfile.mkdtemp(prefix="ks-bench.")
    os.makedirs(BUILD, exist_ok=True)
    SINK_BULK, SINK_ECHO = PORT_BASE, PORT_BASE + 1
    pki = os.path.join(WORK, "pki")
    subprocess.run([PKI_SH, "ca", pki], check=True)
    subprocess.run([PKI_SH, "issue", pki, "client", CLIENT_ID], check=True)
    subprocess.run([PKI_SH, "issue", pki, "server", SERVER_ID], check=True)
    for n in ("client", "server"):
        with open(os.path.join(pki, n + ".pem"), "w") as f:
            for part in (".crt", ".key"):
                with open(os.path.join(pki, n + part)) as g:
                    f.write(g.read())

    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "command": " ".join(["%s=%s" % (k, shlex.quote(v)) for k, v in sorted(ENV.items())
                             if k.startswith("BENCH_")] + [shlex.quote(ENV.get("BENCH_ARGV0") or sys.argv[0])]),
        "settings": "rounds=%d bulk=%gs run=%gs trickle=%gs workers=%d lat_rate=%g lat_conns=%d "
                    "mem=%d/%d strace_bytes=%s peers=%s workloads=%s" % (
                        ROUNDS, BULK_SECS, RUN_SECS, TRICKLE_SECS, WORKERS, LAT_RATE, LAT_CONNS,
                        MEM_SMALL, SCALE, STRACE_BYTES, ",".join(peers_sel), ",".join(wl_sel)),
        "fd_limit": fd_note,
    }
    log("work dir %s; %s" % (WORK, meta["settings"]))

    echo = spawn([LOADGEN, "echo", "--listen", "127.0.0.1:%d" % SINK_ECHO],
                 os.path.join(WORK, "echo.log"))
    if not wait_listening([SINK_ECHO], 5, [echo]):
        sys.exit("echo server did not start")

    peers = [Peer(n, i, WORK, pki) for i, n in enumerate(ALL_PEERS) if n in peers_sel]
    active = []
    for p in peers:
        log("checking %s" % p.name)
        if not p.start():
            p.status = "excluded: did not start (logs: %s)" % p.dir
            continue
        # iperf3 path is checked by the bulk run itself; the echo path here.
        ok = check_peer(p, pki)
        p.stop()
        if ok:
            active.append(p)
        else:
            log("%s: %s" % (p.name, p.status))
    for r in range(ROUNDS):
        for w in [w for w in ALL_WORKLOADS if w in wl_sel]:
            if w == "syscalls" and r > 0:
                continue
            for p in active:
                log("round %d/%d %s %s" % (r + 1, ROUNDS, w, p.name))
                if w in ("memory", "scale"):
                    (w_memory if w == "memory" else w_scale)(p, wl_sel)
                    continue
                if not p.start():
                    log("%s failed to start" % p.name)
                    continue
                try:
                    {"bulk": w_bulk, "connrate": w_connrate, "latency": w_latency,
                     "syscalls": w_syscalls}[w](p)
                    if not p.alive():
                        log("%s: a process died during %s" % (p.name, w))
                        note(w, p, "died")
                finally:
                    p.stop()
    stop(echo)
    report(peers, meta, wl_sel)
    if ENV.get("BENCH_KEEP") != "1":
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    finally:
        cleanup()
