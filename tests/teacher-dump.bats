#!/usr/bin/env bats
# teacher-dump on a tiny voc-synth set with a frozen ResNet18 teacher (one
# training step): the cache's content, resumption (--limit, SIGTERM)
# reproducing a one-shot run, an up-to-date cache left alone, and every bad
# input (unfrozen teacher, class mismatch, corrupt or truncated checkpoint,
# missing or empty LMDB, an output from another teacher or not a cache).

load common

setup_file() {
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 6 2 11
    pack "$DATA/voc" train "$DATA/train.lmdb"
    pack "$DATA/voc" train "$DATA/train22.lmdb" --classes 22
    tiny_model "$DATA/train.lmdb" "$DATA/unfrozen.safetensors" --augment none --iters 1 --seed 3
    "$PSPKD_BIN/teacher-train" --freeze-only "$DATA/unfrozen.safetensors" \
        -o "$DATA/teacher.safetensors"
    tiny_model "$DATA/train.lmdb" "$DATA/teacher2.safetensors" --augment none --iters 1 --seed 4 \
        --freeze
    # The one-shot reference cache.
    "$PSPKD_BIN/teacher-dump" -q -t 1 -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb" \
        -o "$DATA/ref.lmdb" >/dev/null
}

setup() {
    TD="$PSPKD_BIN/teacher-dump"
    D="$BATS_TEST_TMPDIR"
    RUN=(-q -t 1 -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb")
}

# Every key and value of an LMDB file, in key order.
lmdb_dump() { mdb_dump -n -p "$1" | sed -n '/^HEADER=END$/,$p'; }
# The keys only.
lmdb_keys() {
    mdb_dump -n -p "$1" | sed -n '/^HEADER=END$/,/^DATA=END$/p' | grep '^ ' | sed -n '1~2s/^ //p'
}

@test "--help prints usage on stdout and exits 0; --version" {
    assert_help_version "$TD" '--limit N'
}

@test "usage errors exit 2 with one message" {
    run "$TD"
    assert_failure 2
    assert_line --index 0 'teacher-dump: need -m TEACHER, -d DATA and -o LOGITS'
    run "$TD" -m a -d b
    assert_failure 2
    assert_usage_error "$TD" "unknown option '--bogus'" --bogus -m a -d b -o c
    assert_unknown_options "$TD"
    run "$TD" -m a -d b -o c -t -1
    assert_failure 2
    assert_output --partial '--threads takes'
    assert_usage_errors "$TD" '-m a -d b -o c' '--device tpu' '--limit -1' stray
    assert_usage_error "$TD" "option '-o' needs an argument" -m a -d b -o
    assert_usage_error "$TD" "option '--output' needs an argument" -m a -d b --output
}

@test "happy path: one record per pack key, metadata, summary and JSON" {
    run --separate-stderr "$TD" "${RUN[@]}" -o "$D/l.lmdb"
    assert_success
    assert_line --index 0 --regexp '^images +6 \(computed 6, kept 0, missing 0\)$'
    assert_output --regexp 'images/s +[0-9]+\.[0-9]+'
    assert_output --regexp 'bytes/image +[0-9]+ \(records [0-9]+\)'
    # Same keys as the pack; the metadata record last.
    diff <(lmdb_keys "$DATA/train.lmdb") <(lmdb_keys "$D/l.lmdb")
    [ "$(lmdb_keys "$D/l.lmdb" | tail -1)" = __meta__ ]
    [ "$(lmdb_keys "$D/l.lmdb" | wc -l)" = 7 ]
    # Deterministic: equal to the reference cache, record for record.
    diff <(lmdb_dump "$DATA/ref.lmdb") <(lmdb_dump "$D/l.lmdb")
    assert_no_temp "$D"
    run "$TD" "${RUN[@]}" -o "$D/j.lmdb" --json
    assert_success
    assert_output --regexp '^\{"images": 6, "computed": 6, "kept": 0, "missing": 0, "up_to_date": false, '
    assert_output --regexp '"images_per_s": [0-9.]+, "cache_bytes": [0-9]+, "bytes_per_image": [0-9.]+'
}

@test "records hold the geometry: magic, sizes padded to 8k+1, grid, 21 classes" {
    # The first record's value in hex (mdb_dump without -p: one line per key
    # and value, each a space and hex digits).
    local hex
    hex=$(mdb_dump -n "$DATA/ref.lmdb" | sed -n '/^HEADER=END$/,$p' | sed -n 3p | tr -d ' ')
    [ "${hex:0:8}" = 504b444c ] # "PKDL"
    # Little-endian u32 at byte offset $1.
    u32() { local x=${hex:$(($1 * 2)):8}; echo $((16#${x:6:2}${x:4:2}${x:2:2}${x:0:2})); }
    local iw ih pw ph gw gh k
    iw=$(u32 8) ih=$(u32 12) pw=$(u32 16) ph=$(u32 20) gw=$(u32 24) gh=$(u32 28) k=$(u32 32)
    # The image size from the pack.
    run "$PSPKD_BIN/voc-show" list "$DATA/train.lmdb"
    assert_success
    assert_line --index 0 --regexp " ${iw}x${ih} "
    [ $(((pw - 1) % 8)) = 0 ] && [ $((pw - iw)) -ge 0 ] && [ $((pw - iw)) -lt 8 ]
    [ $(((ph - 1) % 8)) = 0 ] && [ $((ph - ih)) -ge 0 ] && [ $((ph - ih)) -lt 8 ]
    [ "$gw" = $(((pw - 1) / 8 + 1)) ] && [ "$gh" = $(((ph - 1) / 8 + 1)) ]
    [ "$k" = 21 ]
    # Header, two fp16 planes of gh*gw*k, CRC.
    local klen=$((16#${hex:82:2}${hex:80:2}))
    local hdr=$((48 + klen + klen % 2))
    [ $((${#hex} / 2)) = $((hdr + 4 * gh * gw * k + 4)) ]
}

@test "resume after --limit reproduces the one-shot cache" {
    run "$TD" "${RUN[@]}" -o "$D/l.lmdb" --limit 2
    assert_success
    assert_line --index 0 --regexp '^images +2 \(computed 2, kept 0, missing 4\)$'
    [ "$(lmdb_keys "$D/l.lmdb" | wc -l)" = 3 ]
    run "$TD" "${RUN[@]}" -o "$D/l.lmdb" --limit 1
    assert_success
    assert_line --index 0 --regexp '^images +3 \(computed 1, kept 2, missing 3\)$'
    run "$TD" "${RUN[@]}" -o "$D/l.lmdb"
    assert_success
    assert_line --index 0 --regexp '^images +6 \(computed 3, kept 3, missing 0\)$'
    diff <(lmdb_dump "$DATA/ref.lmdb") <(lmdb_dump "$D/l.lmdb")
}

@test "a complete matching cache is left untouched" {
    cp "$DATA/ref.lmdb" "$D/l.lmdb"
    local before
    before=$(stat -c '%i %Y' "$D/l.lmdb")
    run "$TD" "${RUN[@]}" -o "$D/l.lmdb"
    assert_success
    assert_output --partial 'is up to date: 6 images'
    [ "$(stat -c '%i %Y' "$D/l.lmdb")" = "$before" ]
    cmp "$DATA/ref.lmdb" "$D/l.lmdb"
    run "$TD" "${RUN[@]}" -o "$D/l.lmdb" --json
    assert_output --partial '"up_to_date": true'
}

@test "SIGTERM mid-run keeps the computed records; a rerun gives the one-shot cache" {
    # Progress goes to a file (one line for the first image, off a TTY):
    # signal once the first image is done.
    "$TD" -t 1 -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb" \
        >"$D/out" 2>"$D/err" &
    local pid=$! i
    for i in $(seq 200); do
        grep -q '^teacher-dump 1/6' "$D/err" && break
        sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null || true
    local st=0
    wait "$pid" || st=$?
    assert_no_temp "$D"
    if [ "$st" = 143 ]; then
        # At least the first image was kept, and the message says so.
        grep -q 'interrupted: .* holds [1-6] of 6 images; run again to resume' "$D/err"
        local n
        n=$(lmdb_keys "$D/l.lmdb" | wc -l)
        [ "$n" -ge 2 ] && [ "$n" -le 7 ]
    else
        [ "$st" = 0 ] # finished before the signal
    fi
    run "$TD" "${RUN[@]}" -o "$D/l.lmdb"
    assert_success
    diff <(lmdb_dump "$DATA/ref.lmdb") <(lmdb_dump "$D/l.lmdb")
}

@test "--force recomputes; another teacher's cache is refused without it" {
    cp "$DATA/ref.lmdb" "$D/l.lmdb"
    run "$TD" -q -t 1 -m "$DATA/teacher2.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_output --partial 'holds logits of another teacher or data pack; use --force'
    cmp "$DATA/ref.lmdb" "$D/l.lmdb"
    run "$TD" -q -t 1 -m "$DATA/teacher2.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb" \
        --force
    assert_success
    assert_line --index 0 --regexp 'computed 6, kept 0'
    # Different teacher weights give different logits.
    ! diff -q <(lmdb_dump "$DATA/ref.lmdb") <(lmdb_dump "$D/l.lmdb") >/dev/null
    run "$TD" "${RUN[@]}" -o "$D/l.lmdb" --force
    assert_success
    diff <(lmdb_dump "$DATA/ref.lmdb") <(lmdb_dump "$D/l.lmdb")
}

@test "an output that is not a logits cache is refused" {
    cp "$DATA/train.lmdb" "$D/l.lmdb"
    run "$TD" "${RUN[@]}" -o "$D/l.lmdb"
    assert_failure 1
    assert_output --partial 'exists and is not a readable logits cache'
    cmp "$DATA/train.lmdb" "$D/l.lmdb"
    echo junk >"$D/j.lmdb"
    run "$TD" "${RUN[@]}" -o "$D/j.lmdb"
    assert_failure 1
    assert_output --partial 'use --force'
}

@test "an unfrozen teacher is refused" {
    run "$TD" -q -m "$DATA/unfrozen.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_output "teacher-dump: $DATA/unfrozen.safetensors is not frozen (run teacher-train --freeze)"
    [ ! -e "$D/l.lmdb" ]
}

@test "a class-count mismatch is refused" {
    run "$TD" -q -m "$DATA/teacher.safetensors" -d "$DATA/train22.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_output --partial 'has 21 classes'
    assert_output --partial 'train22.lmdb has 22'
    [ ! -e "$D/l.lmdb" ]
}

@test "corrupt and truncated checkpoints are refused" {
    head -c 3000 "$DATA/teacher.safetensors" >"$D/trunc.safetensors"
    run "$TD" -q -m "$D/trunc.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_line --index 0 --regexp '^teacher-dump: .*trunc\.safetensors'
    [ "${#lines[@]}" = 1 ]
    # A header length far beyond the file.
    cp "$DATA/teacher.safetensors" "$D/bad.safetensors"
    printf '\377\377\377\377' | dd of="$D/bad.safetensors" bs=1 seek=0 conv=notrunc status=none
    run "$TD" -q -m "$D/bad.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_line --index 0 --regexp '^teacher-dump: .*bad\.safetensors'
    echo 'not a model' >"$D/text.safetensors"
    run "$TD" -q -m "$D/text.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    run "$TD" -q -m "$D/none.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_output --partial 'none.safetensors'
    [ ! -e "$D/l.lmdb" ]
}

@test "missing, empty and non-pack LMDB files are refused" {
    run "$TD" -q -m "$DATA/teacher.safetensors" -d "$D/none.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_line --index 0 --regexp '^teacher-dump: .*none\.lmdb'
    empty_lmdb "$D/empty.lmdb"
    run "$TD" -q -m "$DATA/teacher.safetensors" -d "$D/empty.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_output --partial 'empty.lmdb: no metadata record'
    : >"$D/zero.lmdb"
    run "$TD" -q -m "$DATA/teacher.safetensors" -d "$D/zero.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    assert_line --index 0 --regexp '^teacher-dump: .*zero\.lmdb'
    # A logits cache is not a data pack.
    run "$TD" -q -m "$DATA/teacher.safetensors" -d "$DATA/ref.lmdb" -o "$D/l.lmdb"
    assert_failure 1
    [ ! -e "$D/l.lmdb" ]
}

@test "--precision bf16 dumps; fp16 is refused" {
    assert_precision "$TD" "${RUN[@]}" -f -o "$D/bf16.lmdb"
    [ -s "$D/bf16.lmdb" ]
}

@test "an unlabelled pack: the same records as the labelled pack of the same images; resumable" {
    "$PSPKD_BIN/voc-pack" -q --unlabeled "$DATA/voc" --split train -o "$D/u.lmdb"
    run "$TD" "${RUN[@]/$DATA\/train.lmdb/$D/u.lmdb}" -o "$D/u1.lmdb" --limit 2
    assert_success
    assert_line --index 0 --regexp '^images +2 \(computed 2, kept 0, missing 4\)$'
    run "$TD" "${RUN[@]/$DATA\/train.lmdb/$D/u.lmdb}" -o "$D/u1.lmdb"
    assert_success
    assert_line --index 0 --regexp '^images +6 \(computed 4, kept 2, missing 0\)$'
    # every logits record (all but the metadata, the last key) as for the labelled pack
    diff <(lmdb_dump "$DATA/ref.lmdb" | head -n -3) <(lmdb_dump "$D/u1.lmdb" | head -n -3)
    # the metadata names the unlabelled pack: student-distill tells them apart
    ! diff <(lmdb_dump "$DATA/ref.lmdb") <(lmdb_dump "$D/u1.lmdb") >/dev/null
}
