# kiln build. `make` builds build/kiln; `make check` runs every test (see README.md).
CC      ?= cc
BUILD   ?= build
CFLAGS_BASE := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
               -Wno-missing-field-initializers -D_GNU_SOURCE -Iinclude -Isrc -MMD -MP
CFLAGS  ?= -O2 -g
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDLIBS  := -lpthread

CORE_SRCS := $(sort $(wildcard src/*/*.c src/*/*/*.c src/*/*/*/*.c))
TOOL_SRCS := $(sort $(wildcard tools/*.c))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))

CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/obj/%.o)
TOOL_OBJS := $(TOOL_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.SECONDARY:
.PHONY: all kiln guest-tests unit-build unit asan guest testbed check demo integration bench bench-virtio bench-sandbox bench-unikernel format lint clean fuzz deps valgrind
all: kiln
kiln: $(BUILD)/kiln

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(EXTRA_CFLAGS) -c $< -o $@

$(BUILD)/libkiln-core.a: $(CORE_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kiln: $(TOOL_OBJS) $(BUILD)/libkiln-core.a
	$(CC) $(CFLAGS) $(EXTRA_CFLAGS) $(LDFLAGS) -o $@ $(TOOL_OBJS) $(BUILD)/libkiln-core.a $(LDLIBS)

# The same kiln linked statically: no dynamic loader at start (~0.1 ms here, ~40 ms in the test
# bed; docs/benchmarks.md). Sanitizer builds stay dynamic: use `kiln` there.
.PHONY: kiln-static
kiln-static: $(BUILD)/kiln-static
$(BUILD)/kiln-static: $(TOOL_OBJS) $(BUILD)/libkiln-core.a
	$(CC) $(CFLAGS) $(EXTRA_CFLAGS) $(LDFLAGS) -static -o $@ $(TOOL_OBJS) $(BUILD)/libkiln-core.a $(LDLIBS)

# Unit tests: one cmocka binary per tests/unit/test_*.c, linked against the core library.
# tests/unit/fakes.c (if present) holds shared fakes.
UNIT_SUPPORT := $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c))
UNIT_SUPPORT_OBJS := $(UNIT_SUPPORT:%.c=$(BUILD)/obj/%.o)
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(UNIT_SUPPORT_OBJS) $(BUILD)/libkiln-core.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EXTRA_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

unit-build: $(UNIT_BINS)
unit: unit-build
	@tests/run-unit.sh $(BUILD)/tests

# libkiln and the agent's clients under valgrind: no leak, no use of uninitialised memory, in an
# uninstrumented build (ASan's leak check covers every unit test; this is the valgrind one the
# sandbox promises). The agent these tests start runs natively: valgrind turns its
# clone(CLONE_VM | CLONE_VFORK) into a fork, which the agent's spawn cannot work with; make asan
# checks the agent.
VALGRIND_TESTS := test_sandbox_client test_agent_host test_agent_files test_frame \
	test_control_server test_control_codec
valgrind: unit-build
	@for t in $(VALGRIND_TESTS); do \
	    if valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	        --error-exitcode=99 $(BUILD)/tests/$$t >$(BUILD)/tests/$$t.valgrind 2>&1; then \
	        echo "PASS valgrind $$t"; \
	    else cat $(BUILD)/tests/$$t.valgrind; echo "FAIL valgrind $$t"; exit 1; fi; \
	done

# The same unit tests under AddressSanitizer and UndefinedBehaviorSanitizer.
asan:
	$(MAKE) BUILD=build-asan CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" unit

-include $(CORE_OBJS:.o=.d) $(TOOL_OBJS:.o=.d) $(UNIT_BINS:$(BUILD)/tests/%=$(BUILD)/obj/tests/unit/%.d)

# ---- unikernel guests (guest/unikernel, docs/unikernel.md) ------------------------------------
# guest/unikernel/NAME.c -> $(BUILD)/unikernel/NAME.elf: freestanding, static, linked at 1 MiB with
# the tiny runtime in guest/unikernel/rt. badabi.elf and noabi.elf are hello with a wrong Kiln ABI
# note and with none: negative tests of the host's version check.
UK_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude -Iguest/unikernel -ffreestanding \
             -fno-builtin -nostdlib -static -no-pie -fno-pic -mno-red-zone -mcmodel=small \
             -mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables \
             -Wl,--build-id=none -Wl,-z,max-page-size=4096 -Wl,-z,noexecstack \
             -Wl,-T,guest/unikernel/rt/uk.ld
UK_RT := guest/unikernel/rt/start.S guest/unikernel/rt/rt.c
UK_DEPS := $(UK_RT) guest/unikernel/rt/note.c guest/unikernel/rt/rt.h guest/unikernel/rt/uk.ld \
           include/kiln/hvc.h
UK_ELFS := $(patsubst guest/unikernel/%.c,$(BUILD)/unikernel/%.elf,$(wildcard guest/unikernel/*.c)) \
           $(BUILD)/unikernel/badabi.elf $(BUILD)/unikernel/noabi.elf
$(BUILD)/unikernel/%.elf: guest/unikernel/%.c $(UK_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(UK_CFLAGS) -o $@ $(UK_RT) guest/unikernel/rt/note.c $<
$(BUILD)/unikernel/badabi.elf: guest/unikernel/hello.c $(UK_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(UK_CFLAGS) -DUK_NOTE_VERSION=99 -o $@ $(UK_RT) guest/unikernel/rt/note.c $<
$(BUILD)/unikernel/noabi.elf: guest/unikernel/hello.c $(UK_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(UK_CFLAGS) -o $@ $(UK_RT) $<
.PHONY: unikernel-guests
unikernel-guests: $(UK_ELFS)
all: unikernel-guests
integration check: unikernel-guests
# ---- end of unikernel guests -------------------------------------------------------------------

# ---- kiln-agent as a host process (guest/agent, docs/agent-protocol.md) ------------------------
# guest/build.sh builds the guest's static musl binary; this host build of the same sources runs
# as a plain process under tests/unit/test_agent_host.c and test_agent_files.c (make unit, asan).
AGENT_SRCS := $(wildcard guest/agent/*.c) src/sandbox/frame.c
AGENT_DEPS := $(AGENT_SRCS) $(wildcard guest/agent/*.h) src/sandbox/frame.h include/kiln/agent.h
$(BUILD)/agent/kiln-agent-host: $(AGENT_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS_BASE)) $(CFLAGS) $(EXTRA_CFLAGS) $(LDFLAGS) -o $@ $(AGENT_SRCS)
unit-build: $(BUILD)/agent/kiln-agent-host
$(BUILD)/guest/.stamp: $(AGENT_DEPS)
# ---- end of kiln-agent -------------------------------------------------------------------------

# ---- guest image, test bed, integration ------------------------------------------------------
# The default guest image (kernel cached under ~/.cache/kiln by a hash of its inputs).
guest: $(BUILD)/guest/.stamp
$(BUILD)/guest/.stamp: $(wildcard guest/build.sh guest/kernel/* guest/initramfs/* guest/fetch/*) \
                        include/kiln/fileservice.h
	guest/build.sh $(BUILD)/guest
	@touch $@

# Static test programs for the guest side of integration tests (vsock peers, data checkers):
# tests/guest/NAME.c -> $(BUILD)/guest-tests/NAME, packed into a test initrd by run.sh.
GUEST_TEST_BINS := $(patsubst tests/guest/%.c,$(BUILD)/guest-tests/%,$(wildcard tests/guest/*.c))
$(BUILD)/guest-tests/%: tests/guest/%.c $(wildcard tests/guest/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS_BASE)) -O2 -static -o $@ $< $(LDLIBS)
# nop is the smallest static program (bench/sandbox): musl when available, as the agent is.
$(BUILD)/guest-tests/nop: tests/guest/nop.c
	@mkdir -p $(dir $@)
	$(if $(shell command -v musl-gcc),musl-gcc,$(CC)) -std=c11 -Wall -Wextra -Werror -Os -static -s -o $@ $<
guest-tests: $(GUEST_TEST_BINS)

deps:
	scripts/deps.sh

testbed:
	tests/testbed/build.sh

# Integration tests: on this host's KVM when `kiln doctor` says it can run Linux guests, else in
# the test bed (KILN_TESTBED=always|never|auto overrides). Host-side tests always run here.
integration: kiln guest guest-tests
	tests/integration/run.sh

check: kiln unit asan valgrind guest guest-tests lint
	$(MAKE) fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-15}
	tests/integration/run.sh
	@echo "check: all suites passed"

demo: deps
	$(MAKE) kiln guest
	scripts/demo.sh

# Benchmarks (docs/benchmarks.md). The harness is static: the test bed has no glibc of its own.
BENCH_SRCS := $(wildcard bench/boot/*.c)
$(BUILD)/bench/bootbench: $(BENCH_SRCS) $(wildcard bench/boot/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS_BASE)) $(CFLAGS) -static -o $@ $(BENCH_SRCS) -lm

bench: kiln guest $(BUILD)/bench/bootbench
	BUILD=$(BUILD) bench/boot/run.sh

bench-virtio: kiln guest guest-tests
	BUILD=$(BUILD) bench/virtio/run.sh

# The sandbox benchmark (bench/sandbox, docs/sandbox.md): libkiln linked statically.
$(BUILD)/bench/sandboxbench: bench/sandbox/sandboxbench.c $(BUILD)/libkiln-core.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS_BASE)) $(CFLAGS) -static -o $@ $^ $(LDLIBS)

bench-unikernel: kiln kiln-static unikernel-guests guest
	BUILD=$(BUILD) bench/unikernel/run.sh

bench-sandbox: kiln guest guest-tests $(BUILD)/bench/sandboxbench
	BUILD=$(BUILD) bench/sandbox/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

lint:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	    --suppress=missingIncludeSystem -Iinclude -Isrc -D__x86_64__ src tools

FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
$(BUILD)/fuzz/%: tests/fuzz/%.c $(CORE_SRCS)
	@mkdir -p $(dir $@)
	clang $(filter-out -MMD -MP,$(CFLAGS_BASE)) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wno-gnu-variable-sized-type-not-at-end $< $(CORE_SRCS) -o $@ $(LDLIBS)

# Each fuzz target runs for FUZZ_SECONDS (default 30).
FUZZ_SECONDS ?= 30
fuzz: $(FUZZ_TARGETS)
	@for f in $(FUZZ_TARGETS); do echo "fuzz: $$f"; mkdir -p $(BUILD)/fuzz/corpus-$$(basename $$f); \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $(BUILD)/fuzz/corpus-$$(basename $$f) || exit 1; done

clean:
	rm -rf $(BUILD) build-asan
