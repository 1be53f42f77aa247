#!/usr/bin/env bats
# voc-pack on a tiny voc-synth set: the happy path, every bad input, and
# the option conventions.

load common

setup_file() {
    export SRC="$BATS_FILE_TMPDIR/voc"
    synth "$SRC" 6 2 5
}

setup() {
    PACK="$PSPKD_BIN/voc-pack"
    SHOW="$PSPKD_BIN/voc-show"
    ROOT="$BATS_TEST_TMPDIR/voc"
    cp -r "$SRC" "$ROOT"
    OUT="$BATS_TEST_TMPDIR/out"
    mkdir "$OUT"
}

# Packing the train split fails with exit 1, one line matching $1, and
# leaves nothing at all in $OUT: no pack, no temp file.
assert_pack_fails() {
    run "$PACK" -q "$ROOT" --split train -o "$OUT/p"
    assert_failure 1
    assert_output --regexp "$1"
    assert_equal "${#lines[@]}" 1
    assert_empty_dir "$OUT"
}

@test "--help prints usage on stdout and exits 0; --version" {
    assert_help_version "$PACK" '--skip-bad'
}

@test "usage errors exit 2" {
    run "$PACK"
    assert_failure 2
    assert_output --partial 'missing VOC_ROOT'
    assert_usage_error "$PACK" "unknown option '--bogus'" --bogus "$ROOT" --split train -o "$OUT/p"
    assert_unknown_options "$PACK"
    assert_usage_error "$PACK" "option '--skip-bad' takes no argument" --skip-bad=yes
    run "$PACK" "$ROOT" -o "$OUT/p"
    assert_failure 2
    assert_output --partial 'exactly one of --split and --list'
    assert_usage_errors "$PACK" "$ROOT --split train" "--list x -o $OUT/p" '' \
        "-o $OUT/p --store png" "-o $OUT/p --jobs 0" "-o $OUT/p --classes 256" "-o $OUT/p extra"
    assert_empty_dir "$OUT"
}

@test "packs a split in list order; records check and the summary reports images/s" {
    run --separate-stderr "$PACK" "$ROOT" --split train -o "$OUT/p"
    assert_success
    assert_output --regexp '^packed 6 records \(rgb\) into .* images/s, pack id [0-9a-f]{16}$'
    run ls -A "$OUT"
    assert_output 'p'
    run "$SHOW" list "$OUT/p"
    assert_success
    assert_equal "$(cut -d' ' -f2 <<<"$output" | tr '\n' ' ')" \
        "$(tr '\n' ' ' <"$ROOT/ImageSets/Segmentation/train.txt")"
    assert_line --index 0 --regexp '^0 synth_000000 [0-9]+x[0-9]+ rgb [0-9]+$'
    run "$SHOW" check "$OUT/p"
    assert_success
    assert_output --partial 'ok: 6 records, 21 classes'
}

@test "labels and images extract back bit-exact" {
    "$PACK" -q "$ROOT" --split trainval -o "$OUT/rgb"
    "$PACK" -q "$ROOT" --split trainval -o "$OUT/jpeg" --store jpeg
    mkdir "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
    run "$SHOW" extract --all -d "$BATS_TEST_TMPDIR/a" "$OUT/rgb"
    assert_success
    "$SHOW" extract --all -d "$BATS_TEST_TMPDIR/b" "$OUT/jpeg"
    for id in $(cat "$ROOT/ImageSets/Segmentation/trainval.txt"); do
        # voc-synth and voc-show write palette PNGs the same way, so equal
        # label indices give equal files
        cmp "$BATS_TEST_TMPDIR/a/${id}_label.png" "$ROOT/SegmentationClass/$id.png"
        cmp "$BATS_TEST_TMPDIR/b/${id}_label.png" "$ROOT/SegmentationClass/$id.png"
        # RGB8 storage holds exactly what decoding the stored JPEG gives
        cmp "$BATS_TEST_TMPDIR/a/$id.png" "$BATS_TEST_TMPDIR/b/$id.png"
    done
    run "$SHOW" meta "$OUT/jpeg"
    assert_line 'images: jpeg'
    assert_line 'records: 8'
}

@test "a semseg pair list gives the same pack as the id list; --jobs does not change it" {
    sed 's|.*|JPEGImages/&.jpg SegmentationClass/&.png|' \
        "$ROOT/ImageSets/Segmentation/train.txt" >"$BATS_TEST_TMPDIR/pairs.txt"
    a=$("$PACK" "$ROOT" --split train -o "$OUT/a" -j 1 2>/dev/null)
    b=$("$PACK" "$ROOT" --list "$BATS_TEST_TMPDIR/pairs.txt" -o "$OUT/b" -j 3 2>/dev/null)
    assert_equal "${a##* }" "${b##* }"
    cmp "$OUT/a" "$OUT/b"
}

@test "--label-dir and the SegmentationClassAug fallback" {
    mv "$ROOT/SegmentationClass" "$ROOT/SegmentationClassAug"
    run "$PACK" -q "$ROOT" --split train -o "$OUT/a"
    assert_success
    mv "$ROOT/SegmentationClassAug" "$ROOT/Labels"
    run "$PACK" -q "$ROOT" --split train -o "$OUT/b" --label-dir Labels
    assert_success
    cmp "$OUT/a" "$OUT/b"
}

@test "missing image: one line naming the id and file, exit 1, no output" {
    rm "$ROOT/JPEGImages/synth_000002.jpg"
    assert_pack_fails "^voc-pack: synth_000002: $ROOT/JPEGImages/synth_000002.jpg: No such file or directory\$"
}

@test "missing label file" {
    rm "$ROOT/SegmentationClass/synth_000003.png"
    assert_pack_fails '^voc-pack: synth_000003: .*synth_000003.png: No such file or directory$'
}

@test "corrupt JPEG" {
    printf 'this is not a JPEG' >"$ROOT/JPEGImages/synth_000001.jpg"
    assert_pack_fails '^voc-pack: synth_000001: .*synth_000001.jpg: corrupt JPEG: Not a JPEG file'
}

@test "truncated JPEG" {
    f="$ROOT/JPEGImages/synth_000004.jpg"
    head -c $(($(stat -c %s "$f") / 2)) "$SRC/JPEGImages/synth_000004.jpg" >"$f"
    assert_pack_fails '^voc-pack: synth_000004: .*: corrupt JPEG: Premature end of JPEG file$'
}

@test "truncated PNG" {
    f="$ROOT/SegmentationClass/synth_000000.png"
    head -c $(($(stat -c %s "$f") - 30)) "$SRC/SegmentationClass/synth_000000.png" >"$f"
    assert_pack_fails '^voc-pack: synth_000000: .*synth_000000.png: corrupt PNG: '
}

@test "corrupt PNG" {
    printf '\211PNG\r\n\032\nnot really' >"$ROOT/SegmentationClass/synth_000005.png"
    assert_pack_fails '^voc-pack: synth_000005: .*synth_000005.png: corrupt PNG: '
}

@test "image/label size mismatch" {
    # give synth_000001 the label of an image of another size
    cp "$ROOT/SegmentationClass/synth_000000.png" "$ROOT/SegmentationClass/synth_000001.png"
    # the sizes named are the real ones
    "$PACK" -q "$SRC" --split train -o "$BATS_TEST_TMPDIR/good"
    sizes=$("$SHOW" list "$BATS_TEST_TMPDIR/good" | awk '{print $3}')
    # (named from the label's header, before it is decoded)
    assert_pack_fails "^voc-pack: synth_000001: .*synth_000001.png: label $(sed -n 1p <<<"$sizes") but image $(sed -n 2p <<<"$sizes")\$"
}

@test "label value out of range" {
    run "$PACK" -q "$ROOT" --split train -o "$OUT/p" --classes 2
    assert_failure 1
    assert_output --regexp '^voc-pack: synth_000000: .*synth_000000.png: label value [0-9]+ at \([0-9]+,[0-9]+\) out of range \(classes 2, ignore 255\)$'
    assert_empty_dir "$OUT"
}

@test "unreadable, missing, empty and malformed lists" {
    run "$PACK" -q "$ROOT" --list "$BATS_TEST_TMPDIR/none.txt" -o "$OUT/p"
    assert_failure 1
    assert_output "voc-pack: $BATS_TEST_TMPDIR/none.txt: No such file or directory"
    run "$PACK" -q "$ROOT" --list "$ROOT" -o "$OUT/p"
    assert_failure 1
    assert_output "voc-pack: $ROOT: read error: Is a directory"
    run "$PACK" -q "$ROOT" --split nosuchsplit -o "$OUT/p"
    assert_failure 1
    assert_output --partial 'nosuchsplit.txt: No such file or directory'
    : >"$BATS_TEST_TMPDIR/empty.txt"
    run "$PACK" -q "$ROOT" --list "$BATS_TEST_TMPDIR/empty.txt" -o "$OUT/p"
    assert_failure 1
    assert_output --partial 'empty list'
    echo 'a b c' >"$BATS_TEST_TMPDIR/three.txt"
    run "$PACK" -q "$ROOT" --list "$BATS_TEST_TMPDIR/three.txt" -o "$OUT/p"
    assert_failure 1
    assert_output "voc-pack: $BATS_TEST_TMPDIR/three.txt:1: expected an id or 'image label'"
    if [ "$(id -u)" != 0 ]; then # root reads a mode-000 file anyway
        cp "$ROOT/ImageSets/Segmentation/train.txt" "$BATS_TEST_TMPDIR/locked.txt"
        chmod 000 "$BATS_TEST_TMPDIR/locked.txt"
        run "$PACK" -q "$ROOT" --list "$BATS_TEST_TMPDIR/locked.txt" -o "$OUT/p"
        assert_failure 1
        assert_output --partial 'Permission denied'
    fi
    assert_empty_dir "$OUT"
}

@test "existing output needs --force" {
    echo keep >"$OUT/p"
    run "$PACK" -q "$ROOT" --split train -o "$OUT/p"
    assert_failure 1
    assert_output "voc-pack: $OUT/p: exists (use --force to replace it)"
    assert_equal "$(cat "$OUT/p")" keep
    run "$PACK" -q "$ROOT" --split train -o "$OUT/p" --force
    assert_success
    run "$SHOW" check "$OUT/p"
    assert_success
}

@test "disk full (file size limit): clear message, no output" {
    # ulimit -f makes writes past 64 KiB fail (EFBIG / short write) for
    # root and non-root alike; the pack needs more than that
    run bash -c "ulimit -f 64; exec '$PACK' -q '$ROOT' --split trainval -o '$OUT/p'"
    assert_failure 1
    assert_output --regexp "^voc-pack: $OUT/p: writing failed \(disk full or file size limit\?\): "
    assert_empty_dir "$OUT"
}

@test "--skip-bad packs the rest and reports how many and which" {
    rm "$ROOT/JPEGImages/synth_000001.jpg"
    printf 'junk' >"$ROOT/SegmentationClass/synth_000004.png"
    run --separate-stderr "$PACK" "$ROOT" --split train -o "$OUT/p" --skip-bad
    assert_success
    assert_output --partial 'packed 4 records'
    [[ "$stderr" == *"voc-pack: synth_000001: "*"(skipped)"* ]]
    [[ "$stderr" == *"voc-pack: skipped 2 of 6: synth_000001 synth_000004"* ]]
    run "$SHOW" list "$OUT/p"
    assert_equal "$(cut -d' ' -f1,2 <<<"$output" | tr '\n' ' ')" \
        "0 synth_000000 1 synth_000002 2 synth_000003 3 synth_000005 "
    run "$SHOW" check "$OUT/p"
    assert_success
}

@test "--skip-bad with nothing good left fails and writes nothing" {
    run "$PACK" -q "$ROOT" --split train -o "$OUT/p" --skip-bad --classes 1
    assert_failure 1
    assert_line 'voc-pack: no valid samples: nothing written'
    assert_empty_dir "$OUT"
}

@test "RGB-coloured label PNGs are mapped through the VOC palette" {
    "$PACK" -q "$ROOT" --split train -o "$OUT/a"
    for f in "$ROOT"/SegmentationClass/*.png; do
        "$PSPKD_TEST_HELPERS/helper_png_rgb" "$f" "$f.rgb.png" && mv "$f.rgb.png" "$f"
    done
    # byte 25 of a PNG is IHDR's colour type: 2 is RGB
    [ "$(od -An -tu1 -j25 -N1 "$ROOT/SegmentationClass/synth_000000.png" | tr -d ' ')" = 2 ]
    run "$PACK" -q "$ROOT" --split train -o "$OUT/b"
    assert_success
    cmp "$OUT/a" "$OUT/b"
}

# ---- unlabelled packs (--unlabeled) -------------------------------------

@test "--unlabeled: usage errors" {
    assert_usage_error "$PACK" '--label-dir does not go with --unlabeled' \
        --unlabeled -L Labels "$ROOT" --split train -o "$OUT/u"
    assert_usage_error "$PACK" 'give exactly one of --split and --list' \
        --unlabeled "$ROOT" --split train --list x -o "$OUT/u"
    assert_usage_error "$PACK" "option '--unlabeled' takes no argument" --unlabeled=1
    assert_empty_dir "$OUT"
}

@test "a labelled list with a missing mask fails; --unlabeled packs the same list" {
    rm "$ROOT/SegmentationClass/synth_000003.png"
    assert_pack_fails '^voc-pack: synth_000003: .*synth_000003.png: No such file or directory$'
    run --separate-stderr "$PACK" "$ROOT" --unlabeled --split train -o "$OUT/u"
    assert_success
    assert_output --regexp '^packed 6 records \(rgb, unlabelled\) into .*, pack id [0-9a-f]{16}$'
    run "$SHOW" meta "$OUT/u"
    assert_line 'labels: none (unlabelled pack)'
    run "$SHOW" check "$OUT/u"
    assert_success
    assert_output --regexp '^ok: 6 records \(unlabelled\), 21 classes'
    # every label is 255 (ignore)
    run "$SHOW" stats "$OUT/u"
    assert_output --regexp '^255 ignore [0-9]+ 6$'
    assert_equal "${#lines[@]}" 1
}

@test "--unlabeled: the same images from ids, image paths, pairs or a folder of JPEGs" {
    "$PACK" -q "$ROOT" --unlabeled --split train -o "$OUT/ids"
    sed 's|.*|JPEGImages/&.jpg|' "$ROOT/ImageSets/Segmentation/train.txt" >"$OUT/paths.txt"
    "$PACK" -q "$ROOT" --unlabeled --list "$OUT/paths.txt" -o "$OUT/paths"
    sed 's|.*|JPEGImages/&.jpg SegmentationClass/&.png|' \
        "$ROOT/ImageSets/Segmentation/train.txt" >"$OUT/pairs.txt"
    "$PACK" -q "$ROOT" --unlabeled --list "$OUT/pairs.txt" -o "$OUT/pairs"
    cmp "$OUT/ids" "$OUT/paths"
    cmp "$OUT/ids" "$OUT/pairs"
    # a plain folder: every *.jpg in name order (train and val here)
    mkdir "$OUT/jpegs"
    cp "$ROOT"/JPEGImages/*.jpg "$OUT/jpegs/"
    echo "not an image" >"$OUT/jpegs/notes.txt"
    run "$PACK" --unlabeled --store jpeg "$OUT/jpegs" -o "$OUT/dir"
    assert_success
    assert_output --partial 'packed 8 records (jpeg, unlabelled)'
    run "$SHOW" list "$OUT/dir"
    assert_line --index 0 --regexp '^0 synth_000000 '
    assert_line --index 7 --regexp '^7 synth_000007 '
    "$SHOW" check "$OUT/dir"
    # no label written by extract
    mkdir "$OUT/x"
    "$SHOW" extract -d "$OUT/x" "$OUT/dir" 0
    [ -e "$OUT/x/synth_000000.png" ] && [ ! -e "$OUT/x/synth_000000_label.png" ]
}

@test "--unlabeled: a folder without JPEGs, a missing image" {
    mkdir "$OUT/empty"
    run "$PACK" -q --unlabeled "$OUT/empty" -o "$OUT/u"
    assert_failure 1
    assert_output "voc-pack: $OUT/empty: no JPEG images (*.jpg, *.jpeg)"
    rm "$ROOT/JPEGImages/synth_000002.jpg"
    run "$PACK" -q --unlabeled "$ROOT" --split train -o "$OUT/u"
    assert_failure 1
    assert_output "voc-pack: synth_000002: $ROOT/JPEGImages/synth_000002.jpg: No such file or directory"
    [ ! -e "$OUT/u" ]
}
