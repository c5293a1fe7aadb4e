#!/usr/bin/env bash
# The dependency direction, checked on what the compiler produced rather
# than on what the include lines claim (README.md, "How it is built").
#
#   layers.sh AREA:ARCHIVE:DEP1,DEP2,... ...
#
# For every object of every archive:
#   - each symbol it uses that one of the archives defines must come from
#     its own archive or from one of the archives it may depend on;
#   - within one archive, no two objects may depend on each other, directly
#     or through others (a cycle means the split between files is wrong).
# Exits 1 naming each violation. Uses nm (binutils) and python3.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: layers.sh AREA:ARCHIVE:DEPS ..." >&2; exit 2; }
exec python3 - "$@" <<'PY'
import subprocess, sys

areas = {}  # area -> (archive, allowed deps)
for arg in sys.argv[1:]:
    area, archive, deps = arg.split(":", 2)
    areas[area] = (archive, set(d for d in deps.split(",") if d))

defined = {}  # symbol -> (area, object)
uses = {}     # (area, object) -> set of symbols
for area, (archive, _) in areas.items():
    out = subprocess.run(["nm", "-A", archive], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        # archive.a:object.o:  ADDR T symbol   or   archive.a:object.o:  U symbol
        head, _, rest = line.partition(": ") if ": " in line else line.rpartition(":")
        parts = rest.split()
        obj = head.split(":")[-1]
        if len(parts) == 2 and parts[0] == "U":
            uses.setdefault((area, obj), set()).add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRVWGS" and parts[1] != "U":
            defined.setdefault(parts[2], (area, obj))
        if parts:
            uses.setdefault((area, obj), set())

bad = []
edges = {}
for (area, obj), syms in sorted(uses.items()):
    allowed = areas[area][1]
    for s in sorted(syms):
        if s not in defined:
            continue  # a system library's
        darea, dobj = defined[s]
        if darea == area:
            if dobj != obj:
                edges.setdefault((area, obj), set()).add((area, dobj))
        elif darea not in allowed:
            bad.append(f"{area}/{obj} uses {s} from {darea}/{dobj}: {area} may depend only on "
                       f"{', '.join(sorted(allowed)) or 'nothing'}")

# Cycles among the objects of one archive (Tarjan's strongly connected components).
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(comp)
sys.setrecursionlimit(10000)
for v in list(uses):
    if v not in index:
        strong(v)
for comp in sccs:
    bad.append(f"{comp[0][0]}: objects depend on each other: "
               + " <-> ".join(sorted(o for _, o in comp)))

if bad:
    print("layers: the dependency direction is broken:", file=sys.stderr)
    for b in bad:
        print("  " + b, file=sys.stderr)
    sys.exit(1)
n = sum(1 for _ in uses)
print(f"layers: {len(areas)} libraries, {n} objects: dependencies point down, no cycles")
PY
