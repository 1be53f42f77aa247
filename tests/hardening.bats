#!/usr/bin/env bats
# Bad input across the tools (issue #13): truncated and crafted LMDB files,
# incomplete caches, non-finite numbers, outputs that are inputs or device
# nodes, ids that leave a folder, two runs on one output, labels outside
# the classes. Each refusal is one line "tool: ..." and a non-zero exit, with
# no crash and nothing half-written.

load common

setup_file() {
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 6 2 21
    pack "$DATA/voc" train "$DATA/train.lmdb"
    pack "$DATA/voc" val "$DATA/val.lmdb"
    tiny_model "$DATA/train.lmdb" "$DATA/teacher.safetensors" --augment none --iters 1 \
        --seed 3 --freeze
    "$PSPKD_BIN/teacher-dump" -q -t 1 -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb" \
        -o "$DATA/logits.lmdb"
}

setup() {
    B="$PSPKD_BIN"
    D="$BATS_TEST_TMPDIR"
    SD=("$B/student-distill" -q -b 2 --crop 33 --threads 1 --iters 1)
}

# A background run a failed test leaves behind.
teardown() {
    [ -z "${BG_PID:-}" ] || kill "$BG_PID" 2>/dev/null || true
}

# poke FILE OFFSET BYTES: overwrite BYTES (printf escapes) at OFFSET.
poke() {
    printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# one_line_failure STATUS TOOL TEXT: the run failed with STATUS and printed
# exactly one line, "TOOL: ...TEXT...".
one_line_failure() {
    assert_failure "$1"
    [ "${#lines[@]}" = 1 ] || fail "expected one line, got: $output"
    assert_line --index 0 --regexp "^$2: .*$3"
}

# ---- 1: truncated and empty LMDB files -----------------------------------

@test "a truncated pack is refused by every reader, before it is mapped" {
    head -c 20000 "$DATA/train.lmdb" > "$D/cut.lmdb"
    run "$B/voc-show" check "$D/cut.lmdb"
    one_line_failure 1 voc-show "cut.lmdb: truncated \\(20000 bytes, its meta page says"
    run "$B/voc-show" list "$D/cut.lmdb"
    one_line_failure 1 voc-show 'truncated'
    run "$B/seg-eval" -q -t 1 -m "$DATA/teacher.safetensors" -d "$D/cut.lmdb" --base-size 48 \
        --crop 33
    one_line_failure 1 seg-eval 'truncated'
    run "${SD[@]}" -d "$D/cut.lmdb" -l "$DATA/logits.lmdb" -o "$D/s.safetensors"
    one_line_failure 1 student-distill 'truncated'
    run "$B/teacher-dump" -q -t 1 -m "$DATA/teacher.safetensors" -d "$D/cut.lmdb" \
        -o "$D/out.lmdb"
    one_line_failure 1 teacher-dump 'truncated'
    assert_no_temp "$D"
    [ ! -e "$D/out.lmdb" ]
}

@test "a truncated logits cache is refused by student-distill and teacher-dump" {
    head -c 20000 "$DATA/logits.lmdb" > "$D/cut.lmdb"
    run "${SD[@]}" -d "$DATA/train.lmdb" -l "$D/cut.lmdb" -o "$D/s.safetensors"
    one_line_failure 1 student-distill 'cut.lmdb: truncated'
    cp "$D/cut.lmdb" "$D/resume.lmdb"
    run "$B/teacher-dump" -q -t 1 -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb" \
        -o "$D/resume.lmdb"
    one_line_failure 1 teacher-dump 'truncated'
    assert_no_temp "$D"
    cmp "$D/cut.lmdb" "$D/resume.lmdb"
}

@test "an empty file is named as empty, not 'Bad file descriptor'" {
    : > "$D/zero.lmdb"
    run "$B/voc-show" check "$D/zero.lmdb"
    one_line_failure 1 voc-show 'zero.lmdb: empty file \(not a pack\)'
    run "${SD[@]}" -d "$DATA/train.lmdb" -l "$D/zero.lmdb" -o "$D/s.safetensors"
    one_line_failure 1 student-distill 'zero.lmdb: empty file'
}

# ---- 8: crafted meta pages ----------------------------------------------

@test "a meta page whose root is a meta page is refused, not an LMDB assertion" {
    cp "$DATA/train.lmdb" "$D/root0.lmdb"
    # The main DB's root page number (8 bytes at 128 in each meta page).
    poke "$D/root0.lmdb" 128 '\0\0\0\0\0\0\0\0'
    poke "$D/root0.lmdb" $((4096 + 128)) '\0\0\0\0\0\0\0\0'
    run "$B/voc-show" check "$D/root0.lmdb"
    one_line_failure 1 voc-show 'root0.lmdb: .*meta page [01]: root page out of range'
    run "$B/seg-eval" -q -t 1 -m "$DATA/teacher.safetensors" -d "$D/root0.lmdb"
    one_line_failure 1 seg-eval 'root page out of range'
}

@test "a bad page size or last page is refused" {
    cp "$DATA/train.lmdb" "$D/psize.lmdb"
    poke "$D/psize.lmdb" 40 '\1\0\0\0'
    run "$B/voc-show" check "$D/psize.lmdb"
    one_line_failure 1 voc-show 'meta page 0: bad page size'
    cp "$DATA/train.lmdb" "$D/last.lmdb"
    # A huge last page in the newer meta page: the file is "truncated".
    poke "$D/last.lmdb" 136 '\0\0\0\0\0\1\0\0'
    poke "$D/last.lmdb" $((4096 + 136)) '\0\0\0\0\0\1\0\0'
    run "$B/voc-show" check "$D/last.lmdb"
    one_line_failure 1 voc-show 'last.lmdb: truncated'
}

# ---- 2: "up to date" means complete and valid ----------------------------

@test "teacher-dump recomputes a damaged record instead of calling the cache up to date" {
    cp "$DATA/logits.lmdb" "$D/l.lmdb"
    # Flip a byte of the first record's fp16 logits (past its 48-byte header
    # and key): its CRC no longer matches.
    local at
    at=$(grep -obUa PKDL "$D/l.lmdb" | head -1 | cut -d: -f1)
    poke "$D/l.lmdb" $((at + 120)) '\377'
    run "$B/teacher-dump" -t 1 -q -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb" \
        -o "$D/l.lmdb"
    assert_success
    refute_output --partial 'up to date'
    assert_output --partial 'computed 1, kept 5'
    run "$B/teacher-dump" -t 1 -q -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb" \
        -o "$D/l.lmdb"
    assert_success
    assert_output --partial 'up to date'
    run "${SD[@]}" -d "$DATA/train.lmdb" -l "$D/l.lmdb" -o "$D/s.safetensors"
    assert_success
}

# ---- 3: NaN and infinity -------------------------------------------------

# nan_weight IN OUT: OUT is IN with its first data bytes a float NaN.
nan_weight() {
    cp "$1" "$2"
    local n
    n=$(od -An -t u8 -N8 "$2" | tr -d ' ')
    poke "$2" $((8 + n)) '\377\377\377\377'
}

@test "a trainer stops at the first non-finite step: exit 1, no output, checkpoints kept" {
    run "${SD[@]}" -d "$DATA/train.lmdb" --no-kd --iters 40 --ckpt-every 2 --lr 1000 \
        -o "$D/s.safetensors" --log "$D/s.csv"
    one_line_failure 1 student-distill \
        'step [0-9]+: non-finite (loss|gradient norm) .*stopped without writing .*s.safetensors; the last good checkpoint is .*s.ckpt/step-'
    [ ! -e "$D/s.safetensors" ]
    ls "$D/s.ckpt"/step-*.safetensors
    ! grep -qi nan "$D/s.csv"
    run "$B/teacher-train" -q -d "$DATA/train.lmdb" --arch resnet18 -b 2 --crop 33 \
        --threads 1 --iters 40 --lr 1000 -o "$D/t.safetensors"
    one_line_failure 1 teacher-train 'step [0-9]+: non-finite'
    [ ! -e "$D/t.safetensors" ]
}

@test "a model or checkpoint with a NaN weight is refused by every reader, naming the tensor" {
    nan_weight "$DATA/teacher.safetensors" "$D/nan.safetensors"
    run "$B/seg-eval" -q -t 1 -m "$D/nan.safetensors" -d "$DATA/val.lmdb" --base-size 48 \
        --crop 33
    one_line_failure 1 seg-eval "nan.safetensors: tensor '[^']+' holds a non-finite value"
    run "$B/teacher-dump" -q -t 1 -m "$D/nan.safetensors" -d "$DATA/train.lmdb" -o "$D/l.lmdb"
    one_line_failure 1 teacher-dump 'non-finite'
    [ ! -e "$D/l.lmdb" ]
    run "${SD[@]}" -d "$DATA/train.lmdb" --teacher "$D/nan.safetensors" -o "$D/s.safetensors"
    one_line_failure 1 student-distill 'non-finite'
    "${SD[@]}" -d "$DATA/train.lmdb" --no-kd --iters 2 --ckpt-every 1 -o "$D/r.safetensors"
    nan_weight "$D/r.ckpt/step-00000001.safetensors" "$D/bad-step.safetensors"
    run "${SD[@]}" -d "$DATA/train.lmdb" --no-kd --iters 3 --resume "$D/bad-step.safetensors" \
        -o "$D/r2.safetensors"
    one_line_failure 1 student-distill 'non-finite'
    [ ! -e "$D/r2.safetensors" ]
}

# ---- 4: an output that is an input, or not a regular file -----------------

@test "trainers and teacher-dump refuse an output that is one of their inputs" {
    cp "$DATA/train.lmdb" "$D/p.lmdb"
    run "$B/teacher-train" -q -d "$D/p.lmdb" --arch resnet18 -b 2 --crop 33 --threads 1 \
        --iters 1 -o "$D/p.lmdb"
    one_line_failure 1 teacher-train 'p.lmdb is the same file as .*p.lmdb \(refusing to overwrite an input\)'
    run "${SD[@]}" -d "$D/p.lmdb" --no-kd -o "$D/p.lmdb"
    one_line_failure 1 student-distill 'same file'
    ln "$D/p.lmdb" "$D/hard.lmdb"
    run "${SD[@]}" -d "$D/p.lmdb" --no-kd -o "$D/x.safetensors" --log "$D/hard.lmdb"
    one_line_failure 1 student-distill 'hard.lmdb is the same file as'
    cmp "$D/p.lmdb" "$DATA/train.lmdb"
    cp "$DATA/teacher.safetensors" "$D/t.safetensors"
    run "$B/teacher-dump" -q -t 1 -m "$D/t.safetensors" -d "$DATA/train.lmdb" -o "$D/t.safetensors"
    one_line_failure 1 teacher-dump 'same file'
    cmp "$D/t.safetensors" "$DATA/teacher.safetensors"
    run "$B/teacher-train" --freeze-only "$D/t.safetensors" -o "$D/t.safetensors"
    one_line_failure 1 teacher-train 'same file'
    assert_no_temp "$D"
}

@test "seg-predict refuses outputs that are inputs, and two inputs with one mask" {
    mkdir -p "$D/a" "$D/b"
    cp "$DATA/voc/JPEGImages/$(ls "$DATA/voc/JPEGImages" | head -1)" "$D/a/x.jpg"
    cp "$D/a/x.jpg" "$D/b/x.jpg"
    cp "$DATA/teacher.safetensors" "$D/m.safetensors"
    run "$B/seg-predict" -q -t 1 -m "$D/m.safetensors" -o "$D/out" --logits "$D/m.safetensors" \
        "$D/a/x.jpg"
    one_line_failure 1 seg-predict 'm.safetensors is the same file as'
    cmp "$D/m.safetensors" "$DATA/teacher.safetensors"
    run "$B/seg-predict" -q -t 1 -m "$D/m.safetensors" -o "$D/out" "$D/a/x.jpg" "$D/b/x.jpg"
    one_line_failure 1 seg-predict 'a/x.jpg and .*b/x.jpg would both write .*out/x.png'
    [ ! -e "$D/out/x.png" ]
    # A mask written over its own (PNG) input.
    cp "$DATA/voc/SegmentationClass/$(ls "$DATA/voc/SegmentationClass" | head -1)" "$D/a/y.png"
    run "$B/seg-predict" -q -t 1 -m "$D/m.safetensors" -o "$D/a" "$D/a/y.png"
    one_line_failure 1 seg-predict 'y.png is the same file as'
}

@test "an output that is not a regular file is never replaced" {
    mkfifo "$D/fifo"
    run "$B/voc-pack" -q "$DATA/voc" --split train -o "$D/fifo" --force
    one_line_failure 1 voc-pack 'fifo: not a regular file \(refusing to replace it\)'
    [ -p "$D/fifo" ]
    run "${SD[@]}" -d "$DATA/train.lmdb" --no-kd -o "$D/fifo"
    one_line_failure 1 student-distill 'fifo: not a regular file'
    [ -p "$D/fifo" ]
    run "$B/teacher-dump" -q -t 1 -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb" \
        -o "$D/fifo"
    one_line_failure 1 teacher-dump 'not a regular file'
    [ -p "$D/fifo" ]
    run "$B/seg-predict" -q -t 1 -m "$DATA/teacher.safetensors" -o "$D" --logits "$D/fifo" \
        "$DATA/voc/JPEGImages/$(ls "$DATA/voc/JPEGImages" | head -1)"
    one_line_failure 1 seg-predict 'not a regular file'
    [ -p "$D/fifo" ]
    assert_no_temp "$D"
}

# ---- 7: labels outside the classes, records that disagree with the pack id

@test "a label >= classes is refused by the trainers and teacher-dump, naming the record" {
    local H="$PSPKD_TEST_HELPERS/helper_pack"
    "$H" "$D/good.lmdb" good
    "$H" "$D/label.lmdb" label
    run "$B/voc-show" check "$D/label.lmdb"
    one_line_failure 1 voc-show 'record 00000002_rec2: label value 5 at \(4, 3\) with 2 classes'
    run "$B/teacher-train" -q -d "$D/label.lmdb" --arch resnet18 -b 4 --crop 33 --threads 1 \
        --iters 1 --augment none -o "$D/t.safetensors"
    one_line_failure 1 teacher-train '00000002_rec2: label value 5 at \(4, 3\) with 2 classes'
    [ ! -e "$D/t.safetensors" ]
    run "${SD[@]}" -b 4 -d "$D/label.lmdb" --no-kd --augment none -o "$D/s.safetensors"
    one_line_failure 1 student-distill '00000002_rec2: label value 5'
    tiny_model "$D/good.lmdb" "$D/t2.safetensors" --augment none --iters 1 --freeze
    run "$B/teacher-dump" -q -t 1 -m "$D/t2.safetensors" -d "$D/label.lmdb" -o "$D/l.lmdb"
    one_line_failure 1 teacher-dump '00000002_rec2: label value 5'
    [ ! -e "$D/l.lmdb" ]
    assert_no_temp "$D"
}

@test "a pack whose records disagree with its pack id is refused by every reader" {
    "$PSPKD_TEST_HELPERS/helper_pack" "$D/id.lmdb" packid
    local msg='id.lmdb: the records give pack id [0-9a-f]{16}, the metadata says [0-9a-f]{16}'
    run "$B/voc-show" list "$D/id.lmdb"
    one_line_failure 1 voc-show "$msg"
    run "$B/teacher-train" -q -d "$D/id.lmdb" --arch resnet18 -b 4 --crop 33 --threads 1 \
        --iters 1 -o "$D/t.safetensors"
    one_line_failure 1 teacher-train "$msg"
    run "$B/seg-eval" -q -t 1 -m "$DATA/teacher.safetensors" -d "$D/id.lmdb"
    one_line_failure 1 seg-eval "$msg"
}

# ---- 6: one run per output, log and checkpoint directory -----------------

@test "a second trainer on the same output, log or checkpoint directory fails at once" {
    "${SD[@]}" -d "$DATA/train.lmdb" --no-kd --iters 100000 --log "$D/a.csv" \
        -o "$D/a.safetensors" 2>/dev/null &
    local pid=$!
    BG_PID=$pid
    for _ in $(seq 1 600); do
        [ "$(grep -c '' "$D/a.csv" 2>/dev/null)" -ge 3 ] 2>/dev/null && break
        sleep 0.05
    done
    run "${SD[@]}" -d "$DATA/train.lmdb" --no-kd -o "$D/a.safetensors" --ckpt-dir "$D/other.ckpt"
    one_line_failure 1 student-distill 'a.safetensors is in use by another run \(.*a.safetensors.lock is locked\)'
    run "$B/teacher-train" -q -d "$DATA/train.lmdb" --arch resnet18 -b 2 --crop 33 \
        --threads 1 --iters 1 -o "$D/b.safetensors" --log "$D/a.csv"
    one_line_failure 1 teacher-train 'a.csv is in use by another run'
    run "${SD[@]}" -d "$DATA/train.lmdb" --no-kd -o "$D/c.safetensors" --ckpt-dir "$D/a.ckpt"
    one_line_failure 1 student-distill 'a.ckpt is in use by another run'
    kill -TERM "$pid"
    local st=0
    wait "$pid" || st=$?
    [ "$st" = 143 ]
    [ ! -e "$D/a.safetensors.lock" ] && [ ! -e "$D/a.csv.lock" ]
    # Free again: the next run takes the locks.
    run "${SD[@]}" -d "$DATA/train.lmdb" --no-kd --iters 1 -o "$D/c.safetensors" \
        --ckpt-dir "$D/a.ckpt"
    assert_success
}

# ---- 5: ids that leave a folder ------------------------------------------

@test "voc-pack refuses ids with '/', '..' or control characters, naming the line" {
    local R="$D/r/a/b/c" id
    mkdir -p "$R/JPEGImages" "$R/SegmentationClass"
    id=$(ls "$DATA/voc/JPEGImages" | head -1)
    id=${id%.jpg}
    cp "$DATA/voc/JPEGImages/$id.jpg" "$D/r/a/evil.jpg"
    cp "$DATA/voc/SegmentationClass/$id.png" "$D/r/a/evil.png"
    cp "$DATA/voc/JPEGImages/$id.jpg" "$R/JPEGImages/ok.jpg"
    cp "$DATA/voc/SegmentationClass/$id.png" "$R/SegmentationClass/ok.png"
    printf 'ok\n../../../evil\n' > "$D/list.txt"
    run "$B/voc-pack" -q "$R" --list "$D/list.txt" -o "$D/p.lmdb"
    one_line_failure 1 voc-pack "list.txt:2: id '../../../evil' holds a '/'"
    [ ! -e "$D/p.lmdb" ]
    printf 'ok\n..\n' > "$D/list.txt"
    run "$B/voc-pack" -q "$R" --list "$D/list.txt" -o "$D/p.lmdb"
    one_line_failure 1 voc-pack "list.txt:2: id '..' holds '..'"
    printf 'ok\nx\001y\n' > "$D/list.txt"
    run "$B/voc-pack" -q "$R" --list "$D/list.txt" -o "$D/p.lmdb"
    one_line_failure 1 voc-pack 'list.txt:2: id .* holds a control character'
    [ ! -e "$D/p.lmdb" ] && [ ! -e "$D/evil.jpg" ]
}

# ---- 10: smaller defects --------------------------------------------------

@test "voc-pack refuses an id listed twice, naming the id and both lines" {
    local id
    id=$(ls "$DATA/voc/JPEGImages" | head -1)
    id=${id%.jpg}
    printf '%s\n%s\n' "$id" "$id" > "$D/list.txt"
    run "$B/voc-pack" -q "$DATA/voc" --list "$D/list.txt" -o "$D/p.lmdb"
    one_line_failure 1 voc-pack "list.txt:2: id '$id' is listed again \\(first on line 1\\)"
    [ ! -e "$D/p.lmdb" ]
}

# ---- 9: images that claim a huge size ------------------------------------

@test "a PNG that claims 20000x20000 is refused from its header, before decoding" {
    local id
    id=$(ls "$DATA/voc/JPEGImages" | head -1)
    id=${id%.jpg}
    mkdir -p "$D/voc/JPEGImages" "$D/voc/SegmentationClass"
    cp "$DATA/voc/JPEGImages/$id.jpg" "$D/voc/JPEGImages/"
    "$PSPKD_TEST_HELPERS/helper_png_size" "$DATA/voc/SegmentationClass/$id.png" \
        "$D/voc/SegmentationClass/$id.png" 20000 20000
    echo "$id" > "$D/list.txt"
    run "$B/voc-pack" -q "$D/voc" --list "$D/list.txt" -o "$D/p.lmdb"
    one_line_failure 1 voc-pack "$id.png: label 20000x20000 but image [0-9]+x[0-9]+\$"
    "$PSPKD_TEST_HELPERS/helper_png_size" "$DATA/voc/SegmentationClass/$id.png" \
        "$D/big.png" 20000 20000
    run "$B/seg-predict" -q -t 1 -m "$DATA/teacher.safetensors" -o "$D/out" "$D/big.png"
    one_line_failure 1 seg-predict 'big.png: image of 20000x20000 exceeds the limit \(65535 per side, 67108864 pixels\)'
    # Under the limit but wrong data: still the decoder's own error.
    "$PSPKD_TEST_HELPERS/helper_png_size" "$DATA/voc/SegmentationClass/$id.png" \
        "$D/odd.png" 3000 3000
    run "$B/seg-predict" -q -t 1 -m "$DATA/teacher.safetensors" -o "$D/out" "$D/odd.png"
    one_line_failure 1 seg-predict 'odd.png: .*corrupt PNG'
}

@test "--momentum is in [0, 1); the loss options' errors name the option; PSPKD_CONV is checked" {
    local a
    for a in 1 1.0 1000 -0.1 x; do
        assert_usage_error "$B/teacher-train" '--momentum takes a number in [0, 1)' \
            -d x -o y --momentum "$a"
    done
    local o
    for o in --T --temperature --kd-weight --ce-weight --aux-kd-weight; do
        run "$B/student-distill" -d x -o y --no-kd "$o" abc
        assert_failure 2
        assert_line --index 0 --regexp "^student-distill: --(T|kd-weight|ce-weight|aux-kd-weight) takes a number in "
    done
    run env PSPKD_CONV=fast "$B/seg-eval" -q -t 1 -m "$DATA/teacher.safetensors" \
        -d "$DATA/val.lmdb" --base-size 48 --crop 33
    one_line_failure 1 seg-eval 'PSPKD_CONV=fast: takes auto, direct or winograd'
    run env PSPKD_CONV=auto "$B/seg-eval" -q -t 1 -m "$DATA/teacher.safetensors" \
        -d "$DATA/val.lmdb" --base-size 48 --crop 33
    assert_success
}

@test "voc-synth leaves no partial tree when a write fails (file size limit)" {
    run bash -c "ulimit -f 20; '$B/voc-synth' -q -o '$D/big' -n 3 --val 1 --size 400:400 --seed 1"
    one_line_failure 1 voc-synth 'big/JPEGImages/synth_000000.jpg: write error: File too large'
    [ ! -e "$D/big" ]
    mkdir "$D/pre"
    touch "$D/pre/keep"
    run bash -c "ulimit -f 20; '$B/voc-synth' -q -o '$D/pre' -n 3 --val 1 --size 400:400 --force"
    assert_failure 1
    run ls -A "$D/pre"
    assert_output keep
}

@test "teacher-dump says what it did when stopped early, not 'done N steps'" {
    run "$B/teacher-dump" -t 1 -m "$DATA/teacher.safetensors" -d "$DATA/train.lmdb" \
        -o "$D/l.lmdb" --limit 2
    assert_success
    refute_output --partial 'done 6 steps'
    assert_output --partial 'computed 2, kept 0, missing 4'
    synth "$D/voc" 40 0 9 --size 160:200
    pack "$D/voc" train "$D/p.lmdb"
    tiny_model "$D/p.lmdb" "$D/t.safetensors" --augment none --iters 1 --freeze
    signal_after_rows INT "$D/err" 1 "$B/teacher-dump" -t 1 -m "$D/t.safetensors" \
        -d "$D/p.lmdb" -o "$D/l2.lmdb" 2>"$D/err" >/dev/null
    [ "$st" = 130 ]
    run cat "$D/err"
    refute_output --partial 'done 40 steps'
    assert_line --regexp '^teacher-dump: interrupted: .*l2.lmdb holds [0-9]+ of 40 images; run again to resume$'
}

@test "an interrupt exits 128 + signal: seg-eval, voc-pack, voc-synth" {
    synth "$D/voc" 0 12 4 --size 200:240
    pack "$D/voc" val "$D/val.lmdb"
    signal_after_rows INT "$D/err" 1 "$B/seg-eval" -t 1 -m "$DATA/teacher.safetensors" \
        -d "$D/val.lmdb" 2>"$D/err" >/dev/null
    [ "$st" = 130 ] || fail "seg-eval: status $st: $(cat "$D/err")"
    grep -q '^seg-eval: interrupted after' "$D/err"
    mkfifo "$D/list"
    "$B/voc-pack" -q "$D/voc" --list "$D/list" -o "$D/p.lmdb" 2>"$D/err2" &
    local pid=$!
    sleep 0.5
    kill -TERM "$pid"
    st=0
    wait "$pid" || st=$?
    [ "$st" = 143 ] || fail "voc-pack: status $st: $(cat "$D/err2")"
    [ ! -e "$D/p.lmdb" ]
    signal_after_rows TERM "$D/v2/JPEGImages/synth_000003.jpg" 0 \
        "$B/voc-synth" -q -o "$D/v2" -n 400 --size 300:400
    [ "$st" = 143 ] || fail "voc-synth: status $st"
    [ ! -e "$D/v2" ]
}
