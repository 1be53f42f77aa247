# pipelines/unlabeled.mk, included by pipelines/Makefile: images nobody
# labelled (issue #15). Defines KD_UNL / KD_UNL_IN (the KD student's extra
# options and inputs), the val/train id overlap check of the voc pipeline,
# and the study-unlabeled skeleton on the demo's synthetic set.

UNLABELED    ?= 0
UNL_RATIO    ?= 0.5
UNL_FRACTION ?= 0.25
# the study's students: steps, and epochs (of the labelled pack) between
# validations in their logs (S_VAL_EVERY's 1 validates every 5 steps: give
# a long run more, e.g. UNL_ITERS=600 UNL_VAL_EVERY=20)
UNL_ITERS     ?= 40
UNL_VAL_EVERY ?= $(S_VAL_EVERY)

# teacher-dump through a partial file that survives an interrupt, renamed
# onto the cache at the end (as logits.lmdb in the Makefile).
# $(1) the cache, $(2) the pack, $(3) the frozen teacher, $(4) the stage name
define dump_cache
$(1): $(2) $(3)
	@if [ -e $(1:.lmdb=-partial.lmdb) ] && [ $(3) -nt $(1:.lmdb=-partial.lmdb) ]; \
	then echo "rm -f $(1:.lmdb=-partial.lmdb)  # from an older teacher"; rm -f $(1:.lmdb=-partial.lmdb); fi
	$$(call run,$(4),teacher-dump) -q -m $(3) -d $(2) -o $(1:.lmdb=-partial.lmdb) $$(MACHINE) >/dev/null
	mv $(1:.lmdb=-partial.lmdb) $(1)
endef

ifeq ($(PIPE),voc)
ifneq ($(strip $(VOC_ROOT)),)
# ---- voc: UNLABELED=1 --------------------------------------------------------
# The ids of a list file, of id lines or of semseg's 'image label' pairs.
LIST_IDS = awk '{ f = $$1; sub(/.*\//, "", f); sub(/\.[^.]*$$/, "", f); if (f != "") print f }'
TRAIN_IDS_FROM = $(or $(LIST),$(VOC_ROOT)/ImageSets/Segmentation/train.txt)
VAL_IDS_FROM   = $(or $(VAL_LIST),$(VOC_ROOT)/ImageSets/Segmentation/val.txt)

$(OUT)/unlabeled.txt: $(TRAIN_IDS_FROM) $(VAL_IDS_FROM) | $(OUT)
	$(LIST_IDS) $(TRAIN_IDS_FROM) $(VAL_IDS_FROM) >$@.used
	ls $(VOC_ROOT)/JPEGImages | sed -n 's/\.jpg$$//p' | \
	    awk 'NR == FNR { used[$$0] = 1; next } !($$0 in used)' $@.used - >$@.tmp
	rm -f $@.used
	mv $@.tmp $@
$(OUT)/unlabeled.lmdb: $(OUT)/unlabeled.txt
	$(call run,voc-pack-unlabeled,voc-pack) -f -j $(JOBS) --unlabeled $(VOC_ROOT) --list $< -o $@
$(eval $(call dump_cache,$(OUT)/unlabeled-logits.lmdb,$(OUT)/unlabeled.lmdb,$(OUT)/teacher.safetensors,teacher-dump-unlabeled))

ifeq ($(UNLABELED),1)
KD_UNL    = --unlabeled $(OUT)/unlabeled.lmdb:$(OUT)/unlabeled-logits.lmdb --unlabeled-ratio $(UNL_RATIO)
KD_UNL_IN = $(OUT)/unlabeled.lmdb $(OUT)/unlabeled-logits.lmdb
TRAIN_PACKS = $(OUT)/train.lmdb $(OUT)/unlabeled.lmdb
else
TRAIN_PACKS = $(OUT)/train.lmdb
endif
# student-kd is remade when UNLABELED or UNL_RATIO changes
KD_UNL_STAMP := $(OUT)/student-kd.unl
$(shell mkdir -p $(OUT) && { [ "$$(cat $(KD_UNL_STAMP) 2>/dev/null)" = "$(KD_UNL)" ] || \
    echo "$(KD_UNL)" > $(KD_UNL_STAMP); })
KD_UNL_IN += $(KD_UNL_STAMP)

# No val image in any training pack, labelled or not: checked before any
# training (order-only: an existing model is not remade for it).
$(OUT)/overlap.ok: $(OUT)/val.lmdb $(TRAIN_PACKS)
	$(BIN)/voc-show overlap $(OUT)/val.lmdb $(TRAIN_PACKS) >$@.tmp || \
	    { echo "voc: val images in a training pack (listed in $@.tmp)" >&2; exit 1; }
	mv $@.tmp $@
$(OUT)/teacher-train.safetensors $(OUT)/student-nokd.safetensors \
$(OUT)/student-kd.safetensors: | $(OUT)/overlap.ok
endif
endif

ifeq ($(PIPE),demo)
# ---- study-unlabeled: a quarter of the labels, the rest unlabelled -------------
# In OUT/unlabeled/: lab.txt / rest.txt (split-list.sh of the synthetic train
# list), lab.lmdb (labelled) and unl.lmdb (voc-pack --unlabeled), overlap.ok
# (voc-show overlap against val), a teacher trained on lab.lmdb alone
# (teacher.csv, teacher.safetensors), its caches lab-logits.lmdb and
# unl-logits.lmdb, and per variant and seed VARIANT-sSEED.{safetensors,csv,
# eval.json}; study.txt / study.png from study.sh, the first variant being
# the baseline. Each variant needs a unl_opts_NAME; unl_pack_NAME is its
# labelled pack when not lab.lmdb (nokd-all: every label, the upper bound).
UNL_DIR      := $(OUT)/unlabeled
UNL_VARIANTS ?= nokd kd kd-unl nokd-all
UNL_SEEDS    ?= $(or $(STUDY_SEEDS),1 2 3)
unl_opts_nokd   := --no-kd
unl_opts_kd     := -l $(UNL_DIR)/lab-logits.lmdb
unl_opts_kd-unl := -l $(UNL_DIR)/lab-logits.lmdb \
                   --unlabeled $(UNL_DIR)/unl.lmdb:$(UNL_DIR)/unl-logits.lmdb \
                   --unlabeled-ratio $(UNL_RATIO)
unl_opts_nokd-all := --no-kd
unl_pack_nokd-all := $(OUT)/train.lmdb
UNL_RUNS := $(foreach v,$(UNL_VARIANTS),$(foreach s,$(UNL_SEEDS),unlabeled/$(v)-s$(s)))
# the students are remade when UNL_ITERS changes: the stamp records it,
# rewritten (so newer) only when the study runs with another value
UNL_SCHED_STAMP := $(UNL_DIR)/students.iters
ifneq ($(filter study-unlabeled-report,$(MAKECMDGOALS)),)
$(shell [ "$$(cat $(UNL_SCHED_STAMP) 2>/dev/null)" = "$(UNL_ITERS)" ] || \
    { mkdir -p $(UNL_DIR) && echo "$(UNL_ITERS)" > $(UNL_SCHED_STAMP); })
endif
$(UNL_SCHED_STAMP):
	mkdir -p $(@D)
	echo "$(UNL_ITERS)" >$@

$(UNL_DIR)/lab.txt: $(SYNTH)/ImageSets/Segmentation/val.txt
	mkdir -p $(UNL_DIR)
	$(HERE)/split-list.sh -f $(UNL_FRACTION) $(SYNTH)/ImageSets/Segmentation/train.txt \
	    $@ $(UNL_DIR)/rest.txt
$(UNL_DIR)/rest.txt: $(UNL_DIR)/lab.txt
$(UNL_DIR)/lab.lmdb: $(UNL_DIR)/lab.txt
	$(call run,voc-pack,voc-pack,$(UNL_DIR)/timings.tsv) -q -f $(SYNTH) --list $< -o $@
$(UNL_DIR)/unl.lmdb: $(UNL_DIR)/rest.txt
	$(call run,voc-pack,voc-pack,$(UNL_DIR)/timings.tsv) -q -f --unlabeled $(SYNTH) --list $< -o $@
$(UNL_DIR)/overlap.ok: $(OUT)/val.lmdb $(UNL_DIR)/lab.lmdb $(UNL_DIR)/unl.lmdb
	$(BIN)/voc-show overlap $^ >$@.tmp
	mv $@.tmp $@

$(UNL_DIR)/teacher-train.safetensors: $(UNL_DIR)/lab.lmdb $(OUT)/val.lmdb | $(UNL_DIR)/overlap.ok
	mkdir -p $(UNL_DIR)/teacher.ckpt
	$(call run,teacher-train,teacher-train,$(UNL_DIR)/timings.tsv) \
	    $(call TRAIN,unlabeled/teacher,$(VAL_EVERY),,$(UNL_DIR)/lab.lmdb,$(T_BATCH)) --arch $(T_ARCH) \
	    $(T_SCHED) --lr $(T_LR) $(if $(IMAGENET),--init $(IMAGENET)) $(T_OPTS) -o $@
	rm -rf $(UNL_DIR)/teacher.ckpt
$(UNL_DIR)/teacher.safetensors: $(UNL_DIR)/teacher-train.safetensors
	$(call run,freeze,teacher-train,$(UNL_DIR)/timings.tsv) --freeze-only $< -o $@
$(eval $(call dump_cache,$(UNL_DIR)/lab-logits.lmdb,$(UNL_DIR)/lab.lmdb,$(UNL_DIR)/teacher.safetensors,teacher-dump))
$(eval $(call dump_cache,$(UNL_DIR)/unl-logits.lmdb,$(UNL_DIR)/unl.lmdb,$(UNL_DIR)/teacher.safetensors,teacher-dump-unl))

# $(1) variant, $(2) seed
define unl_run
$(UNL_DIR)/$(1)-s$(2).safetensors: S_ITERS := $(UNL_ITERS)
$(UNL_DIR)/$(1)-s$(2).safetensors: S_VAL_EVERY := $(UNL_VAL_EVERY)
$(UNL_DIR)/$(1)-s$(2).safetensors: $(UNL_DIR)/lab.lmdb $(OUT)/val.lmdb $(UNL_DIR)/lab-logits.lmdb \
        $(UNL_DIR)/unl-logits.lmdb $(UNL_SCHED_STAMP)
	mkdir -p $(UNL_DIR)/$(1)-s$(2).ckpt
	$$(call run,$(1)-s$(2),student-distill,$(UNL_DIR)/timings.tsv) $$(unl_opts_$(1)) \
	    $$(call STUDENT,unlabeled/$(1)-s$(2),$(2),$$(or $$(unl_pack_$(1)),$(UNL_DIR)/lab.lmdb)) -o $$@
	rm -rf $(UNL_DIR)/$(1)-s$(2).ckpt
endef
$(foreach v,$(UNL_VARIANTS),$(foreach s,$(UNL_SEEDS),$(eval $(call unl_run,$(v),$(s)))))

$(UNL_DIR)/study.txt: $(UNL_RUNS:%=$(OUT)/%.eval.json) $(UNL_DIR)/teacher.eval.json
	{ printf 'teacher (on lab.lmdb alone): mIoU (present) %s\n' \
	      "$$(tr -d '\n' <$(UNL_DIR)/teacher.eval.json | \
	          sed -n 's/.*"miou_present": \([-0-9.eE+]*\).*/\1/p')"; \
	  $(HERE)/study.sh -o $(UNL_DIR)/study.png \
	      -t "$(TITLE): $(UNL_FRACTION) of the labels, the rest unlabelled" \
	      $(UNL_DIR) $(UNL_VARIANTS); } >$@.tmp
	mv $@.tmp $@

study-unlabeled-report: $(UNL_DIR)/study.txt
	@echo
	@cat $<
	@echo "chart: $(UNL_DIR)/study.png; logs and models: $(UNL_DIR)/"
endif
