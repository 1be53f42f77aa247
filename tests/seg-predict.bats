#!/usr/bin/env bats
# seg-predict on a few voc-synth photos with a ResNet18 model (one training
# step): palette masks, overlays, stdin lists, the --logits file (and, when
# Debian's PyTorch is installed, its parity with the PyTorch reference
# PSPNet and the mask's agreement with its argmax), and bad inputs.

load common

setup_file() {
    export DATA="$BATS_FILE_TMPDIR"
    synth "$DATA/voc" 4 0 13
    pack "$DATA/voc" train "$DATA/train.lmdb"
    tiny_model "$DATA/train.lmdb" "$DATA/model.safetensors" --augment none --iters 1 --seed 3
    export IMG1 IMG2
    IMG1=$(ls "$DATA"/voc/JPEGImages/*.jpg | head -1)
    IMG2=$(ls "$DATA"/voc/JPEGImages/*.jpg | sed -n 2p)
}

setup() {
    SP="$PSPKD_BIN/seg-predict"
    D="$BATS_TEST_TMPDIR"
    M=(-t 1 -m "$DATA/model.safetensors")
}

name_of() { basename "${1%.*}"; }
png_size() { file "$1" | grep -o '[0-9]* x [0-9]*'; }

have_torch() { /usr/bin/python3 -c 'import torch, numpy, PIL' 2>/dev/null; }

@test "--help prints usage on stdout and exits 0; --version" {
    assert_help_version "$SP" '--logits FILE'
}

@test "usage errors exit 2 with one message" {
    run "$SP" x.jpg
    assert_failure 2
    assert_line --index 0 'seg-predict: need -m MODEL'
    run "$SP" -m m
    assert_failure 2
    assert_output --partial 'no input images'
    run "$SP" -m m --logits l.safetensors a.jpg b.jpg
    assert_failure 2
    assert_output --partial '--logits takes exactly one input image'
    assert_usage_errors "$SP" '-m m' '--alpha 2 x.jpg' '--alpha x x.jpg' \
        '--logits l.safetensors -' 'a.jpg -' '-t x a.jpg'
    assert_usage_error "$SP" "unknown option '--nope'" --nope -m m a.jpg
    assert_unknown_options "$SP"
}

@test "happy path: one palette PNG per image, at the image's size" {
    run --separate-stderr "$SP" "${M[@]}" -o "$D/out" "$IMG1" "$IMG2"
    assert_success
    [ -z "$stderr" ]
    assert_line --index 0 "$IMG1 -> $D/out/$(name_of "$IMG1").png ($(png_size "$DATA/voc/SegmentationClass/$(name_of "$IMG1").png" | tr -d ' '))"
    for img in "$IMG1" "$IMG2"; do
        local mask="$D/out/$(name_of "$img").png"
        run file "$mask"
        assert_output --partial '8-bit colormap'
        [ "$(png_size "$mask")" = "$(png_size "$DATA/voc/SegmentationClass/$(name_of "$img").png")" ]
    done
    # Deterministic: the same bytes again, also with a list on stdin.
    cp "$D/out/$(name_of "$IMG1").png" "$D/first.png"
    printf '%s\n\n%s\n' "$IMG1" "$IMG2" | "$SP" "${M[@]}" -q -o "$D/out2" -
    cmp "$D/first.png" "$D/out2/$(name_of "$IMG1").png"
    [ -f "$D/out2/$(name_of "$IMG2").png" ]
}

@test "--overlay writes an RGB blend; --alpha 0 gives the photo" {
    run "$SP" "${M[@]}" -q -o "$D" --overlay "$IMG1"
    assert_success
    local ov="$D/$(name_of "$IMG1")_overlay.png"
    run file "$ov"
    assert_output --partial '8-bit/color RGB'
    run "$SP" "${M[@]}" -q -o "$D/a0" --overlay --alpha 0 "$IMG1"
    assert_success
    if have_torch; then
        /usr/bin/python3 - "$D/a0/$(name_of "$IMG1")_overlay.png" "$IMG1" <<'EOF'
import sys
import numpy as np
from PIL import Image
ov = np.asarray(Image.open(sys.argv[1]))
ph = np.asarray(Image.open(sys.argv[2]).convert("RGB")).astype(int)
assert ov.shape == ph.shape, (ov.shape, ph.shape)
# libjpeg versions may differ by a unit in a few pixels
assert np.abs(ov.astype(int) - ph).max() <= 2
EOF
    fi
}

@test "--logits: input, main and aux as NCHW float32 at the padded size" {
    run "$SP" "${M[@]}" -q -o "$D" --logits "$D/l.safetensors" "$IMG1"
    assert_success
    local w h pw ph
    read -r w _ h < <(png_size "$D/$(name_of "$IMG1").png")
    pw=$((w + (8 - (w - 1) % 8) % 8)) ph=$((h + (8 - (h - 1) % 8) % 8))
    run st_header "$D/l.safetensors"
    assert_output --partial "\"input\":{\"dtype\":\"F32\",\"shape\":[1,3,$ph,$pw]"
    assert_output --partial "\"main\":{\"dtype\":\"F32\",\"shape\":[1,21,$ph,$pw]"
    assert_output --partial "\"aux\":{\"dtype\":\"F32\",\"shape\":[1,21,$ph,$pw]"
    assert_output --partial "\"image_width\":\"$w\""
    assert_output --partial "\"padded_height\":\"$ph\""
}

# Once with the default convolutions, once with Winograd forced on every wide
# 3x3 one (PSPKD_CONV=winograd: at this size the default keeps them direct).
parity_of_logits() {
    run env PSPKD_CONV="$1" "$SP" "${M[@]}" -q -o "$D" --logits "$D/l.safetensors" "$IMG1"
    assert_success
    run /usr/bin/python3 - "$BATS_TEST_DIRNAME/fixtures" "$DATA/model.safetensors" \
        "$D/l.safetensors" "$D/$(name_of "$IMG1").png" <<'EOF'
import sys
import numpy as np
import torch
from PIL import Image
sys.path.insert(0, sys.argv[1])
from pspnet_ref import PSPNet
from st_io import load, load_metadata

meta = load_metadata(sys.argv[2])
net = PSPNet(arch=meta["arch"], stem=meta["stem"], classes=int(meta["classes"]))
sd = {k: torch.from_numpy(np.array(v)) for k, v in load(sys.argv[2]).items()
      if not k.startswith("optimizer.")}
net.load_state_dict(sd)
net.eval()
t = load(sys.argv[3])
lm = load_metadata(sys.argv[3])
w, h = int(lm["image_width"]), int(lm["image_height"])
x = torch.from_numpy(np.array(t["input"]))
assert float(x[:, :, h:, :].abs().max() if x.shape[2] > h else 0) == 0
assert float(x[:, :, :, w:].abs().max() if x.shape[3] > w else 0) == 0
with torch.no_grad():
    main, aux = net(x)
for name, ref in (("main", main), ("aux", aux)):
    got = torch.from_numpy(np.array(t[name]))
    err = float((got - ref).abs().max() / ref.abs().max())
    print(name, "normalised max error", err)
    assert err < 1e-4, (name, err)
mask = np.asarray(Image.open(sys.argv[4]))
want = np.array(t["main"])[0, :, :h, :w].argmax(0)
assert mask.shape == want.shape
assert (mask == want).all(), int((mask != want).sum())
EOF
    assert_success
}

@test "PyTorch parity of --logits, and the mask is their argmax (needs /usr/bin/python3 with torch)" {
    have_torch || skip "Debian's python3-torch is not installed"
    parity_of_logits auto
    parity_of_logits winograd
}

@test "grey PNG photos are accepted; corrupt, truncated and unsupported images are errors" {
    if have_torch; then
        /usr/bin/python3 -c "
from PIL import Image
Image.open('$IMG1').convert('L').save('$D/grey.png')"
        run "$SP" "${M[@]}" -q -o "$D/g" "$D/grey.png"
        assert_success
        run file "$D/g/grey.png"
        assert_output --partial '8-bit colormap'
    fi
    head -c 300 "$IMG1" >"$D/trunc.jpg"
    run "$SP" "${M[@]}" -q -o "$D" "$D/trunc.jpg"
    assert_failure 1
    assert_line --index 0 --regexp "^seg-predict: $D/trunc.jpg: "
    [ "${#lines[@]}" = 1 ]
    echo 'hello' >"$D/text.jpg"
    run "$SP" "${M[@]}" -q -o "$D" "$D/text.jpg"
    assert_failure 1
    assert_output "seg-predict: $D/text.jpg: not a JPEG or PNG file"
    cp "$DATA/voc/SegmentationClass/$(name_of "$IMG1").png" "$D/pal.png"
    run "$SP" "${M[@]}" -q -o "$D/p" "$D/pal.png"
    assert_failure 1
    assert_output --partial 'palette PNGs are not supported'
    run "$SP" "${M[@]}" -q -o "$D" "$D/missing.jpg"
    assert_failure 1
    assert_output --partial 'missing.jpg'
    # The first bad image stops the run after the good ones before it.
    run "$SP" "${M[@]}" -q -o "$D/s" "$IMG1" "$D/text.jpg" "$IMG2"
    assert_failure 1
    [ -f "$D/s/$(name_of "$IMG1").png" ] && [ ! -f "$D/s/$(name_of "$IMG2").png" ]
    run "$SP" "${M[@]}" -q -o "$D" - </dev/null
    assert_failure 1
    assert_output --partial 'no image paths on stdin'
}

@test "bad checkpoints are runtime errors" {
    head -c 4000 "$DATA/model.safetensors" >"$D/trunc.safetensors"
    run "$SP" -q -m "$D/trunc.safetensors" -o "$D" "$IMG1"
    assert_failure 1
    assert_line --index 0 --regexp '^seg-predict: .*trunc\.safetensors'
    run "$SP" -q -m "$D/none.safetensors" -o "$D" "$IMG1"
    assert_failure 1
    assert_output --partial 'none.safetensors'
}

@test "--precision bf16 predicts; fp16 is refused" {
    assert_precision "$SP" "${M[@]}" -q -o "$D/bf16" "$IMG1"
    [ -s "$D/bf16/$(name_of "$IMG1").png" ]
}
