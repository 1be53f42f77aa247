#!/bin/sh
# split-list.sh: split a list of images into a labelled part and the rest.
#   split-list.sh [-f FRACTION] LIST LABELLED REST
# Writes the first round(N x FRACTION) non-blank lines of LIST (N of them;
# default fraction 0.25, a quarter) to LABELLED and the other lines to
# REST, each through a temporary file renamed into place. Both parts must
# be non-empty. The study-unlabeled target packs LABELLED with voc-pack
# --list and REST with voc-pack --unlabeled --list.
set -eu
me=split-list.sh
frac=0.25
usage() { echo "usage: $me [-f FRACTION] LIST LABELLED REST" >&2; exit 2; }
while getopts f:h opt; do
    case $opt in
    f) frac=$OPTARG ;;
    h) echo "usage: $me [-f FRACTION] LIST LABELLED REST"; exit 0 ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 3 ] || usage
list=$1 lab=$2 rest=$3
case $frac in
    '' | *[!0-9.]* | *.*.* | .) echo "$me: -f takes a fraction between 0 and 1" >&2; exit 2 ;;
esac
[ -r "$list" ] || { echo "$me: $list: cannot read" >&2; exit 1; }
n=$(grep -c '[^[:space:]]' "$list" || true)
k=$(awk -v n="$n" -v f="$frac" 'BEGIN { printf "%d", n * f + 0.5 }')
if [ "$k" -lt 1 ] || [ "$k" -ge "$n" ]; then
    echo "$me: $list: $n images at fraction $frac leave an empty part ($k labelled)" >&2
    exit 1
fi
grep '[^[:space:]]' "$list" | awk -v k="$k" -v a="$lab.tmp.$$" -v b="$rest.tmp.$$" \
    'NR <= k { print > a; next } { print > b }'
mv "$lab.tmp.$$" "$lab"
mv "$rest.tmp.$$" "$rest"
