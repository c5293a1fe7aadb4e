#!/usr/bin/env python3
"""ktls-sidecar benchmark harness (issue 3): the orchestrator behind run.sh.

Topology per peer, all on 127.0.0.1:
    load generator -> proxy A (plaintext in, mTLS out) -> proxy B (mTLS in,
    client certificate required, plaintext out) -> sink (iperf3 server for
    bulk, ks_connrate echo server otherwise)

Python 3 standard library only.  Reports, never asserts.  See README.md.
"""
import ctypes
import datetime
import fcntl
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("BENCH_BUILD") or os.path.join(ROOT, "build", "bench")
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
# Peers without a "resumption on" row, and why.  ktls-sidecar's is added in
# main() when the binary has no --session-resumption.
NO_RESUME = {"direct": "no TLS", "plain": "no TLS",
             "socat": "cannot resume: a new process per connection"}
KS_SESSION_FLAG = False  # the binary has --session-resumption (main())

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

VARIANT_LINE = re.compile(r"^@(FULL|RESUME)@ ?")


def render(template, dest, subst, variant="full"):
    """Fills in @NAME@ and keeps, of the lines starting with @FULL@ or
    @RESUME@, only those of VARIANT ("full": every connection a full
    handshake; "resume": session resumption on), without the marker."""
    with open(os.path.join(HERE, template)) as f:
        lines = f.read().splitlines(True)
    keep = []
    for line in lines:
        m = VARIANT_LINE.match(line)
        if m:
            if m.group(1).lower() != variant:
                continue
            line = line[m.end():]
        keep.append(line)
    text = "".join(keep)
    for k, v in subst.items():
        text = text.replace("@%s@" % k, str(v))
    # (Comments may name the variant markers.)
    left = [x for x in re.findall(r"@[A-Z_]+@", text) if x not in ("@FULL@", "@RESUME@")]
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
        self.variant = "full"  # or "resume": the resumption row of connrate
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
            d["KS_SESSION"] = ("--session-resumption %s" % ("on" if self.variant == "resume" else "off")
                               if KS_SESSION_FLAG else "")
        return d

    def start(self):
        if self.name == "direct":
            return True
        s, d, v = self.subst(), self.dir, self.variant
        env = dict(os.environ)
        for side in ("a", "b"):
            logp = os.path.join(d, "%s.log" % side)
            procs = []
            if self.kind in ("ktls", "socat", "plain"):
                if self.kind == "socat":
                    env["OPENSSL_CONF"] = render("socat-openssl.cnf.in",
                                                 os.path.join(d, "openssl.cnf"), s, v)
                path = render("%s-%s.args.in" % (self.kind, side),
                              os.path.join(d, "%s.args" % side), s, v)
                for argv in args_lines(path):
                    procs.append(spawn(argv, logp, env=env))
            elif self.kind == "stunnel":
                conf = render("stunnel-%s.conf.in" % side, os.path.join(d, "stunnel-%s.conf" % side),
                              s, v)
                procs.append(spawn(["stunnel", conf], logp))
            elif self.kind == "haproxy":
                conf = render("haproxy-%s.cfg.in" % side, os.path.join(d, "haproxy-%s.cfg" % side),
                              s, v)
                procs.append(spawn(["haproxy", "-db", "-f", conf], logp))
            elif self.kind == "nginx":
                conf = render("nginx-%s.conf.in" % side, os.path.join(d, "nginx-%s.conf" % side),
                              s, v)
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


# ---------------------------------------------------------------- resumption evidence
#
# Whether a TLS 1.3 connection resumed is visible on the wire, for every peer
# alike: the ServerHello carries a pre_shared_key extension exactly when the
# server accepted a PSK (RFC 8446 4.2.11), and a key_share with it when the
# mode is psk_dhe_ke (4.2.9).  ClientHello and ServerHello are sent in the
# clear, at the start of the first segment of each direction.

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>
SOL_PACKET, PACKET_STATISTICS = 263, 6
PACKET_OUTGOING = 4  # lo shows every segment twice: keep the incoming copy
EXT_PSK, EXT_EARLY_DATA, EXT_KEY_SHARE = 41, 42, 51
# ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3)
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def tcp_port_filter(port):
    """Classic BPF, as `tcpdump -dd 'ip and tcp port PORT'` compiles it for an
    Ethernet-framed device (lo is one): only that port's IPv4 segments reach
    the socket, so other traffic on the shared loopback costs nothing here."""
    return [
        (0x28, 0, 0, 12),      # ldh [12]              ethertype
        (0x15, 0, 10, 0x0800),  # IPv4, else drop
        (0x30, 0, 0, 23),      # ldb [23]              IP protocol
        (0x15, 0, 8, 6),       # TCP, else drop
        (0x28, 0, 0, 20),      # ldh [20]              fragment offset
        (0x45, 6, 0, 0x1fff),  # a later fragment: drop
        (0xb1, 0, 0, 14),      # ldxb 4*([14]&0xf)     IP header length
        (0x48, 0, 0, 14),      # ldh [x+14]            source port
        (0x15, 2, 0, port),    # accept
        (0x48, 0, 0, 16),      # ldh [x+16]            destination port
        (0x15, 0, 1, port),    # accept, else drop
        (0x06, 0, 0, 262144),  # accept
        (0x06, 0, 0, 0),       # drop
    ]


def hello_extensions(rec_, client):
    """(extensions {type: data}, random) of the ClientHello (CLIENT) or
    ServerHello that starts the TLS record REC_; extensions None if cut."""
    try:
        p = 5 + 4  # record header, handshake header
        rnd = bytes(rec_[p + 2:p + 34])
        p += 34
        p += 1 + rec_[p]  # legacy_session_id
        if client:
            p += 2 + struct.unpack_from("!H", rec_, p)[0]  # cipher_suites
            p += 1 + rec_[p]  # legacy_compression_methods
        else:
            p += 3  # cipher_suite, legacy_compression_method
        end = p + 2 + struct.unpack_from("!H", rec_, p)[0]
        p += 2
        if end > len(rec_):
            return None, rnd
        exts = {}
        while p + 4 <= end:
            typ, ln = struct.unpack_from("!HH", rec_, p)
            exts[typ] = bytes(rec_[p + 4:p + 4 + ln])
            p += 4 + ln
        return exts, rnd
    except (IndexError, struct.error):
        return None, None


class HelloCounter:
    """Counts the TLS 1.3 hellos to and from PORT on lo while it runs
    (AF_PACKET socket, needs CAP_NET_RAW)."""

    def __init__(self, port):
        self.port = port
        self.c = dict(client_hellos=0, psk_offered=0, early_data_offered=0, server_hellos=0,
                      resumed=0, resumed_without_key_share=0, hello_retry=0, unparsed=0)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        prog = tcp_port_filter(port)
        self._prog = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                             struct.pack("HP", len(prog), ctypes.addressof(self._prog)))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.1)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                data, addr = self.sock.recvfrom(65600)
            except socket.timeout:
                continue
            except OSError:
                break
            if addr[2] != PACKET_OUTGOING:
                self._segment(memoryview(data))

    def _segment(self, d):
        if len(d) < 54 or d[12:14] != b"\x08\x00" or d[23] != 6:
            return
        ip_end = 14 + struct.unpack_from("!H", d, 16)[0]
        t = 14 + (d[14] & 0xF) * 4
        sport, dport = struct.unpack_from("!HH", d, t)
        pl = d[t + (d[t + 12] >> 4) * 4:ip_end]
        if len(pl) < 6 or pl[0] != 0x16:  # not a handshake record
            return
        if dport == self.port and pl[5] == 1:
            exts, _ = hello_extensions(pl, True)
            if exts is None:
                self.c["unparsed"] += 1
                return
            self.c["client_hellos"] += 1
            self.c["psk_offered"] += EXT_PSK in exts
            self.c["early_data_offered"] += EXT_EARLY_DATA in exts
        elif sport == self.port and pl[5] == 2:
            exts, rnd = hello_extensions(pl, False)
            if exts is None:
                self.c["unparsed"] += 1
            elif rnd == HRR_RANDOM:
                self.c["hello_retry"] += 1
            else:
                self.c["server_hellos"] += 1
                if EXT_PSK in exts:
                    self.c["resumed"] += 1
                    self.c["resumed_without_key_share"] += EXT_KEY_SHARE not in exts

    def finish(self):
        time.sleep(0.2)  # the last segments
        self.done.set()
        self.thread.join(2)
        try:
            _, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.c["capture_drops"] = drops
        except OSError:
            pass
        self.sock.close()
        return self.c


def wire_check(peer, variant):
    """One more second of the new-connections load at concurrency 8, on the
    processes just measured, while the hellos A->B are counted.  Returns the
    counts, with "verdict" and "ok": for the full-handshake row no ServerHello
    may carry a PSK; for the resumption row at least half must (below 90 %
    the verdict says how many: a client keeping one session per server does
    not always have one to offer under concurrency), all in psk_dhe_ke mode."""
    try:
        hc = HelloCounter(peer.ports["PB_ECHO"])
    except OSError as e:
        return {"verdict": "unverified (packet capture: %s)" % e, "ok": None}
    try:
        k = loadgen(["conn", "--connect", "127.0.0.1:%d" % peer.entry_echo, "--conns", "8",
                     "--duration", "1"], 60)
    finally:
        c = hc.finish()
    c["conns_ok"] = int(k.get("ok", 0))
    sh, res = c["server_hellos"], c["resumed"]
    if not sh:
        c["verdict"], c["ok"] = "unverified (no ServerHello seen)", None
    elif variant == "full":
        c["ok"] = res == 0
        c["verdict"] = "full handshakes" if c["ok"] else "NOT full: %d resumed" % res
    else:
        share = res / sh
        c["ok"] = share >= 0.5 and not c["resumed_without_key_share"]
        c["verdict"] = ("resumed" if share >= 0.9 else "mostly resumed (%.0f %%)" % (100 * share)
                        if share >= 0.5 else "NOT resumed (%.0f %%)" % (100 * share))
        if c["resumed_without_key_share"]:
            c["verdict"] += ", %d in psk_ke mode (no key share)" % c["resumed_without_key_share"]
    return c


def s_client_resume(port, pki, path):
    """openssl s_client to B's echo route twice, -sess_out then -sess_in:
    the second says "Reused, TLSv1.3" when B resumed the session of the first
    (B's server side on its own, as any TLS client sees it)."""
    out = []
    for flag in ("-sess_out", "-sess_in"):
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_3",
                "-CAfile", os.path.join(pki, "bundle.crt"), "-verify_return_error",
                "-cert", os.path.join(pki, "client.crt"), "-key", os.path.join(pki, "client.key"),
                "-cert_chain", os.path.join(pki, "int.crt"), flag, path]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        STARTED.append(p)
        token = b"resume-check-%d\n" % os.getpid()
        try:
            time.sleep(0.3)
            p.stdin.write(token)
            p.stdin.flush()
        except BrokenPipeError:
            pass
        rd, seen, end = Lines(p), None, time.time() + 4
        while time.time() < end:
            line = rd.readline(end - time.time())
            if line is None:
                break
            m = re.match(r"^(New|Reused), (TLSv[\d.]+)", line)
            if m:
                seen = "%s, %s" % m.groups()
            if line.encode() + b"\n" == token:  # echoed: the tickets came before it
                break
        stop(p, 1)
        out.append(seen or "no session line")
        if not os.path.exists(path):
            out.append("no session to resume (no ticket)")
            break
    return " -> ".join(out)


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


WIRE = {}  # (peer, "full"|"resume") -> [wire_check() per round]
SLAB_NOISE = []  # memory rounds where the whole-host Slab visibly moved with other work


def resume_na(peer):
    """Why PEER has no resumption row, or None."""
    if peer.name in NO_RESUME:
        return NO_RESUME[peer.name]
    if peer.kind == "ktls" and not KS_SESSION_FLAG:
        return "n/a: %s has no --session-resumption" % os.path.basename(KS_BIN)
    return None


def w_connrate(peer):
    """Two rows: every connection a full handshake ("conn"), then session
    resumption on ("rconn"), each from fresh processes.  After each, the
    hellos A->B are counted for a second (wire_check), and once per peer B
    is probed with s_client -sess_out/-sess_in."""
    for variant, pre in (("full", "conn"), ("resume", "rconn")):
        if variant == "resume":
            why = resume_na(peer)
            if why:
                for conns in (1, 8):
                    note("rconn%d_cps" % conns, peer, why)
                continue
        peer.variant = variant
        try:
            if not peer.start():
                log("%s (%s) failed to start" % (peer.name, variant))
                note(pre + "8_cps", peer, "did not start")
                continue
            for conns in (1, 8):
                c0 = peer.cpu()
                k = loadgen(["conn", "--connect", "127.0.0.1:%d" % peer.entry_echo, "--conns",
                             str(conns), "--duration", str(RUN_SECS)], RUN_SECS + 60)
                c1 = peer.cpu()
                ok = int(k.get("ok", 0))
                rec("%s%d_cps" % (pre, conns), peer, float(k.get("rate", 0)))
                rec("%s%d_errors" % (pre, conns), peer, int(k.get("errors", 0)))
                if ok and peer.name != "direct":
                    rec("cpu_%s%d_a_us" % (pre, conns), peer, (c1[0] - c0[0]) * 1e6 / ok)
                    rec("cpu_%s%d_b_us" % (pre, conns), peer, (c1[1] - c0[1]) * 1e6 / ok)
            if peer.tls:
                w = wire_check(peer, variant)
                WIRE.setdefault((peer.name, variant), []).append(w)
                log("%s %s: %s" % (peer.name, variant, json.dumps(w, sort_keys=True)))
                probe = "sclient_resume_" + variant
                if probe not in peer.checks:
                    peer.checks[probe] = s_client_resume(
                        peer.ports["PB_ECHO"], peer.pki, os.path.join(peer.dir, "sess-%s.pem" % variant))
            if not peer.alive():
                log("%s: a process died during connrate (%s)" % (peer.name, variant))
                note(pre + "8_cps", peer, "died")
        finally:
            peer.stop()
            peer.variant = "full"


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


# Slab (= SReclaimable + SUnreclaim) holds sockets, files, epoll items,
# TLS contexts.  KernelStack and PageTables (kept in the JSON) grow with
# threads and processes per connection, but system-wide they move with every
# process started elsewhere on a shared host: the kernel share takes the
# proxies' own (task_kernel) instead.
MEMINFO_KEYS = ("Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables")
# Kernel stack per thread: THREAD_SIZE, 16 KiB on x86-64 and arm64
# (arch/*/include/asm/thread_info.h, page_*.h; larger with KASAN).
THREAD_STACK_KIB = 16


def task_kernel(roots):
    """(threads, page tables in KiB) of the process tree of ROOTS, from
    /proc/PID/status Threads and VmPTE: the kernel memory that a thread or a
    process per connection costs (stunnel, socat) beside Slab."""
    threads = pte = 0
    for pid in tree(roots):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("Threads:"):
                        threads += int(line.split()[1])
                    elif line.startswith("VmPTE:"):
                        pte += int(line.split()[1])
        except OSError:
            pass
    return threads, pte


def meminfo():
    """The kernel's counters above from /proc/meminfo (KiB), system-wide."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in MEMINFO_KEYS:
                out[k] = int(v.split()[0])
    return out


PAGE = os.sysconf("SC_PAGE_SIZE")


def pipes(roots):
    """Pipes held by the process tree of ROOTS: {"fds": pipe descriptors,
    "pipes": distinct pipes, "bytes": bytes queued in them, "pages": pages
    holding those bytes}.  The bytes come from FIONREAD on a second read-only
    descriptor of the same pipe, opened through /proc/PID/fd (O_NONBLOCK, so
    it neither blocks nor disturbs the owner); pages are ceil(bytes/PAGE) per
    pipe, each pipe buffer being one page.  Not counted: the page(s) the
    kernel keeps cached in an empty pipe for its next write (fs/pipe.c
    tmp_page), which /proc does not show.  The pipe's own structures
    (pipe_inode_info, its buffer array) are kmalloc'ed: they are in Slab."""
    seen, fds, nbytes, pages = set(), 0, 0, 0
    for pid in tree(roots):
        d = "/proc/%d/fd" % pid
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for fd in names:
            try:
                target = os.readlink(os.path.join(d, fd))
            except OSError:
                continue
            if not target.startswith("pipe:"):
                continue
            fds += 1
            if target in seen:
                continue
            seen.add(target)
            try:
                g = os.open(os.path.join(d, fd), os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                q = struct.unpack("i", fcntl.ioctl(g, termios.FIONREAD, b"\0" * 4))[0]
            except OSError:
                q = 0
            finally:
                os.close(g)
            nbytes += q
            pages += -(-q // PAGE)
    return {"fds": fds, "pipes": len(seen), "bytes": nbytes, "pages": pages}


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
        base_pipes = [pipes(peer.roots(s)) for s in ("a", "b")]
        base_task = [task_kernel(peer.roots(s)) for s in ("a", "b")]
        base_mem = meminfo()
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
            now_mem = meminfo()
            now_pipes = [pipes(peer.roots(s)) for s in ("a", "b")]
            now_task = [task_kernel(peer.roots(s)) for s in ("a", "b")]
            out.update(established=est, errors=int(ready["errors"]),
                       rss_a=(now_rss[0] - base[0]) / max(est, 1),
                       rss_b=(now_rss[1] - base[1]) / max(est, 1),
                       base_a=base[0], base_b=base[1], alive=peer.alive())
            # Kernel share (system-wide, so the load generator's and the
            # sink's sockets are in it too: see record_mem).
            for k in MEMINFO_KEYS:
                out["kernel_" + k] = now_mem[k] - base_mem[k]
            for i, s in enumerate(("a", "b")):
                for k in ("fds", "pipes", "bytes", "pages"):
                    out["pipe_%s_%s" % (k, s)] = now_pipes[i][k] - base_pipes[i][k]
                out["threads_" + s] = now_task[i][0] - base_task[i][0]
                out["pte_kib_" + s] = now_task[i][1] - base_task[i][1]
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
    """RSS per connection of A and of B, and the kernel's share.  The
    counters are system-wide: their deltas hold the load generator's and the
    sink's sockets as well as the proxies'.  `direct` (load generator
    straight to the sink, same N) measures that part alone, in the same
    round, so a proxy pair's kernel share per connection is its Slab delta
    minus direct's, plus the kernel stacks and page tables of the threads and
    processes A and B added, plus the pages queued in the pipes they hold.
    A and B share one figure: Slab cannot split them."""
    if not r or "error" in r:
        note(key + "_a_kib", peer, "error")
        return
    est = max(r["established"], 1)
    if peer.name != "direct":
        rec(key + "_a_kib", peer, r["rss_a"])
        rec(key + "_b_kib", peer, r["rss_b"])
    rec(key + "_errors", peer, r["errors"] + (n - r["established"] - r["errors"]))
    for k in MEMINFO_KEYS:
        rec("%s_%s_kib" % (key, k.lower()), peer, r["kernel_" + k] / est)
    if peer.name == "direct":
        if r["kernel_Slab"] < 0:  # 2 sockets per connection cannot shrink it
            SLAB_NOISE.append("%s: direct's Slab Δ %.2f KiB per conn (round %d): something else "
                              "on the host freed slab; that round's kernel shares are overstated"
                              % (key, r["kernel_Slab"] / est, len(R[key + "_slab_kib"]["direct"])))
        return
    for s in ("a", "b"):
        for k in ("fds", "pipes", "bytes", "pages"):
            rec("%s_pipe_%s_%s" % (key, k, s), peer, r["pipe_%s_%s" % (k, s)])
    pipe_kib = (r["pipe_pages_a"] + r["pipe_pages_b"]) * PAGE / 1024 / est
    rec(key + "_pipe_kib", peer, pipe_kib)
    if not R.get(key + "_slab_kib", {}).get("direct"):
        note(key + "_kern_kib", peer, "needs direct")
        return
    stackpt = ((r["threads_a"] + r["threads_b"]) * THREAD_STACK_KIB + r["pte_kib_a"]
               + r["pte_kib_b"]) / est
    rec(key + "_stackpt_kib", peer, stackpt)
    for s in ("a", "b"):
        rec("%s_threads_%s" % (key, s), peer, r["threads_" + s])
        rec("%s_pte_kib_%s" % (key, s), peer, r["pte_kib_" + s])
    kern = (R[key + "_slab_kib"][peer.name][-1] - R[key + "_slab_kib"]["direct"][-1] + stackpt
            + pipe_kib)
    rec(key + "_kern_kib", peer, kern)
    rec(key + "_total_kib", peer, r["rss_a"] + r["rss_b"] + kern)


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
PEERS = []  # every selected Peer (main)
DETAILS = {}  # peer -> load generator summary lines of the memory/scale runs


def label_n(n):
    return "%dk" % (n // 1000) if n % 1000 == 0 else str(n)


# ---------------------------------------------------------------- report

def metric_table():
    rows = [
        ("bulk1_gbps", "Bulk, 1 stream (Gbit/s)", "hi"),
        ("bulk4_gbps", "Bulk, 4 streams (Gbit/s)", "hi"),
        ("conn1_cps", "New mTLS conns/s, full handshake, concurrency 1", "hi"),
        ("conn1_errors", "  errors, concurrency 1", None),
        ("conn8_cps", "New mTLS conns/s, full handshake, concurrency 8", "hi"),
        ("conn8_errors", "  errors, concurrency 8", None),
        ("conn_wire", "  resumed A→B (ServerHellos with a PSK, 1 s at c=8)", None),
        ("rconn1_cps", "New mTLS conns/s, resumption on, concurrency 1", "hi"),
        ("rconn1_errors", "  errors, concurrency 1", None),
        ("rconn8_cps", "New mTLS conns/s, resumption on, concurrency 8", "hi"),
        ("rconn8_errors", "  errors, concurrency 8", None),
        ("rconn_wire", "  resumed A→B (ServerHellos with a PSK, 1 s at c=8)", None),
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
        ln = label_n(n)
        rows += [(k + "_a_kib", "RSS per idle conn @%s, A (KiB)" % ln, "lo"),
                 (k + "_b_kib", "RSS per idle conn @%s, B (KiB)" % ln, "lo"),
                 (k + "_slab_kib", "  Slab Δ per conn @%s, whole host (KiB)" % ln, None),
                 (k + "_stackpt_kib", "  kernel stacks + page tables per conn @%s, A+B (KiB)"
                  % ln, None),
                 (k + "_pipe_kib", "  pipe pages per conn @%s, A+B (KiB)" % ln, None),
                 (k + "_kern_kib", "Kernel per idle conn @%s, A+B: Slab Δ − direct's + stacks, "
                  "page tables, pipes (KiB)" % ln, "lo"),
                 (k + "_total_kib", "RSS A+B + kernel per idle conn @%s (KiB)" % ln, "lo"),
                 (k + "_errors", "  conns not established @%s" % ln, None)]
    rows += [
        ("scale_errors", "Scale: %d conns trickling %gs, errors" % (SCALE, TRICKLE_SECS), None),
        ("scale_echoes", "  echoes checked", None),
        ("cpu_bulk1_a_us_mib", "CPU A per MiB, bulk 1 stream (µs)", "lo"),
        ("cpu_bulk1_b_us_mib", "CPU B per MiB, bulk 1 stream (µs)", "lo"),
        ("cpu_bulk4_a_us_mib", "CPU A per MiB, bulk 4 streams (µs)", "lo"),
        ("cpu_bulk4_b_us_mib", "CPU B per MiB, bulk 4 streams (µs)", "lo"),
        ("cpu_conn8_a_us", "CPU A per conn, full handshake, concurrency 8 (µs)", "lo"),
        ("cpu_conn8_b_us", "CPU B per conn, full handshake, concurrency 8 (µs)", "lo"),
        ("cpu_rconn8_a_us", "CPU A per conn, resumption on, concurrency 8 (µs)", "lo"),
        ("cpu_rconn8_b_us", "CPU B per conn, resumption on, concurrency 8 (µs)", "lo"),
        ("cpu_latsat_ab_us", "CPU A+B per request at saturation (µs)", "lo"),
        ("sys_a_per_mib", "Syscalls per MiB, A (strace -c -f)", "lo"),
        ("sys_b_per_mib", "Syscalls per MiB, B (strace -c -f)", "lo"),
    ]
    return rows


def json_only_rows():
    """Kept in results.json, left out of the Markdown table."""
    rows = []
    for n in (MEM_SMALL, SCALE):
        k, ln = "mem%s" % label_n(n), label_n(n)
        for mk in MEMINFO_KEYS[1:]:
            rows.append(("%s_%s_kib" % (k, mk.lower()),
                         "%s Δ per conn @%s, whole host (KiB)" % (mk, ln), None))
        for s in ("a", "b"):
            for what in ("fds", "pipes", "bytes", "pages"):
                rows.append(("%s_pipe_%s_%s" % (k, what, s),
                             "pipe %s held by %s @%s, Δ (count)" % (what, s.upper(), ln), None))
            rows += [("%s_threads_%s" % (k, s), "threads of %s @%s, Δ (count)" % (s.upper(), ln),
                      None),
                     ("%s_pte_kib_%s" % (k, s), "VmPTE of %s @%s, Δ (KiB)" % (s.upper(), ln), None)]
    return rows


def wire_summary(peer, variant):
    """(cell text, verified: True/False/None) of the hello counts over the
    rounds: "resumed/ServerHellos", and the first verdict that is not plain
    "resumed"/"full handshakes" (in bold when the row is not as labelled)."""
    ws = WIRE.get((peer, variant))
    if not ws:
        return None, None
    sh = sum(w.get("server_hellos", 0) for w in ws)
    res = sum(w.get("resumed", 0) for w in ws)
    bad = [w["verdict"] for w in ws if w.get("ok") is False]
    unk = [w["verdict"] for w in ws if w.get("ok") is None]
    odd = [w["verdict"] for w in ws if w.get("ok") and w["verdict"] not in (
        "resumed", "full handshakes")]
    text = "%d/%d" % (res, sh)
    if bad:
        text += " **%s**" % bad[0]
    elif unk:
        text += " (%s)" % unk[0]
    elif odd:
        text += " (%s)" % odd[0]
    return text, (False if bad else None if unk else True)


def row_flag(metric, peer):
    """A flag for a connrate figure whose row did not do what it says."""
    variant = ("resume" if metric.startswith(("rconn", "cpu_rconn")) else
               "full" if metric.startswith(("conn", "cpu_conn")) else None)
    if not variant or metric.endswith("_errors"):
        return None
    _, ok = wire_summary(peer, variant)
    if ok is False:
        return "not resumed" if variant == "resume" else "resumed, not full"
    return None


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
    if metric in ("conn_wire", "rconn_wire"):
        text, _ = wire_summary(peer, "resume" if metric == "rconn_wire" else "full")
        return text or NOTES.get(metric, {}).get(peer, "")
    vals = R.get(metric, {}).get(peer)
    if not vals:
        return NOTES.get(metric, {}).get(peer, "")
    med = statistics.median(vals)
    text = fmt(med) if len(vals) == 1 else "%s [%s–%s]" % (fmt(med), fmt(min(vals)), fmt(max(vals)))
    flag = row_flag(metric, peer)
    return text + (" (**%s**)" % flag if flag else "")


def ratios(rows, peers):
    out = []
    for key, label, better in rows:
        if not better or key not in R:
            continue
        meds = {p: statistics.median(v) for p, v in R[key].items() if v}
        # A peer whose row did not do what it says (no resumption in the
        # resumption row) is no yardstick for that row.
        flagged = [p for p in meds if p in REAL_PEERS and row_flag(key, p)]
        cands = {p: m for p, m in meds.items() if p in REAL_PEERS and p not in flagged}
        if not cands:
            continue
        best = (max if better == "hi" else min)(cands, key=cands.get)
        parts = []
        for k in KTLS:
            if k in meds and cands[best]:
                parts.append("%s %.2f×%s" % (k, meds[k] / cands[best],
                                             " (**%s**)" % row_flag(key, k) if row_flag(key, k) else ""))
        if parts:
            out.append((key, "%s: %s the best peer (%s, %s); %s is better%s" % (
                label, ", ".join(parts), best, fmt(cands[best]),
                "higher" if better == "hi" else "lower",
                "; left out: %s (row not as labelled)" % ", ".join(flagged) if flagged else "")))
    return out


def ratio_to_best(key, k, better):
    """(ratio of K's median to the best real peer's, that peer) or None."""
    meds = {p: statistics.median(v) for p, v in R.get(key, {}).items() if v}
    cands = {p: m for p, m in meds.items() if p in REAL_PEERS and not row_flag(key, p)}
    if k not in meds or not cands:
        return None
    best = (max if better == "hi" else min)(cands, key=cands.get)
    return (meds[k] / cands[best], best) if cands[best] else None


def resumption_section(names):
    """Evidence per peer, speed-up over the full handshake, and issue 18's
    targets for the resumption row (reported, never asserted)."""
    L, js = [], {"peers": {}, "targets": []}
    for n in names:
        full, ok_f = wire_summary(n, "full")
        res, ok_r = wire_summary(n, "resume")
        if full is None and res is None and n not in NO_RESUME:
            continue
        e = {"wire_full": WIRE.get((n, "full"), []), "wire_resume": WIRE.get((n, "resume"), [])}
        parts = []
        if full:
            parts.append("full-handshake row: resumed %s" % full)
        if res:
            parts.append("resumption row: resumed %s" % res)
        else:
            why = NOTES.get("rconn8_cps", {}).get(n) or NO_RESUME.get(n)
            if why:
                parts.append("no resumption row (%s)" % why)
                e["no_resumption_row"] = why
        a = R.get("conn8_cps", {}).get(n)
        b = R.get("rconn8_cps", {}).get(n)
        if a and b and statistics.median(a):
            sp = statistics.median(b) / statistics.median(a)
            parts.append("resumption/full conns/s at c=8 %.2f×" % sp)
            e["speedup_c8"] = sp
        L.append("- %s: %s" % (n, "; ".join(parts)))
        js["peers"][n] = e
    for k in [k for k in KTLS if k in names]:
        why = resume_na(next(p for p in PEERS if p.name == k))
        if why:
            line = "%s targets: %s" % (k, why)
        else:
            bits = []
            for key, target, better, what in (("rconn8_cps", 1.25, "hi", "conns/s at c=8"),
                                              ("cpu_rconn8_a_us", 0.75, "lo", "CPU per conn A"),
                                              ("cpu_rconn8_b_us", 0.75, "lo", "CPU per conn B")):
                r = ratio_to_best(key, k, better)
                if not r:
                    bits.append("%s: no figure" % what)
                    continue
                met = r[0] >= target if better == "hi" else r[0] <= target
                bits.append("%s %.2f× %s (target %s %.2f×: %s)" % (
                    what, r[0], r[1], "≥" if better == "hi" else "≤", target,
                    "met" if met else "not met"))
                js["targets"].append({"peer": k, "metric": key, "ratio": r[0], "best_peer": r[1],
                                      "target": target, "met": met})
            flag = row_flag("rconn8_cps", k)
            line = "%s targets: %s%s" % (k, "; ".join(bits), " (**%s**)" % flag if flag else "")
        L.append("- " + line)
    return L, js


def report(peers, meta, selected):
    names = [p.name for p in peers]
    rows = [r for r in metric_table() if r[0] in R or r[0] in NOTES or (
        r[0] in ("conn_wire", "rconn_wire") and WIRE)]
    L = []
    L.append("# ktls-sidecar benchmark results")
    L.append("")
    for k in ("date", "machine", "kernel", "cpu", "nproc", "command", "settings", "fd_limit",
              "session_resumption"):
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
    if SLAB_NOISE:
        L.append("Slab noise: " + "; ".join(SLAB_NOISE) + ".")
        L.append("")
    L.append("## ktls-sidecar / best peer (%s)" % ", ".join(p for p in REAL_PEERS if p in names))
    L.append("")
    rat = ratios(rows, names)
    for _, line in rat:
        L.append("- " + line)
    if not rat:
        L.append("- (needs ktls-sidecar and at least one peer)")
    L.append("")
    res_lines, res_js = resumption_section(names) if "connrate" in selected else ([], {})
    if res_lines:
        L.append("## Session resumption (issue 18; reported, not asserted)")
        L.append("")
        L.append("Resumed = ServerHellos A→B carrying a pre_shared_key extension, counted on the "
                 "wire over 1 s of the same load at concurrency 8, after each row's measured runs "
                 "(full row: must be 0; resumption row: at least half, all with a key share, "
                 "and the share is given below 90 %). Best peer: the best real peer whose row "
                 "did what it says. Peer checks below: "
                 "s_client -sess_out/-sess_in against B (sclient_resume_*).")
        L.append("")
        L.extend(res_lines)
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
          "hold_details": DETAILS, "resumption": res_js, "slab_noise": SLAB_NOISE}
    for key, label, better in metric_table() + json_only_rows():
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

    # The full-handshake rows must stay full handshakes for every peer: a
    # binary with session resumption gets --session-resumption off, except in
    # the resumption row.  A binary without the flag has no resumption.
    global KS_SESSION_FLAG
    h = subprocess.run([KS_BIN, "--help"], capture_output=True, text=True)
    KS_SESSION_FLAG = "--session-resumption" in h.stdout + h.stderr

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
        "session_resumption": ("%s has --session-resumption: off in every workload but the "
                               "resumption row" % KS_BIN) if KS_SESSION_FLAG else
                              ("%s has no --session-resumption: it never resumes; its resumption "
                               "row is n/a" % KS_BIN),
    }
    log("work dir %s; %s" % (WORK, meta["settings"]))

    echo = spawn([LOADGEN, "echo", "--listen", "127.0.0.1:%d" % SINK_ECHO],
                 os.path.join(WORK, "echo.log"))
    if not wait_listening([SINK_ECHO], 5, [echo]):
        sys.exit("echo server did not start")

    peers = [Peer(n, i, WORK, pki) for i, n in enumerate(ALL_PEERS) if n in peers_sel]
    PEERS[:] = peers
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
                if w == "connrate":  # starts its own processes, one set per row
                    w_connrate(p)
                    continue
                if not p.start():
                    log("%s failed to start" % p.name)
                    continue
                try:
                    {"bulk": w_bulk, "latency": w_latency, "syscalls": w_syscalls}[w](p)
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
