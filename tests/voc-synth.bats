#!/usr/bin/env bats
# voc-synth: VOC layout, determinism, label content, options and errors.

load common

setup() {
    SYN="$PSPKD_BIN/voc-synth"
    D="$BATS_TEST_TMPDIR/d"
}

# Packs $1 and prints voc-show's stats (value name pixels images).
label_stats() {
    "$PSPKD_BIN/voc-pack" -q "$1" --split trainval -o "$BATS_TEST_TMPDIR/stats.pack" --force \
        --classes "${2:-21}" && "$PSPKD_BIN/voc-show" stats "$BATS_TEST_TMPDIR/stats.pack"
}

@test "--help, --version, --describe" {
    assert_help_version "$SYN" '--describe'
    run "$SYN" --describe
    assert_success
    assert_equal "${#lines[@]}" 6
    assert_line --index 0 --regexp '^1 aeroplane: triangle'
    assert_line --index 1 --regexp '^3 bird: triangle'
}

@test "usage errors exit 2" {
    run "$SYN"
    assert_failure 2
    assert_output --partial 'missing -o DIR'
    run "$SYN" -o "$D" --classes 3,3
    assert_failure 2
    assert_output --partial 'given twice'
    assert_usage_error "$SYN" '--seed takes a non-negative integer' -o "$D" --seed 0x10
    assert_usage_errors "$SYN" "-o $D" '--size 8' '--size 60:40' '--classes 1,2,x' \
        '--classes 1,2,3,4,5,6,7,8,9' '--seed -4' '--train 0 --val 0' extra
    assert_usage_error "$SYN" "unknown option '--what'" -o "$D" --what
    assert_unknown_options "$SYN"
    [ ! -e "$D" ]
}

@test "VOC layout: JPEGs, palette PNG labels, train/val/trainval lists" {
    run "$SYN" -o "$D" -n 5 --val 3 --size 40:56
    assert_success
    assert_output --regexp '^wrote 5 train \+ 3 val images'
    assert_equal "$(cat "$D/ImageSets/Segmentation/train.txt" | tr '\n' ' ')" \
        "synth_000000 synth_000001 synth_000002 synth_000003 synth_000004 "
    assert_equal "$(cat "$D/ImageSets/Segmentation/val.txt" | tr '\n' ' ')" \
        "synth_000005 synth_000006 synth_000007 "
    assert_equal "$(cat "$D/ImageSets/Segmentation/trainval.txt" | wc -l)" 8
    for id in $(cat "$D/ImageSets/Segmentation/trainval.txt"); do
        # JPEG SOI marker, PNG colour type 3 (palette) at byte 25
        assert_equal "$(od -An -tx1 -N2 "$D/JPEGImages/$id.jpg" | tr -d ' ')" ffd8
        assert_equal "$(od -An -tu1 -j25 -N1 "$D/SegmentationClass/$id.png" | tr -d ' ')" 3
    done
    # sizes within 40..56
    "$PSPKD_BIN/voc-pack" -q "$D" --split trainval -o "$BATS_TEST_TMPDIR/p"
    run "$PSPKD_BIN/voc-show" list "$BATS_TEST_TMPDIR/p"
    while read -r _ _ wh _; do
        w=${wh%x*} h=${wh#*x}
        [ "$w" -ge 40 ] && [ "$w" -le 56 ] && [ "$h" -ge 40 ] && [ "$h" -le 56 ]
    done <<<"$output"
}

@test "same seed gives identical files, another seed does not" {
    "$SYN" -q -o "$D/a" -n 4 --val 2 --size 33:48 --seed 42
    "$SYN" -q -o "$D/b" -n 4 --val 2 --size 33:48 --seed 42
    "$SYN" -q -o "$D/c" -n 4 --val 2 --size 33:48 --seed 43
    diff -r "$D/a" "$D/b"
    run diff -rq "$D/a/JPEGImages" "$D/c/JPEGImages"
    assert_failure
    run diff -rq "$D/a/SegmentationClass" "$D/c/SegmentationClass"
    assert_failure
    # seeds are decimal: 042 is 42 (not octal 34)
    "$SYN" -q -o "$D/d" -n 4 --val 2 --size 33:48 --seed 042
    diff -r "$D/a" "$D/d"
    # a sample does not depend on how many are made: train 4 + val 2 and
    # train 6 share their first six samples
    "$SYN" -q -o "$D/e" -n 6 --val 0 --size 33:48 --seed 42
    for i in 0 1 2 3 4 5; do
        cmp "$D/a/JPEGImages/synth_00000$i.jpg" "$D/e/JPEGImages/synth_00000$i.jpg"
    done
}

@test "labels hold background, the chosen class ids and the 255 band only" {
    "$SYN" -q -o "$D" -n 12 --val 0 --size 48:64 --classes 2,4 --seed 3
    run label_stats "$D" 5
    assert_success
    assert_equal "$(cut -d' ' -f1 <<<"$output" | tr '\n' ' ')" "0 2 4 255 "
    # packing with fewer classes rejects the out-of-range id
    run label_stats "$D" 4
    assert_failure 1
    assert_output --partial 'label value 4'
}

@test "--border 0 gives no 255 pixels, a wider border more" {
    "$SYN" -q -o "$D/b0" -n 4 --val 0 --size 48 --border 0
    "$SYN" -q -o "$D/b1" -n 4 --val 0 --size 48 --border 1
    "$SYN" -q -o "$D/b3" -n 4 --val 0 --size 48 --border 3
    run label_stats "$D/b0"
    refute_line --regexp '^255 '
    n1=$(label_stats "$D/b1" | awk '$1 == 255 {print $3}')
    n3=$(label_stats "$D/b3" | awk '$1 == 255 {print $3}')
    [ "$n1" -gt 0 ]
    [ "$n3" -gt $((2 * n1)) ]
    # and the images do not change with the border
    diff -r "$D/b0/JPEGImages" "$D/b3/JPEGImages"
}

@test "every class appears and objects cover a fair share of the pixels" {
    "$SYN" -q -o "$D" -n 40 --val 0 --size 48:64 --seed 11
    run label_stats "$D"
    assert_success
    for c in 1 3 7 8 12 15; do assert_line --regexp "^$c [a-z]+ [0-9]+ [0-9]+$"; done
    bg=$(awk '$1 == 0 {print $3}' <<<"$output")
    all=$(awk '{s += $3} END {print s}' <<<"$output")
    # background is most, but not nearly all, of the picture
    [ $((bg * 100 / all)) -ge 40 ] && [ $((bg * 100 / all)) -le 90 ]
}

@test "a non-empty output directory needs --force" {
    mkdir -p "$D"
    echo x >"$D/keep"
    run "$SYN" -o "$D" -n 1 --val 0
    assert_failure 1
    assert_output "voc-synth: $D: exists and is not empty (use --force)"
    run "$SYN" -q -o "$D" -n 1 --val 0 --force
    assert_success
    [ -f "$D/keep" ] && [ -f "$D/JPEGImages/synth_000000.jpg" ]
}

@test "an output path under a file fails with exit 1" {
    echo x >"$BATS_TEST_TMPDIR/file"
    run "$SYN" -o "$BATS_TEST_TMPDIR/file/sub" -n 1 --val 0
    assert_failure 1
    assert_output --partial 'voc-synth: '
}
