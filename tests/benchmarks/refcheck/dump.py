"""Every built-in suite's job keys and every stored metric value, as JSON (see run.sh)."""

import json
import sqlite3
import sys
from pathlib import Path

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.registry import Registry

out, store, here = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
registry = Registry.load()
refs = ["smoke", "fairness", "explainability", "sanity", *map(str, sorted(here.glob("*.yaml")))]
keys = {
    Path(ref).stem: sorted(j.key for j in planner.expand(suite_module.load(ref, registry)).jobs)
    for ref in refs
}
values: dict[str, dict[str, float]] = {}
with sqlite3.connect(store) as con:
    for key, metric, value in con.execute("SELECT job_key, metric, value FROM metrics"):
        values.setdefault(key, {})[metric] = value
    failed = dict(con.execute("SELECT job_key, error FROM jobs WHERE status = 'failed'"))
out.write_text(json.dumps({"keys": keys, "values": values, "failed": failed}, sort_keys=True))
print({k: len(v) for k, v in keys.items()}, len(values), "jobs with values", len(failed), "failed")
