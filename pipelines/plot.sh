#!/bin/sh
# plot.sh: training logs (pspkd-log(5) CSV) -> DIR/loss.png and DIR/miou.png
#   plot.sh [-o DIR] LOG...
# loss.png: the total training loss per step (a running mean over ~1/50 of
# the run, so curves of different lengths stay readable), one curve per log;
# miou.png: validation mIoU over the classes present (the log's
# miou_present, seg-eval's and the pipeline table's figure) per step, one
# curve per log; a log written before that column has its mean over all the
# classes instead, and the curve's title says so. Each curve is named after
# its log file (without .csv). Needs gnuplot (pngcairo terminal).
set -eu
me=plot.sh
legacy='step,epoch,lr,loss,ce,aux_ce,kd,aux_kd,img_s,time,miou,macc,aacc'
header="$legacy,miou_present"
out=.
usage() { echo "usage: $me [-o DIR] LOG..." >&2; exit 2; }
while getopts o:h opt; do
    case $opt in
    o) out=$OPTARG ;;
    h) echo "usage: $me [-o DIR] LOG...  (writes DIR/loss.png and DIR/miou.png)"; exit 0 ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
gnuplot --version 2>/dev/null | grep -q "^gnuplot [0-9]" || { echo "$me: gnuplot not found (Debian: gnuplot-nox)" >&2; exit 1; }
mkdir -p "$out" || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# gnuplot string literal: double any single quote.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

i=0 lossplot= miouplot= nval=0
for log in "$@"; do
    [ -r "$log" ] || { echo "$me: $log: cannot read" >&2; exit 1; }
    first=$(head -n 1 "$log")
    col=14 name=$(basename "$log" .csv)
    if [ "$first" = "$legacy" ]; then col=11 name="$name (mean over all classes)"
    elif [ "$first" != "$header" ]; then echo "$me: $log: not a pspkd training log" >&2; exit 1; fi
    i=$((i + 1))
    # Training rows have an lr (field 3); validation rows have a miou (11).
    awk -F, 'NR > 1 && $3 != "" { n++; s[n] = $1; l[n] = $4 }
        END { w = int(n / 50); if (w < 1) w = 1
              for (k = 1; k <= n; k++) { sum += l[k]; if (k > w) sum -= l[k - w]
                  printf "%s %.6g\n", s[k], sum / (k < w ? k : w) } }' "$log" >"$tmp/loss$i"
    awk -F, -v c=$col 'NR > 1 && $c != "" { print $1, $c }' "$log" >"$tmp/miou$i"
    t=$(q "$name")
    lossplot="$lossplot${lossplot:+, }'$tmp/loss$i' using 1:2 with lines lw 2 title $t"
    if [ -s "$tmp/miou$i" ]; then
        nval=$((nval + 1))
        miouplot="$miouplot${miouplot:+, }'$tmp/miou$i' using 1:2 with linespoints lw 2 pt 7 title $t"
    fi
done
[ -n "$miouplot" ] || miouplot="1/0 notitle"

gnuplot <<GP
set terminal pngcairo size 900,540 noenhanced
set grid
set key outside right top
set xlabel 'step'
set output $(q "$out/loss.png")
set ylabel 'training loss (running mean)'
plot $lossplot
set output $(q "$out/miou.png")
set ylabel 'validation mIoU (present classes)'
$( if [ "$nval" -gt 0 ]; then echo "set yrange [0:*]"; else
     echo "set xrange [0:1]"; echo "set yrange [0:1]"
     echo "set label 'no validation rows in these logs' at graph 0.5,0.5 center"; fi )
plot $miouplot
GP
echo "$me: wrote $out/loss.png and $out/miou.png"
