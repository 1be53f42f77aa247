# What every tests/*.bats loads first (`load common`): bats-support and
# bats-assert, and the helpers the files share. The tools come from
# $PSPKD_BIN, the tests' own helper programs from $PSPKD_TEST_HELPERS.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'
bats_require_minimum_version 1.5.0

# ---- tiny data and models ------------------------------------------------

# synth DIR TRAIN VAL SEED [voc-synth options]: a voc-synth set of 33..48 px
# images.
synth() {
    local dir=$1 n=$2 val=$3 seed=$4
    shift 4
    "$PSPKD_BIN/voc-synth" -q -o "$dir" -n "$n" --val "$val" --size 33:48 --seed "$seed" "$@"
}

# pack VOC SPLIT OUT [voc-pack options]
pack() {
    local voc=$1 split=$2 out=$3
    shift 3
    "$PSPKD_BIN/voc-pack" -q "$voc" --split "$split" -o "$out" "$@"
}

# tiny_model PACK OUT [teacher-train options]: a ResNet18 trained on 33x33
# crops, batch 2, one thread (give --iters, --seed, --freeze as needed).
tiny_model() {
    local data=$1 out=$2
    shift 2
    "$PSPKD_BIN/teacher-train" -q -d "$data" --arch resnet18 -b 2 --crop 33 --threads 1 "$@" \
        -o "$out"
}

# empty_lmdb PATH: an LMDB file with no records at all.
empty_lmdb() {
    printf 'VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\nDATA=END\n' |
        mdb_load -n -f /dev/stdin "$1"
}

# st_header FILE: the JSON header of a safetensors file.
st_header() {
    local n
    n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    dd if="$1" bs=1 skip=8 count="$n" status=none
}

# ---- what every tool does ------------------------------------------------

# assert_help_version TOOL TEXT...: --help prints usage (and each TEXT) on
# stdout only and exits 0; --version prints "name x.y.z".
assert_help_version() {
    local tool=$1 name
    name=$(basename "$1")
    shift
    run --separate-stderr "$tool" --help
    assert_success
    assert_output --partial "usage: $name"
    local text
    for text in "$@"; do assert_output --partial "$text"; done
    [ -z "$stderr" ]
    run "$tool" --version
    assert_success
    assert_output --regexp "^$name [0-9]+\\.[0-9]+\\.[0-9]+\$"
}

# assert_usage_error TOOL LINE ARGS...: TOOL ARGS exits 2 and its first
# line is "name: LINE" (LINE "" checks the status only).
assert_usage_error() {
    local tool=$1 line=$2
    shift 2
    run "$tool" "$@"
    assert_failure 2
    [ -z "$line" ] || assert_line --index 0 "$(basename "$tool"): $line"
}

# assert_usage_errors TOOL 'COMMON' 'ARGS'...: TOOL COMMON ARGS exits 2
# for each ARGS (COMMON and ARGS are split at blanks).
assert_usage_errors() {
    local tool=$1 common=$2 args
    shift 2
    for args in "$@"; do
        # shellcheck disable=SC2086
        run "$tool" $common $args
        [ "$status" = 2 ] || fail "$(basename "$tool") $common $args: status $status, not 2: $output"
    done
}

# assert_unknown_options TOOL: the getopt errors name the option, a short
# one also inside a group (-Zq, where argv[optind - 1] is not it).
assert_unknown_options() {
    assert_usage_error "$1" "unknown option '-Z'" -Zq
    assert_usage_error "$1" "unknown option '-Z'" -Z
    assert_usage_error "$1" "unknown option '--bogus'" --bogus=1
}

# ---- nothing left behind -------------------------------------------------

# assert_empty_dir DIR: DIR holds nothing at all (no output, no temp file).
assert_empty_dir() {
    run ls -A "$1"
    assert_output ''
}

# assert_no_temp DIR: no temporary file (*.tmp.*) left in DIR.
assert_no_temp() {
    run ls -A "$1"
    refute_output --partial '.tmp.'
}

# ---- signals --------------------------------------------------------------

# signal_after_rows SIG LOG ROWS CMD...: starts CMD in the background,
# sends SIG once LOG holds ROWS lines (or after a minute), and sets $st to
# CMD's exit status.
signal_after_rows() {
    local sig=$1 log=$2 rows=$3 pid
    shift 3
    "$@" &
    pid=$!
    for _ in $(seq 1 1200); do
        [ "$(grep -c '' "$log" 2>/dev/null)" -ge "$rows" ] 2>/dev/null && break
        sleep 0.05
    done
    kill -"$sig" "$pid"
    st=0
    wait "$pid" || st=$?
}

# assert_precision TOOL ARGS...: --help lists --precision; TOOL ARGS
# --precision bf16 succeeds (skipped with the tool's message where oneDNN
# has no bf16 convolutions on this CPU); --precision fp16 is a usage error
# naming the two precisions.
assert_precision() {
    local tool=$1
    shift
    run "$tool" --help
    assert_success
    assert_output --partial '--precision P'
    run "$tool" "$@" --precision fp16
    assert_failure 2
    assert_line --index 0 "$(basename "$tool"): unknown precision 'fp16' (--precision takes fp32 or bf16)"
    run "$tool" "$@" --precision bf16
    if [ "$status" = 1 ] && [[ $output == *"bf16 convolutions are not available"* ]]; then
        skip "no bf16 convolutions on this CPU"
    fi
    assert_success
}
