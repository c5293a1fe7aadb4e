# ktls-sidecar build. `make help` lists the targets.
#
# Debian 12 packages the build and the tests need; `make deps` installs the
# missing ones (apt, as root) and does nothing when all are present.
DEPS_PKGS := gcc make pkg-config libc6-dev libssl-dev openssl liburing-dev libcmocka-dev \
	     protobuf-c-compiler libprotobuf-c-dev clang libclang-rt-14-dev libbpf-dev bpftool \
	     curl python3 python3-yaml procps iproute2 iptables util-linux valgrind strace

BUILD   ?= build
CC      ?= cc
SAN     ?=
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0-dev)

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
	   -Wno-missing-field-initializers
HARDEN  := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
ifeq ($(SAN),1)
OPT     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
HARDEN  := -fstack-protector-strong -fPIE
else
OPT     := -O2 -g
endif
GEN     := $(BUILD)/gen
CFLAGS  := -std=gnu11 $(OPT) $(WARN) $(HARDEN) -D_GNU_SOURCE -DKS_VERSION='"$(VERSION)"' \
	   -I$(GEN) -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS := $(OPT) -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(EXTRA_LDFLAGS)
LIBS    := -lssl -lcrypto -luring -lprotobuf-c -lbpf -lpthread

# The control API schema; protoc-c output goes to $(GEN), never into git.
PROTO     := proto/ktls/control/v1/control.proto
PROTO_C   := $(GEN)/ktls/control/v1/control.pb-c.c
PROTO_H   := $(PROTO_C:.c=.h)
PROTO_OBJ := $(BUILD)/obj/control.pb-c.o

SRCS      := $(wildcard sidecar/*.c)

# The BPF programs (bpf/*.bpf.c) and their skeletons (bpftool gen skeleton).
include bpf/bpf.mk
CTL_SRCS  := $(filter sidecar/ktlsctl%.c,$(SRCS))
LIB_SRCS  := $(filter-out sidecar/main.c $(CTL_SRCS),$(SRCS))
LIB_OBJS  := $(LIB_SRCS:sidecar/%.c=$(BUILD)/obj/%.o) $(PROTO_OBJ)
MAIN_OBJ  := $(BUILD)/obj/main.o
CTL_OBJ   := $(CTL_SRCS:sidecar/%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_BINS := $(BUILD)/tests/ks-stream

.PHONY: all deps test test-ktls unit integration asan demo bench format valgrind clean help \
	fuzz fuzz-smoke
all: $(BUILD)/ktls-sidecar $(BUILD)/ktlsctl $(UNIT_BINS) $(TOOL_BINS)

help:
	@echo "make deps         install missing Debian packages (apt, root)"
	@echo "make              build $(BUILD)/ktls-sidecar and the test programs"
	@echo "make demo         two sidecars + a backend on loopback, traffic, a report"
	@echo "make test         deps + build + unit tests + integration tests"
	@echo "make test-ktls    the kTLS scenarios inside QEMU on Debian kernels $(KTLS_KERNELS)"
	@echo "make asan         the same tests against an ASan+UBSan build (build/asan)"
	@echo "make valgrind     unit tests and some integration tests under valgrind memcheck"
	@echo "make fuzz         libFuzzer on the control API for FUZZ_SECS (default 300)"
	@echo "make bench        benchmark against peer proxies (tests/bench/README.md)"
	@echo "make format       clang-format the C sources (.clang-format)"

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

$(BUILD)/obj/%.o: sidecar/%.c | $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libks.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ktls-sidecar: $(MAIN_OBJ) $(BUILD)/libks.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/ktlsctl: $(CTL_OBJ) $(BUILD)/libks.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libks.a | $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Isidecar $(LDFLAGS) -o $@ $< $(BUILD)/libks.a $(LIBS) -lcmocka

$(BUILD)/tests/ks-stream: tests/tools/ks_stream.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lcrypto

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
	  echo "== $$t"; (cd tests/unit && ../../$$t) || fail=1; \
	done; exit $$fail

integration: all
	KS_BIN=$(abspath $(BUILD)/ktls-sidecar) KS_STREAM=$(abspath $(BUILD)/tests/ks-stream) \
	  tests/run-integration.sh

# kTLS needs a kernel with CONFIG_TLS: the build machines have none, so these
# run in QEMU (TCG) on Debian's own kernels (tests/ktls/README.md). The same
# scenarios run on the host too, where they cover the userspace fallback.
# newest is trixie-backports' kernel: the first in reach with kTLS rekey (6.14+).
KTLS_KERNELS ?= 6.1 6.12 newest
ASAN_KTLS_KERNELS ?= newest
# t_redirect is here for the kernels: the BPF programs must load and work on
# the oldest one we support (6.1), where it must not skip.
KTLS_TESTS   ?= t_ktls_modes t_ktls_ciphers t_ktls_peers t_ktls_zerocopy t_half_close t_tamper \
		t_redirect
test-ktls: all
	tests/ktls/vm.sh fetch
	@fail=0; for k in $(KTLS_KERNELS); do \
	  echo "== kTLS scenarios on Debian kernel $$k (QEMU TCG)"; \
	  KS_BIN=$(abspath $(BUILD)/ktls-sidecar) KS_STREAM=$(abspath $(BUILD)/tests/ks-stream) \
	  KS_REQUIRE_KTLS=1 KS_REQUIRE_REDIRECT=1 KS_TEST_TIMEOUT=1500 KS_VERBOSE=1 \
	  KS_VM_ENV="KS_BIN KS_STREAM KS_REQUIRE_KTLS KS_REQUIRE_REDIRECT KS_TEST_TIMEOUT KS_VERBOSE KS_KTLS_BYTES KS_KTLS_REPLY KS_SANITIZED ASAN_OPTIONS UBSAN_OPTIONS" \
	    tests/ktls/vm.sh run $$k -- tests/run-integration.sh \
	      $(KTLS_TESTS:%=tests/integration/%.sh) || { echo "== kTLS on $$k: FAILED"; fail=1; }; \
	done; exit $$fail

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) fuzz-smoke
	$(MAKE) test-ktls

asan: deps
	$(MAKE) BUILD=build/asan SAN=1 all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(MAKE) BUILD=build/asan SAN=1 unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  KS_SANITIZED=1 $(MAKE) BUILD=build/asan SAN=1 integration
	# The kernel record layer (splice, control records, rekey) only runs
	# where kTLS exists: the same scenarios under ASan+UBSan in the VM.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  KS_SANITIZED=1 $(MAKE) BUILD=build/asan SAN=1 test-ktls KTLS_KERNELS="$(ASAN_KTLS_KERNELS)"

valgrind: deps all
	@command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
	@fail=0; for t in $(UNIT_BINS); do \
	  echo "== valgrind $$t"; \
	  (cd tests/unit && valgrind -q --error-exitcode=9 --leak-check=full \
	    --errors-for-leak-kinds=definite ../../$$t >/dev/null) || fail=1; \
	done; exit $$fail
	KS_VALGRIND=1 KS_PAIR_BYTES=16M KS_BIN=$(abspath $(BUILD)/ktls-sidecar) \
	  KS_STREAM=$(abspath $(BUILD)/tests/ks-stream) tests/run-integration.sh \
	  tests/integration/t_pair_integrity.sh tests/integration/t_half_close.sh \
	  tests/integration/t_inbound_reject.sh tests/integration/t_outbound_s_server.sh \
	  tests/integration/t_control.sh tests/integration/t_control_updates.sh

# libFuzzer (clang, with ASan+UBSan) over the control API's frame decoding
# and request handling. make test runs it briefly; make fuzz for longer.
# The corpus grows in build/fuzz/corpus, seeded from tests/fuzz/corpus.
FUZZ_BUILD := build/fuzz
FUZZ_SECS  ?= 300
FUZZ_SMOKE_SECS ?= 30
$(FUZZ_BUILD)/fuzz_control: tests/fuzz/fuzz_control.c $(wildcard sidecar/*.[ch]) $(PROTO)
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang SAN=1 EXTRA_CFLAGS=-fsanitize=fuzzer-no-link \
	  $(FUZZ_BUILD)/libks.a
	clang -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -D_GNU_SOURCE -Isidecar -I$(FUZZ_BUILD)/gen -o $@ $< $(FUZZ_BUILD)/libks.a $(LIBS)

define run_fuzzer
	@mkdir -p $(FUZZ_BUILD)/corpus $(FUZZ_BUILD)/artifacts
	cp -n tests/fuzz/corpus/control/* $(FUZZ_BUILD)/corpus/
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
	  $(FUZZ_BUILD)/fuzz_control -max_total_time=$(1) -max_len=4096 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_BUILD)/artifacts/ $(FUZZ_BUILD)/corpus
endef

fuzz-smoke: deps $(FUZZ_BUILD)/fuzz_control
	$(call run_fuzzer,$(FUZZ_SMOKE_SECS))

fuzz: deps $(FUZZ_BUILD)/fuzz_control
	$(call run_fuzzer,$(FUZZ_SECS))

bench: deps all
	KS_BIN=$(abspath $(BUILD)/ktls-sidecar) KS_STREAM=$(abspath $(BUILD)/tests/ks-stream) \
	  tests/bench/run.sh

demo: deps all
	KS_BIN=$(abspath $(BUILD)/ktls-sidecar) KS_STREAM=$(abspath $(BUILD)/tests/ks-stream) \
	  tests/demo.sh

format:
	clang-format -i sidecar/*.[ch] bpf/*.[ch] tests/unit/*.c tests/tools/*.c tests/fuzz/*.c

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(CTL_OBJ:.o=.d)
