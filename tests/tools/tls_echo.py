#!/usr/bin/env python3
"""tls_echo.py [--serial] HOST PORT CA CERT KEY MSG: an mTLS client for tests.

Sends MSG, reads until as many bytes came back (without waiting for the
server to close, as `s_client -ign_eof` does until its timeout), and prints
the server's URI SANs (its SPIFFE ID: the caller checks it, so hostname
checking is off), with --serial its certificate's serial (hex, as
`openssl x509 -serial` without leading zeros), then what came back.
"""
import socket
import ssl
import sys

args = sys.argv[1:]
serial = bool(args) and args[0] == "--serial"
if serial:
    args = args[1:]
if len(args) != 6:
    sys.exit(__doc__)
host, port, ca, cert, key, msg = args
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
with socket.create_connection((host, int(port)), timeout=10) as raw:
    with ctx.wrap_socket(raw) as s:
        pc = s.getpeercert()
        print(" ".join(v for k, v in pc.get("subjectAltName", ()) if k == "URI"))
        if serial:
            print(pc["serialNumber"].lstrip("0"))
        s.sendall(msg.encode())
        got = b""
        while len(got) < len(msg):
            b = s.recv(65536)
            if not b:
                break
            got += b
        print(got.decode(errors="replace"))
