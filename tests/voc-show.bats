#!/usr/bin/env bats
# voc-show: list, header, meta, extract, check, stats on a tiny pack, and
# its errors on missing records and damaged packs.

load common

setup_file() {
    export SRC="$BATS_FILE_TMPDIR/voc"
    export P="$BATS_FILE_TMPDIR/pack"
    synth "$SRC" 4 1 9
    "$PSPKD_BIN/voc-pack" "$SRC" --split train -o "$P" >"$BATS_FILE_TMPDIR/summary" 2>/dev/null
}

setup() {
    SHOW="$PSPKD_BIN/voc-show"
}

@test "--help and --version" {
    assert_help_version "$SHOW" 'extract PACK RECORD'
}

@test "usage errors exit 2" {
    run "$SHOW"
    assert_failure 2
    run "$SHOW" list
    assert_failure 2
    assert_output --partial 'missing PACK'
    run "$SHOW" frobnicate "$P"
    assert_failure 2
    assert_output --partial "unknown command 'frobnicate'"
    assert_usage_errors "$SHOW" '' "header $P" "list $P extra" "--all list $P"
    assert_usage_error "$SHOW" "unknown option '--nope'" --nope list "$P"
    assert_unknown_options "$SHOW"
    assert_usage_error "$SHOW" "option '-d' needs an argument" extract "$P" 0 -d
    assert_usage_error "$SHOW" "option '--dir' needs an argument" extract "$P" 0 --dir
}

@test "list: one line per record in order" {
    run "$SHOW" list "$P"
    assert_success
    assert_equal "${#lines[@]}" 4
    assert_line --index 0 --regexp '^0 synth_000000 [0-9]+x[0-9]+ rgb [0-9]+$'
    assert_line --index 3 --regexp '^3 synth_000003 '
}

@test "header by index, key and id are the same record" {
    run "$SHOW" header "$P" 2
    assert_success
    a=$output
    assert_line 'id: synth_000002'
    assert_line 'version: 1'
    assert_line --regexp '^crc32: [0-9a-f]{8}$'
    assert_line --regexp '^label: u8 indices, [0-9]+ bytes$'
    run "$SHOW" header "$P" 00000002_synth_000002
    assert_equal "$output" "$a"
    run "$SHOW" header "$P" synth_000002
    assert_equal "$output" "$a"
    w=$(sed -n 's/^width: //p' <<<"$a")
    h=$(sed -n 's/^height: //p' <<<"$a")
    assert_line "image: rgb, $((w * h * 3)) bytes"
}

@test "meta: counts, classes, palette, the pack id voc-pack printed" {
    run "$SHOW" meta "$P"
    assert_success
    assert_line 'records: 4'
    assert_line 'classes: 21'
    assert_line 'class 0: background 0,0,0'
    assert_line 'class 1: aeroplane 128,0,0'
    assert_line 'class 20: tvmonitor 0,64,128'
    assert_line 'ignore 255: 224,224,192'
    id=$(awk '{print $NF}' "$BATS_FILE_TMPDIR/summary")
    assert_line "pack id: $id"
}

@test "extract: RGB image and palette label, label bit-exact" {
    d="$BATS_TEST_TMPDIR/x"
    mkdir "$d"
    run "$SHOW" extract "$P" 1 synth_000003 -d "$d"
    assert_success
    run ls "$d"
    assert_output "$(printf 'synth_000001.png\nsynth_000001_label.png\nsynth_000003.png\nsynth_000003_label.png')"
    cmp "$d/synth_000001_label.png" "$SRC/SegmentationClass/synth_000001.png"
    cmp "$d/synth_000003_label.png" "$SRC/SegmentationClass/synth_000003.png"
    # PNG colour types (byte 25): 2 = RGB image, 3 = palette label
    assert_equal "$(od -An -tu1 -j25 -N1 "$d/synth_000001.png" | tr -d ' ')" 2
    assert_equal "$(od -An -tu1 -j25 -N1 "$d/synth_000001_label.png" | tr -d ' ')" 3
}

@test "stats: label values with names, 255 present, totals match the sizes" {
    run "$SHOW" stats "$P"
    assert_success
    assert_line --index 0 --regexp '^0 background [0-9]+ 4$'
    assert_line --regexp '^255 ignore [0-9]+ [1-4]$'
    total=$(awk '{s += $3} END {print s}' <<<"$output")
    want=$("$SHOW" list "$P" | awk '{split($3, d, "x"); s += d[1] * d[2]} END {print s}')
    assert_equal "$total" "$want"
}

@test "check passes on a good pack" {
    run "$SHOW" check "$P"
    assert_success
    assert_output --regexp '^ok: 4 records, 21 classes, pack id [0-9a-f]{16}$'
}

@test "missing record, missing pack, not a pack, bad extract dir: exit 1" {
    run "$SHOW" header "$P" synth_999999
    assert_failure 1
    assert_output "voc-show: $P: no record synth_999999"
    run "$SHOW" header "$P" 17
    assert_failure 1
    run "$SHOW" list "$BATS_TEST_TMPDIR/none"
    assert_failure 1
    assert_output "voc-show: $BATS_TEST_TMPDIR/none: No such file or directory"
    head -c 20000 /dev/zero >"$BATS_TEST_TMPDIR/zeros"
    run "$SHOW" list "$BATS_TEST_TMPDIR/zeros"
    assert_failure 1
    assert_output --partial 'voc-show: '
    run "$SHOW" extract "$P" 0 -d "$BATS_TEST_TMPDIR/nodir"
    assert_failure 1
    assert_output --partial 'nodir: No such file or directory'
}

@test "a flipped byte in a record is a CRC error in check, list and extract" {
    cp "$P" "$BATS_TEST_TMPDIR/bad"
    # a record value starts with "PKDR"; its id is at +36 (12 bytes here);
    # flip a byte 300 bytes into the record's pixels
    off=$(grep -obUa 'PKDR' "$BATS_TEST_TMPDIR/bad" | head -1 | cut -d: -f1)
    [ -n "$off" ]
    id=$(dd if="$BATS_TEST_TMPDIR/bad" bs=1 skip=$((off + 36)) count=12 status=none)
    [[ "$id" == synth_00000[0-3] ]]
    byte=$(od -An -tu1 -j $((off + 300)) -N1 "$BATS_TEST_TMPDIR/bad" | tr -d ' ')
    printf "$(printf '\\%03o' $(((byte + 1) % 256)))" |
        dd of="$BATS_TEST_TMPDIR/bad" bs=1 seek=$((off + 300)) conv=notrunc status=none
    cmp -s "$P" "$BATS_TEST_TMPDIR/bad" && false
    run "$SHOW" check "$BATS_TEST_TMPDIR/bad"
    assert_failure 1
    assert_output --regexp "^voc-show: .*/bad: record 0000000${id: -1}_$id: $id: CRC mismatch \(stored [0-9a-f]{8}, computed [0-9a-f]{8}\)$"
    run "$SHOW" list "$BATS_TEST_TMPDIR/bad"
    assert_failure 1
    assert_output --partial 'CRC mismatch'
    mkdir "$BATS_TEST_TMPDIR/x"
    run "$SHOW" extract "$BATS_TEST_TMPDIR/bad" "$id" -d "$BATS_TEST_TMPDIR/x"
    assert_failure 1
    assert_output --partial 'CRC mismatch'
    other=synth_00000$(((${id: -1} + 1) % 4))
    run "$SHOW" header "$BATS_TEST_TMPDIR/bad" "$other"
    assert_success
}

@test "overlap: shared image ids are listed and refused; disjoint packs pass" {
    local T="$BATS_TEST_TMPDIR"
    "$PSPKD_BIN/voc-pack" -q "$SRC" --split val -o "$T/val"
    "$PSPKD_BIN/voc-pack" -q --unlabeled "$SRC/JPEGImages" -o "$T/all"
    run "$SHOW" overlap "$T/val" "$P"
    assert_success
    assert_output ''
    # the folder of every JPEG holds the val image: refused, naming it
    run --separate-stderr "$SHOW" overlap "$T/val" "$P" "$T/all"
    assert_failure 1
    assert_output "synth_000004 $T/all"
    [ "$stderr" = "voc-show: $T/val: 1 image ids also in another pack (first: $T/all)" ]
    assert_usage_error "$SHOW" 'missing OTHER pack' overlap "$P"
}
