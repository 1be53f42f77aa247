#!/usr/bin/env bats
# scripts/pth2safetensors, and --init end to end: a torchvision-shaped
# ResNet18 (and semseg's deep-stem ResNet50 checkpoint layout) with random
# weights saved by PyTorch, converted, loaded by --init (helper_init_model),
# and run by seg-predict against PyTorch's PSPNet with the same weights.
# Needs Debian's python3-torch (/usr/bin/python3); skipped without it.

load common

have_torch() { /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; }

setup_file() {
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 2 0 21
    export IMG
    IMG=$(ls "$DATA"/voc/JPEGImages/*.jpg | head -1)
}

setup() {
    have_torch || skip "needs Debian's python3-torch (/usr/bin/python3 cannot import torch)"
    P2S="$BATS_TEST_DIRNAME/../scripts/pth2safetensors"
    RT="$BATS_TEST_DIRNAME/pth_roundtrip.py"
    D="$BATS_TEST_TMPDIR"
}

# roundtrip ARCH STEM [--wrap]: make, convert, --init, seg-predict, compare
roundtrip() {
    local arch=$1 stem=$2
    run /usr/bin/python3 "$RT" make "$D/in.pth" "$arch" "$stem" "${3:-}"
    assert_success
    run "$P2S" "$D/in.pth" "$D/in.safetensors"
    assert_success
    echo "$output"
    run "$PSPKD_TEST_HELPERS/helper_init_model" "$arch" "$stem" 21 5 "$D/in.safetensors" \
        "$D/model.safetensors"
    assert_success
    echo "$output"
    assert_output --partial "ignored 2 (fc.weight, fc.bias)"
    run "$PSPKD_BIN/seg-predict" -q -t 1 -m "$D/model.safetensors" -o "$D" \
        --logits "$D/l.safetensors" "$IMG"
    assert_success
    run /usr/bin/python3 "$RT" compare "$D/in.pth" "$D/model.safetensors" "$D/l.safetensors"
    echo "$output"
    assert_success
}

@test "torchvision ResNet18 .pth: converted, --init loads it, logits match PyTorch" {
    roundtrip resnet18 7x7
    run st_header "$D/in.safetensors"
    assert_output --partial '"conv1.weight":{"dtype":"F32","shape":[64,3,7,7]'
    assert_output --partial '"bn1.num_batches_tracked":{"dtype":"I64","shape":[]'
    assert_output --partial '"fc.weight":{"dtype":"F32","shape":[1000,512]'
    assert_output --partial '"format":"pt"'
}

@test "semseg-style checkpoint (state_dict, module. prefix), deep-stem ResNet50" {
    roundtrip resnet50 deep --wrap
    run "$P2S" "$D/in.pth" "$D/in2.safetensors"
    assert_success
    assert_output --partial "bottleneck ResNet, deep stem, fc 1000 classes"
    run st_header "$D/in2.safetensors"
    assert_output --partial '"conv3.weight":{"dtype":"F32","shape":[128,64,3,3]'
    refute_output --partial 'module.'
}

@test "teacher-train --init says what it loaded and ignored; the wrong stem is refused" {
    /usr/bin/python3 "$RT" make "$D/in.pth" resnet18 7x7 >/dev/null
    "$P2S" -q "$D/in.pth" "$D/in.safetensors"
    pack "$DATA/voc" train "$D/train.lmdb"
    run tiny_model "$D/train.lmdb" "$D/t.safetensors" --iters 1 --init "$D/in.safetensors"
    assert_success
    run "$PSPKD_BIN/teacher-train" -d "$D/train.lmdb" --arch resnet18 -b 2 --crop 33 \
        --threads 1 --iters 1 --init "$D/in.safetensors" -o "$D/t.safetensors"
    assert_success
    assert_output --partial "--init $D/in.safetensors: loaded 100 backbone tensors (11.19M values); ignored 2 (fc.weight, fc.bias) and the BatchNorm counters"
    run "$PSPKD_BIN/teacher-train" -q -d "$D/train.lmdb" --arch resnet18 --stem deep -b 2 \
        --crop 33 --threads 1 --iters 1 --init "$D/in.safetensors" -o "$D/u.safetensors"
    assert_failure 1
    assert_output --partial "tensor 'conv1.weight' has shape [64,3,7,7]: torchvision's 7x7 stem"
    [ ! -e "$D/u.safetensors" ]
}

@test "refusals: unsafe load without weights_only, not a state_dict, missing file, output = input" {
    /usr/bin/python3 "$RT" make "$D/in.pth" resnet18 7x7 >/dev/null
    run env PTH2SAFETENSORS_NO_WEIGHTS_ONLY=1 "$P2S" "$D/in.pth" "$D/o.safetensors"
    assert_failure 1
    assert_output --partial "cannot load $D/in.pth safely"
    assert_output --partial "--trust-pickle"
    [ ! -e "$D/o.safetensors" ]
    run env PTH2SAFETENSORS_NO_WEIGHTS_ONLY=1 "$P2S" -q --trust-pickle "$D/in.pth" "$D/o.safetensors"
    assert_success
    [ -s "$D/o.safetensors" ]
    # an object other than tensors: the safe loader refuses it
    /usr/bin/python3 -c 'import torch, collections; torch.save(collections.Counter(a=1), "'"$D/obj.pth"'")'
    run "$P2S" "$D/obj.pth" "$D/p.safetensors"
    assert_failure 1
    assert_output --partial "pth2safetensors: $D/obj.pth: cannot load"
    /usr/bin/python3 -c 'import torch; torch.save([torch.ones(1)], "'"$D/list.pth"'")'
    run "$P2S" "$D/list.pth" "$D/p.safetensors"
    assert_failure 1
    assert_output --partial "not a state_dict"
    run "$P2S" "$D/none.pth" "$D/p.safetensors"
    assert_failure 1
    assert_output --partial "no such file"
    run "$P2S" "$D/in.pth" "$D/in.pth"
    assert_failure 2
    assert_output --partial "would overwrite the input"
    [ ! -e "$D/p.safetensors" ]
    assert_no_temp "$D"
}
