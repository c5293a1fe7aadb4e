#!/usr/bin/env python3
"""signer_check.py DIR ROOT_PEM...: DIR is a dev CA signer set, and holds no root key.

DIR is what an agent gets (an exported signer set, a Secret's files, a
pod's mount). Every private key in every file under DIR (any PEM block
"... PRIVATE KEY", whatever the file is called) is compared by its public
key with every certificate in the ROOT_PEM files: one that matches is the
root's key, and fails the check naming the file. Then DIR must hold the
signer: intermediate.key, matching intermediate.pem, the only private key
there, so that an empty or broken set does not pass for a clean one.

Public keys are compared as DER SubjectPublicKeyInfo from openssl(1), the
same tool an operator would use. Exit 0 with a summary line, 1 with the
reason.
"""
import hashlib
import os
import re
import subprocess
import sys

PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)-----\r?\n.*?-----END \1-----", re.S)


def openssl(args, data):
    r = subprocess.run(["openssl"] + args, input=data, capture_output=True)
    if r.returncode != 0:
        sys.exit("signer_check: openssl %s failed: %s" % (" ".join(args), r.stderr.decode().strip()))
    return r.stdout


def spki(block, kind):
    if kind.endswith(b"PRIVATE KEY"):
        return hashlib.sha256(openssl(["pkey", "-pubout", "-outform", "DER"], block)).hexdigest()
    pub = openssl(["x509", "-pubkey", "-noout"], block)
    return hashlib.sha256(openssl(["pkey", "-pubin", "-outform", "DER"], pub)).hexdigest()


def blocks(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        sys.exit("signer_check: %s" % e)
    for m in PEM.finditer(data):
        yield m.group(1), m.group(0)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.splitlines()[0])
    top, roots = sys.argv[1], {}
    for r in sys.argv[2:]:
        for kind, block in blocks(r):
            if kind == b"CERTIFICATE":
                roots[spki(block, kind)] = r
    if not roots:
        sys.exit("signer_check: no root certificate in %s" % " ".join(sys.argv[2:]))
    # A Secret volume is symlinks (name -> ..data/name -> ..<timestamp>/name):
    # each file once, under its shortest name.
    files = {}
    for d, _, names in os.walk(top, followlinks=False):
        for name in names:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                real, rel = os.path.realpath(path), os.path.relpath(path, top)
                if real not in files or len(rel) < len(files[real]):
                    files[real] = rel
    keys = []
    for real, rel in sorted(files.items(), key=lambda x: x[1]):
        for kind, block in blocks(real):
            if not kind.endswith(b"PRIVATE KEY"):
                continue
            fp = spki(block, kind)
            if fp in roots:
                sys.exit("%s holds the root's private key (that of %s)"
                         % (os.path.join(top, rel), roots[fp]))
            keys.append((rel, fp))
    inter = os.path.join(top, "intermediate.pem")
    if not os.path.isfile(inter):
        sys.exit("%s holds no intermediate.pem: not a signer set" % top)
    want = [spki(b, k) for k, b in blocks(inter) if k == b"CERTIFICATE"][:1]
    if [k for k, _ in keys] != ["intermediate.key"] or [fp for _, fp in keys] != want:
        sys.exit("%s: private keys %s, want intermediate.key alone, matching intermediate.pem"
                 % (top, [k for k, _ in keys] or "none"))
    print("%s: 1 private key (intermediate.key, matches intermediate.pem), none of the %d root(s)"
          % (top, len(roots)))


main()
