#!/usr/bin/env python3
"""heap_census.py PID: what holds the resident pages of a process's glibc
per-thread arenas (the sidecar's workers allocate there).

Walks every chunk of each non-main arena heap from /proc/PID/mem (root, or
ptrace rights) and asks /proc/PID/pagemap which pages are resident. Prints,
per heap: the chunks in use (count, bytes, the most common sizes), the
resident pages, how many of them hold bytes of a chunk in use, and how many
hold only free memory (free chunks whose pages stay resident: fragmentation,
or the top chunk that malloc_trim does not shrink).

glibc 2.36, x86-64 layout: heap_info is 48 bytes, struct malloc_state 2200,
the top pointer sits 96 bytes into it; chunks start 16-aligned after them.
The walk must end exactly on top, or it says so and stops (a layout this
script does not know). Chunks in tcache or fastbins count as in use (glibc
keeps their in-use bit); malloc_trim empties the fastbins, and tcache holds
at most 7 chunks per size.
"""
import collections
import struct
import sys

HEAP_MAX = 64 << 20  # 2 * DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
PAGE = 4096

pid = int(sys.argv[1])
mem = open("/proc/%d/mem" % pid, "rb", 0)
pagemap = open("/proc/%d/pagemap" % pid, "rb", 0)


def read(addr, n):
    mem.seek(addr)
    return mem.read(n)


def word(addr):
    return struct.unpack("<Q", read(addr, 8))[0]


def resident(first_page, npages):
    pagemap.seek(first_page // PAGE * 8)
    raw = pagemap.read(npages * 8)
    return [(v >> 63) & 1 for v in struct.unpack("<%dQ" % npages, raw)]


heaps = []
for line in open("/proc/%d/maps" % pid):
    f = line.split()
    lo, hi = (int(x, 16) for x in f[0].split("-"))
    if f[1].startswith("rw") and len(f) == 5 and lo % HEAP_MAX == 0:
        heaps.append((lo, hi))

for lo, hi in heaps:
    ar = word(lo)  # heap_info.ar_ptr
    if ar != lo + 48:
        continue  # a later heap of an arena, or no heap at all
    top = word(ar + 96)
    p = ar + 2200
    p += (-(p + 16)) % 16
    sizes = collections.Counter()
    live = bytearray((top - lo) // PAGE + 2)  # pages holding in-use bytes
    used_bytes = nused = 0
    ok = True
    while p < top:
        size = word(p + 8) & ~7
        if size < 32 or p + size > top:
            ok = False
            break
        nxt = p + size
        inuse = word(nxt + 8) & 1 if nxt < top else 1
        if inuse:
            nused += 1
            used_bytes += size
            sizes[size] += 1
            for pg in range((p - lo) // PAGE, (nxt - 1 - lo) // PAGE + 1):
                live[pg] = 1
        p = nxt
    if not ok or p != top:
        print("heap %#x: the walk did not end on top (%#x at %#x): unknown layout" % (lo, top, p))
        continue
    topsize = word(top + 8) & ~7
    npages = (top + topsize - lo + PAGE - 1) // PAGE
    res = resident(lo, npages)
    top_first = (top - lo) // PAGE
    res_live = sum(1 for i in range(top_first) if res[i] and live[i])
    res_free = sum(1 for i in range(top_first) if res[i] and not live[i])
    res_top = sum(res[top_first + 1:npages])
    print("heap %#x: %d chunks in use, %d KiB; below top %d pages resident: %d hold in-use bytes, "
          "%d only free memory; top chunk %d KiB, %d pages of it resident"
          % (lo, nused, used_bytes // 1024, res_live + res_free, res_live, res_free,
             topsize // 1024, res_top))
    print("  most common sizes in use (chunk bytes x count): " +
          ", ".join("%dx%d" % (s, c) for s, c in sizes.most_common(8)))
