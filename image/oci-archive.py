#!/usr/bin/env python3
"""Names the image in an OCI archive for containerd, and checks the layout.

    image/oci-archive.py name ARCHIVE NAME   add io.containerd.image.name=NAME
    image/oci-archive.py check ARCHIVE       print the layout; exit 1 if it is
                                             not a valid OCI image layout

`podman save --format oci-archive` writes the OCI image layout (oci-layout,
index.json, blobs/sha256/...) in a tar, with the image's name in the
index's org.opencontainers.image.ref.name. containerd's importer (`ctr
images import`, which `kind load image-archive` runs) takes a full name
from that annotation only when it starts with ctr's --base-name, which
kind does not pass, and otherwise leaves the image without a name; it
always takes io.containerd.image.name as it is. So `make image-save` adds
that one, with the name the chart's "ktls-sidecar:VERSION" means to
containerd (docker.io/library/ktls-sidecar:VERSION).

check verifies what a reader relies on: oci-layout's version, index.json's
schema, and for every manifest its config and layers, each blob present
under blobs/sha256 with the size and SHA-256 that its descriptor gives.
"""
import hashlib
import io
import json
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def fail(msg):
    print("oci-archive: " + msg, file=sys.stderr)
    sys.exit(1)


def read_members(path):
    with tarfile.open(path) as tar:
        members = []
        for m in tar.getmembers():
            data = tar.extractfile(m).read() if m.isfile() else None
            members.append((m, data))
    return members


def name(path, image_name):
    members = read_members(path)
    out = io.BytesIO()
    found = False
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m, data in members:
            if m.name.lstrip("./") == "index.json":
                index = json.loads(data)
                if len(index.get("manifests", [])) != 1:
                    fail("%s: want one manifest in index.json, found %d"
                         % (path, len(index.get("manifests", []))))
                index["manifests"][0].setdefault("annotations", {})[
                    "io.containerd.image.name"] = image_name
                data = json.dumps(index, separators=(",", ":")).encode()
                m.size = len(data)
                found = True
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
    if not found:
        fail("%s: no index.json" % path)
    with open(path, "wb") as f:
        f.write(out.getvalue())


def check(path):
    files = {m.name.lstrip("./"): data for m, data in read_members(path) if data is not None}

    def blob(desc, want_type=None):
        digest = desc.get("digest", "")
        if not digest.startswith("sha256:"):
            fail("descriptor without a sha256 digest: %s" % desc)
        data = files.get("blobs/sha256/" + digest[7:])
        if data is None:
            fail("blob %s is missing" % digest)
        if hashlib.sha256(data).hexdigest() != digest[7:]:
            fail("blob %s does not hash to its name" % digest)
        if len(data) != desc.get("size"):
            fail("blob %s is %d bytes, its descriptor says %s" % (digest, len(data), desc.get("size")))
        if want_type and desc.get("mediaType") != want_type:
            fail("blob %s has media type %s, want %s" % (digest, desc.get("mediaType"), want_type))
        return data

    layout = json.loads(files.get("oci-layout") or fail("no oci-layout file"))
    if layout.get("imageLayoutVersion") != "1.0.0":
        fail("oci-layout: imageLayoutVersion %s" % layout.get("imageLayoutVersion"))
    index = json.loads(files.get("index.json") or fail("no index.json"))
    if index.get("schemaVersion") != 2 or not index.get("manifests"):
        fail("index.json: schemaVersion %s, %d manifests"
             % (index.get("schemaVersion"), len(index.get("manifests") or [])))
    for desc in index["manifests"]:
        manifest = json.loads(blob(desc, MANIFEST))
        config = json.loads(blob(manifest["config"], "application/vnd.oci.image.config.v1+json"))
        total = 0
        for layer in manifest["layers"]:
            total += len(blob(layer))
        print("manifest %s: %s/%s, user %s, %d layer(s), %d bytes compressed; annotations %s"
              % (desc["digest"], config.get("os"), config.get("architecture"),
                 config.get("config", {}).get("User"), len(manifest["layers"]), total,
                 json.dumps(desc.get("annotations", {}), sort_keys=True)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "name":
        name(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
