#!/usr/bin/env bats
# pipelines/Makefile (demo at a toy scale), table.sh, timed.sh and
# scripts/model-stats.

load common

setup() {
    ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
    OUT="$BATS_TEST_TMPDIR/demo"
    # The demo at a toy scale: one step per trainer on 33x33 images.
    TOY=(OUT="$OUT" BIN="$PSPKD_BIN" THREADS=1 SYNTH_TRAIN=4 SYNTH_VAL=2 SYNTH_SIZE=33
         CROP=33 BATCH=2 T_BATCH=2 T_ITERS=1 S_ITERS=1 BASE_SIZE=33 EVAL_CROP=33 PREDICT_N=1)
}

# The number of lines timed.sh wrote, i.e. tool runs so far.
runs() { wc -l <"$OUT/timings.tsv"; }

@test "timed.sh: records the stage and passes the status through" {
    run "$ROOT/pipelines/timed.sh" "$BATS_TEST_TMPDIR/t.tsv" stage-a sh -c 'echo out; exit 3'
    assert_failure 3
    assert_output out
    run cat "$BATS_TEST_TMPDIR/t.tsv"
    assert_output --regexp $'^stage-a\t[0-9]+\\.[0-9]{2}\t[0-9]+\\.[0-9]{2}\t[0-9]+\\.[0-9]{2}\t3$'
    run "$ROOT/pipelines/timed.sh" "$BATS_TEST_TMPDIR/t.tsv"
    assert_failure 2
}

@test "voc: refuses to start without VOC_ROOT" {
    run make -s -C "$ROOT/pipelines" voc OUT="$BATS_TEST_TMPDIR/voc"
    assert_failure
    assert_output --partial 'set VOC_ROOT'
    [ ! -e "$BATS_TEST_TMPDIR/voc" ]
}

@test "demo: every stage, the table, then nothing to redo; a removed stage is redone alone; model-stats" {
    run make -s -C "$ROOT/pipelines" demo "${TOY[@]}"
    assert_success
    assert_output --partial 'pspkd demo (synthetic set): 2 val images'
    assert_line --regexp '^teacher +resnet50 +[0-9.]+ +[0-9.]+ +49\.08M +2\.32 '
    assert_line --regexp '^student, no KD +resnet18 +[0-9.]+ +[0-9.]+ +16\.47M +0\.82 '
    assert_line --regexp '^student, KD +resnet18 +[0-9.]+ +[0-9.]+ +16\.47M +0\.82 '
    assert_line --regexp '^distillation: [-+][0-9.]+ mIoU over the plain student: '
    assert_line --regexp '^teacher-dump: 4 images \(4 computed'
    assert_line --regexp '^  total +[0-9.]+ +[0-9.]+'
    for f in train.lmdb val.lmdb teacher.safetensors logits.lmdb logits.json \
             student-nokd.safetensors student-kd.safetensors teacher.eval.json table.txt \
             pred/teacher/synth_000004.png pred/student-kd/synth_000004_overlay.png \
             pred/truth/synth_000004.png; do
        [ -s "$OUT/$f" ] || fail "missing $f"
    done
    # Checkpoint dirs go once the model is written; no partial cache is left.
    [ ! -e "$OUT/teacher.ckpt" ] && [ ! -e "$OUT/logits-partial.lmdb" ]
    # The distilled student as ONNX, when seg-export is built.
    if [ -x "$PSPKD_BIN/seg-export" ]; then
        [ -s "$OUT/student-kd.onnx" ] || fail "missing student-kd.onnx"
        assert_line --regexp "^ONNX: $OUT/student-kd.onnx \(the distilled student for ONNX runtimes, seg-export: opset 13, BatchNorm folded, [0-9.]+ MB\)\$"
        assert_line "ONNX: $OUT/student-kd.onnx (the distilled student, seg-export(1))"
        [ ! -e "$OUT/student-kd.frozen.tmp" ]
    fi
    if gnuplot --version 2>/dev/null | grep -q "^gnuplot [0-9]"; then [ -s "$OUT/plots/loss.png" ]; fi
    n=$(runs)

    run make -s -C "$ROOT/pipelines" demo "${TOY[@]}"
    assert_success
    assert_line --regexp '^student, KD '
    [ "$(runs)" = "$n" ] || fail "an up-to-date demo ran tools again"

    rm "$OUT/student-kd.safetensors"
    run make -s -C "$ROOT/pipelines" demo "${TOY[@]}"
    assert_success
    run sh -c "tail -n +$((n + 1)) '$OUT/timings.tsv' | cut -f1 | sort"
    if [ -x "$PSPKD_BIN/seg-export" ]; then
        assert_output $'eval-student-kd\nexport-student-kd\nfreeze-student-kd\npredict-student-kd\nstudent-kd'
    else
        assert_output $'eval-student-kd\npredict-student-kd\nstudent-kd'
    fi

    # model-stats on the demo's models.
    # The constants were checked against pk_model_num_params's tensors and
    # pk_model_flops (train forward with the aux head) at 473 and 97.
    run "$ROOT/scripts/model-stats" -a -s 473 "$OUT/teacher.safetensors" "$OUT/student-kd.safetensors"
    assert_success
    assert_line --index 0 "$OUT/teacher.safetensors resnet50 deep 49081578 340.300"
    assert_line --index 1 "$OUT/student-kd.safetensors resnet18 7x7 16467946 120.706"
    run "$ROOT/scripts/model-stats" -a -s 97 "$OUT/teacher.safetensors"
    assert_output "$OUT/teacher.safetensors resnet50 deep 49081578 16.001"
    run "$ROOT/scripts/model-stats" -s 473 "$OUT/student-kd.safetensors"
    assert_output "$OUT/student-kd.safetensors resnet18 7x7 16467946 118.563"
    run "$ROOT/scripts/model-stats" -s 64 "$OUT/teacher.safetensors"
    assert_failure 2
    run "$ROOT/scripts/model-stats" "$OUT/teacher.csv"
    assert_failure 1
}

@test "demo: without seg-export (no protobuf-c) it runs and says the ONNX file is not written" {
    local bin="$BATS_TEST_TMPDIR/bin"
    mkdir "$bin"
    for t in "$PSPKD_BIN"/*; do
        [ "$(basename "$t")" = seg-export ] || ln -s "$t" "$bin/"
    done
    run make -s -C "$ROOT/pipelines" demo "${TOY[@]}" BIN="$bin" T_ARCH=resnet18
    assert_success
    assert_line --regexp '^student, KD +resnet18 '
    assert_line "ONNX: not written (seg-export is not built: it needs libprotobuf-c-dev and protobuf-c-compiler)"
    refute_output --partial "ONNX: $OUT"
    [ ! -e "$OUT/student-kd.onnx" ]
}

@test "demo: a teacher interrupted after a checkpoint resumes from it" {
    mkdir -p "$OUT"
    # Stop the teacher as soon as its first checkpoint exists.
    # A ResNet18 teacher: the same code path with smaller checkpoints.
    make -s -C "$ROOT/pipelines" demo "${TOY[@]}" T_ARCH=resnet18 T_ITERS=6 CKPT_EVERY=2 \
        >"$BATS_TEST_TMPDIR/log" 2>&1 &
    for _ in $(seq 600); do
        ls "$OUT/teacher.ckpt" 2>/dev/null | grep -q step- && break
        sleep 0.1
    done
    # Only the trainer of this test: its command line starts with its path
    # and names this test's own directory.
    pid=$(pgrep -f -- "^$PSPKD_BIN/teacher-train -d $OUT/train.lmdb") && kill -TERM $pid || true
    wait || true
    [ -e "$OUT/teacher.ckpt" ] || fail "no checkpoint dir: $(cat "$BATS_TEST_TMPDIR/log")"
    [ ! -e "$OUT/teacher-train.safetensors" ] || skip "the teacher finished before the signal"
    run make -C "$ROOT/pipelines" demo "${TOY[@]}" T_ARCH=resnet18 T_ITERS=6 CKPT_EVERY=2
    assert_success
    assert_output --regexp 'teacher-train: resuming from .*/teacher\.ckpt/step-0+[1-6]\.safetensors'
    # The log holds each step once.
    run awk -F, 'NR > 1 && $3 != "" { print $1 }' "$OUT/teacher.csv"
    assert_output "$(seq 6)"
}

# ---- images nobody labelled ------------------------------------------------

@test "split-list.sh: the first quarter and the rest; empty parts and bad fractions refused" {
    local S="$ROOT/pipelines/split-list.sh" T="$BATS_TEST_TMPDIR"
    printf 'a\nb\n\nc\nd\ne\nf\ng\nh\n' >"$T/l.txt"
    run "$S" "$T/l.txt" "$T/q.txt" "$T/r.txt"
    assert_success
    assert_equal "$(cat "$T/q.txt")" $'a\nb'
    assert_equal "$(cat "$T/r.txt")" $'c\nd\ne\nf\ng\nh'
    run "$S" -f 0.5 "$T/l.txt" "$T/q.txt" "$T/r.txt"
    assert_equal "$(wc -l <"$T/q.txt")" 4
    run "$S" -f 0.01 "$T/l.txt" "$T/q2.txt" "$T/r2.txt"
    assert_failure 1
    assert_output --partial 'leave an empty part'
    run "$S" -f x "$T/l.txt" "$T/q2.txt" "$T/r2.txt"
    assert_failure 2
    [ ! -e "$T/q2.txt" ] && [ ! -e "$T/r2.txt" ]
}

@test "study-unlabeled: UNL_ITERS sets the students' steps; the stamp they depend on follows it" {
    local P=(-C "$ROOT/pipelines" -f "$ROOT/pipelines/Makefile" PIPE=demo OUT="$OUT" BIN="$PSPKD_BIN")
    run make -n "${P[@]}" UNL_ITERS=7 UNL_VAL_EVERY=3 study-unlabeled-report
    assert_success
    assert_output --regexp "student-distill --no-kd .*--val-every 3 .*--iters 7 "
    refute_output --regexp "student-distill .*--iters 40 "
    assert_equal "$(cat "$OUT/unlabeled/students.iters")" 7
    # the teacher keeps its own schedule
    assert_output --regexp "teacher-train .*--iters 250 "
    run make -n "${P[@]}" UNL_ITERS=9 study-unlabeled-report
    assert_equal "$(cat "$OUT/unlabeled/students.iters")" 9
}

# A VOC tree of 6 train, 2 val and 3 images in no list.
voc_tree() {
    synth "$1" 6 2 7
    local i
    for i in 1 2 3; do cp "$1/JPEGImages/synth_000000.jpg" "$1/JPEGImages/extra_$i.jpg"; done
}

@test "voc UNLABELED=1: the images outside train and val, packed unlabelled; the overlap check passes" {
    voc_tree "$BATS_TEST_TMPDIR/voc"
    run make -s -C "$ROOT/pipelines" VOC_ROOT="$BATS_TEST_TMPDIR/voc" OUT="$OUT" BIN="$PSPKD_BIN" \
        UNLABELED=1 "$OUT/overlap.ok"
    assert_success
    assert_equal "$(cat "$OUT/unlabeled.txt")" $'extra_1\nextra_2\nextra_3'
    run "$PSPKD_BIN/voc-show" meta "$OUT/unlabeled.lmdb"
    assert_line 'labels: none (unlabelled pack)'
    [ -e "$OUT/overlap.ok" ]
    # the KD student's options and inputs
    run make -n -C "$ROOT/pipelines" VOC_ROOT="$BATS_TEST_TMPDIR/voc" OUT="$OUT" BIN="$PSPKD_BIN" \
        UNLABELED=1 T_ITERS=1 S_ITERS=1 "$OUT/student-kd.safetensors"
    assert_output --partial "--unlabeled $OUT/unlabeled.lmdb:$OUT/unlabeled-logits.lmdb --unlabeled-ratio 0.5"
}

@test "voc: a val image in the training list stops the pipeline before any training" {
    voc_tree "$BATS_TEST_TMPDIR/voc"
    local sets="$BATS_TEST_TMPDIR/voc/ImageSets/Segmentation"
    head -1 "$sets/val.txt" >>"$sets/train.txt"
    run make -s -C "$ROOT/pipelines" voc VOC_ROOT="$BATS_TEST_TMPDIR/voc" OUT="$OUT" \
        BIN="$PSPKD_BIN" THREADS=1 T_ITERS=1
    assert_failure
    assert_output --partial "voc-show: $OUT/val.lmdb: 1 image ids also in another pack (first: $OUT/train.lmdb)"
    assert_output --partial 'voc: val images in a training pack'
    [ ! -e "$OUT/overlap.ok" ] && [ ! -e "$OUT/teacher-train.safetensors" ] && [ ! -e "$OUT/teacher.csv" ]
}
