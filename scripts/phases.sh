#!/usr/bin/env bash
# `make test`'s phases, each one timed: the table it prints at the end is how the
# delivery budget (design.md: make test in CI <= 45 min) is read and kept.
#   scripts/phases.sh run PHASE...   run `$MAKE PHASE` for each in turn, stop at the first
#                                    that fails; rows go to build/phases.tsv; the table is
#                                    printed at the end unless PHASE_TABLE=0
#   scripts/phases.sh table          print the table of build/phases.tsv (.ci/run's last lines)
# Exit status of `run`: 0 if every phase passed, else the failed phase's status.
set -uo pipefail
TSV="${PHASES_TSV:-build/phases.tsv}"
BUDGET=2700  # seconds: design.md's "Delivery budget"

mmss() { printf '%02d:%02d' $(($1 / 60)) $(($1 % 60)); }

table() {
  if [ ! -s "$TSV" ]; then
    echo "phase times: nothing recorded in $TSV"
    return
  fi
  local phase tenths result total=0 failed="" notrun=0 why=""
  echo "== make test, each phase's wall time ($TSV)"
  printf '%-10s %9s %7s  %s\n' phase seconds mm:ss result
  while IFS=$'\t' read -r phase tenths result; do
    if [ "$tenths" = - ]; then
      printf '%-10s %9s %7s  %s\n' "$phase" - - "$result"
      notrun=1
      continue
    fi
    total=$((total + tenths))
    printf '%-10s %7d.%d %7s  %s\n' "$phase" $((tenths / 10)) $((tenths % 10)) "$(mmss $((tenths / 10)))" "$result"
    if [ "$result" != ok ]; then
      failed="$phase"
      why="$result"
    fi
  done <"$TSV"
  local verdict="ok"
  if [ -n "$failed" ]; then
    verdict="stopped at $failed: $why"
  elif [ "$notrun" = 1 ]; then
    verdict="incomplete"
  elif [ $((total / 10)) -le "$BUDGET" ]; then
    verdict="ok, within the budget of $(mmss "$BUDGET")"
  else
    verdict="ok, OVER the budget of $(mmss "$BUDGET")"
  fi
  printf '%-10s %7d.%d %7s  %s\n' total $((total / 10)) $((total % 10)) "$(mmss $((total / 10)))" "$verdict"
}

now_us() { echo "${EPOCHREALTIME/./}"; }

run() {
  local make="${MAKE:-make}" phase started status=0 i
  local -a phases=("$@")
  mkdir -p "$(dirname "$TSV")"
  : >"$TSV"
  current=""
  # A run cut short (CI's time limit, ^C) still shows where the time went.
  trap 'interrupted 130' INT
  trap 'interrupted 143' TERM
  for i in "${!phases[@]}"; do
    phase="${phases[$i]}"
    current="$phase"
    started="$(now_us)"
    echo "== phase $phase: $make $phase"
    # $make is "make --no-print-directory" or similar: split on purpose.
    # shellcheck disable=SC2086
    $make "$phase"
    status=$?
    tenths=$((($(now_us) - started) / 100000))
    if [ "$status" = 0 ]; then
      printf '%s\t%d\tok\n' "$phase" "$tenths" >>"$TSV"
      echo "== phase $phase: ok in $(mmss $((tenths / 10)))"
      continue
    fi
    printf '%s\t%d\tFAILED (exit %d)\n' "$phase" "$tenths" "$status" >>"$TSV"
    for phase in "${phases[@]:$((i + 1))}"; do
      printf '%s\t-\tnot run\n' "$phase" >>"$TSV"
    done
    break
  done
  current=""
  [ "${PHASE_TABLE:-1}" = 0 ] || table
  return "$status"
}

interrupted() {
  if [ -n "$current" ]; then
    printf '%s\t%d\tinterrupted\n' "$current" $((($(now_us) - started) / 100000)) >>"$TSV"
  fi
  [ "${PHASE_TABLE:-1}" = 0 ] || table
  exit "$1"
}

case "${1:-}" in
run)
  shift
  run "$@"
  ;;
table) table ;;
*)
  echo "usage: $0 run PHASE... | $0 table" >&2
  exit 2
  ;;
esac
