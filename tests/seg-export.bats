#!/usr/bin/env bats
# seg-export: its refusals (unfrozen model, bad size, missing file, output
# equal to the model, usage), the happy path (fixed and dynamic sizes,
# atomic write), and, when Debian's python3-onnx and python3-opencv are
# installed, the proof that the file is right: onnx.checker accepts it and
# OpenCV DNN reproduces seg-predict's logits within 1e-4 for ResNet18 and
# ResNet50 (tests/onnx_parity.py). Skipped when seg-export is not built
# (it needs libprotobuf-c-dev and protobuf-c-compiler).

load common

have_onnx() { /usr/bin/python3 -c 'import onnx, cv2, numpy' 2>/dev/null; }

setup_file() {
    [ -x "$PSPKD_BIN/seg-export" ] || return 0
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 4 0 31
    pack "$DATA/voc" train "$DATA/train.lmdb"
    tiny_model "$DATA/train.lmdb" "$DATA/r18.safetensors" --augment none --iters 1 --seed 3 --freeze
    tiny_model "$DATA/train.lmdb" "$DATA/r18-unfrozen.safetensors" --augment none --iters 1 --seed 3
}

setup() {
    [ -x "$PSPKD_BIN/seg-export" ] ||
        skip "seg-export is not built (needs libprotobuf-c-dev and protobuf-c-compiler)"
    SE="$PSPKD_BIN/seg-export"
    D="$BATS_TEST_TMPDIR"
}

@test "--help prints usage on stdout and exits 0; --version" {
    assert_help_version "$SE" '--dynamic' '--aux' '--size N|HxW' 'opset 13'
}

@test "usage errors exit 2 with one message, and write nothing" {
    local M="$DATA/r18.safetensors"
    assert_usage_error "$SE" "need -m MODEL" -o "$D/x.onnx"
    assert_usage_error "$SE" "need -o OUT.onnx" -m "$M"
    for s in 32 0 8193x8 33x 'x33' 33x40 -9 abc 8201; do
        assert_usage_error "$SE" "--size takes N or HxW, each side 8k+1 in 1..8193 (e.g. 473 or 257x353)" \
            -m "$M" -o "$D/x.onnx" --size "$s"
    done
    assert_usage_error "$SE" "--size and --dynamic exclude each other" -m "$M" -o "$D/x.onnx" \
        --size 33 --dynamic
    assert_usage_error "$SE" "the output would overwrite the model (-o equals -m)" -m "$M" -o "$M"
    ln -s "$M" "$D/link.safetensors"
    assert_usage_error "$SE" "the output would overwrite the model (-o equals -m)" -m "$M" \
        -o "$D/link.safetensors"
    assert_usage_error "$SE" "unexpected argument 'extra'" -m "$M" -o "$D/x.onnx" extra
    assert_unknown_options "$SE"
    rm "$D/link.safetensors"
    assert_empty_dir "$D"
}

@test "a missing or unreadable model, or an unfrozen one: exit 1, no output" {
    run "$SE" -m "$D/none.safetensors" -o "$D/x.onnx"
    assert_failure 1
    assert_line --index 0 --partial "seg-export: "
    assert_output --partial "$D/none.safetensors"
    printf 'not a model' >"$D/bad.safetensors"
    run "$SE" -m "$D/bad.safetensors" -o "$D/x.onnx"
    assert_failure 1
    assert_output --partial "$D/bad.safetensors"
    run "$SE" -m "$DATA/r18-unfrozen.safetensors" -o "$D/x.onnx"
    assert_failure 1
    assert_output "seg-export: $DATA/r18-unfrozen.safetensors is not a frozen model (write one with teacher-train --freeze or --freeze-only, or student-distill --freeze)"
    run "$SE" -m "$DATA/r18.safetensors" -o "$D/no/such/dir/x.onnx" --size 33
    assert_failure 1
    assert_output --partial "$D/no/such/dir/x.onnx"
    rm "$D/bad.safetensors"
    assert_empty_dir "$D"
}

@test "happy path: fixed and dynamic sizes, main or main+aux, replaced atomically" {
    run --separate-stderr "$SE" -m "$DATA/r18.safetensors" -o "$D/m.onnx" --size 33x41
    assert_success
    [ -z "$stderr" ]
    assert_output --regexp "^$D/m.onnx: ONNX opset 13, resnet18 \\(7x7 stem\\), 21 classes, input 33x41, outputs main, [0-9.]+ MB\$"
    [ -s "$D/m.onnx" ]
    # the model is a protobuf whose graph carries the folded conv names
    grep -q 'layer4.1.conv2.weight' "$D/m.onnx"
    ! grep -q 'running_mean' "$D/m.onnx"
    run "$SE" -q -m "$DATA/r18.safetensors" -o "$D/m.onnx" --dynamic --aux
    assert_success
    assert_output ''
    grep -q 'aux.4.weight' "$D/m.onnx"
    run "$SE" -m "$DATA/r18.safetensors" -o "$D/d.onnx" --dynamic
    assert_output --partial "input Nx3xHxW (dynamic), outputs main,"
    assert_no_temp "$D"
}

@test "the ONNX file is right: checker, and OpenCV DNN = seg-predict --logits (R18, R50)" {
    have_onnx || skip "needs Debian's python3-onnx and python3-opencv"
    run "$PSPKD_BIN/teacher-train" -q -d "$DATA/train.lmdb" --arch resnet50 -b 2 --crop 33 \
        --threads 1 --augment none --iters 1 --seed 4 --freeze -o "$D/r50.safetensors"
    assert_success
    local imgs
    imgs=("$DATA"/voc/JPEGImages/*.jpg)
    run "$BATS_TEST_DIRNAME/onnx_parity.py" --bin "$PSPKD_BIN" --model "$DATA/r18.safetensors" \
        --dynamic --label "R18 " "${imgs[@]}"
    echo "$output"
    assert_success
    assert_output --partial "R18 dynamic: checker ok, output main ['N', 21, 'H', 'W'], opset 13"
    run "$BATS_TEST_DIRNAME/onnx_parity.py" --bin "$PSPKD_BIN" --model "$D/r50.safetensors" \
        --label "R50 " "${imgs[0]}" "${imgs[1]}"
    echo "$output"
    assert_success
}
