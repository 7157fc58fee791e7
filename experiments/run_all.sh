#!/usr/bin/env bash
# Runs the recorded experiments one after another (they share the machine's cores).
# Usage: JAX_RNNLM_DATA=../shared/data nohup bash experiments/run_all.sh > runs/run_all.log 2>&1 &
set -u
mkdir -p runs
for name in "$@"; do
  echo "== $name $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)"
  /usr/bin/time -v python "experiments/$name.py" > "runs/$name.out" 2> "runs/$name.err"
  echo "== $name exit $? $(date -u +%FT%TZ)"; tail -n 1 "runs/$name.out"
done
