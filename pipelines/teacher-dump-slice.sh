#!/bin/sh
# teacher-dump-slice.sh: one rank's slice of teacher-dump under mpirun.
#   mpirun -np N teacher-dump-slice.sh N PREFIX [teacher-dump options]
# Rank I (Open MPI's OMPI_COMM_WORLD_RANK, or PMIX_RANK) runs
#   teacher-dump --shard I/N -o PREFIX-I.lmdb [options] >PREFIX-I.json
# with $PSPKD_TEACHER_DUMP (teacher-dump on the PATH when unset); the
# pipeline then joins the slices with teacher-dump --merge.
set -u
[ $# -ge 2 ] || { echo "usage: teacher-dump-slice.sh N PREFIX [options]" >&2; exit 2; }
n=$1 prefix=$2
shift 2
rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-}}
[ -n "$rank" ] || { echo "teacher-dump-slice.sh: not started by mpirun" >&2; exit 2; }
exec "${PSPKD_TEACHER_DUMP:-teacher-dump}" --shard "$rank/$n" -o "$prefix-$rank.lmdb" "$@" \
    >"$prefix-$rank.json"
