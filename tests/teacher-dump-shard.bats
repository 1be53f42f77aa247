#!/usr/bin/env bats
# teacher-dump --shard I/N and --merge (issue #16): slices computed apart
# join into the cache one run makes (record for record); a missing,
# repeated or foreign slice is refused with the key it concerns.

load common

setup_file() {
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 8 0 5
    pack "$DATA/voc" train "$DATA/train.lmdb"
    synth "$DATA/voc2" 8 0 6
    pack "$DATA/voc2" train "$DATA/other.lmdb"
    tiny_model "$DATA/train.lmdb" "$DATA/teacher.safetensors" --iters 1 --freeze
    TD=("$PSPKD_BIN/teacher-dump" -q -t 1 -m "$DATA/teacher.safetensors")
    "${TD[@]}" -d "$DATA/train.lmdb" -o "$DATA/whole.lmdb" >/dev/null
    for i in 0 1 2; do
        "${TD[@]}" -d "$DATA/train.lmdb" --shard $i/3 -o "$DATA/s$i.lmdb" >/dev/null
    done
    "${TD[@]}" -d "$DATA/other.lmdb" --shard 0/3 -o "$DATA/o0.lmdb" >/dev/null
}

setup() {
    TDP="$PSPKD_BIN/teacher-dump"
    D="$BATS_TEST_TMPDIR"
}

@test "three slices merge into the cache of one run, and student-distill reads it" {
    run "$TDP" -d "$DATA/train.lmdb" --shard 1/3 -m "$DATA/teacher.safetensors" -t 1 \
        -o "$D/x.lmdb"
    assert_success
    assert_output --partial 'images        3 (computed 3, kept 0, missing 0)'
    run "$TDP" --merge "$D/m.lmdb" -d "$DATA/train.lmdb" "$DATA/s2.lmdb" "$DATA/s0.lmdb" \
        "$DATA/s1.lmdb"
    assert_success
    assert_output "teacher-dump: merged 8 images from 3 slices into $D/m.lmdb"
    diff <(mdb_dump -n "$DATA/whole.lmdb") <(mdb_dump -n "$D/m.lmdb")
    run "$PSPKD_BIN/student-distill" -q -d "$DATA/train.lmdb" -l "$D/m.lmdb" -b 2 --crop 33 \
        --threads 1 --iters 1 -o "$D/s.safetensors"
    assert_success
}

@test "missing, overlapping and foreign slices are refused; nothing is written" {
    run "$TDP" --merge "$D/m.lmdb" -d "$DATA/train.lmdb" "$DATA/s0.lmdb" "$DATA/s2.lmdb"
    assert_failure 1
    assert_output --regexp '^teacher-dump: [0-9a-z_]+: in no slice \(a slice is missing or incomplete\)$'
    run "$TDP" --merge "$D/m.lmdb" -d "$DATA/train.lmdb" "$DATA/s0.lmdb" "$DATA/s1.lmdb" \
        "$DATA/s1.lmdb" "$DATA/s2.lmdb"
    assert_failure 1
    assert_output --partial "in both $DATA/s1.lmdb and $DATA/s1.lmdb (overlapping slices)"
    run "$TDP" --merge "$D/m.lmdb" -d "$DATA/train.lmdb" "$DATA/s0.lmdb" "$DATA/whole.lmdb"
    assert_failure 1
    assert_output --partial '(overlapping slices)'
    run "$TDP" --merge "$D/m.lmdb" -d "$DATA/train.lmdb" "$DATA/o0.lmdb" "$DATA/s1.lmdb" \
        "$DATA/s2.lmdb"
    assert_failure 1
    assert_output "teacher-dump: $DATA/o0.lmdb: a slice of another data pack than $DATA/train.lmdb"
    [ ! -e "$D/m.lmdb" ]
}

@test "--shard and --merge usage errors" {
    for s in 3/3 -1/2 1 1/0 a/b 1/2x; do
        run "$TDP" -m x -d y -o z --shard "$s"
        assert_failure 2
        assert_output --partial '--shard takes I/N with 0 <= I < N <= 65536'
    done
    run "$TDP" --merge out -d "$DATA/train.lmdb"
    assert_failure 2
    assert_output --partial '--merge needs at least one SLICE'
    run "$TDP" --merge out "$DATA/s0.lmdb"
    assert_failure 2
    assert_output --partial '--merge LOGITS takes -d DATA and the SLICE caches only'
}
