#!/bin/sh
# timed.sh: run one pipeline stage and append its cost to a timings file.
#   timed.sh TIMINGS STAGE COMMAND [ARG...]
# Appends "STAGE<TAB>wall<TAB>user<TAB>sys<TAB>status" (seconds) to TIMINGS
# and exits with the command's status. A stage that is interrupted and
# resumed gets one line per run; table.sh adds them up.
set -u
[ $# -ge 3 ] || { echo "usage: timed.sh TIMINGS STAGE COMMAND [ARG...]" >&2; exit 2; }
log=$1 stage=$2
shift 2
now() { date +%s.%N; }
# A handler (not an ignore, which the command would inherit) keeps this shell
# alive on SIGINT/SIGTERM so that a trainer can write its checkpoint first.
trap : INT TERM
t0=$(now)
"$@"
rc=$?
t1=$(now)
# The second line of `times` is the children's user and system time, as
# "XmY.YYYs XmY.YYYs" (dash and bash both); it must run in this shell, not in
# a command substitution's subshell, hence the file.
tf=$(mktemp) || exit 1
times >"$tf"
cpu=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, p, "m"); sub(/s$/, "", p[2])
                     printf "%s%.2f", (i > 1 ? "\t" : ""), p[1] * 60 + p[2] } }' "$tf")
rm -f "$tf"
printf '%s\t%.2f\t%s\t%d\n' "$stage" "$(echo "$t0 $t1" | awk '{ print $2 - $1 }')" "$cpu" "$rc" \
    >>"$log" || echo "timed.sh: cannot append to $log" >&2
exit "$rc"
