"""A small real leaderboard site for the site tests: the toy plugin's suite, run for real
through the serial executor into a SQLite store, then published, with hostile labels, a
hostile metric header and a hostile error message in it."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from benchmark import planner, render
from benchmark import suite as suite_module
from benchmark.cache import ArtifactCache
from benchmark.leaderboard import Leaderboard, aggregate
from benchmark.records import Plan
from benchmark.runner import Runner
from benchmark.store import Store

HOSTILE = {
    "script": "<script>alert(1)</script>",
    "img": "<img src=x onerror=alert(2)>",
    "pipe": "a|b",
    "tick": "x`y",
}
ERROR = "<script>alert(3)</script> | `tick` <img src=x onerror=alert(4)> [link](http://x)"

SUITE = f"""\
name: site-test
description: "A toy suite <b>with</b> a hostile | description"
datasets: [toy-bars, {{name: toy-bars, label: toy-bars-b}}]
models: [toy-linear]
debiasers:
  - {{name: toy-sgd, label: short, params: {{steps: 2, lr: 0.05}}}}
  - {{name: toy-sgd, label: long, params: {{steps: 40}}}}
  - {{name: toy-sgd, label: '{HOSTILE["script"]}', params: {{steps: 5}}}}
  - {{name: toy-sgd, label: '{HOSTILE["img"]}', params: {{steps: 6}}}}
  - {{name: toy-sgd, label: '{HOSTILE["pipe"]}', params: {{steps: 7}}}}
  - {{name: toy-sgd, label: '{HOSTILE["tick"]}', params: {{steps: 8}}}}
evaluators:
  - toy-accuracy
  - toy-norm
  - {{name: toy-raise, params: {{message: '{ERROR}'}}}}
seeds: [0, 1]
leaderboard:
  metric: accuracy
  labels: {{accuracy: "acc <b>|</b> `x`"}}
"""


@dataclass
class Site:
    out: Path
    page: Path
    plan: Plan
    store: Store
    board: Leaderboard


def run_toy_suite(registry, tmp_path: Path, text: str, name: str, keep=lambda job: True):
    """Parse ``text``, run the jobs ``keep`` selects through the serial executor into
    ``tmp_path / "r.sqlite"``; return the whole plan (what the leaderboard expects) and the
    store."""
    suite = suite_module.parse(textwrap.dedent(text), name, registry)
    plan = planner.expand(suite)
    store = Store(tmp_path / "r.sqlite")
    Runner(
        registry,
        store,
        ArtifactCache(tmp_path / "c"),
        show_progress=False,
        executor="serial",
        console=Console(quiet=True),
    ).run(planner.Plan(suite, [job for job in plan.jobs if keep(job)]))
    return plan, store


def publish_toy_site(registry, tmp_path: Path, skip_seed: int | None = None) -> Site:
    """Run the suite (all but ``skip_seed`` of ``short``, so a row has a missing seed) and
    publish it under ``tmp_path / "leaderboards"``."""
    plan, store = run_toy_suite(
        registry,
        tmp_path,
        SUITE,
        "site.yaml",
        keep=lambda j: not (j.seed == skip_seed and j.debiaser.label == "short"),
    )
    board = aggregate(plan, store)
    out = tmp_path / "leaderboards"
    target = render.write(board, out)
    return Site(out, target / "index.html", plan, store, board)
