#!/usr/bin/env bats
# teacher-train on a tiny voc-synth set (ResNet18, batch 2, 33x33 crops, a
# few steps, one thread): the happy path, checkpoints, freezing, the log,
# validation, every bad input, the option conventions, and resumption after
# a real SIGTERM reproducing the uninterrupted run byte for byte.

load common

setup_file() {
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 8 2 5
    pack "$DATA/voc" train "$DATA/train.lmdb"
    pack "$DATA/voc" val "$DATA/val.lmdb"
}

setup() {
    TT="$PSPKD_BIN/teacher-train"
    D="$BATS_TEST_TMPDIR"
    FAST=(-d "$DATA/train.lmdb" --arch resnet18 -b 2 --crop 33 --threads 1 --seed 7)
}

# Log rows without the two timing columns (img_s, time).
log_body() { cut -d, -f1-8,11- "$1"; }

@test "--help prints usage on stdout and exits 0; --version" {
    assert_help_version "$TT" '--freeze-only' '--resume PATH'
}

@test "usage errors exit 2 with one message" {
    run "$TT"
    assert_failure 2
    assert_line --index 0 'teacher-train: missing -d PACK'
    run "$TT" -d "$DATA/train.lmdb"
    assert_failure 2
    assert_line --index 0 'teacher-train: missing -o OUTPUT'
    assert_usage_error "$TT" "unknown option '--bogus'" --bogus -d x -o y
    assert_unknown_options "$TT"
    run "$TT" -d x -o y --crop 32
    assert_failure 2
    assert_output --partial '--crop takes N or HxW'
    run "$TT" -d x -o y -b 1
    assert_failure 2
    assert_output --partial 'BatchNorm needs 2 images'
    assert_usage_errors "$TT" '-d x -o y' '--arch resnet34' '--augment some' '--scale 2,1' \
        '--iters 0' '--device tpu' stray '--crop 8201' '--crop 33x8'
    assert_usage_error "$TT" "option '-o' needs an argument" -d x -o
    assert_usage_error "$TT" "option '--freeze-only' needs an argument" -d x --freeze-only
    assert_usage_error "$TT" "option '--freeze' takes no argument" -d x -o y --freeze=1
    assert_usage_error "$TT" '--seed takes a non-negative integer' -d x -o y --seed -1
    assert_usage_errors "$TT" '--freeze-only x' '' '-d y -o z'
}

@test "trains, writes the model with optimiser state, checkpoints keep the newest" {
    run "$TT" "${FAST[@]}" --iters 5 --ckpt-every 2 --keep 1 --log "$D/t.csv" \
        -o "$D/t.safetensors"
    assert_success
    assert_output --partial 'resnet18 (7x7 stem), 21 classes'
    assert_output --partial '4 iterations/epoch, 5 iterations of 2 x 33x33'
    assert_output --partial "wrote $D/t.safetensors"
    h=$(st_header "$D/t.safetensors")
    [[ $h == *'"step":"5"'* ]]
    [[ $h == *'"frozen":"0"'* ]]
    [[ $h == *'"arch":"resnet18"'* ]]
    [[ $h == *'"optimizer.momentum.cls.4.weight"'* ]]
    # default checkpoint directory: OUTPUT minus .safetensors, plus .ckpt
    run ls "$D/t.ckpt"
    assert_output 'step-00000004.safetensors'
    # the log: header, one row per step, epochs of 4 iterations
    run cat "$D/t.csv"
    assert_line --index 0 'step,epoch,lr,loss,ce,aux_ce,kd,aux_kd,img_s,time,miou,macc,aacc,miou_present'
    assert_equal "${#lines[@]}" 6
    assert_line --index 1 --regexp '^1,1,0\.01,[0-9.e+-]+,[0-9.e+-]+,[0-9.e+-]+,0,0,[0-9.e+-]+,[0-9]+\.[0-9]{3},,,,$'
    assert_line --index 5 --regexp '^5,2,'
}

@test "--zero-init-residual changes the start (test_model checks which tensors), and is in --help" {
    run "$TT" --help
    assert_output --partial '--zero-init-residual'
    run "$TT" "${FAST[@]}" -q --iters 1 --lr 0 --freeze -o "$D/a.safetensors"
    assert_success
    run "$TT" "${FAST[@]}" -q --iters 1 --lr 0 --freeze --zero-init-residual -o "$D/z.safetensors"
    assert_success
    ! cmp -s "$D/a.safetensors" "$D/z.safetensors"
}

@test "--init takes a pspkd model's backbone and not its heads" {
    "$TT" "${FAST[@]}" -q --iters 2 -o "$D/p.safetensors"
    # --lr 0: the weights stay as they started (BN statistics still move)
    run "$TT" "${FAST[@]}" --iters 1 --lr 0 --init "$D/p.safetensors" --freeze -o "$D/q.safetensors"
    assert_success
    assert_output --regexp "--init $D/p.safetensors: loaded 100 backbone tensors \([0-9.]+M values\); ignored [0-9]+ \(ppm\."
    "$TT" "${FAST[@]}" -q --iters 1 --lr 0 --freeze -o "$D/r.safetensors"
    H="$PSPKD_TEST_HELPERS/helper_st_diff"
    for t in layer0.0.weight layer1.0.conv1.weight layer4.1.conv2.weight; do
        "$H" "$D/p.safetensors" "$D/q.safetensors" 0 $t >/dev/null # the backbone: p's
        run "$H" "$D/r.safetensors" "$D/q.safetensors" 0 $t
        assert_failure 1
    done
    for t in ppm.features.0.1.weight cls.0.weight cls.4.weight aux.0.weight; do
        "$H" "$D/r.safetensors" "$D/q.safetensors" 0 $t >/dev/null # the heads: a fresh start
        run "$H" "$D/p.safetensors" "$D/q.safetensors" 0 $t
        assert_failure 1
    done
}

@test "--val adds validation rows at epoch ends and after the last step" {
    run "$TT" "${FAST[@]}" --iters 6 --val "$DATA/val.lmdb" --log "$D/v.csv" -o "$D/v.safetensors"
    assert_success
    assert_output --regexp 'validation at step 4 \(epoch 1\): mIoU [0-9.]+ mAcc [0-9.]+ aAcc [0-9.]+, mIoU over the [0-9]+ present classes [0-9.]+ \(2 images'
    assert_output --partial 'validation at step 6 (epoch 2)'
    run grep -c ',,,,,,,,' "$D/v.csv"
    assert_output 2
    run awk -F, 'NR > 1 && $11 != "" { print $1 }' "$D/v.csv"
    assert_output $'4\n6'
}

@test "--freeze writes eval weights only, the same bytes as --freeze-only" {
    "$TT" "${FAST[@]}" -q --iters 3 -o "$D/a.safetensors"
    "$TT" "${FAST[@]}" -q --iters 3 --freeze -o "$D/f.safetensors"
    h=$(st_header "$D/f.safetensors")
    [[ $h == *'"frozen":"1"'* ]]
    [[ $h != *'optimizer.'* ]]
    [[ $h == *'"layer1.0.bn1.running_var"'* ]]
    run "$TT" --freeze-only "$D/a.safetensors" -o "$D/g.safetensors"
    assert_success
    cmp "$D/f.safetensors" "$D/g.safetensors"
    # and a frozen model cannot be resumed
    run "$TT" "${FAST[@]}" -q --iters 4 --resume "$D/f.safetensors" -o "$D/r.safetensors"
    assert_failure 1
    assert_output --partial 'frozen model has no optimiser state'
    [ ! -e "$D/r.safetensors" ]
}

@test "resume after SIGTERM reproduces the uninterrupted run byte for byte" {
    N=14
    "$TT" "${FAST[@]}" -q --iters $N --ckpt-every 100 --log "$D/a.csv" -o "$D/a.safetensors"
    # The same run, terminated once it has logged 3 steps.
    signal_after_rows TERM "$D/b.csv" 4 "$TT" "${FAST[@]}" --iters $N --ckpt-every 100 \
        --ckpt-dir "$D/ck" --log "$D/b.csv" -o "$D/b.safetensors" 2>"$D/b.err"
    assert_equal "$st" 143
    run cat "$D/b.err"
    assert_output --regexp 'terminated at step [0-9]+: checkpoint .*/ck/step-[0-9]{8}\.safetensors'
    [ ! -e "$D/b.safetensors" ]
    stopped=$(ls "$D/ck")
    [ "$stopped" != "step-$(printf %08d $N).safetensors" ]
    # Resume from the directory: same options, same final bytes, same log.
    run "$TT" "${FAST[@]}" --iters $N --ckpt-every 100 --ckpt-dir "$D/ck" --log "$D/b.csv" \
        --resume "$D/ck" -o "$D/b.safetensors"
    assert_success
    assert_output --partial "resuming from $D/ck/$stopped"
    cmp "$D/a.safetensors" "$D/b.safetensors"
    assert_equal "$(log_body "$D/a.csv")" "$(log_body "$D/b.csv")"
}

@test "SIGINT stops with 130 after a checkpoint; the log is trimmed back on resume" {
    signal_after_rows INT "$D/c.csv" 3 "$TT" "${FAST[@]}" --iters 40 --ckpt-every 100 \
        --ckpt-dir "$D/ck" --log "$D/c.csv" -o "$D/c.safetensors" 2>"$D/c.err"
    assert_equal "$st" 130
    grep -q 'interrupted at step' "$D/c.err"
    step=$(ls "$D/ck" | sed 's/step-0*\([0-9]*\)\.safetensors/\1/')
    # rows a crash wrote after the checkpoint, and a torn last line
    printf '%s\n' "$((step + 1)),1,0.01,1,1,1,0,0,1,1.000,,,," >>"$D/c.csv"
    printf '%s' "$((step + 2)),1,0.0" >>"$D/c.csv"
    run "$TT" "${FAST[@]}" -q --iters $((step + 1)) --ckpt-dir "$D/ck" --log "$D/c.csv" \
        --resume "$D/ck" -o "$D/c.safetensors"
    assert_success
    run awk -F, 'NR > 1 { print $1 }' "$D/c.csv"
    assert_output "$(seq 1 $((step + 1)))"
    # a changed schedule is allowed but warned about
    run "$TT" "${FAST[@]}" --iters $((step + 1)) --seed 8 --ckpt-dir "$D/ck" \
        --resume "$D/ck" -o "$D/d.safetensors"
    assert_success
    assert_output --partial 'warning: resuming a run with seed 7, now 8'
}

@test "--resume of an empty directory starts from step 0" {
    mkdir "$D/empty"
    run "$TT" "${FAST[@]}" --iters 1 --resume "$D/empty" -o "$D/e.safetensors"
    assert_success
    assert_output --partial "no checkpoint in $D/empty: starting from step 0"
}

@test "corrupt or truncated checkpoints to --resume and --init: exit 1, no output" {
    "$TT" "${FAST[@]}" -q --iters 2 -o "$D/a.safetensors"
    head -c 3000 "$D/a.safetensors" >"$D/trunc.safetensors"
    cp "$D/a.safetensors" "$D/bad.safetensors"
    printf 'garbage!' | dd of="$D/bad.safetensors" bs=1 seek=8 conv=notrunc status=none
    for f in trunc bad; do
        run "$TT" "${FAST[@]}" -q --iters 3 --resume "$D/$f.safetensors" -o "$D/o.safetensors"
        assert_failure 1
        assert_line --index 0 --regexp "^teacher-train: .*$f\.safetensors"
        assert_equal "${#lines[@]}" 1
        run "$TT" "${FAST[@]}" -q --iters 3 --init "$D/$f.safetensors" -o "$D/o.safetensors"
        assert_failure 1
        assert_line --index 0 --regexp "^teacher-train: .*$f\.safetensors"
    done
    run "$TT" "${FAST[@]}" -q --iters 3 --resume "$D/missing.safetensors" -o "$D/o.safetensors"
    assert_failure 1
    # a ResNet50 checkpoint does not resume a ResNet18 run
    run "$TT" "${FAST[@]}" -q --iters 3 --arch resnet50 --resume "$D/a.safetensors" \
        -o "$D/o.safetensors"
    assert_failure 1
    [ ! -e "$D/o.safetensors" ]
}

@test "empty, missing and non-pack data; too few images for a batch" {
    empty_lmdb "$D/empty.lmdb"
    run "$TT" -d "$D/empty.lmdb" -q --arch resnet18 -b 2 --crop 33 -o "$D/o.safetensors"
    assert_failure 1
    assert_output --partial 'no metadata record'
    run "$TT" -d "$D/nothing.lmdb" -q -o "$D/o.safetensors"
    assert_failure 1
    assert_output --partial 'No such file or directory'
    head -c 5000 /dev/zero >"$D/zero.lmdb"
    run "$TT" -d "$D/zero.lmdb" -q -o "$D/o.safetensors"
    assert_failure 1
    assert_line --index 0 --regexp '^teacher-train: .*zero\.lmdb'
    run "$TT" "${FAST[@]}" -q -b 16 -o "$D/o.safetensors"
    assert_failure 1
    assert_output --partial '8 images, fewer than one batch of 16'
    [ ! -e "$D/o.safetensors" ]
}

@test "class mismatch with the pack; a log of another format is refused" {
    run "$TT" "${FAST[@]}" -q --classes 5 -o "$D/o.safetensors"
    assert_failure 1
    assert_output "teacher-train: --classes 5 but $DATA/train.lmdb has 21 classes"
    echo 'a,b,c' >"$D/foreign.csv"
    run "$TT" "${FAST[@]}" -q --iters 1 --log "$D/foreign.csv" -o "$D/o.safetensors"
    assert_failure 1
    assert_output --partial 'not a pspkd training log'
    [ ! -e "$D/o.safetensors" ]
    assert_equal "$(cat "$D/foreign.csv")" 'a,b,c'
}

@test "--precision bf16 trains; fp16 is refused" {
    assert_precision "$TT" "${FAST[@]}" -q --iters 2 -o "$D/bf16.safetensors"
    [ -s "$D/bf16.safetensors" ]
}
