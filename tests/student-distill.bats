#!/usr/bin/env bats
# student-distill on a tiny voc-synth set with a tiny frozen teacher and its
# logits cache: the three teacher sources, the loss presets (checked against
# the logged terms), every bad cache / teacher / pack, the option
# conventions, and resumption after a real SIGTERM; unlabelled packs
# (--unlabeled) with their refusals, a short run and its resumption.

load common

setup_file() {
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 8 2 5
    pack "$DATA/voc" train "$DATA/train.lmdb"
    synth "$DATA/voc2" 8 0 6
    pack "$DATA/voc2" train "$DATA/other.lmdb"
    pack "$DATA/voc" train "$DATA/train16.lmdb" --classes 16
    tiny_model "$DATA/train.lmdb" "$DATA/teacher.safetensors" --iters 2 --freeze
    local td=("$PSPKD_BIN/teacher-dump" -q -t 1 -m "$DATA/teacher.safetensors")
    "${td[@]}" -d "$DATA/train.lmdb" -o "$DATA/logits.lmdb"
    "${td[@]}" -d "$DATA/train.lmdb" --limit 3 -o "$DATA/partial.lmdb"
    "${td[@]}" -d "$DATA/other.lmdb" -o "$DATA/other-logits.lmdb"
    # unlabelled packs: voc2's images, and voc's val images, with their caches
    "$PSPKD_BIN/voc-pack" -q --unlabeled "$DATA/voc2/JPEGImages" -o "$DATA/unl.lmdb"
    "$PSPKD_BIN/voc-pack" -q --unlabeled "$DATA/voc" --split val -o "$DATA/unl2.lmdb"
    "${td[@]}" -d "$DATA/unl.lmdb" -o "$DATA/unl-logits.lmdb"
    "${td[@]}" -d "$DATA/unl2.lmdb" -o "$DATA/unl2-logits.lmdb"
}

setup() {
    SD="$PSPKD_BIN/student-distill"
    D="$BATS_TEST_TMPDIR"
    FAST=(-d "$DATA/train.lmdb" -b 2 --crop 33 --threads 1 --seed 3)
}

# Checks that every training row's loss is the weighted sum of its terms:
# loss = ce_w*ce + aux_w*aux_ce + kd_w*kd + akd_w*aux_kd (to 1e-4 relative).
check_total() {
    awk -F, -v a="$2" -v b="$3" -v c="$4" -v d="$5" '
        NR > 1 && $3 != "" { n++; want = a*$5 + b*$6 + c*$7 + d*$8
            if ((want - $4)^2 > (1e-4 * want)^2 + 1e-10) { print "row " $1 ": " $4 " != " want; bad = 1 } }
        END { if (!n) { print "no rows"; exit 1 } exit bad }' "$1"
}

@test "--help prints usage on stdout and exits 0; --version" {
    assert_help_version "$SD" '--preset NAME'
}

@test "usage errors exit 2: the teacher source, loss options" {
    run "$SD" -d x -o y
    assert_failure 2
    assert_line --index 0 'student-distill: give exactly one of -l LOGITS, --teacher MODEL and --no-kd'
    run "$SD" -d x -o y --no-kd --aux-kd l2
    assert_failure 2
    assert_output --partial '--aux-kd takes kl, smoothl1 or mse'
    assert_usage_errors "$SD" '-d x -o y' '-l a --no-kd' '-l a --teacher b' \
        '--no-kd --preset hinton' '--no-kd --T 0' '--no-kd --kd-weight -1'
    # a bad value names its option, not the value
    assert_usage_error "$SD" '--kd-weight takes a number in 0..1000' --kd-weight abc
    assert_usage_error "$SD" '--kd-weight takes a number in 0..1000' --kd-weight=abc
    assert_usage_error "$SD" '--T takes a number in 0.01..1000' -d x -o y --T abc
    assert_usage_error "$SD" "option '--teacher' needs an argument" -d x -o y --teacher
    run "$SD" -l a -o y
    assert_failure 2
    assert_line --index 0 'student-distill: missing -d PACK'
    assert_usage_error "$SD" "unknown option '--bogus'" --bogus
    assert_unknown_options "$SD"
}

@test "cached logits: --preset sum's loss is CE + 0.4 auxCE + KD + 0.4 auxKL" {
    run "$SD" "${FAST[@]}" -l "$DATA/logits.lmdb" --preset sum --iters 3 --log "$D/kd.csv" \
        --progress-every 0 -o "$D/kd.safetensors"
    assert_success
    assert_output --partial 'resnet18 (7x7 stem), 21 classes'
    assert_output --partial 'teacher: logits cache'
    assert_output --regexp 'kd=[0-9.]+ akd=[0-9.]+'
    run check_total "$D/kd.csv" 1 0.4 1 0.4
    assert_success
    # the distillation terms are there
    run awk -F, 'NR > 1 && ($7 <= 0 || $8 <= 0)' "$D/kd.csv"
    assert_output ''
    [[ $(st_header "$D/kd.safetensors") == *'"tool":"student-distill"'* ]]
}

@test "the default preset (= seed): 0.25 CE + 0.4 auxCE + 0.75 KD(T 1.9) + SmoothL1(aux); options override it" {
    run "$SD" "${FAST[@]}" -q -l "$DATA/logits.lmdb" --preset seed --iters 2 --log "$D/s.csv" \
        -o "$D/s.safetensors"
    assert_success
    run check_total "$D/s.csv" 0.25 0.4 0.75 1
    assert_success
    # no --preset: the same run
    "$SD" "${FAST[@]}" -q -l "$DATA/logits.lmdb" --iters 2 --log "$D/d.csv" -o "$D/d.safetensors"
    cmp "$D/s.safetensors" "$D/d.safetensors"
    run "$SD" "${FAST[@]}" -q --kd-weight 2 -l "$DATA/logits.lmdb" --preset seed \
        --aux-kd mse --aux-kd-weight 0.5 --iters 2 --log "$D/o.csv" -o "$D/o.safetensors"
    assert_success
    run check_total "$D/o.csv" 0.25 0.4 2 0.5
    assert_success
}

@test "--no-kd: plain CE + 0.4 auxCE, same first step as with the cache" {
    run "$SD" "${FAST[@]}" --no-kd --iters 2 --log "$D/p.csv" -o "$D/p.safetensors"
    assert_success
    assert_output --partial 'no teacher'
    run check_total "$D/p.csv" 1 0.4 0 0
    assert_success
    run awk -F, 'NR > 1 && ($7 != 0 || $8 != 0)' "$D/p.csv"
    assert_output ''
    "$SD" "${FAST[@]}" -q -l "$DATA/logits.lmdb" --iters 1 --log "$D/k.csv" -o "$D/k.safetensors"
    # same seed: same initial student and the same first batch
    assert_equal "$(sed -n 2p "$D/p.csv" | cut -d, -f5,6)" "$(sed -n 2p "$D/k.csv" | cut -d, -f5,6)"
}

@test "--teacher runs the teacher online with the same losses" {
    run "$SD" "${FAST[@]}" --teacher "$DATA/teacher.safetensors" --iters 2 --log "$D/t.csv" \
        -o "$D/t.safetensors"
    assert_success
    assert_output --partial 'teacher: online'
    run check_total "$D/t.csv" 0.25 0.4 0.75 1
    assert_success
    run awk -F, 'NR > 1 && ($7 <= 0 || $8 <= 0)' "$D/t.csv"
    assert_output ''
}

@test "a cache missing keys is refused before training, naming the first missing key" {
    run "$SD" "${FAST[@]}" -q -l "$DATA/partial.lmdb" --iters 2 -o "$D/o.safetensors"
    assert_failure 1
    assert_output --regexp '^student-distill: .*partial\.lmdb.*no logits for key 0000000[3-7]_'
    [ ! -e "$D/o.safetensors" ]
}

@test "a cache from another pack is refused" {
    run "$SD" "${FAST[@]}" -q -l "$DATA/other-logits.lmdb" --iters 2 -o "$D/o.safetensors"
    assert_failure 1
    assert_output --partial 'was made from another data pack'
    [ ! -e "$D/o.safetensors" ]
}

@test "class mismatches: pack vs --classes, cache vs student, teacher vs student" {
    run "$SD" "${FAST[@]}" -q --no-kd --classes 16 --iters 1 -o "$D/o.safetensors"
    assert_failure 1
    assert_output "student-distill: --classes 16 but $DATA/train.lmdb has 21 classes"
    run "$SD" -d "$DATA/train16.lmdb" -b 2 --crop 33 -q -l "$DATA/logits.lmdb" --iters 1 \
        -o "$D/o.safetensors"
    assert_failure 1
    assert_output --partial 'the cache has 21 classes, the student 16'
    run "$SD" -d "$DATA/train16.lmdb" -b 2 --crop 33 -q --teacher "$DATA/teacher.safetensors" \
        --iters 1 -o "$D/o.safetensors"
    assert_failure 1
    assert_output --partial 'the teacher has 21 classes, the student 16'
    [ ! -e "$D/o.safetensors" ]
}

@test "corrupt or truncated teacher, cache and checkpoints; empty pack" {
    head -c 2000 "$DATA/teacher.safetensors" >"$D/trunc.safetensors"
    run "$SD" "${FAST[@]}" -q --teacher "$D/trunc.safetensors" --iters 1 -o "$D/o.safetensors"
    assert_failure 1
    assert_line --index 0 --regexp '^student-distill: .*trunc\.safetensors'
    run "$SD" "${FAST[@]}" -q --no-kd --resume "$D/trunc.safetensors" --iters 1 -o "$D/o.safetensors"
    assert_failure 1
    run "$SD" "${FAST[@]}" -q --no-kd --init "$D/trunc.safetensors" --iters 1 -o "$D/o.safetensors"
    assert_failure 1
    head -c 4096 "$DATA/logits.lmdb" >"$D/trunc.lmdb"
    run "$SD" "${FAST[@]}" -q -l "$D/trunc.lmdb" --iters 1 -o "$D/o.safetensors"
    assert_failure 1
    assert_line --index 0 --regexp '^student-distill: .*trunc\.lmdb'
    run "$SD" "${FAST[@]}" -q -l "$DATA/train.lmdb" --iters 1 -o "$D/o.safetensors"
    assert_failure 1
    empty_lmdb "$D/empty.lmdb"
    run "$SD" -d "$D/empty.lmdb" -b 2 --crop 33 -q --no-kd -o "$D/o.safetensors"
    assert_failure 1
    assert_output --partial 'no metadata record'
    [ ! -e "$D/o.safetensors" ]
}

@test "resume after SIGTERM reproduces the uninterrupted distillation byte for byte" {
    N=12
    A=(-l "$DATA/logits.lmdb" --iters $N --ckpt-every 100)
    "$SD" "${FAST[@]}" "${A[@]}" -q --log "$D/a.csv" -o "$D/a.safetensors"
    signal_after_rows TERM "$D/b.csv" 4 "$SD" "${FAST[@]}" "${A[@]}" --ckpt-dir "$D/ck" \
        --log "$D/b.csv" -o "$D/b.safetensors" 2>"$D/b.err"
    assert_equal "$st" 143
    grep -q 'terminated at step' "$D/b.err"
    [ ! -e "$D/b.safetensors" ]
    run "$SD" "${FAST[@]}" "${A[@]}" -q --ckpt-dir "$D/ck" --log "$D/b.csv" --resume "$D/ck" \
        -o "$D/b.safetensors"
    assert_success
    cmp "$D/a.safetensors" "$D/b.safetensors"
    assert_equal "$(cut -d, -f1-8,11- "$D/a.csv")" "$(cut -d, -f1-8,11- "$D/b.csv")"
}

@test "--precision bf16 distils; fp16 is refused" {
    assert_precision "$SD" "${FAST[@]}" -q -l "$DATA/logits.lmdb" --iters 2 -o "$D/bf16.safetensors"
    [ -s "$D/bf16.safetensors" ]
}

# ---- unlabelled packs (--unlabeled PACK:LOGITS) ---------------------------

@test "--unlabeled usage errors: no cache, --no-kd, --teacher, the ratio" {
    run "$SD" "${FAST[@]}" -l "$DATA/logits.lmdb" --unlabeled "$DATA/unl.lmdb" -o "$D/o"
    assert_failure 2
    assert_line --index 0 "student-distill: --unlabeled $DATA/unl.lmdb: give the pack with its logits cache, PACK:LOGITS (teacher-dump -d PACK -o LOGITS)"
    run "$SD" "${FAST[@]}" --no-kd --unlabeled "$DATA/unl.lmdb:$DATA/unl-logits.lmdb" -o "$D/o"
    assert_failure 2
    assert_line --index 0 'student-distill: --unlabeled with --no-kd: unlabelled images only have distillation terms'
    assert_usage_error "$SD" '--unlabeled goes with -l LOGITS, not --teacher' "${FAST[@]}" \
        --teacher "$DATA/teacher.safetensors" --unlabeled "$DATA/unl.lmdb:$DATA/unl-logits.lmdb" -o "$D/o"
    assert_usage_error "$SD" '--unlabeled-ratio goes with --unlabeled' "${FAST[@]}" \
        -l "$DATA/logits.lmdb" --unlabeled-ratio 0.5 -o "$D/o"
    assert_usage_error "$SD" '--unlabeled-ratio takes a number between 0 and 1 (both excluded)' \
        "${FAST[@]}" -l "$DATA/logits.lmdb" --unlabeled "$DATA/unl.lmdb:$DATA/unl-logits.lmdb" \
        --unlabeled-ratio 1 -o "$D/o"
    assert_usage_error "$SD" '-b 2 at --unlabeled-ratio 0.2 leaves no labelled or no unlabelled image (round(b*R) must be 1..b-1)' \
        "${FAST[@]}" -l "$DATA/logits.lmdb" --unlabeled "$DATA/unl.lmdb:$DATA/unl-logits.lmdb" \
        --unlabeled-ratio 0.2 -o "$D/o"
    assert_usage_error "$SD" '--unlabeled :x: give the pack with its logits cache, PACK:LOGITS (teacher-dump -d PACK -o LOGITS)' \
        "${FAST[@]}" -l "$DATA/logits.lmdb" --unlabeled :x -o "$D/o"
    [ ! -e "$D/o" ]
}

@test "--unlabeled: a cache of another pack, a missing cache, an unlabelled -d or --val are refused" {
    run "$SD" "${FAST[@]}" -q -l "$DATA/logits.lmdb" \
        --unlabeled "$DATA/unl.lmdb:$DATA/other-logits.lmdb" --iters 1 -o "$D/o"
    assert_failure 1
    assert_output --regexp "^student-distill: --unlabeled: $DATA/other-logits.lmdb was made from another data pack \(pack id [0-9a-f]{16}, $DATA/unl.lmdb has [0-9a-f]{16}\)\$"
    run "$SD" "${FAST[@]}" -q -l "$DATA/logits.lmdb" \
        --unlabeled "$DATA/unl.lmdb:$D/none.lmdb" --iters 1 -o "$D/o"
    assert_failure 1
    assert_output "student-distill: --unlabeled: $D/none.lmdb: No such file or directory"
    run "$SD" -d "$DATA/unl.lmdb" -b 2 --crop 33 --threads 1 -q -l "$DATA/unl-logits.lmdb" \
        --iters 1 -o "$D/o"
    assert_failure 1
    assert_output "student-distill: $DATA/unl.lmdb is an unlabelled pack: nothing to train on (student-distill takes it as --unlabeled PACK:LOGITS)"
    run "$SD" "${FAST[@]}" -q --no-kd --val "$DATA/unl.lmdb" --iters 1 -o "$D/o"
    assert_failure 1
    assert_output "student-distill: $DATA/unl.lmdb is an unlabelled pack: no labels to validate against"
    [ ! -e "$D/o" ]
}

@test "--unlabeled: a few steps with half of each batch unlabelled; the KD columns hold" {
    run "$SD" -d "$DATA/train.lmdb" -b 4 --crop 33 --threads 1 --seed 3 -l "$DATA/logits.lmdb" \
        --unlabeled "$DATA/unl.lmdb:$DATA/unl-logits.lmdb" --iters 3 --log "$D/u.csv" \
        --progress-every 0 -o "$D/u.safetensors"
    assert_success
    assert_output --partial 'student-distill: each batch: 2 labelled images, 2 unlabelled from 1 pack (KD terms only)'
    # 8 labelled images at 2 per step
    assert_output --partial '8 images, 4 iterations/epoch'
    run check_total "$D/u.csv" 0.25 0.4 0.75 1
    assert_success
    run awk -F, 'NR > 1 && ($7 <= 0 || $8 <= 0)' "$D/u.csv"
    assert_output ''
    # not the run without the unlabelled images
    "$SD" -d "$DATA/train.lmdb" -b 4 --crop 33 --threads 1 --seed 3 -q -l "$DATA/logits.lmdb" \
        --iters 3 -o "$D/p.safetensors"
    ! cmp -s "$D/u.safetensors" "$D/p.safetensors"
}

@test "--unlabeled: resume after SIGTERM reproduces the uninterrupted run (two packs)" {
    N=12
    A=(-d "$DATA/train.lmdb" -b 3 --crop 33 --threads 1 --seed 3 -l "$DATA/logits.lmdb"
       --unlabeled "$DATA/unl.lmdb:$DATA/unl-logits.lmdb"
       --unlabeled "$DATA/unl2.lmdb:$DATA/unl2-logits.lmdb" --unlabeled-ratio 0.34
       --iters $N --ckpt-every 100)
    "$SD" "${A[@]}" -q --log "$D/a.csv" -o "$D/a.safetensors"
    signal_after_rows TERM "$D/b.csv" 6 "$SD" "${A[@]}" --ckpt-dir "$D/ck" \
        --log "$D/b.csv" -o "$D/b.safetensors" 2>"$D/b.err"
    assert_equal "$st" 143
    grep -q 'terminated at step' "$D/b.err"
    [ ! -e "$D/b.safetensors" ]
    # the checkpoint holds the unlabelled schedule (steps served per pack)
    ck=$(ls "$D"/ck/*.safetensors)
    [[ $(st_header "$ck") =~ \"unlabeled_pos\":\"([0-9]+),([0-9]+)\" ]]
    [ $((BASH_REMATCH[1] + BASH_REMATCH[2])) -ge 5 ]
    run "$SD" "${A[@]}" -q --ckpt-dir "$D/ck" --log "$D/b.csv" --resume "$D/ck" \
        -o "$D/b.safetensors"
    assert_success
    cmp "$D/a.safetensors" "$D/b.safetensors"
    assert_equal "$(cut -d, -f1-8,11- "$D/a.csv")" "$(cut -d, -f1-8,11- "$D/b.csv")"
}
