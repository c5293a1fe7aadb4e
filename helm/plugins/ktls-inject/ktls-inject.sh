#!/bin/sh
# The ktls-inject post-renderer: `ktlsctl inject` over Helm's render
# (README, "Injection"). KTLSCTL names the binary; default: ktlsctl on PATH.
#
# Helm 4.1 captures a post-renderer plugin's stderr and does not show it
# ("plugin ... exited with error", with stderr="" under --debug), and
# ktlsctl's message (which object, which annotation) is the whole point of
# a refusal. So stderr goes to Helm's own, through /proc, when it can. (A
# terminal or a pipe shows both; into a file, open it for appending,
# `2>>FILE`, or Helm's own message lands over ours.)
if [ -w "/proc/$PPID/fd/2" ]; then
	exec 2>>"/proc/$PPID/fd/2"
fi
exec "${KTLSCTL:-ktlsctl}" inject "$@"
