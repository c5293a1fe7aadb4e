# BPF objects and skeletons; included by the top-level Makefile.
#
# bpf/redirect.bpf.c is compiled against the uapi headers (linux-libc-dev)
# and libbpf's bpf_helpers.h, not vmlinux.h, so the object does not depend
# on the build machine's kernel. `bpftool gen skeleton` embeds it in a
# header that sidecar/redirect/bpf.c includes: one binary, no object file to
# install next to it.
# This file is included before the Makefile's first target: its rules must
# not become the default goal, so the goal selection is saved and restored.
KS_BPF_SAVED_GOAL := $(.DEFAULT_GOAL)

BPF_CLANG  ?= clang
BPFTOOL    ?= bpftool
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu -Ibpf \
	      -Wall -Wextra -Werror -Wno-unused-parameter
BPF_OBJ    := $(BUILD)/bpf/redirect.bpf.o
BPF_SKEL   := $(GEN)/redirect.skel.h

$(BPF_OBJ): bpf/redirect.bpf.c bpf/redirect.h bpf/bpf.mk
	@mkdir -p $(@D)
	$(BPF_CLANG) $(BPF_CFLAGS) -c -o $@ $<

# Written to a temporary file first: a failed bpftool must not leave a
# truncated header that a later make would take as up to date.
$(BPF_SKEL): $(BPF_OBJ)
	@mkdir -p $(@D)
	$(BPFTOOL) gen skeleton $< name ks_redirect_bpf >$@.tmp
	mv $@.tmp $@

$(BUILD)/obj/redirect/bpf.o: $(BPF_SKEL)

# Empty (nothing defined before this file) restarts the selection, so the
# Makefile's own first target (all) stays the default.
.DEFAULT_GOAL := $(KS_BPF_SAVED_GOAL)
