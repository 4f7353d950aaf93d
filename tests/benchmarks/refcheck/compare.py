"""Compare two refcheck dumps: job keys per suite, then every metric value bit for bit."""

import json
import sys
from pathlib import Path

base, after = (json.loads((Path(p) / "result.json").read_text()) for p in sys.argv[1:3])
for suite, keys in base["keys"].items():
    print(f"{suite}: {len(keys)} job keys, identical: {keys == after['keys'].get(suite)}")
differences = compared = 0
for key in sorted(set(base["values"]) | set(after["values"])):
    old, new = base["values"].get(key, {}), after["values"].get(key, {})
    for metric in sorted(set(old) | set(new)):
        compared += 1
        if old.get(metric) != new.get(metric):  # NaN is never stored: metrics are finite
            differences += 1
            print(f"DIFF {key} {metric}: {old.get(metric)} -> {new.get(metric)}")
print(
    f"{len(base['values'])} jobs with values before, {len(after['values'])} after; "
    f"{compared} values compared, {differences} differ"
)
print(
    f"failed jobs: {len(base['failed'])} before, {len(after['failed'])} after, same keys: "
    f"{set(base['failed']) == set(after['failed'])}"
)
sys.exit(1 if differences else 0)
