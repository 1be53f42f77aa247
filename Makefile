# pspkd — build, test, bench, install.
#   make                 build/libpspkd.a (from lib/*/*.c) and bin/<tool> for every tools/*.c
#   make check           C unit tests, then a Bats file per tool
#   make SANITIZE=1 check  the same under ASan+UBSan (objects in build-san/)
#   make CUDA=1          also the CUDA twins (*.cu); on by default when nvcc is found
#                        (CUDA=0 to leave them out); MPI=1 data-parallel training
#                        under mpirun (on when Open MPI is found); STATIC_DEPS=1 links LMDB,
#                        libpng, libjpeg and zlib statically (for a GPU machine without them)
#   make demo            the whole pipeline on the embedded synthetic set
#   make bench           model + data benchmarks (PyTorch/OpenCV side when installed)
#   make bench-ops       op-level GFLOP/s against oneDNN's sgemm
#   make bench-gpu       on a GPU machine: CUDA build, GPU op/step checks, GPU benchmark
#                        next to PyTorch (scripts/bench-gpu)
#   make fuzz-build      libFuzzer harnesses (fuzz/fuzz_*.c) with clang-14, ASan and UBSan,
#                        into build-fuzz/ (the library rebuilt there with
#                        -fsanitize=address,undefined,fuzzer-no-link; no CUDA)
#   make fuzz            build, then run each harness on its corpus fuzz/corpus/<name>/ for
#                        FUZZ_SECONDS (default 60) seconds, one after another; new inputs
#                        go to build-fuzz/corpus/<name>/, crashes to build-fuzz/crash/<name>/;
#                        FUZZ_RUNS bounds the executions, FUZZ_ONLY picks harnesses
#   make fuzz-corpus     rewrites the seeds in fuzz/corpus/ (fuzz/gen_corpus.c)
#   make install PREFIX=/usr/local
VERSION := 0.1.0
PREFIX  ?= /usr/local
CC      ?= gcc
ifeq ($(CC),cc)
CC := gcc
endif

OPT      ?= -O2 -march=native
CFLAGS   ?= $(OPT)
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -g -MMD -MP \
            -DPSPKD_VERSION='"$(VERSION)"' -Ilib
LDFLAGS  += -fopenmp
LDLIBS   += -ldnnl -llmdb -lpng -lz -ljpeg -lcjson -lpthread -lm

ifeq ($(SANITIZE),1)
O        := build-san
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
BIN      := build-san/bin
else
O        := build
BIN      := bin
endif

# CUDA defaults to on when nvcc is found (not under SANITIZE: ASan and the
# CUDA driver do not mix).
NVCC     ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
ifeq ($(SANITIZE),1)
CUDA     ?= 0
else
CUDA     ?= $(if $(NVCC),1,0)
endif
ifeq ($(STATIC_DEPS),1)
STATIC_LIBS := -Wl,-Bstatic -llmdb -lpng16 -lz -ljpeg -Wl,-Bdynamic
LDLIBS   := $(subst -llmdb -lpng -lz -ljpeg,$(STATIC_LIBS),$(LDLIBS))
endif
ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVFLAGS   ?= -O2 -std=c++17 -Ilib -DPSPKD_CUDA -MMD -MP \
             -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90 -Xcompiler -Wall,-Werror
CFLAGS   += -DPSPKD_CUDA -I$(CUDA_HOME)/include
LDLIBS   += -L$(CUDA_HOME)/lib64 -lcudnn -lcudart_static -ldl -lrt -lstdc++
LDFLAGS  += -Wl,-rpath,$(CUDA_HOME)/lib64
CU_SRC   := $(wildcard lib/*/*.cu)
endif

# MPI (data-parallel training over pk_comm, lib/core/comm_mpi.c) defaults to
# on when Open MPI's pkg-config file or its mpicc wrapper is found (MPI=0 to
# leave it out; off under SANITIZE: ASan reports MPI's own allocations). The
# tools then link libmpi but touch it only when started by mpirun. NCCL
# (lib/core/comm_nccl.cu) comes with CUDA=1 MPI=1 when nccl.h is found.
MPICC    ?= $(shell command -v mpicc 2>/dev/null)
ifeq ($(SANITIZE),1)
MPI      ?= 0
else
MPI      ?= $(if $(or $(MPICC),$(shell pkg-config --exists ompi-c 2>/dev/null && echo y)),1,0)
endif
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null || $(MPICC) --showme:compile)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null || $(MPICC) --showme:link)
CFLAGS   += -DPSPKD_MPI $(MPI_CFLAGS)
LDLIBS   += $(MPI_LIBS)
ifeq ($(CUDA),1)
NCCL     ?= $(if $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),1,0)
endif
endif
ifeq ($(NCCL),1)
CFLAGS   += -DPSPKD_NCCL
NVFLAGS  += -DPSPKD_NCCL
LDLIBS   += -lnccl
endif

# Objects depend on the configuration, so switching CUDA, MPI, STATIC_DEPS or
# OPT rebuilds (and relinks) instead of mixing old and new objects.
CONFIG   := $(O)/config.stamp
CFG_NOW  := CUDA=$(CUDA) MPI=$(MPI) NCCL=$(NCCL) STATIC_DEPS=$(STATIC_DEPS) OPT=$(OPT)
$(shell mkdir -p $(O) && { [ "$$(cat $(CONFIG) 2>/dev/null)" = "$(CFG_NOW)" ] || \
    echo "$(CFG_NOW)" > $(CONFIG); })

# lib/ is in rooms (core ops model store data train cli); see pspkd(7).
# lib/export/ (the ONNX writer) needs protobuf-c and goes into its own
# library, linked only into seg-export.
LIB_SRC  := $(filter-out lib/export/%,$(wildcard lib/*/*.c))
ifneq ($(MPI),1)
LIB_SRC  := $(filter-out lib/core/comm_mpi.c,$(LIB_SRC))
endif
ifneq ($(NCCL),1)
CU_SRC   := $(filter-out lib/core/comm_nccl.cu,$(CU_SRC))
endif
LIB_OBJ  := $(LIB_SRC:lib/%.c=$(O)/lib/%.o) $(CU_SRC:lib/%.cu=$(O)/lib/%.cu.o)
LIB      := $(O)/libpspkd.a
TOOLS    := $(patsubst tools/%.c,$(BIN)/%,$(wildcard tools/*.c))

# seg-export: built when protobuf-c (Debian libprotobuf-c-dev and
# protobuf-c-compiler) is installed; otherwise left out, and scripts/check-deps
# names the packages. The C for ONNX's schema (third_party/onnx/onnx.proto)
# is generated at build time.
PROTOC_C ?= $(shell command -v protoc-c 2>/dev/null)
HAVE_ONNX := $(if $(and $(PROTOC_C),$(wildcard /usr/include/protobuf-c/protobuf-c.h)),1)
EXPORT_LIB := $(O)/libpspkd-export.a
EXPORT_OBJ := $(patsubst lib/%.c,$(O)/lib/%.o,$(wildcard lib/export/*.c)) $(O)/gen/onnx.pb-c.o
ifneq ($(HAVE_ONNX),1)
TOOLS    := $(filter-out $(BIN)/seg-export,$(TOOLS))
endif
TEST_SUP := $(patsubst tests/%.c,$(O)/tests/%.o,$(wildcard tests/support_*.c))
TESTS    := $(patsubst tests/%.c,$(O)/tests/%,$(wildcard tests/test_*.c))
# Small programs the Bats files call (tests/helper_*.c), so that no test
# depends on an outside tool that merely has the right name.
HELPERS  := $(patsubst tests/%.c,$(O)/tests/%,$(wildcard tests/helper_*.c))
BENCHES  := $(patsubst bench/%.c,$(O)/bench/%,$(wildcard bench/*.c))

# The tests and benches run with the environment's OpenBLAS core type pinned
# (older OpenBLAS misbehaves on this CPU otherwise).
export OPENBLAS_CORETYPE ?= Haswell

.PHONY: fuzz fuzz-build fuzz-corpus
.PHONY: all deps check check-c check-bats demo bench bench-ops bench-gpu install clean man-lint
all: deps $(LIB) $(TOOLS)

deps:
	@scripts/check-deps

$(O)/lib/%.o: lib/%.c $(CONFIG) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(O)/lib/%.cu.o: lib/%.cu $(CONFIG) | deps
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@
$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(O)/gen/onnx.pb-c.c $(O)/gen/onnx.pb-c.h &: third_party/onnx/onnx.proto
	@mkdir -p $(O)/gen
	$(PROTOC_C) --c_out=$(O)/gen -Ithird_party/onnx third_party/onnx/onnx.proto
$(O)/gen/onnx.pb-c.o: $(O)/gen/onnx.pb-c.c $(CONFIG)
	$(CC) $(CFLAGS) -I$(O)/gen -c $< -o $@
$(O)/lib/export/%.o: lib/export/%.c $(O)/gen/onnx.pb-c.h $(CONFIG) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -I$(O)/gen -c $< -o $@
$(EXPORT_LIB): $(EXPORT_OBJ)
	rm -f $@ && ar rcs $@ $^
$(BIN)/seg-export: $(O)/tools/seg-export.o $(EXPORT_LIB) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS) -lprotobuf-c
$(O)/tools/%.o: tools/%.c $(CONFIG) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(BIN)/%: $(O)/tools/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
$(O)/tests/%.o: tests/%.c $(CONFIG) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -c $< -o $@
$(O)/tests/test_%: $(O)/tests/test_%.o $(TEST_SUP) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
$(O)/tests/helper_%: $(O)/tests/helper_%.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
$(O)/bench/%.o: bench/%.c $(CONFIG) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -c $< -o $@
$(O)/bench/%: $(O)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

check: all $(TESTS) $(HELPERS)
	@scripts/check-deps --test
	@scripts/run-tests $(O)/tests $(BIN)

demo: all
	@scripts/check-deps --demo
	$(MAKE) -C pipelines demo BIN=$(CURDIR)/$(BIN)

bench: all $(BENCHES)
	@scripts/bench $(O)/bench $(BIN)

bench-ops: all $(O)/bench/bench_ops
	$(O)/bench/bench_ops

bench-gpu:
	@scripts/bench-gpu

man-lint:
	@for m in man/man*/*.[1-9]; do mandoc -Tlint -Wwarning $$m || exit 1; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin
	for s in 1 5 7; do \
	    install -m 644 man/man$$s/*.$$s $(DESTDIR)$(PREFIX)/share/man/man$$s || exit 1; done

# ---- fuzzing (make fuzz, make fuzz-build): not part of `make check` ----
# Its own compiler, flags and object folder, so build/ and build-san/ are
# left alone. The library is compiled as the tools' is (OpenMP through
# clang's libomp), CUDA off; each harness links the archive, which brings in
# only the objects it uses.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
# -1: no bound on executions; FUZZ_RUNS=10000000 FUZZ_SECONDS=1800 is the
# "10 million executions or 30 minutes, whichever first" of a long run
FUZZ_RUNS    ?= -1
FUZZ_TIMEOUT ?= 10
# the harnesses that read a path write each input there: a tmpfs when there
# is one (about 13x the executions per second of a disk-backed /tmp)
FUZZ_TMPDIR  ?= $(if $(wildcard /dev/shm/.),/dev/shm,$(or $(TMPDIR),/tmp))
FZ           := build-fuzz
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-pass-failed -fopenmp -g -O1 \
                -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined -DPSPKD_VERSION='"$(VERSION)"' -Ilib
FUZZ_LDLIBS  := -ldnnl -llmdb -lpng -lz -ljpeg -lcjson -lpthread -lm
FUZZ_NAMES   := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
# make fuzz FUZZ_ONLY="png jpeg": a subset
FUZZ_ONLY    ?= $(FUZZ_NAMES)
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FZ)/fuzz_%)
FUZZ_LIB     := $(FZ)/libpspkd-fuzz.a
# (one process: the MPI communicator needs mpicc's flags and no parser uses it)
FUZZ_OBJ     := $(patsubst lib/%.c,$(FZ)/lib/%.o,$(filter-out lib/core/comm_mpi.c,$(LIB_SRC)))

$(FZ)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(FUZZ_LIB): $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^
$(FZ)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -fopenmp $< $(FUZZ_LIB) -o $@ $(FUZZ_LDLIBS)

fuzz-build: $(FUZZ_BINS)

# The seeds in fuzz/corpus/ come from this program (valid inputs written by
# the library itself); rerun it when a format changes, then commit them.
fuzz-corpus: $(O)/fuzz/gen_corpus
	$(O)/fuzz/gen_corpus
$(O)/fuzz/gen_corpus: fuzz/gen_corpus.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB) -o $@ $(LDLIBS)

# Each harness in turn: its seed corpus read-only, new inputs into
# build-fuzz/corpus/<name>, any crash, leak or timeout into
# build-fuzz/crash/<name>/ and a failing make.
fuzz: fuzz-build
	@for n in $(FUZZ_ONLY); do \
	    mkdir -p $(FZ)/corpus/$$n $(FZ)/crash/$$n || exit 1; \
	    echo "fuzz_$$n: $(FUZZ_SECONDS) s"; \
	    TMPDIR=$(FUZZ_TMPDIR) $(FZ)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -rss_limit_mb=2048 \
	        -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
	        -artifact_prefix=$(FZ)/crash/$$n/ $(FZ)/corpus/$$n fuzz/corpus/$$n \
	        2>$(FZ)/fuzz_$$n.log || { tail -n 40 $(FZ)/fuzz_$$n.log; exit 1; }; \
	    grep -E '^(stat::number_of_executed_units|#[0-9]+.*DONE)' $(FZ)/fuzz_$$n.log; \
	done

clean:
	rm -rf build build-san build-fuzz bin

-include $(shell find $(O) -name '*.d' 2>/dev/null)
ifneq ($(filter fuzz fuzz-build build-fuzz/%,$(MAKECMDGOALS)),)
-include $(shell find $(FZ) -name '*.d' 2>/dev/null)
endif
