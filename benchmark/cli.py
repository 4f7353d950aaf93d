"""The ``bench`` command: plugins, plan, run, leaderboard, publish.

Bad input (a malformed suite, an unknown name) prints one message and exits with status 2,
without a traceback; failed jobs make ``bench run`` exit 1 after the whole run has finished.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmark import planner, render, suite_parameters
from benchmark import suite as suite_module
from benchmark.errors import BenchInputError
from benchmark.kinds import COMPONENT_KINDS, KIND_TABLE
from benchmark.records import bounded
from benchmark.registry import PluginError, Registry

EXIT_INPUT_ERROR = 2
EXIT_JOBS_FAILED = 1

err_console = Console(stderr=True, highlight=False)


def _home() -> Path:
    return Path(os.environ.get("BENCH_HOME", ".bench"))


def _input_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ``BenchInputError`` (and strict-mode plugin errors) into a message and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (BenchInputError, PluginError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            sys.exit(EXIT_INPUT_ERROR)

    return wrapper


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def _load_registry(warn: bool = True) -> Registry:
    try:
        registry = Registry.load()
    except PluginError as exc:  # BENCH_STRICT_PLUGINS=1: the first plugin error ends the command
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(EXIT_INPUT_ERROR)
    if warn:
        problems = {"partial": "loaded in part: ", "error": "not loaded: "}
        for record in registry.plugins.values():
            if record.status in problems or record.warning:
                err_console.print(
                    f"[yellow]warning:[/] plugin '{record.name}' ({record.distribution} "
                    f"{record.version}) {problems.get(record.status, '')}"
                    f"{escape(record.error or record.warning)}"
                    + ("  (see `bench plugins`)" if record.error else "")
                )
    return registry


FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)
store_option = click.option(
    "--store",
    "store_path",
    type=FILE,
    help="SQLite results store [default: $BENCH_HOME/results.sqlite, BENCH_HOME=.bench].",
)
cache_option = click.option(
    "--cache",
    "cache_dir",
    type=FOLDER,
    help="Artifact cache directory [default: $BENCH_HOME/cache].",
)
out_option = click.option(
    "--out",
    "out_dir",
    type=FOLDER,
    default=Path("leaderboards"),
    show_default=True,
    help="Where leaderboards are written.",
)
suite_option = click.option(
    "--suite", "suite_ref", required=True, help="Built-in suite name or path to a suite YAML file."
)
param_option = click.option(
    "-p",
    "--param",
    "param_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="A value for one of the suite's parameters (repeat for more); VALUE is read as YAML: "
    "3 is a number, /data/x text, null no value.",
)
select_option = click.option(
    "-k",
    "select_expr",
    default="",
    help="Only jobs whose description matches, pytest-style: -k 'colored and not resnet18'.",
)
timeout_option = click.option(
    "--job-timeout",
    "job_timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Time limit per job in seconds, training included; overrides the suite's.",
)


def _load_suite(ref: str, registry: Registry, param_items: tuple[str, ...]) -> suite_module.Suite:
    """``--suite`` with the ``-p NAME=VALUE`` values of its parameters."""
    given = suite_parameters.from_command_line(param_items)
    return suite_module.load(ref, registry, parameters=given)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dependable-bench")
def main() -> None:
    """Benchmark fairness, explainability and robustness of image classifiers."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List plugins (with load errors) and every component they register."""
    registry = _load_registry(warn=False)
    plugin_rows = [
        {
            "name": r.name,
            "distribution": r.distribution,
            "version": r.version,
            "status": r.status,
            "error": r.error,
            "components": r.components,
            "warning": r.warning,
        }
        for r in registry.plugins.values()
    ]
    components = []
    for spec in [spec for kind in KIND_TABLE for spec in registry.specs(kind.name)]:
        record = registry.plugins.get(spec.plugin)
        components.append(
            {
                "kind": spec.kind,
                "name": spec.name,
                "version": getattr(spec, "version", ""),
                "description": spec.description,
                "plugin": spec.plugin,
                "distribution": spec.distribution,
                "distribution_version": record.version if record else "",
                "provides": sorted(getattr(spec, "provides", ())),
                "requires": sorted(getattr(spec, "requires", ())),
                "params": dict(getattr(spec, "params", {})),
                # what a reader of a result needs to know about the component's contract
                **{
                    field: _plain(getattr(spec, field))
                    for field in ("directions", "target_layer", "batch_independent")
                    if hasattr(spec, field)
                },
                "status": "loaded",
            }
        )
    if as_json:
        click.echo(
            json.dumps({"plugins": plugin_rows, "components": components}, indent=2, default=str)
        )
        return
    console = Console(highlight=False)
    table = Table(title="plugins")
    for column in ("name", "distribution", "version", "status", "error"):
        table.add_column(column, overflow="fold")
    for row in plugin_rows:
        style = {"error": "red", "partial": "yellow", "disabled": "dim"}.get(row["status"], "")
        table.add_row(
            *(str(row[c]) for c in ("name", "distribution", "version", "status")),
            row["error"] or row["warning"],
            style=style,
        )
    console.print(table)
    table = Table(title="components")
    for column in (
        "kind",
        "name",
        "version",
        "distribution",
        "provides",
        "requires",
        "description",
    ):
        table.add_column(column, overflow="fold")
    for c in components:
        table.add_row(
            c["kind"],
            c["name"],
            c["version"],
            f"{c['distribution']} {c['distribution_version']}",
            ", ".join(c["provides"]),
            ", ".join(c["requires"]),
            c["description"],
        )
    console.print(table)


@main.command()
@suite_option
@param_option
@select_option
@timeout_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_input_errors
def plan(
    suite_ref: str,
    param_items: tuple[str, ...],
    select_expr: str,
    job_timeout: float | None,
    as_json: bool,
) -> None:
    """Show the jobs a suite expands to, the trainings they imply, and why each skipped
    combination (or entry whose parameter has no value) is skipped."""
    registry = _load_registry()
    suite = _load_suite(suite_ref, registry, param_items)
    the_plan = planner.expand(suite, select_expr, job_timeout)
    models, retrains = the_plan.trainings()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "suite": the_plan.suite.name,
                    "parameters": suite.parameters,
                    "dropped": [dropped.record() for dropped in suite.dropped],
                    "deselected": the_plan.deselected,
                    "trainings": {"models": models, "retrains_declared": retrains},
                    "jobs": [job.record() for job in the_plan.jobs],
                    "skipped": [
                        {"combination": skip.describe(), "reason": skip.reason}
                        for skip in the_plan.skipped
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return
    deselected = f", {the_plan.deselected} deselected by -k" if the_plan.deselected else ""
    click.echo(
        f"suite '{the_plan.suite.name}': {len(the_plan.jobs)} jobs{deselected}, "
        f"{len(the_plan.skipped)} skipped combinations; trainings: {models} models"
        f" + up to {retrains} retrains declared by evaluators"
    )
    for dropped in suite.dropped:
        click.echo(f"  skipped {dropped.describe()}: {dropped.reason}")
    for job in the_plan.jobs:
        extra = f"  [+{job.retrains} retrains]" if job.retrains else ""
        click.echo(f"  run   {job.describe()}{extra}")
    for skip in the_plan.skipped:
        click.echo(f"  skip  {skip.describe()}: {skip.reason}")


@main.command()
@suite_option
@param_option
@store_option
@cache_option
@out_option
@click.option(
    "--rerun",
    is_flag=True,
    help="Run every job again even if the store has its result (models stay cached).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (per-job lines only).")
@select_option
@timeout_option
@click.option(
    "--executor",
    default="process",
    show_default=True,
    help="Where jobs run: process (spawned workers), serial (in this process: no time "
    "limits, no crash isolation), ray, or one a plugin registers.",
)
@click.option(
    "-j",
    "--jobs",
    "n_jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Workers running at once [default: one per core, or one per GPU with --device cuda].",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch threads per worker [default: cores / workers]; numbers can change with it.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="auto, cpu, cuda or cuda:N (auto = CUDA when present).",
)
@click.option(
    "--ray-address",
    default=None,
    help="Ray cluster to join (auto, or ray://host:port); default: start a local Ray.",
)
@_input_errors
def run(
    suite_ref: str,
    param_items: tuple[str, ...],
    store_path: Path | None,
    cache_dir: Path | None,
    out_dir: Path,
    rerun: bool,
    no_progress: bool,
    select_expr: str,
    job_timeout: float | None,
    executor: str,
    n_jobs: int | None,
    threads: int | None,
    device: str,
    ray_address: str | None,
) -> None:
    """Run every job of a suite that the store does not have yet, then write its leaderboard."""
    from benchmark.cache import ArtifactCache
    from benchmark.leaderboard import aggregate
    from benchmark.runner import Runner
    from benchmark.store import Store

    registry = _load_registry()
    suite = _load_suite(suite_ref, registry, param_items)
    for dropped in suite.dropped:
        err_console.print(f"note: skipped {escape(dropped.describe())}: {escape(dropped.reason)}")
    the_plan = planner.expand(suite, select_expr, job_timeout)
    whole = planner.expand(suite)  # the leaderboard shows what -k left out as missing
    if not the_plan.jobs:
        raise BenchInputError(
            f"suite '{the_plan.suite.name}' plans no jobs"
            + (f" matching -k {select_expr!r}" if select_expr else "")
            + "; `bench plan` shows why each combination is skipped"
        )
    if ray_address and executor != "ray":
        raise BenchInputError("--ray-address is for --executor ray")
    with Store(store_path or _home() / "results.sqlite") as store:
        cache = ArtifactCache(cache_dir or _home() / "cache")
        runner = Runner(
            registry,
            store,
            cache,
            console=err_console,
            rerun=rerun,
            show_progress=not no_progress,
            executor=executor,
            jobs=n_jobs,
            threads=threads,
            device=device,
            ray_address=ray_address,
        )
        summary = runner.run(the_plan)
        if summary.interrupted:
            err_console.print(
                f"[bold yellow]interrupted by {summary.interrupted}[/] after "
                f"{summary.ran} of {summary.total - summary.cached} jobs; the finished ones are "
                "stored and the run is marked interrupted: run the same command to resume."
            )
            sys.exit(128 + int(getattr(signal, summary.interrupted)))
        target = render.write(
            aggregate(whole, store, cache), out_dir, suite.model.leaderboard.columns
        )
    deselected = f", {the_plan.deselected} left out by -k" if the_plan.deselected else ""
    err_console.print(
        f"jobs: {summary.total} planned{deselected}, {summary.ran} run, {summary.cached} cache "
        f"hits (results already in the store), {summary.failed} failed; models: "
        f"{summary.models_trained} trained, {summary.model_cache_hits} cache hits; "
        f"{summary.duration_s:.1f} s ({summary.executor})"
    )
    err_console.print(f"leaderboard: {target / 'README.md'} (site: {target / 'index.html'})")
    if summary.failed:
        err_console.print(f"[bold red]{summary.failed} job(s) failed:[/]")
        for description, error in summary.failures:
            err_console.print(f"  {escape(description)}: {escape(bounded(error, 600))}")
        sys.exit(EXIT_JOBS_FAILED)


@main.command()
@suite_option
@param_option
@store_option
@cache_option
@out_option
@_input_errors
def leaderboard(
    suite_ref: str,
    param_items: tuple[str, ...],
    store_path: Path | None,
    cache_dir: Path | None,
    out_dir: Path,
) -> None:
    """Re-render a suite's leaderboard from the store (nothing is run; per-image scores for
    the evaluator-reliability table are read from the cache where it has them)."""
    from benchmark.cache import ArtifactCache
    from benchmark.leaderboard import aggregate
    from benchmark.store import Store

    registry = _load_registry()
    the_plan = planner.expand(_load_suite(suite_ref, registry, param_items))
    path = store_path or _home() / "results.sqlite"
    if not path.is_file():
        raise BenchInputError("no results store here; run `bench run` first", where=str(path))
    cache = ArtifactCache(cache_dir or _home() / "cache")
    with Store(path) as store:
        target = render.write(
            aggregate(the_plan, store, cache), out_dir, the_plan.suite.model.leaderboard.columns
        )
    click.echo(str(target / "README.md"))


@main.command()
@store_option
@cache_option
@out_option
@click.option(
    "--suite",
    "suite_refs",
    multiple=True,
    help="Suites to publish [default: every built-in suite with results].",
)
@click.option(
    "-p",
    "--param",
    "param_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="A value for a parameter of the suites published (each must declare it; publish a "
    "suite that needs one on its own: --suite S -p NAME=VALUE).",
)
@click.option(
    "--with-store",
    is_flag=True,
    help="Also copy the results store to <out>/<suite>/results.sqlite (what benchmark.api and "
    "bench leaderboard read).",
)
@_input_errors
def publish(
    store_path: Path | None,
    cache_dir: Path | None,
    out_dir: Path,
    suite_refs: tuple[str, ...],
    param_items: tuple[str, ...],
    with_store: bool,
) -> None:
    """Re-render the leaderboards of every suite that has results in the store: Markdown,
    CSV, figures, and the static site (its index, one page and one data.json per suite)."""
    from benchmark.cache import ArtifactCache
    from benchmark.leaderboard import aggregate
    from benchmark.store import Store

    registry = _load_registry()
    path = store_path or _home() / "results.sqlite"
    if not path.is_file():
        raise BenchInputError("no results store here; run `bench run` first", where=str(path))
    cache = ArtifactCache(cache_dir or _home() / "cache")
    with Store(path) as store:
        ran = set(store.runs()["suite"])
        refs = list(suite_refs) or [n for n in registry.names("suite") if n in ran]
        for ref in refs:
            the_plan = planner.expand(_load_suite(ref, registry, param_items))
            target = render.write(
                aggregate(the_plan, store, cache),
                out_dir,
                the_plan.suite.model.leaderboard.columns,
            )
            click.echo(str(target / "README.md"))
            click.echo(str(target / "index.html"))
            if with_store:
                click.echo(str(store.snapshot(target / "results.sqlite")))
        from benchmark.render import site

        click.echo(str(site.write_index(out_dir)))


@main.group()
def new() -> None:
    """Start something new from a template."""


@new.command("plugin")
@click.argument("name")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(COMPONENT_KINDS),
    help="Component kinds to include (repeat the option) [default: all five].",
)
@click.option(
    "--dir",
    "folder",
    type=FOLDER,
    default=None,
    help="Where to write the distribution [default: ./NAME].",
)
@_input_errors
def new_plugin(name: str, kinds: tuple[str, ...], folder: Path | None) -> None:
    """Write a ready plugin distribution NAME: entry point, one example component per kind, a
    demo suite, tests using benchmark.testing (they pass as generated), README."""
    from benchmark import scaffold

    target = folder or Path(name)
    written = scaffold.new_plugin(name, target, kinds or scaffold.KINDS)
    err_console.print(f"wrote {len(written)} files under {target}/")
    click.echo(f"next: pip install -e '{target}[test]' && pytest {target} && bench plugins")


@main.command()
@suite_option
@param_option
@select_option
@click.option("--sample", type=click.IntRange(min=1), help="Rerun N rows drawn at random.")
@click.option("--sample-seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("--published", type=FOLDER, default=Path("leaderboards"), show_default=True)
@click.option("--executor", default="process", show_default=True)
@click.option("-j", "--jobs", "n_jobs", type=click.IntRange(min=1), default=None)
@click.option("--threads", type=click.IntRange(min=1), help="[default: as published]")
@click.option("--device", default=None, help="[default: as published if present, else cpu]")
@click.option("--json", "json_out", type=FILE, default=None, help="Also write the report here.")
@click.option("--no-progress", is_flag=True, help="No progress bar (per-job lines only).")
@_input_errors
def reproduce(**options: Any) -> None:
    """Rerun published rows on a fresh store and cache; report per metric the values that are
    bit-identical, how far the others moved in units of the row's seed std, and whether the
    conditions (CPU, instruction sets, torch build, threads, device) equal the published ones."""
    from benchmark import reproduce as reproduction

    reproduction.command(_load_registry(), err_console, **options)
