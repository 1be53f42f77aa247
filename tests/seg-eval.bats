#!/usr/bin/env bats
# seg-eval on a tiny voc-synth set with a ResNet18 model (one training
# step): the table and JSON, single and multi scale, flip, --limit,
# --save-dir, determinism, and bad inputs.

load common

setup_file() {
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 4 3 12
    pack "$DATA/voc" train "$DATA/train.lmdb"
    pack "$DATA/voc" val "$DATA/val.lmdb"
    pack "$DATA/voc" val "$DATA/val22.lmdb" --classes 22
    tiny_model "$DATA/train.lmdb" "$DATA/model.safetensors" --augment none --iters 1 --seed 3
}

setup() {
    SE="$PSPKD_BIN/seg-eval"
    D="$BATS_TEST_TMPDIR"
    # Images of 33..48 px: long side 48 at scale 1, 33x33 windows.
    RUN=(-q -t 1 -m "$DATA/model.safetensors" -d "$DATA/val.lmdb" --base-size 48 --crop 33)
}

@test "--help prints usage on stdout and exits 0; --version" {
    assert_help_version "$SE" '--save-dir DIR'
}

@test "usage errors exit 2 with one message" {
    run "$SE"
    assert_failure 2
    assert_line --index 0 'seg-eval: need -m MODEL and -d DATA'
    run "$SE" -m a -d b --crop 32
    assert_failure 2
    assert_output --partial '--crop takes N or HxW'
    run "$SE" -m a -d b --scales 1.0,
    assert_failure 2
    assert_output --partial 'bad scale list'
    assert_usage_errors "$SE" '-m a -d b' '--crop 33x40' '--crop 8201' '--scales 0' \
        '--base-size 0' '-b 0' '--limit 0' '--device gpu' stray
    assert_usage_error "$SE" "unknown option '--what'" --what -m a -d b
    assert_unknown_options "$SE"
    assert_usage_error "$SE" "option '--json' takes no argument" -m a -d b --json=1
    assert_usage_error "$SE" "option '--save-dir' needs an argument" -m a -d b --save-dir
}

@test "happy path: a row per class with the pack's names, then mIoU/mAcc/aAcc" {
    run --separate-stderr "$SE" "${RUN[@]}"
    assert_success
    [ -z "$stderr" ]
    assert_line --index 0 --regexp '^id +class +IoU +Acc +pixels$'
    assert_line --index 1 --regexp '^0 +background +[01]\.[0-9]{4} +[01]\.[0-9]{4} +[0-9]+$'
    assert_line --index 21 --regexp '^20 +tvmonitor '
    assert_line --index 22 --regexp '^mIoU [01]\.[0-9]{4}  mAcc [01]\.[0-9]{4}  aAcc [01]\.[0-9]{4}'
    assert_line --index 23 --regexp '^3 images, base 48, crop 33x33, scales 1, flip on'
    # Labelled pixels add up to the pack's non-ignored pixels: the same
    # total whatever the model predicts.
    local total
    total=$(echo "$output" | sed -n '2,22p' | awk '{s += $5} END {print s}')
    [ "$total" -gt 0 ]
    # Deterministic, and the same with another window batch and thread count.
    local first=$output
    run "$SE" "${RUN[@]}" -b 3 -t 2
    assert_success
    [ "$(echo "$output" | sed -n '1,23p')" = "$(echo "$first" | sed -n '1,23p')" ]
}

@test "--json: settings, classes and scores" {
    run "$SE" "${RUN[@]}" --json --no-flip --scales 0.75,1.25
    assert_success
    assert_output --regexp '^\{"images": 3, "base_size": 48, "crop": \[33, 33\], "scales": \[0.75,1.25\], "flip": false, "classes": \[\{"id": 0, "name": "background", "iou": [0-9.]+'
    assert_output --regexp '"miou": [01]\.[0-9]{6}, "macc": [01]\.[0-9]{6}, "aacc": [01]\.[0-9]{6}'
    assert_output --partial '{"id": 20, "name": "tvmonitor"'
    [ "${#lines[@]}" = 1 ]
}

@test "--ms and --limit" {
    run "$SE" "${RUN[@]}" --ms --limit 1
    assert_success
    assert_output --regexp '1 images, base 48, crop 33x33, scales 0.5,0.75,1,1.25,1.5,1.75, flip on'
}

@test "--save-dir writes grey index and palette colour PNGs per image" {
    run "$SE" "${RUN[@]}" --save-dir "$D/pred"
    assert_success
    local ids
    ids=$(cd "$DATA/voc/JPEGImages" && ls | sed 's/\.jpg$//' | sort)
    local n=0
    while read -r id; do
        grep -qx "$id" "$DATA/voc/ImageSets/Segmentation/val.txt" || continue
        n=$((n + 1))
        run file "$D/pred/gray/$id.png"
        assert_output --partial '8-bit grayscale'
        run file "$D/pred/color/$id.png"
        assert_output --partial '8-bit colormap'
        # Same size as the label.
        local lsize psize
        lsize=$(file "$DATA/voc/SegmentationClass/$id.png" | grep -o '[0-9]* x [0-9]*')
        psize=$(file "$D/pred/gray/$id.png" | grep -o '[0-9]* x [0-9]*')
        [ "$lsize" = "$psize" ]
    done <<<"$ids"
    [ "$n" = 3 ]
    [ "$(ls "$D/pred/gray" | wc -l)" = 3 ]
}

@test "class-count mismatch, bad checkpoints and bad packs are runtime errors" {
    run "$SE" -q -m "$DATA/model.safetensors" -d "$DATA/val22.lmdb"
    assert_failure 1
    assert_output --partial 'has 21 classes'
    head -c 5000 "$DATA/model.safetensors" >"$D/trunc.safetensors"
    run "$SE" -q -m "$D/trunc.safetensors" -d "$DATA/val.lmdb"
    assert_failure 1
    assert_line --index 0 --regexp '^seg-eval: .*trunc\.safetensors'
    [ "${#lines[@]}" = 1 ]
    echo '{}' >"$D/text.safetensors"
    run "$SE" -q -m "$D/text.safetensors" -d "$DATA/val.lmdb"
    assert_failure 1
    run "$SE" -q -m "$DATA/model.safetensors" -d "$D/none.lmdb"
    assert_failure 1
    assert_line --index 0 --regexp '^seg-eval: .*none\.lmdb'
    empty_lmdb "$D/empty.lmdb"
    run "$SE" -q -m "$DATA/model.safetensors" -d "$D/empty.lmdb"
    assert_failure 1
    assert_output --partial 'no metadata record'
}

@test "--precision bf16 evaluates; fp16 is refused" {
    assert_precision "$SE" "${RUN[@]}"
    assert_line --regexp '^mIoU [01]\.[0-9]{4}'
}

@test "an unlabelled pack has nothing to score: refused" {
    "$PSPKD_BIN/voc-pack" -q --unlabeled "$DATA/voc" --split val -o "$D/unl.lmdb"
    run "$SE" -q -t 1 -m "$DATA/model.safetensors" -d "$D/unl.lmdb" --base-size 48 --crop 33
    assert_failure 1
    assert_output "seg-eval: $D/unl.lmdb is an unlabelled pack: no labels to score against"
}
