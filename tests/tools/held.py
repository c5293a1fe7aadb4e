#!/usr/bin/env python3
"""held.py PID: what a process holds, as "descriptors pipe-ends pipe-pages".

Pipe pages are what the process's uid is charged against
fs.pipe-user-pages-soft: each pipe counted once, sized with F_GETPIPE_SZ on
a duplicate taken with pidfd_getfd(2) (root, or the same uid with ptrace
rights). One process for the whole census: a readlink(1) per descriptor
takes minutes under TCG with 20,000 of them.
"""
import ctypes
import fcntl
import os
import sys

F_GETPIPE_SZ = 1032
SYS_PIDFD_GETFD = 438  # x86-64 and the generic table (arm64, riscv)

pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(pid)
fds, ends, seen, pages = 0, 0, set(), 0
for fd in os.listdir("/proc/%d/fd" % pid):
    try:
        target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
    except OSError:
        continue  # closed meanwhile
    fds += 1
    if not target.startswith("pipe:"):
        continue
    ends += 1
    if target in seen:
        continue
    seen.add(target)
    dup = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
    if dup < 0:
        sys.exit("pidfd_getfd: " + os.strerror(ctypes.get_errno()))
    pages += fcntl.fcntl(dup, F_GETPIPE_SZ) // os.sysconf("SC_PAGE_SIZE")
    os.close(dup)
print(fds, ends, pages)
