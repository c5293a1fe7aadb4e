#!/usr/bin/env python3
"""Offer a TLS 1.3 session ticket with a chosen psk_key_exchange_modes.

    psk_hello.py HOST PORT SESSION_TEXT MODE

SESSION_TEXT is `openssl sess_id -text -noout` of a session an OpenSSL
client saved (-sess_out): its ticket and its resumption PSK. MODE is
`psk_dhe_ke` or `psk_ke` (RFC 8446 section 4.2.9). Sends one ClientHello
for TLS_AES_128_GCM_SHA256 with an X25519 share, the mode, and the ticket
with a correct binder (section 4.2.11.2), reads the ServerHello and prints
one word:

    resumed    the ServerHello selected our PSK (pre_shared_key)
    full       it did not: a full handshake follows
    retry      a HelloRetryRequest
    alert      the server answered with an alert

OpenSSL's client always offers psk_dhe_ke, so no stock client can ask for
psk_ke alone; the psk_dhe_ke run with the same ticket is the control that
shows the ticket and binder are good. Standard library only.
"""
import hashlib
import hmac
import os
import re
import socket
import struct
import sys

HRR_RANDOM = bytes.fromhex(
    "CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand_label(secret, label, context, length):
    full = b"tls13 " + label
    info = struct.pack("!H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(secret, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def session(path):
    text = open(path).read()
    psk = bytes.fromhex(re.search(r"Resumption PSK: ([0-9A-Fa-f]+)", text).group(1))
    if "TLS_AES_128_GCM_SHA256" not in text:
        sys.exit("psk_hello: the session is not TLS_AES_128_GCM_SHA256")
    dump = text.split("TLS session ticket:", 1)[1]
    ticket = b""
    for line in dump.splitlines()[1:]:
        m = re.match(r"\s+[0-9a-f]{4} - ((?:[0-9a-f]{2}[ -]){1,16})", line)
        if not m:
            break
        ticket += bytes.fromhex(m.group(1).replace("-", " "))
    if not ticket:
        sys.exit("psk_hello: no ticket in the session")
    return psk, ticket


def ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(psk, ticket, mode):
    modes = {"psk_dhe_ke": 1, "psk_ke": 0}[mode]
    # Any 32 bytes are an X25519 public key: the handshake is never finished.
    share = os.urandom(32)
    exts = (ext(43, b"\x02\x03\x04")  # supported_versions: TLS 1.3
            + ext(10, b"\x00\x02\x00\x1d")  # supported_groups: x25519
            + ext(13, b"\x00\x04\x04\x03\x08\x04")  # signature_algorithms
            + ext(51, struct.pack("!HHH", 36, 0x1d, 32) + share)  # key_share
            + ext(45, bytes([1, modes])))  # psk_key_exchange_modes
    identities = struct.pack("!H", len(ticket)) + ticket + struct.pack("!I", 0)
    identities = struct.pack("!H", len(identities)) + identities
    binders_len = 2 + 1 + 32
    psk_ext_len = len(identities) + binders_len
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32)
            + b"\x00\x02\x13\x01" + b"\x01\x00")
    all_exts_len = len(exts) + 4 + psk_ext_len
    partial = (body + struct.pack("!H", all_exts_len) + exts
               + struct.pack("!HH", 41, psk_ext_len) + identities)
    hs_len = len(partial) + binders_len
    truncated = b"\x01" + struct.pack("!I", hs_len)[1:] + partial
    # RFC 8446 7.1 and 4.2.11.2: the binder key of a resumption PSK.
    early = hkdf_extract(b"\x00" * 32, psk)
    binder_key = hkdf_expand_label(early, b"res binder", hashlib.sha256(b"").digest(), 32)
    finished_key = hkdf_expand_label(binder_key, b"finished", b"", 32)
    binder = hmac.new(finished_key, hashlib.sha256(truncated).digest(), hashlib.sha256).digest()
    return truncated + struct.pack("!HB", 33, 32) + binder


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        if not d:
            raise EOFError
        buf += d
    return buf


def main():
    host, port, sess, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    psk, ticket = session(sess)
    hello = client_hello(psk, ticket, mode)
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"\x16\x03\x01" + struct.pack("!H", len(hello)) + hello)
    ctype, _, length = struct.unpack("!BHH", read_exact(s, 5))
    rec = read_exact(s, length)
    if ctype == 21:
        print("alert")
        return
    if ctype != 22 or rec[0] != 2:
        sys.exit("psk_hello: no ServerHello (record type %d)" % ctype)
    body = rec[4:]
    if body[2:34] == HRR_RANDOM:
        print("retry")
        return
    p = 2 + 32
    p += 1 + body[p]  # session id
    p += 2 + 1  # cipher suite, compression
    end = p + 2 + struct.unpack("!H", body[p:p + 2])[0]
    p += 2
    kinds = []
    while p < end:
        kind, n = struct.unpack("!HH", body[p:p + 4])
        kinds.append(kind)
        p += 4 + n
    print("resumed" if 41 in kinds else "full")


if __name__ == "__main__":
    main()
