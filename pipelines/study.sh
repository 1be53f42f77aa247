#!/bin/sh
# study.sh: the seeded distillation study's table and bar chart.
#   study.sh [-o PNG] [-t TITLE] DIR VARIANT...
# Reads DIR/VARIANT-sSEED.eval.json (seg-eval --json) for every variant and
# every seed found for the first variant (the plain student, the baseline),
# and prints per variant the mIoU over the classes present in the val set
# ("mIoU (present)", seg-eval's miou_present): mean, sample standard
# deviation, and each seed's paired difference against the baseline of the
# same seed. With -o, also draws the means with +-1 s.d. error bars and the
# seeds' points (gnuplot, PNG).
set -eu
me=study.sh
png= title="pspkd distillation study"
usage() { echo "usage: $me [-o PNG] [-t TITLE] DIR VARIANT..." >&2; exit 2; }
while getopts o:t:h opt; do
    case $opt in
    o) png=$OPTARG ;;
    t) title=$OPTARG ;;
    h) echo "usage: $me [-o PNG] [-t TITLE] DIR VARIANT..."; exit 0 ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || usage
dir=$1
shift
base=$1
seeds=$(for f in "$dir/$base"-s*.eval.json; do
            [ -e "$f" ] || continue
            s=${f##*-s}; echo "${s%.eval.json}"
        done | sort -n)
[ -n "$seeds" ] || { echo "$me: no $dir/$base-s*.eval.json" >&2; exit 1; }

# One line per (variant, seed): "variant seed miou_present".
data=$(for v in "$@"; do
    for s in $seeds; do
        f="$dir/$v-s$s.eval.json"
        [ -r "$f" ] || { echo "$me: $f: cannot read" >&2; exit 1; }
        m=$(tr -d '\n' <"$f" | sed -n 's/.*"miou_present": \([-0-9.eE+]*\).*/\1/p')
        [ -n "$m" ] || { echo "$me: $f: no miou_present" >&2; exit 1; }
        echo "$v $s $m"
    done
done) || exit 1

echo "$data" | awk -v title="$title" -v base="$base" -v nseeds="$(echo "$seeds" | wc -l)" '
{ v = $1; s = $2; x = $3 + 0
  if (!(v in seen)) { seen[v] = 1; order[++nv] = v }
  val[v, s] = x; sum[v] += x; n[v]++; if (!(s in sseen)) { sseen[s] = 1; sd_[++ns] = s } }
END {
    printf "%s: mIoU (present) = mean IoU over the classes present in the val set; %d seeds\n", title, nseeds
    printf "%-10s %7s %7s   %s\n", "variant", "mean", "s.d.", "paired difference vs " base " (seed: diff)"
    for (i = 1; i <= nv; i++) {
        v = order[i]; m = sum[v] / n[v]; q = 0
        for (j = 1; j <= ns; j++) q += (val[v, sd_[j]] - m) ^ 2
        sdv = n[v] > 1 ? sqrt(q / (n[v] - 1)) : 0
        line = ""; pos = 0; dsum = 0
        for (j = 1; j <= ns; j++) {
            d = val[v, sd_[j]] - val[base, sd_[j]]; dsum += d; pos += d > 0
            line = line sprintf(" %s:%+.4f", sd_[j], d)
        }
        if (v == base) line = " (baseline)"
        else line = line sprintf("  mean %+.4f, %d of %d positive", dsum / ns, pos, ns)
        printf "%-10s %7.4f %7.4f  %s\n", v, m, sdv, line
    }
}'

[ -n "$png" ] || exit 0
gnuplot --version 2>/dev/null | grep -q "^gnuplot [0-9]" || {
    echo "$me: gnuplot not found (Debian: gnuplot-nox): no chart" >&2; exit 0; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
echo "$data" | awk '{ if (!($1 in i)) { i[$1] = ++n; name[n] = $1 }; s[$1] += $3; c[$1]++
                      q[$1, c[$1]] = $3 }
    END { for (k = 1; k <= n; k++) { v = name[k]; m = s[v] / c[v]; d = 0
              for (j = 1; j <= c[v]; j++) d += (q[v, j] - m) ^ 2
              sdv = c[v] > 1 ? sqrt(d / (c[v] - 1)) : 0
              printf "%d %s %.6f %.6f\n", k - 1, v, m, sdv } }' \
    >"$tmp/bars"
echo "$data" | awk '{ if (!($1 in i)) i[$1] = n++; print i[$1], $3 }' >"$tmp/points"
qpng=$(printf "'%s'" "$(printf '%s' "$png" | sed "s/'/''/g")")
qtitle=$(printf "'%s'" "$(printf '%s' "$title" | sed "s/'/''/g")")
gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output $qpng
set title $qtitle
set ylabel 'mIoU (present classes)'
set style fill solid 0.4 border
set boxwidth 0.6
set grid ytics
set key off
set xrange [-0.6:*]
set yrange [0:*]
plot '$tmp/bars' using 1:3:xtic(2) with boxes lc rgb '#4477aa', \
     '' using 1:3:4 with yerrorbars lc rgb 'black' pt 0 lw 2, \
     '$tmp/points' using 1:2 with points pt 7 ps 1 lc rgb '#cc3311'
GP
echo "$me: wrote $png" >&2
