#!/usr/bin/env python3
"""Kernel TLS smoke test (run inside the VM: tests/ktls/vm.sh run 6.1 -- python3 tests/ktls/smoke.py).

For each (TLS version, cipher) on a TCP loopback connection:
  1. client: TCP_ULP "tls" + TLS_TX; server: plain socket. The server reads the raw
     bytes, checks the record framing and (if python3-cryptography is importable)
     decrypts the records in userspace: proves the kernel really encrypts.
  2. server: TCP_ULP "tls" + TLS_RX with rec_seq = records already consumed; client
     sends again; server recv()s the plaintext (kernel decryption).
  3. reverse direction: server TLS_TX, client TLS_RX, round trip.
  4. /proc/net/tls_stat counters moved.
Prints "smoke: ..." lines; exit 0 only if every case passed, 77 if kTLS is absent.
"""
import errno
import os
import socket
import struct
import sys

SOL_TLS = 282
TCP_ULP = 31
TLS_TX, TLS_RX = 1, 2
V12, V13 = 0x0303, 0x0304
AES_GCM_128, AES_GCM_256, CHACHA20_POLY1305 = 51, 52, 54
# name: (cipher_type, key_len, salt_len, iv_len)   layout: hdr, iv, key, salt, rec_seq
CIPHERS = {
    "AES-128-GCM": (AES_GCM_128, 16, 4, 8),
    "AES-256-GCM": (AES_GCM_256, 32, 4, 8),
    "CHACHA20-POLY1305": (CHACHA20_POLY1305, 32, 0, 12),
}

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
except Exception:  # pragma: no cover - optional
    AESGCM = ChaCha20Poly1305 = None


def say(msg):
    print("smoke: " + msg, flush=True)


class Keys:
    def __init__(self, cipher, seq0):
        ctype, klen, slen, ivlen = CIPHERS[cipher]
        self.cipher, self.ctype = cipher, ctype
        self.key = os.urandom(klen)
        self.salt = os.urandom(slen)
        self.iv = os.urandom(ivlen)
        self.seq0 = seq0

    def info(self, version, seq):
        return (struct.pack("<HH", version, self.ctype) + self.iv + self.key + self.salt
                + struct.pack(">Q", seq))

    def aead(self):
        return (ChaCha20Poly1305 if self.cipher.startswith("CHACHA") else AESGCM)(self.key)


def tls_stat():
    out = {}
    try:
        with open("/proc/net/tls_stat") as f:
            for line in f:
                k, v = line.split()
                out[k] = int(v)
    except OSError:
        pass
    return out


def pair():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    c = socket.create_connection(ls.getsockname())
    s, _ = ls.accept()
    ls.close()
    for x in (c, s):
        x.settimeout(20)
    return c, s


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed after %d/%d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_records(sock, version, keys, seq, nbytes):
    """Read raw records until nbytes of plaintext were seen; decrypt if possible."""
    plain, nrec = b"", 0
    overhead = 16 + (8 if version == V12 and keys.salt else 0) + (1 if version == V13 else 0)
    while len(plain) < nbytes:
        hdr = recv_exact(sock, 5)
        ctype, ver, length = struct.unpack(">BHH", hdr)
        assert ver == 0x0303, "record version %#x" % ver
        assert ctype == 23, "outer content type %d" % ctype
        body = recv_exact(sock, length)
        plen = length - overhead
        if AESGCM is not None:
            if version == V12:
                aad = struct.pack(">QBHH", seq, 23, V12, plen)
                if keys.salt:  # AES-GCM: 8-byte explicit nonce on the wire
                    nonce, ct = keys.salt + body[:8], body[8:]
                else:
                    nonce, ct = bytes(a ^ b for a, b in zip(keys.iv, struct.pack(">4xQ", seq))), body
                pt = keys.aead().decrypt(nonce, ct, aad)
            else:
                full_iv = keys.salt + keys.iv
                nonce = bytes(a ^ b for a, b in zip(full_iv, struct.pack(">4xQ", seq)))
                pt = keys.aead().decrypt(nonce, body, hdr)
                assert pt[-1] == 23, "inner content type %d" % pt[-1]
                pt = pt[:-1]
            plain += pt
        else:
            plain += b"\0" * plen
        seq += 1
        nrec += 1
    return plain, nrec


def one_case(version, cipher):
    vname = "TLS1.2" if version == V12 else "TLS1.3"
    name = "%s %s" % (vname, cipher)
    c, s = pair()
    try:
        k_c2s = Keys(cipher, seq0=5)
        k_s2c = Keys(cipher, seq0=0)
        c.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        c.setsockopt(SOL_TLS, TLS_TX, k_c2s.info(version, k_c2s.seq0))

        # 1. kernel encrypts, userspace checks (20000 bytes -> 2 records)
        msg1 = os.urandom(20000)
        c.sendall(msg1)
        raw, nrec = read_records(s, version, k_c2s, k_c2s.seq0, len(msg1))
        if AESGCM is not None:
            assert raw == msg1, "userspace decryption mismatch"
            how = "wire decrypted in userspace"
        else:
            how = "framing only (no python3-cryptography)"
        assert nrec == 2, "expected 2 records, got %d" % nrec

        # 2. kernel decrypts (RX continues at the next record number)
        s.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        s.setsockopt(SOL_TLS, TLS_RX, k_c2s.info(version, k_c2s.seq0 + nrec))
        msg2 = b"hello kTLS " * 100
        c.sendall(msg2)
        got = recv_exact(s, len(msg2))
        assert got == msg2, "kTLS RX plaintext mismatch"

        # 3. reverse direction
        s.setsockopt(SOL_TLS, TLS_TX, k_s2c.info(version, k_s2c.seq0))
        c.setsockopt(SOL_TLS, TLS_RX, k_s2c.info(version, k_s2c.seq0))
        msg3 = os.urandom(3000)
        s.sendall(msg3)
        got = recv_exact(c, len(msg3))
        assert got == msg3, "reverse round trip mismatch"
        say("PASS %s (TX %s; RX; reverse TX->RX)" % (name, how))
        return True
    except (AssertionError, OSError, EOFError, Exception) as e:  # noqa: B014
        say("FAIL %s: %s: %s" % (name, type(e).__name__, e))
        return False
    finally:
        c.close()
        s.close()


def aead_drivers():
    drivers, name = set(), None
    try:
        with open("/proc/crypto") as f:
            for line in f:
                if line.startswith("name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("driver") and name and not name.startswith("__") \
                        and ("gcm" in name or "rfc7539" in name):
                    drivers.add("%s=%s" % (name, line.split(":", 1)[1].strip()))
    except OSError:
        pass
    return " ".join(sorted(drivers))


def main():
    say("kernel %s" % os.uname().release)
    try:
        with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
            ulps = f.read().split()
    except OSError:
        ulps = []
    say("tcp_available_ulp: %s" % " ".join(ulps))
    # probe: is the TLS ULP usable at all?
    c, s = pair()
    try:
        c.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
    except OSError as e:
        say("SKIP: TCP_ULP tls: %s (kernel without CONFIG_TLS?)" % errno.errorcode.get(e.errno, e))
        return 77
    finally:
        c.close()
        s.close()
    if not os.path.exists("/proc/net/tls_stat"):
        say("FAIL: /proc/net/tls_stat missing")
        return 1
    before = tls_stat()
    ok = True
    for version in (V12, V13):
        for cipher in CIPHERS:
            ok &= one_case(version, cipher)
    after = tls_stat()
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    say("AEAD drivers: %s" % aead_drivers())
    say("tls_stat delta: %s" % " ".join("%s=%+d" % kv for kv in sorted(delta.items())))
    if delta.get("TlsTxSw", 0) < 12 or delta.get("TlsRxSw", 0) < 12:
        say("FAIL: TlsTxSw/TlsRxSw did not count 12 sockets each")
        ok = False
    if after.get("TlsDecryptError", 0) != before.get("TlsDecryptError", 0):
        say("FAIL: TlsDecryptError increased")
        ok = False
    say("RESULT %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
