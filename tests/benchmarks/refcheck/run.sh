#!/bin/bash
# Same numbers before and after a refactor: run the refcheck suites (every built-in component,
# tiny data) with the code of SRC_DIR, then dump every built-in suite's plan keys and every
# stored metric value to OUT/result.json. Compare two dumps with compare.py.
#   git worktree add /tmp/base <rev>
#   tests/benchmarks/refcheck/run.sh /tmp/base /tmp/refcheck-base
#   tests/benchmarks/refcheck/run.sh "$PWD" /tmp/refcheck-after
#   python tests/benchmarks/refcheck/compare.py /tmp/refcheck-base /tmp/refcheck-after
set -u
SRC=$(cd "$1" && pwd); OUT=$2; HERE=$(cd "$(dirname "$0")" && pwd); mkdir -p "$OUT"; cd "$OUT"
export PYTHONPATH=$SRC BENCH_HOME=$OUT/home
for s in fair models explain bam; do
  python -m benchmark run --suite "$HERE/$s.yaml" --no-progress -j 1 --store "$OUT/store.sqlite" \
    --cache "$OUT/cache" > "$OUT/$s.log" 2>&1
  echo "$s rc=$?" >> "$OUT/status"
done
python "$HERE/dump.py" "$OUT/result.json" "$OUT/store.sqlite" "$HERE" > "$OUT/dump.log" 2>&1
