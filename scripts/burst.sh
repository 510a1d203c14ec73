#!/usr/bin/env bash
# The burst harness of control/tests/burst, run N times in a row:
#
#   scripts/burst.sh [--runs N] [--variant embedded|etcd|kill|all]
#                    [--deployments N] [--seed S] [--no-faults]
#
# Each run propagates N Deployments (default 2000) of 2 replicas to three
# simulated members with the control plane's watches forced to fall behind
# and 5% of Work writes failing, then checks that every binding is applied,
# every replica runs, and nothing was deleted. `kill` runs the members as
# their own processes and SIGKILLs the control plane halfway. One summary
# line per run ("BURST RESULT ...") goes to stdout and to
# target/burst/results.txt; the script fails if any run failed. With
# --no-faults nothing is injected and no controller watch may fall behind.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=1
variant=embedded
deployments=2000
seed=""
faults=on
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --variant) variant="$2"; shift 2 ;;
    --deployments) deployments="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --no-faults) faults=off; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "burst.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$variant" in
  embedded) filter=embedded_store_burst ;;
  etcd) filter=etcd_store_burst ;;
  kill) filter=control_plane_killed_mid_burst ;;
  all) filter="" ;;
  *) echo "burst.sh: --variant must be embedded, etcd, kill or all" >&2; exit 2 ;;
esac
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "burst.sh: --runs must be a positive number" >&2; exit 2; }

cargo build --bins -p hami-agent -p hami-device-plugin -p hami-estimator
mkdir -p target/burst
results=target/burst/results.txt
: > "$results"
failed=0
for i in $(seq 1 "$runs"); do
  log="target/burst/run-$i.log"
  echo "== run $i of $runs ($variant, $deployments Deployments), log in $log"
  start=$(date +%s)
  if HAMI_BURST_DEPLOYMENTS="$deployments" HAMI_BURST_FAULTS="$faults" ${seed:+HAMI_BURST_SEED="$seed"} \
      cargo nextest run -p hami-control --test burst --no-capture $filter >"$log" 2>&1; then
    status=passed
  else
    status=FAILED
    failed=$((failed + 1))
  fi
  grep -a '^BURST RESULT' "$log" | sed "s/^/run $i $status: /" | tee -a "$results" || true
  grep -aq '^BURST RESULT' "$log" || echo "run $i $status: no result line (see $log)" | tee -a "$results"
  echo "   run $i $status in $(( $(date +%s) - start ))s"
done
echo "== $((runs - failed)) of $runs runs passed; results in $results"
[ "$failed" -eq 0 ]
