#!/bin/sh
# table.sh: the pipeline's result table, from the files in its output dir.
#   table.sh [-s SIZE] [-t TITLE] DIR
# Reads DIR/{teacher,student-nokd,student-kd}.safetensors (parameters and
# GFLOPs through scripts/model-stats, at SIZExSIZE), their seg-eval --json
# results DIR/*.eval.json, their training logs DIR/*.csv (pspkd-log(5)),
# teacher-dump's --json summary DIR/logits.json and, when present, the stage
# timings DIR/timings.tsv written by timed.sh and the distilled student's
# ONNX export DIR/student-kd.onnx (seg-export). Prints the table, one line on
# whether the teacher beat the plain student and whether distillation
# helped, the cache figures and the timings.
set -eu
me=table.sh
here=$(cd "$(dirname "$0")" && pwd)
stats=$here/../scripts/model-stats
size=473 title="pspkd pipeline"
usage() { echo "usage: $me [-s SIZE] [-t TITLE] DIR" >&2; exit 2; }
while getopts s:t:h opt; do
    case $opt in
    s) size=$OPTARG ;;
    t) title=$OPTARG ;;
    h) echo "usage: $me [-s SIZE] [-t TITLE] DIR"; exit 0 ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
dir=$1
models="teacher student-nokd student-kd"
for m in $models; do
    for f in "$dir/$m.safetensors" "$dir/$m.eval.json" "$dir/$m.csv"; do
        [ -r "$f" ] || { echo "$me: $f: cannot read" >&2; exit 1; }
    done
done

# One record per model: name, then key=value fields, for the awk below.
recs=$(
    for m in $models; do
        st=$("$stats" -s "$size" "$dir/$m.safetensors") || exit 1
        # Training img/s: images over seconds, i.e. the harmonic mean of the
        # per-step rates, leaving out step 1 (allocation, first primitives).
        tr=$(awk -F, 'NR > 1 && $3 != "" && $9 > 0 { n++; if ($1 > 1) { k++; inv += 1 / $9 }
                          else first = 1 / $9 }
                      END { if (!k && n) { k = 1; inv = first }
                            printf "%.3f", k ? k / inv : 0 }' "$dir/$m.csv")
        steps=$(awk -F, 'NR > 1 && $3 != "" { s = $1 } END { print s + 0 }' "$dir/$m.csv")
        printf '%s %s train_ips=%s steps=%s ' "$m" "$(echo "$st" | awk '{ print $2, $4, $5 }')" "$tr" "$steps"
        # seg-eval --json is one line of "key": value pairs; pick the scalars.
        tr -d '\n' <"$dir/$m.eval.json" | awk '{
            n = split("images miou miou_present macc aacc present images_per_s", k, " ")
            for (i = 1; i <= n; i++)
                if (match($0, "\"" k[i] "\": [-0-9.eE+]+")) {
                    v = substr($0, RSTART, RLENGTH); sub(/.*: /, "", v); printf "%s=%s ", k[i], v
                }
            c = $0; nc = gsub(/"id": /, "", c); printf "classes=%d\n", nc
        }'
    done
) || exit 1

echo "$recs" | awk -v title="$title" -v size="$size" '
function get(r, key,   i, n, f) {
    n = split(r, f, " ")
    for (i = 4; i <= n; i++) if (index(f[i], key "=") == 1) return substr(f[i], length(key) + 2)
    return ""
}
{ name[NR] = $1; arch[NR] = $2; params[NR] = $3; gf[NR] = $4; rec[NR] = $0 }
END {
    label["teacher"] = "teacher"; label["student-nokd"] = "student, no KD"
    label["student-kd"] = "student, KD"
    classes = get(rec[1], "classes") + 0; part = 0
    printf "%s: %d val images, seg-eval %s\n", title, get(rec[1], "images"),
           "single scale with flip (semseg test protocol)"
    printf "%-15s %-9s %7s %7s %8s %10s %11s %10s\n", "model", "backbone", "mIoU", "aAcc",
           "params", "GFLOPs/img", "train img/s", "eval img/s"
    for (i = 1; i <= NR; i++) {
        present[i] = get(rec[i], "present") + 0
        if (present[i] < classes) part = 1
        miou[i] = get(rec[i], "miou_present")
        printf "%-15s %-9s %7.4f %7.4f %7.2fM %10.2f %11.2f %10.2f\n", label[name[i]],
               arch[i], miou[i], get(rec[i], "aacc"), params[i] / 1e6,
               gf[i], get(rec[i], "train_ips"), get(rec[i], "images_per_s")
    }
    printf "mIoU: the mean over the classes present in the labels or predictions (%d / %d / %d of %d), seg-eval'"'"'s \"present classes\" figure and the logs'"'"' miou_present, as plotted in plots/miou.png",
           present[1], present[2], present[3], classes
    if (part)
        printf "; semseg'"'"'s mean over all %d: %.4f / %.4f / %.4f", classes,
               get(rec[1], "miou"), get(rec[2], "miou"), get(rec[3], "miou")
    printf ".\n"
    printf "GFLOPs: convolutions, one %dx%d forward without the aux head. train img/s: training steps (%d / %d / %d steps) incl. loading; eval img/s: seg-eval incl. flip.\n",
           size, size, get(rec[1], "steps"), get(rec[2], "steps"), get(rec[3], "steps")
    d = miou[1] - miou[2]
    printf "teacher vs plain student: %+.4f mIoU (%s)\n", d,
           (d > 0 ? "the teacher is better" : "the teacher is NOT better")
    d = miou[3] - miou[2]
    printf "distillation: %+.4f mIoU over the plain student: %s\n", d,
           (d > 0.005 ? "KD helped" : d < -0.005 ? "KD hurt" : "no clear difference (within 0.005)")
}'

if [ -r "$dir/logits.json" ]; then
    tr -d '\n' <"$dir/logits.json" | awk '{
        n = split("images computed images_per_s cache_bytes bytes_per_image record_bytes_per_image", k, " ")
        for (i = 1; i <= n; i++)
            if (match($0, "\"" k[i] "\": [-0-9.eE+]+")) {
                v = substr($0, RSTART, RLENGTH); sub(/.*: /, "", v); x[k[i]] = v }
        printf "teacher-dump: %d images (%d computed in the last run) at %.2f img/s; cache %.1f MB, %d bytes/image (records %d)\n",
               x["images"], x["computed"], x["images_per_s"], x["cache_bytes"] / 1e6,
               x["bytes_per_image"], x["record_bytes_per_image"] }'
fi

# The distilled student as ONNX (seg-export; absent when it is not built).
if [ -r "$dir/student-kd.onnx" ]; then
    wc -c <"$dir/student-kd.onnx" | awk -v f="$dir/student-kd.onnx" '{
        printf "ONNX: %s (the distilled student for ONNX runtimes, seg-export: opset 13, BatchNorm folded, %.1f MB)\n", f, $1 / 1e6 }'
fi

if [ -r "$dir/timings.tsv" ]; then
    awk -F'\t' 'NF >= 5 { if (!($1 in w)) o[++n] = $1; w[$1] += $2; u[$1] += $3 + $4; r[$1]++ }
        END {
            printf "stage timings (wall / CPU user+sys, seconds; a stage run twice is summed):\n"
            for (i = 1; i <= n; i++) {
                s = o[i]; tw += w[s]; tu += u[s]
                printf "  %-20s %8.1f %8.1f%s\n", s, w[s], u[s], (r[s] > 1 ? sprintf("  (%d runs)", r[s]) : "")
            }
            printf "  %-20s %8.1f %8.1f  (%.1f min wall)\n", "total", tw, tu, tw / 60
        }' "$dir/timings.tsv"
fi
