#!/usr/bin/env python3
"""A SPIFFE Workload API server for the tests: FetchX509SVID only.

    wapi_server.py serve SOCKET PB_DIR CTL_DIR
    wapi_server.py probe SOCKET PB_DIR [--no-header]

PB_DIR holds workload_pb2.py, generated from proto/workload.proto by
Debian's protoc (python3-grpc-tools is too old there); the service is
registered with grpcio's generic handlers. As a real agent does, the server
refuses a call without the `workload.spiffe.io: true` metadata
(SPIFFE_Workload_API.md §5.2) and sends the current response to every new
stream, then each new one to all open streams.

The test drives it through CTL_DIR: it renames a JSON file into place as
CTL_DIR/next.json; the server takes it (renaming it to CTL_DIR/taken.N.json),
builds the response and sends it, and logs "sent seq=N streams=K". The JSON:
    {"seq": N,
     "svids": [{"id": SPIFFE_ID, "crt": PEM_FILE, "key": PEM_FILE,
                "bundle": PEM_FILE}, ...],
     "federated": {"spiffe://other.org": PEM_FILE, ...}}
A file name ending in .bin is sent as it is, not decoded from PEM (a
malformed response). {"seq": N, "deny": "MESSAGE"} instead ends every open
stream, and refuses every new one, with PERMISSION_DENIED and MESSAGE, as
SPIRE's agent does for a workload it has no identity for, until the next
response. Every log line is flushed at once.

probe: one call, printing "ok svids=N" for the first response or
"refused CODE: DETAILS"; with --no-header the metadata is left out.
"""
import base64
import json
import os
import queue
import re
import sys
import threading
import time
from concurrent import futures

import grpc

PEM_RE = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----(.*?)-----END [A-Z0-9 ]+-----", re.S)


LOG_LOCK = threading.Lock()


def log(line):
    # One write per line under a lock: the handler threads' lines must not
    # run into each other (the test matches them at the start of a line).
    with LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def der(path):
    """The PEM blocks of a file, decoded and concatenated (the Workload
    API's encoding of chains and bundles); a .bin file as it is."""
    data = open(path, "rb").read()
    if path.endswith(".bin"):
        return data
    return b"".join(base64.b64decode(b"".join(m.split())) for m in PEM_RE.findall(data))


def build(pb, spec):
    r = pb.X509SVIDResponse()
    for s in spec.get("svids", []):
        v = r.svids.add()
        v.spiffe_id = s["id"]
        v.x509_svid = der(s["crt"])
        v.x509_svid_key = der(s["key"])
        v.bundle = der(s["bundle"])
        v.hint = s.get("hint", "")
    for td, path in spec.get("federated", {}).items():
        r.federated_bundles[td] = der(path)
    return r


def serve(sock, pb, ctl):
    lock = threading.Lock()
    streams = set()
    current = [None]

    def fetch(request, context):
        md = dict(context.invocation_metadata())
        if md.get("workload.spiffe.io") != "true":
            log("refused: no workload.spiffe.io metadata")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")
        q = queue.Queue()
        with lock:
            streams.add(q)
            if current[0] is not None:
                q.put(current[0])
        deny = None
        log("stream open user-agent=%s" % md.get("user-agent", "-"))
        try:
            while context.is_active():
                try:
                    msg = q.get(timeout=0.2)
                except queue.Empty:
                    continue
                if isinstance(msg, str):
                    deny = msg
                    break
                yield msg
        finally:
            with lock:
                streams.discard(q)
            log("stream closed" if deny is None else "stream denied")
        if deny is not None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, deny)

    handler = grpc.method_handlers_generic_handler(
        "SpiffeWorkloadAPI",
        {
            "FetchX509SVID": grpc.unary_stream_rpc_method_handler(
                fetch,
                request_deserializer=pb.X509SVIDRequest.FromString,
                response_serializer=pb.X509SVIDResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port("unix:" + sock) == 0:
        sys.exit("cannot listen on " + sock)
    server.start()
    log("listening on " + sock)
    n = 0
    while True:
        nxt = os.path.join(ctl, "next.json")
        if os.path.exists(nxt):
            n += 1
            taken = os.path.join(ctl, "taken.%d.json" % n)
            os.rename(nxt, taken)
            spec = json.load(open(taken))
            msg = spec["deny"] if "deny" in spec else build(pb, spec)
            with lock:
                current[0] = msg
                for q in streams:
                    q.put(msg)
                k = len(streams)
            log("sent seq=%s streams=%d" % (spec.get("seq", n), k))
        time.sleep(0.05)


def probe(sock, pb, header):
    ch = grpc.insecure_channel("unix:" + sock)
    call = ch.unary_stream(
        "/SpiffeWorkloadAPI/FetchX509SVID",
        request_serializer=pb.X509SVIDRequest.SerializeToString,
        response_deserializer=pb.X509SVIDResponse.FromString,
    )
    md = [("workload.spiffe.io", "true")] if header else []
    try:
        for r in call(pb.X509SVIDRequest(), metadata=md, timeout=5):
            print("ok svids=%d" % len(r.svids))
            return 0
        print("ended without a response")
        return 1
    except grpc.RpcError as e:
        print("refused %s: %s" % (e.code().name, e.details()))
        return 0


def main():
    mode, sock, pbdir = sys.argv[1:4]
    sys.path.insert(0, pbdir)
    import workload_pb2 as pb

    if mode == "serve":
        serve(sock, pb, sys.argv[4])
    elif mode == "probe":
        sys.exit(probe(sock, pb, "--no-header" not in sys.argv[4:]))
    else:
        sys.exit("usage: wapi_server.py serve|probe ...")


if __name__ == "__main__":
    main()
