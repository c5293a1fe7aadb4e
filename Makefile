# ktls-sidecar build. `make help` lists the targets.
#
# Debian 12 packages the build and the tests need; `make deps` installs the
# missing ones (apt, as root) and does nothing when all are present.
DEPS_PKGS := gcc make pkg-config libc6-dev libssl-dev openssl liburing-dev libcmocka-dev \
	     protobuf-c-compiler libprotobuf-c-dev clang libclang-rt-14-dev libbpf-dev bpftool \
	     curl python3 python3-yaml procps iproute2 iptables util-linux valgrind strace \
	     tcpdump binutils prometheus podman buildah runc
# t_pods (podman kube play): catatonit is the pods' infra (pause) process,
# busybox-static the test app's shell and wget, nftables the host's rules
# that the test compares before and after.
DEPS_PKGS += catatonit busybox-static nftables
# The SPIFFE Workload API client (sidecar/wapi): HTTP/2, and for its test
# server gRPC's Python binding with messages from Debian's protoc.
DEPS_PKGS += libnghttp2-dev python3-grpcio python3-protobuf protobuf-compiler
# Issue 17 (injection): Kubernetes manifests are YAML and JSON; Debian's
# libyaml and jansson read and write them.
DEPS_PKGS += libyaml-dev libjansson-dev
# t_inject_webhook applies the webhook's JSONPatch with python3-jsonpatch (an
# implementation that is not ours) before comparing with the CLI's output.
DEPS_PKGS += python3-jsonpatch
# node runs the strict Kubernetes schema check (tests/tools/k8s); these
# machines' nodejs (v20) carries npm, which installs its pinned packages.
DEPS_PKGS += nodejs

BUILD   ?= build
CC      ?= cc
# SAN=1: ASan+UBSan; SAN=thread: TSan.
SAN     ?=
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0-dev)

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
	   -Wno-missing-field-initializers
HARDEN  := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
ifeq ($(SAN),1)
OPT     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
HARDEN  := -fstack-protector-strong -fPIE
else ifeq ($(SAN),thread)
OPT     := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
HARDEN  := -fstack-protector-strong -fPIE
else
OPT     := -O2 -g
endif
GEN     := $(BUILD)/gen
CFLAGS  := -std=gnu11 $(OPT) $(WARN) $(HARDEN) -D_GNU_SOURCE -Isidecar -I. -I$(GEN) -MMD -MP \
	   $(EXTRA_CFLAGS)
LDFLAGS := $(OPT) -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(EXTRA_LDFLAGS)

# ---------------------------------------------------------------- the code
#
# One static library per area (README.md, "How it is built"). Each may use
# only the libraries named in its DEPS_ (transitively closed, in link
# order); tests/build/layers.sh checks that against the objects' symbols,
# and that no two objects of one library depend on each other, on every
# build. The binaries' link lines below name exactly what each one carries.
AREAS := common tls dataplane admin ctlproto control wapi redirect_core daemon redirect inject injectd ctl

SRCS_common        := $(wildcard sidecar/common/*.c)
SRCS_tls           := $(wildcard sidecar/tls/*.c)
SRCS_dataplane     := $(wildcard sidecar/dataplane/*.c sidecar/dataplane/loop/*.c)
SRCS_admin         := $(wildcard sidecar/admin/*.c)
SRCS_ctlproto      := sidecar/control/frame.c
SRCS_control       := $(filter-out sidecar/control/frame.c,$(wildcard sidecar/control/*.c))
SRCS_wapi          := $(wildcard sidecar/wapi/*.c)
SRCS_redirect_core := sidecar/redirect/options.c sidecar/redirect/manifest.c
SRCS_daemon        := $(filter-out sidecar/daemon/main.c,$(wildcard sidecar/daemon/*.c))
SRCS_redirect      := $(filter-out sidecar/redirect/main.c $(SRCS_redirect_core),\
			$(wildcard sidecar/redirect/*.c))
SRCS_inject        := $(wildcard sidecar/inject/*.c)
SRCS_injectd       := $(wildcard sidecar/injectd/*.c)
SRCS_ctl           := $(filter-out sidecar/ctl/main.c,$(wildcard sidecar/ctl/*.c))

DEPS_common        :=
DEPS_tls           := common
DEPS_dataplane     := tls common
DEPS_admin         := dataplane tls common
DEPS_ctlproto      := common
DEPS_control       := ctlproto dataplane tls common
DEPS_wapi          := tls common
DEPS_redirect_core := common
DEPS_daemon        := admin control ctlproto wapi dataplane tls redirect_core common
DEPS_redirect      := redirect_core common
DEPS_inject        := common
DEPS_injectd       := inject tls common
DEPS_ctl           := injectd inject ctlproto tls common

# System libraries each area needs.
SYS_common         :=
SYS_tls            := -lssl -lcrypto -lpthread
SYS_dataplane      := -luring -lpthread
SYS_admin          :=
SYS_ctlproto       := -lprotobuf-c
SYS_control        := -lpthread
SYS_wapi           := -lnghttp2 -lprotobuf-c -lpthread
SYS_redirect_core  :=
SYS_daemon         :=
SYS_redirect       := -lbpf
SYS_inject         := -ljansson -lyaml
SYS_injectd        := -lssl -lcrypto -lpthread -ljansson
SYS_ctl            :=

obj     = $(patsubst sidecar/%.c,$(BUILD)/obj/%.o,$(1))
lib     = $(BUILD)/lib/libks_$(1).a
# An area's library and everything below it, in link order; and their system libraries.
libs_of = $(foreach a,$(1) $(DEPS_$(1)),$(call lib,$(a)))
sys_of  = $(sort $(foreach a,$(1) $(DEPS_$(1)),$(SYS_$(a))))

# The control API schema; protoc-c output goes to $(GEN), never into git.
PROTO     := proto/ktls/control/v1/control.proto
PROTO_C   := $(GEN)/ktls/control/v1/control.pb-c.c
PROTO_H   := $(PROTO_C:.c=.h)
PROTO_OBJ := $(BUILD)/obj/gen/control.pb-c.o
# The SPIFFE Workload API's messages (proto/workload.proto), for area wapi.
WAPI_PROTO   := proto/workload.proto
WAPI_PROTO_C := $(GEN)/workload.pb-c.c
WAPI_PROTO_H := $(WAPI_PROTO_C:.c=.h)
WAPI_PROTO_OBJ := $(BUILD)/obj/gen/workload.pb-c.o

# The BPF programs (bpf/*.bpf.c) and their skeletons (bpftool gen skeleton).
include bpf/bpf.mk

ALL_LIB_OBJS := $(foreach a,$(AREAS),$(call obj,$(SRCS_$(a)))) $(PROTO_OBJ) $(WAPI_PROTO_OBJ)
MAIN_OBJS    := $(call obj,sidecar/daemon/main.c sidecar/redirect/main.c sidecar/ctl/main.c)
BINS         := $(BUILD)/ktls-sidecar $(BUILD)/ktls-redirect $(BUILD)/ktlsctl

# Unit tests mirror the areas: tests/unit/<area>/test_*.c links that area's
# library and what is below it. A test that needs another area's code to
# build its fixtures says so in TEST_EXTRA_<area>_<name>.
UNIT_SRCS := $(wildcard tests/unit/*/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TEST_EXTRA_control_test_control_update := ctl
# Link-time seams (tests alone): test_tickets makes the RNG fail on demand.
TEST_LDFLAGS_tls_test_tickets := -Wl,--wrap=RAND_priv_bytes
TOOL_BINS  := $(BUILD)/tests/ks-stream
BENCH_BINS := $(BUILD)/bench/ks_connrate $(BUILD)/bench/splice_designs

.PHONY: all deps test test-ktls unit integration asan tsan demo bench format valgrind clean \
	help fuzz fuzz-smoke layers image image-save image-version
all: $(BINS) $(UNIT_BINS) $(TOOL_BINS) $(BENCH_BINS) layers

help:
	@echo "make deps         install missing Debian packages (apt, root)"
	@echo "make              build $(BUILD)/{ktls-sidecar,ktls-redirect,ktlsctl} and the test programs"
	@echo "make demo         two sidecars + a backend on loopback, traffic, a report"
	@echo "make test         deps + build + unit tests + integration tests + fuzzers + kTLS in QEMU"
	@echo "make test-ktls    the kTLS scenarios inside QEMU on Debian kernels $(KTLS_KERNELS)"
	@echo "make asan         the same tests against an ASan+UBSan build (build/asan)"
	@echo "make tsan         unit tests and the threaded scenarios under TSan (build/tsan)"
	@echo "make valgrind     unit tests and some integration tests under valgrind memcheck"
	@echo "make fuzz         libFuzzer on the control API, SPIFFE IDs, admin HTTP, Workload API responses and AdmissionReviews, FUZZ_SECS each (300)"
	@echo "make bench        benchmark against peer proxies (tests/bench/README.md)"
	@echo "make format       clang-format the C sources (.clang-format)"
	@echo "make image        the OCI image $(IMAGE) (FROM scratch, buildah, no registry)"
	@echo "make image-save   $(IMAGE_ARCHIVE): an OCI archive for ctr import / kind load"

deps:
	@missing=""; for p in $(DEPS_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: run as root (apt-get install$$missing)" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(PROTO_C) $(PROTO_H): $(PROTO)
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iproto $<

$(PROTO_OBJ): $(PROTO_C)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(WAPI_PROTO_C) $(WAPI_PROTO_H): $(WAPI_PROTO)
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iproto $<

$(WAPI_PROTO_OBJ): $(WAPI_PROTO_C)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: sidecar/%.c | $(PROTO_H) $(WAPI_PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

# Only this object sees the version: a new commit rebuilds one file, and an
# unchanged one nothing (the header is rewritten only when it differs).
$(GEN)/ks_build_version.h: FORCE
	@mkdir -p $(@D)
	@{ echo '#define KS_VERSION "$(VERSION)"'; echo '#define KS_RELEASE "$(IMAGE_VERSION)"'; } >$@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/obj/common/version.o: $(GEN)/ks_build_version.h
FORCE:

define area_lib
$(call lib,$(1)): $(call obj,$(SRCS_$(1))) $(if $(filter ctlproto,$(1)),$(PROTO_OBJ)) \
		$(if $(filter wapi,$(1)),$(WAPI_PROTO_OBJ))
	@mkdir -p $$(@D)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach a,$(AREAS),$(eval $(call area_lib,$(a))))

$(BUILD)/ktls-sidecar: $(call obj,sidecar/daemon/main.c) $(call libs_of,daemon)
	$(CC) $(LDFLAGS) -o $@ $^ $(call sys_of,daemon)

$(BUILD)/ktls-redirect: $(call obj,sidecar/redirect/main.c) $(call libs_of,redirect)
	$(CC) $(LDFLAGS) -o $@ $^ $(call sys_of,redirect)

$(BUILD)/ktlsctl: $(call obj,sidecar/ctl/main.c) $(call libs_of,ctl)
	$(CC) $(LDFLAGS) -o $@ $^ $(call sys_of,ctl)

# $(1): area, $(2): test name
define unit_test
$(BUILD)/tests/$(1)/$(2): tests/unit/$(1)/$(2).c $(call libs_of,$(1)) \
		$(foreach x,$(TEST_EXTRA_$(1)_$(2)),$(call libs_of,$(x))) | $(PROTO_H) $(WAPI_PROTO_H)
	@mkdir -p $$(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) $(TEST_LDFLAGS_$(1)_$(2)) -o $$@ $$< \
	  $(foreach x,$(TEST_EXTRA_$(1)_$(2)),$(call libs_of,$(x))) $(call libs_of,$(1)) \
	  $(call sys_of,$(1)) $(foreach x,$(TEST_EXTRA_$(1)_$(2)),$(call sys_of,$(x))) -lcmocka
endef
$(foreach t,$(UNIT_SRCS),$(eval $(call unit_test,$(word 3,$(subst /, ,$(t))),$(basename $(notdir $(t))))))

$(BUILD)/tests/ks-stream: tests/tools/ks_stream.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lcrypto

# The benchmark's own programs, built with everything else so a break shows in
# make test. They are standalone (each defines _GNU_SOURCE itself).
BENCH_CFLAGS := -std=gnu11 $(OPT) $(WARN) $(HARDEN)
$(BUILD)/bench/ks_connrate: tests/bench/ks_connrate.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(LDFLAGS) -o $@ $<

$(BUILD)/bench/splice_designs: tests/bench/splice_designs.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(LDFLAGS) -o $@ $< -luring -lpthread

# The dependency direction, checked on the objects (tests/build/layers.sh).
layers: $(BUILD)/.layers-ok
$(BUILD)/.layers-ok: tests/build/layers.sh $(foreach a,$(AREAS),$(call lib,$(a)))
	tests/build/layers.sh $(foreach a,$(AREAS),$(a):$(call lib,$(a)):$(subst $() $(),$(comma),$(DEPS_$(a))))
	@touch $@
comma := ,

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
	  echo "== $$t"; (cd tests/unit && $(UNIT_WRAP) ../../$$t) || fail=1; \
	done; exit $$fail

INTEGRATION_ENV = KS_BIN=$(abspath $(BUILD)/ktls-sidecar) KS_STREAM=$(abspath $(BUILD)/tests/ks-stream)
integration: all
	$(INTEGRATION_ENV) tests/run-integration.sh

# kTLS needs a kernel with CONFIG_TLS: the build machines have none, so these
# run in QEMU (TCG) on Debian's own kernels (tests/ktls/README.md). The same
# scenarios run on the host too, where they cover the userspace fallback.
# newest is trixie-backports' kernel: the first in reach with kTLS rekey
# (6.14+), and it runs every scenario. To keep CI within its budget (issues
# 13 and 14), the older kernels run what differs between kernels: offload
# per cipher, KeyUpdate, zero-copy, session tickets before the hand-off
# (t_ktls_resume: 32M there), the BPF hooks (t_redirect*). There
# t_ktls_ciphers moves KTLS_OLDER_BYTES up and KTLS_OLDER_REPLY down per
# cipher (thousands of records each way, random write sizes, SHA-256 both
# ends) instead of 256M + 32M: whether the kernel offloads a cipher does
# not depend on the volume, and the large streams still run on newest.
# t_ktls_modes, t_half_close and t_tamper exercise our own record-layer
# handling, the same on every kernel, and t_ktls_scale (1,500 handshakes,
# minutes under TCG) the pipe and descriptor accounting, also the same.
# t_workers is here for the VM's pure cgroup v2 (the build machines have
# the cpu controller on v1); v2's cpu.max is the same on every kernel. It
# boots its own guest with KTLS_VCPU3 vCPUs (3, one more than the build
# machines have), so that "as many workers as CPUs" and "1 worker under
# half a CPU" are told apart from the host's count; the others keep 2
# vCPUs, which the 2-core CI machine can run without oversubscribing.
# t_workers' guest also runs its vCPUs on one host thread (TCG
# thread=single): its cpu.max flips the kernel's CFS bandwidth static key,
# and live text patching under QEMU 7.2's multi-threaded TCG can panic the
# guest ("Oops: int3": the project CI of stop 25; tests/ktls/vm.sh says more). It is a short
# guest, so the lost parallelism costs seconds.
# Give KTLS_OLDER_TESTS the whole KTLS_TESTS list to run everything
# everywhere.
KTLS_KERNELS ?= 6.1 6.12 newest
ASAN_KTLS_KERNELS ?= newest
KTLS_TESTS       ?= t_ktls_modes t_ktls_ciphers t_ktls_peers t_ktls_zerocopy t_ktls_resume t_half_close t_tamper \
		    t_redirect t_redirect_userns t_ktls_scale t_workers
KTLS_OLDER_TESTS ?= t_ktls_ciphers t_ktls_peers t_ktls_zerocopy t_ktls_resume t_redirect t_redirect_userns
KTLS_OLDER_BYTES ?= 32M
KTLS_OLDER_REPLY ?= 8M
KTLS_VCPU3_TESTS ?= t_workers
KTLS_VCPU3       ?= 3
ktls_tests_for    = $(if $(filter newest,$(1)),$(KTLS_TESTS),$(filter $(KTLS_TESTS),$(KTLS_OLDER_TESTS)))
# $(call ktls_boot,KERNEL,SCENARIOS,VCPUS,TCG_THREAD): one guest, the scenarios in it.
# Nothing when SCENARIOS is empty (run-integration.sh with no argument
# would run the whole host suite).
ktls_boot = $(if $(strip $(2)),\
	  echo "== kTLS scenarios on Debian kernel $(1) (QEMU TCG, $(3) vCPUs, thread=$(or $(4),multi)): $(strip $(2))"; \
	  $(INTEGRATION_ENV) KS_REQUIRE_KTLS=1 KS_REQUIRE_REDIRECT=1 KS_TEST_TIMEOUT=1500 KS_VERBOSE=1 \
	  KS_VM_SMP=$(3) KS_VM_CPUS=$(3) KS_VM_TCG_THREAD=$(or $(4),multi) \
	  $(if $(filter newest,$(1)),,KS_KTLS_BYTES=$(or $(KS_KTLS_BYTES),$(KTLS_OLDER_BYTES)) \
	    KS_KTLS_REPLY=$(or $(KS_KTLS_REPLY),$(KTLS_OLDER_REPLY))) \
	  KS_VM_ENV="KS_BIN KS_STREAM KS_REQUIRE_KTLS KS_REQUIRE_REDIRECT KS_TEST_TIMEOUT KS_VERBOSE KS_KTLS_BYTES KS_KTLS_REPLY KS_VM_CPUS KS_SANITIZED ASAN_OPTIONS UBSAN_OPTIONS" \
	    tests/ktls/vm.sh run $(1) -- tests/run-integration.sh \
	      $(foreach t,$(2),$(wildcard tests/integration/*/$(t).sh)) \
	    || { echo "== kTLS on $(1) ($(3) vCPUs): FAILED"; fail=1; };)
test-ktls: all
	tests/ktls/vm.sh fetch
	@fail=0; $(foreach k,$(KTLS_KERNELS),\
	  $(call ktls_boot,$(k),$(filter-out $(KTLS_VCPU3_TESTS),$(call ktls_tests_for,$(k))),2) \
	  $(call ktls_boot,$(k),$(filter $(KTLS_VCPU3_TESTS),$(call ktls_tests_for,$(k))),$(KTLS_VCPU3),single)) \
	  exit $$fail

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) fuzz-smoke
	$(MAKE) test-ktls

SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
asan: deps
	$(MAKE) BUILD=build/asan SAN=1 all
	$(SAN_ENV) $(MAKE) BUILD=build/asan SAN=1 unit
	$(SAN_ENV) KS_SANITIZED=1 $(MAKE) BUILD=build/asan SAN=1 integration
	# The kernel record layer (splice, control records, rekey) only runs
	# where kTLS exists: the same scenarios under ASan+UBSan in the VM.
	$(SAN_ENV) KS_SANITIZED=1 $(MAKE) BUILD=build/asan SAN=1 test-ktls \
	  KTLS_KERNELS="$(ASAN_KTLS_KERNELS)"

# ThreadSanitizer: the unit tests, and the scenarios where threads meet (the
# control thread, the Workload API thread, the workers, SIGHUP and rotation
# under load). Debian's OpenSSL is not built with TSan: tests/tsan.supp
# names only frames inside libcrypto/libssl, each with its reason.
TSAN_TESTS := t_control t_control_rotation t_control_updates t_sighup_rotation t_concurrency \
	      t_drain t_pair_integrity t_agent t_admin t_workload_api t_inject_webhook t_resumption
TSAN_ENV := TSAN_OPTIONS="suppressions=$(abspath tests/tsan.supp) halt_on_error=1 second_deadlock_stack=1"
tsan: deps
	$(MAKE) BUILD=build/tsan SAN=thread CC=clang all
	$(TSAN_ENV) $(MAKE) BUILD=build/tsan SAN=thread CC=clang unit
	$(TSAN_ENV) KS_SANITIZED=tsan KS_BIN=$(abspath build/tsan/ktls-sidecar) \
	  KS_STREAM=$(abspath build/tsan/tests/ks-stream) \
	  tests/run-integration.sh $(foreach t,$(TSAN_TESTS),$(wildcard tests/integration/*/$(t).sh))

VALGRIND_TESTS := t_pair_integrity t_half_close t_inbound_reject t_outbound_s_server t_control \
		  t_control_updates
valgrind: deps all
	@command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
	@fail=0; for t in $(UNIT_BINS); do \
	  echo "== valgrind $$t"; \
	  (cd tests/unit && valgrind -q --error-exitcode=9 --leak-check=full \
	    --errors-for-leak-kinds=definite ../../$$t >/dev/null) || fail=1; \
	done; exit $$fail
	KS_VALGRIND=1 KS_PAIR_BYTES=16M $(INTEGRATION_ENV) tests/run-integration.sh \
	  $(foreach t,$(VALGRIND_TESTS),$(wildcard tests/integration/*/$(t).sh))

# libFuzzer (clang, with ASan+UBSan): the control API through its real frame
# reader, SPIFFE ID parsing and matching, the admin endpoint's HTTP
# request reader, Workload API responses (gRPC framing to identity), and
# the injection webhook's AdmissionReview handling and JSONPatch.
# make test runs each briefly; make fuzz for longer. Corpora grow in build/fuzz/corpus/<name>, seeded
# from tests/fuzz/corpus/<name>.
FUZZ_BUILD := build/fuzz
FUZZ_SECS  ?= 300
FUZZ_SMOKE_SECS ?= 20
FUZZERS    := control spiffe http wapi admission
FUZZ_AREA_control := control
FUZZ_AREA_spiffe  := tls
FUZZ_AREA_http    := common
FUZZ_AREA_wapi    := wapi
FUZZ_AREA_admission := injectd
FUZZ_CFLAGS := -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	       -D_GNU_SOURCE -Isidecar -I. -I$(FUZZ_BUILD)/gen
define fuzzer
$(FUZZ_BUILD)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(wildcard sidecar/*/*.[ch] sidecar/*/*/*.[ch]) $(PROTO) \
		$(WAPI_PROTO)
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang SAN=1 EXTRA_CFLAGS=-fsanitize=fuzzer-no-link \
	  $(foreach l,$(FUZZ_AREA_$(1)) $(DEPS_$(FUZZ_AREA_$(1))),$(FUZZ_BUILD)/lib/libks_$(l).a)
	clang $(FUZZ_CFLAGS) -o $$@ $$< \
	  $(foreach l,$(FUZZ_AREA_$(1)) $(DEPS_$(FUZZ_AREA_$(1))),$(FUZZ_BUILD)/lib/libks_$(l).a) \
	  $(call sys_of,$(FUZZ_AREA_$(1)))
endef
$(foreach f,$(FUZZERS),$(eval $(call fuzzer,$(f))))

define run_fuzzer
	@mkdir -p $(FUZZ_BUILD)/corpus/$(1) $(FUZZ_BUILD)/artifacts
	cp -n tests/fuzz/corpus/$(1)/* $(FUZZ_BUILD)/corpus/$(1)/
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
	  $(FUZZ_BUILD)/fuzz_$(1) -max_total_time=$(2) -max_len=4096 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)- $(FUZZ_BUILD)/corpus/$(1)

endef

fuzz-smoke: deps $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)
	$(foreach f,$(FUZZERS),$(call run_fuzzer,$(f),$(FUZZ_SMOKE_SECS)))

fuzz: deps $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)
	$(foreach f,$(FUZZERS),$(call run_fuzzer,$(f),$(FUZZ_SECS)))

# ---------------------------------------------------------------- the image
#
# An OCI image built with buildah from a root filesystem laid out here
# (image/rootfs.sh: the three binaries, the libraries they link, the
# loader, /etc/passwd with uid 1337) into a FROM scratch image
# (image/Containerfile): nothing is pulled from any registry. amd64 only.
# Its tag is the chart's appVersion, the one place the version is written.
# Storage and podman's state live in $(BUILD)/containers (image/podman.sh,
# with tests/podman/containers.conf), so make clean removes them. The image
# is built once per change of its inputs ($(IMAGE_STAMP) holds its ID), and
# the tests reuse it.
CHART_YAML    ?= helm/ktls-sidecar/Chart.yaml
IMAGE_NAME    := ktls-sidecar
IMAGE_VERSION := $(shell sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}[[:space:]]*$$/\1/p' $(CHART_YAML))
IMAGE         := localhost/$(IMAGE_NAME):$(IMAGE_VERSION)
IMAGE_DIR     := $(BUILD)/image
IMAGE_STAMP   := $(IMAGE_DIR)/image-id
IMAGE_ARCHIVE := $(BUILD)/$(IMAGE_NAME)-$(IMAGE_VERSION).oci.tar
IMAGE_EPOCH   := $(or $(shell git log -1 --format=%ct 2>/dev/null),0)
# org.opencontainers.image.source: the clone's remote when it is a public
# URL (a path on this machine says nothing to the image's users).
IMAGE_SOURCE  ?= $(filter https://%,$(shell git config --get remote.origin.url 2>/dev/null))
CTR           := image/podman.sh $(BUILD)

ifneq ($(filter image image-save image-version,$(MAKECMDGOALS)),)
ifeq ($(IMAGE_VERSION),)
$(error no appVersion in $(CHART_YAML): the image's tag is the chart's appVersion)
endif
endif
image-version:
	@echo $(IMAGE_VERSION)

image: deps $(IMAGE_STAMP)
# --timestamp: file times and the creation date are the last commit's, so
# the same commit, binaries and libraries give the same image ID.
# The libraries come from the host's packages: a change there (dpkg's
# status) rebuilds the image too.
$(IMAGE_STAMP): $(BINS) image/Containerfile image/rootfs.sh image/podman.sh \
		tests/podman/containers.conf $(CHART_YAML) $(wildcard /var/lib/dpkg/status)
	rm -rf $(IMAGE_DIR)
	@mkdir -p $(IMAGE_DIR)
	image/rootfs.sh $(IMAGE_DIR)/rootfs $(BINS)
	$(CTR) buildah bud --quiet --format oci --layers=false --timestamp $(IMAGE_EPOCH) --arch amd64 --os linux \
	  --build-arg VERSION=$(IMAGE_VERSION) --build-arg REVISION=$(shell git rev-parse HEAD 2>/dev/null) \
	  $(if $(IMAGE_SOURCE),--label org.opencontainers.image.source=$(IMAGE_SOURCE)) \
	  -f image/Containerfile -t $(IMAGE) $(IMAGE_DIR) >$@.tmp
	mv $@.tmp $@
	@# The image this one replaced, now untagged, goes (our storage only).
	$(CTR) podman image prune --force >/dev/null
	@echo "image $(IMAGE): $$(cat $@)"

image-save: deps $(IMAGE_ARCHIVE)
# The OCI layout (index.json, oci-layout, blobs/sha256) in one tar, named
# docker.io/library/ktls-sidecar:VERSION, which is what the chart's
# "ktls-sidecar:VERSION" means to containerd: `ctr -n k8s.io images import`
# and `kind load image-archive` take it as it is.
$(IMAGE_ARCHIVE): $(IMAGE_STAMP) image/oci-archive.py
	rm -f $@ $@.tmp
	$(CTR) podman save --quiet --format oci-archive -o $@.tmp $(IMAGE)
	image/oci-archive.py name $@.tmp docker.io/library/$(IMAGE_NAME):$(IMAGE_VERSION)
	image/oci-archive.py check $@.tmp
	mv $@.tmp $@
	@ls -l $@

bench: deps all
	$(INTEGRATION_ENV) tests/bench/run.sh

demo: deps all
	$(INTEGRATION_ENV) tests/demo.sh

format:
	clang-format -i $(wildcard sidecar/*/*.[ch] sidecar/*/*/*.[ch]) bpf/*.[ch] \
	  $(wildcard tests/unit/*/*.c) tests/tools/*.c tests/fuzz/*.c tests/bench/*.c

# podman's overlay storage (build/*/containers) mounts its overlay/ on
# itself while in use, and a failed podman command can leave that mount.
clean:
	findmnt -rn -o TARGET | awk -v d="$(abspath build)/" 'index($$0, d) == 1' | sort -r | \
	  xargs -r -n 1 umount
	rm -rf build

-include $(ALL_LIB_OBJS:.o=.d) $(MAIN_OBJS:.o=.d) $(UNIT_BINS:=.d)
