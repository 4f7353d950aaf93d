"""The data every phase passes on: jobs, plans, outcomes, summaries, and the digests that key them.

A job travels to workers in other processes and on other machines (a process pool, a Ray
cluster), so it is a plain record: component names, versions, parameters, labels and a seed,
never a live spec with its factory. A worker resolves the record again against its own
registry (HELM ships a serialisable ``RunSpec`` the same way; pytest-xdist serialises its
reports), so a job runs the same under every executor, and a worker whose plugin version
differs from the coordinator's fails the job with a message naming the component instead of
computing other numbers under the same key.

Outcomes come back as records too: metrics with their directions, arrays already JSON-able,
the error (bounded in size), duration, what the worker trained or loaded, its device and
thread count. Only the coordinator turns them into store rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from benchmark.kinds import COMPONENT_KINDS as KINDS

if TYPE_CHECKING:
    from benchmark.suite import Component, Suite

MAX_ERROR_CHARS = 4000
"""Longest error text stored or printed: one job's 28 MB error string once hung a run."""


def digest(payload: Any) -> str:
    """Stable short hash of JSON-able data (sorted keys), used for every content address."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 60]} ... [{len(text) - limit + 60} more characters cut]"


def jsonable(value: Any) -> Any:
    """Arrays from numpy / torch as nested lists, so outcomes travel and store as JSON."""
    if hasattr(value, "tolist"):
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class ComponentRecord:
    """One component of a job as data: what a worker needs to find it and check its version."""

    kind: str
    name: str
    version: str
    params: dict[str, Any]
    label: str
    """The suite's display name (differs from ``name`` when one component appears twice)."""
    plugin: str = ""
    distribution: str = ""
    validation: int = 0
    """A dataset's training images held out for model selection (the suite's ``validation``)."""

    def identity(self) -> dict[str, Any]:
        """What makes this component's output what it is: the content of every cache key."""
        return identity(self.name, self.version, self.params, self.validation)

    @classmethod
    def of(cls, component: Component) -> ComponentRecord:
        spec = component.spec
        return cls(
            kind=spec.kind,
            name=spec.name,
            version=spec.version,
            params=dict(component.params),
            label=component.label,
            plugin=spec.plugin,
            distribution=spec.distribution,
            validation=component.validation,
        )


def identity(name: str, version: str, params: dict[str, Any], validation: int = 0) -> dict:
    """A component's cache identity; a held-out validation split joins it only when there is
    one, so every key made before validation splits existed stays what it was."""
    out: dict[str, Any] = {"name": name, "version": version, "params": params}
    if validation:
        out["validation"] = validation
    return out


SET_KINDS = {
    "seeds": (),
    "models": ("model",),
    "debiasers": ("debiaser",),
    "models+debiasers": ("model", "debiaser"),
}
"""What the members of a model set may differ in besides the seed (``across``), and so which
of a set job's components stand for several (``set_record``)."""


def set_record(kind: str, records: list[ComponentRecord]) -> ComponentRecord:
    """The one record a set job shows for a kind its members differ in: its label names them
    all (``seed-cnn + resnet18``), its params list their identities, so the key covers them."""
    distinct = list({r.label: r for r in records}.values())
    return ComponentRecord(
        kind=kind,
        name="set",
        version="1",
        params={"members": [r.identity() for r in distinct]},
        label=" + ".join(r.label for r in distinct),
    )


@dataclass(frozen=True)
class Member:
    """One model of a model-set job: the model and debiaser it was trained with, and its seed."""

    model: ComponentRecord
    debiaser: ComponentRecord
    seed: int

    def describe(self) -> str:
        return f"{self.model.label} / {self.debiaser.label} / seed {self.seed}"


def training_key(
    dataset: ComponentRecord,
    model: ComponentRecord,
    debiaser: ComponentRecord,
    seed: int,
    data_fingerprint: str = "",
) -> str:
    """Content address of a trained model; ``data_fingerprint`` marks modified training data."""
    return digest(
        {
            "dataset": dataset.identity(),
            "model": model.identity(),
            "debiaser": debiaser.identity(),
            "seed": seed,
            "data": data_fingerprint,
        }
    )


@dataclass(frozen=True)
class Job:
    """One unit of work: component records (explainer may be ``None``) and a seed.

    ``timeout_s`` is how long the job may run (training included) before it becomes a failed
    row; it is not part of the key, since it does not change what the job computes.
    """

    dataset: ComponentRecord
    model: ComponentRecord
    debiaser: ComponentRecord
    evaluator: ComponentRecord
    seed: int
    explainer: ComponentRecord | None = None
    timeout_s: float | None = None
    retrains: int = 0
    """Models the evaluator declares it trains inside the job (ROAR, data randomisation)."""
    members: tuple[Member, ...] = ()
    """A model-set job's candidate models (before the Rashomon filter); empty otherwise. Its
    ``seed`` then seeds only the evaluator's own sampling."""

    def components(self) -> list[ComponentRecord]:
        """Present components in pipeline order."""
        parts = [self.dataset, self.model, self.debiaser, self.explainer, self.evaluator]
        return [c for c in parts if c is not None]

    @property
    def key(self) -> str:
        """Content address of the job: same components, versions, params and seed -> same key."""
        content: dict[str, Any] = {
            "components": [c.identity() for c in self.components()],
            "kinds": [c.kind for c in self.components()],
            "seed": self.seed,
        }
        if self.members:
            content["members"] = [
                [m.model.identity(), m.debiaser.identity(), m.seed] for m in self.members
            ]
        return digest(content)

    @property
    def train_key(self) -> str:
        """Content address of the trained model this job needs (shared across evaluators);
        for a model-set job, of its first member."""
        if self.members:
            first = self.members[0]
            return training_key(self.dataset, first.model, first.debiaser, first.seed)
        return training_key(self.dataset, self.model, self.debiaser, self.seed)

    @property
    def group_key(self) -> str:
        """What a worker keeps loaded between the jobs of a group: the trained model, or for
        a model-set job all its members."""
        if not self.members:
            return self.train_key
        return digest(self.member_keys())

    def member_keys(self) -> list[str]:
        """Training keys of a model-set job's members (what it waits for)."""
        return [training_key(self.dataset, m.model, m.debiaser, m.seed) for m in self.members]

    def labels(self) -> dict[str, str | None]:
        """Display label per kind (``None`` for an absent explainer)."""
        return {
            kind: (getattr(self, kind).label if getattr(self, kind) else None) for kind in KINDS
        }

    def describe(self) -> str:
        labels = " / ".join(c.label for c in self.components())
        if self.members:
            return f"{labels} / set of {len(self.members)}: {describe_members(self.members)}"
        return f"{labels} / seed {self.seed}"

    def record(self) -> dict[str, Any]:
        """JSON-able description of the job, for ``bench plan --json``, workers and the store."""
        out: dict[str, Any] = {
            "key": self.key,
            "seed": self.seed,
            "timeout_s": self.timeout_s,
            "retrains": self.retrains,
        }
        for kind in KINDS:
            comp = getattr(self, kind)
            out[kind] = None if comp is None else asdict(comp)
        if self.members:
            out["members"] = [asdict(m) for m in self.members]
        return out

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        """The job ``record()`` describes; the key is recomputed and must match."""
        parts = {
            kind: (ComponentRecord(**data[kind]) if data.get(kind) else None) for kind in KINDS
        }
        members = tuple(
            Member(ComponentRecord(**m["model"]), ComponentRecord(**m["debiaser"]), int(m["seed"]))
            for m in data.get("members") or ()
        )
        job = cls(
            seed=int(data["seed"]),
            timeout_s=data.get("timeout_s"),
            retrains=int(data.get("retrains", 0)),
            members=members,
            **parts,  # type: ignore[arg-type]
        )
        if "key" in data and data["key"] != job.key:
            raise ValueError(f"job record key {data['key']} does not match its content {job.key}")
        return job


def describe_members(members: tuple[Member, ...]) -> str:
    """``seeds 0-9`` for one model and debiaser; else each distinct (model, debiaser) with its
    seeds."""
    seeds: dict[str, list[int]] = {}
    for m in members:
        seeds.setdefault(f"{m.model.label} / {m.debiaser.label}", []).append(m.seed)
    if len(seeds) == 1:
        return _seed_list(next(iter(seeds.values())))
    return "; ".join(f"{name} {_seed_list(s)}" for name, s in seeds.items())


def _seed_list(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


@dataclass(frozen=True)
class Skip:
    """A combination that will not run, and why (one per combination, not per seed)."""

    components: tuple[Component, ...]
    reason: str

    def describe(self) -> str:
        return " / ".join(c.label for c in self.components)


@dataclass
class Plan:
    """Every job of a suite plus every skipped combination."""

    suite: Suite
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    deselected: int = 0
    """Jobs left out by a ``-k`` selection (they stay missing in the leaderboard)."""

    def component(self, record: ComponentRecord) -> Component:
        """The suite's component a record was made from (specs stay with the coordinator)."""
        for comp in self.suite.components[record.kind]:
            if comp.label == record.label:
                return comp
        raise KeyError(f"{record.kind} '{record.label}' is not part of suite {self.suite.name}")

    def groups(self, workers: int = 1) -> list[list[Job]]:
        """Jobs that share a trained model, in plan order: the unit a worker takes.

        With several ``workers``, a group larger than a worker's fair share (``explainability``:
        200 jobs, one model) is cut into pieces of a quarter of that share, so it spreads over
        the workers; the pieces after the first load the model from the cache (the per-key
        lock makes them wait for its training rather than train it again)."""
        groups: dict[str, list[Job]] = {}
        for job in self.jobs:
            groups.setdefault(job.group_key, []).append(job)
        if workers <= 1:
            return list(groups.values())
        fair = -(-len(self.jobs) // workers)
        piece = max(1, -(-len(self.jobs) // (4 * workers)))
        out: list[list[Job]] = []
        for group in groups.values():
            size = piece if len(group) > fair else len(group)
            out += [group[i : i + size] for i in range(0, len(group), size)]
        return out

    def trainings(self) -> tuple[int, int]:
        """``(models, retrains)``: distinct trained models, and retrainings evaluators declare
        (an upper bound: retrains shared between jobs, such as ROAR's random baseline, are
        trained once thanks to the cache)."""
        keys = {job.train_key for job in self.jobs if not job.members}
        keys |= {key for job in self.jobs for key in job.member_keys()}
        return len(keys), sum(job.retrains for job in self.jobs)


@dataclass
class Outcome:
    """What happened to one job; what a worker returns and ``bench_job_finished`` receives."""

    job_key: str
    status: str
    """``ok``, ``failed`` or ``cached`` (already in the store)."""
    metrics: dict[str, float] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)
    """``metric -> higher | lower`` as the evaluator declared it when the job ran."""
    arrays: dict[str, Any] = field(default_factory=dict)
    """JSON-able per-job arrays (curves, confusion matrices)."""
    error: str = ""
    duration_s: float = 0.0
    model_cache: str = ""
    """``trained``, ``hit`` (loaded from the artifact cache or memory), ``rebuilt`` (a damaged
    artifact was replaced) or empty when not reached."""
    models_trained: int = 0
    """Trainings this job ran, retrains included."""
    model_cache_hits: int = 0
    """Trained models this job loaded from the artifact cache, retrains included."""
    device: str = ""
    threads: int = 0
    worker: str = ""
    """Which worker ran it (``host:pid``)."""
    notes: list[str] = field(default_factory=list)
    """Things the coordinator should tell the user (a damaged artifact rebuilt)."""

    def __post_init__(self) -> None:
        self.error = bounded(self.error)


JobOutcome = Outcome
"""The name lifecycle hooks used before outcomes became records."""


@dataclass
class RunSummary:
    """Counts for the end-of-run report and ``bench_run_finished``."""

    run_id: int
    total: int = 0
    ran: int = 0
    cached: int = 0
    failed: int = 0
    models_trained: int = 0
    model_cache_hits: int = 0
    duration_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    """``(job description, error)`` for each failed job."""
    executor: str = ""
    interrupted: str = ""
    """The signal that stopped the run (``SIGINT``, ``SIGTERM``), empty if it ran to the end."""
