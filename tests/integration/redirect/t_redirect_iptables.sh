#!/usr/bin/env bash
# The iptables redirect (`ktls-sidecar redirect --mode iptables`): the same
# two pods and the same end-to-end checks as t_redirect.sh, which runs them
# (its header says which BPF-only checks are dropped), with the same skip
# rules. On the host only: the kTLS VM runs t_redirect.sh for the BPF hooks.
exec env KS_REDIRECT_MODE=iptables bash "$(dirname "${BASH_SOURCE[0]}")/t_redirect.sh"
