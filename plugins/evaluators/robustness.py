"""Robust accuracy under white-box and black-box attacks, with the checks that tell a reader
whether to believe it.

Robustness evaluations are notoriously overestimated: a weak attack, too few steps, masked or
saturated gradients, a randomised model (Athalye, Carlini & Wagner 2018; Croce & Hein 2020;
Carlini et al. 2019's checklist). This evaluator follows AutoAttack's protocol:

* attacks (``benchmark.kit``): FGSM, PGD (Madry et al. 2018; ``pgd_steps`` steps of
  ``2.5 eps / steps`` from a random start, ``pgd_restarts`` restarts), APGD-CE and APGD-DLR
  (Croce & Hein 2020, ``apgd_steps`` iterations), under Linf and L2, each on every eps of its
  grid, and the Square Attack (Andriushchenko et al. 2020, black-box, Linf) at ``check_eps``;
* robust accuracy per attack (``<attack>_<norm>_<eps>``, e.g. ``pgd_linf_0_3``) and the
  point-wise worst case over all attacks run at that eps (``robust_<norm>_<eps>``): a point is
  robust only when it is classified correctly and no attack fools it (AutoAttack's rule);
* only points classified correctly without attack are attacked (the others count as
  non-robust), and a point stops being attacked as soon as it is fooled, which is exact
  because the attacks are batch-independent (``tests/test_attacks.py``).

Reliability flags (1 = raised; ``plugins.evaluators.robustness_checks``), after AutoAttack's
``checks.py`` (fra31/auto-attack ``flags_doc.md``) and Carlini et al.'s checklist:
zero or non-finite input gradients, non-deterministic logits, robust accuracy rising with eps,
more PGD steps or restarts lowering robust accuracy by more than ``tolerance``, the black-box
attack fooling points that every white-box attack missed (more than ``tolerance`` of them),
and unbounded PGD (Linf eps 1 on [0, 1] images) failing to drive accuracy to about 0.
``flags`` counts those raised.

``backend: autoattack`` replaces our APGD-CE, APGD-DLR and Square by the reference
implementation (``pyautoattack``, the packaged fra31/auto-attack, MIT; an optional
dependency, ``pip install dependable-bench[autoattack]``). ``tests/test_apgd.py`` holds our
APGD to it on the same trained model and points.

Metric names carry the eps with ``_`` for the decimal point (``0_05``), so eps values are
taken on a grid (Linf: multiples of 0.01 in [0, 1]; L2: multiples of 0.05 in [0, 10]) whose
every name is declared in the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, Field, NonNegativeInt, PositiveInt

from benchmark.kit.apgd import apgd
from benchmark.kit.attacks import Norm, fgsm, misclassified, pgd
from benchmark.kit.evaluation import eval_mode, evaluation_seed
from benchmark.kit.seeding import seeded
from benchmark.kit.square import square_linf
from benchmark.specs import Direction, Evaluation, EvaluationContext, EvaluatorSpec
from plugins.evaluators.declaring import evaluator_spec
from plugins.evaluators.robustness_checks import FLAG_TEXT, FLAGS, reliability_flags
from plugins.evaluators.robustness_figures import plot_robustness

Attack = Literal["fgsm", "pgd", "apgd-ce", "apgd-dlr"]
ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "apgd-ce", "apgd-dlr")
BLACK_BOX = "square"
GRID: dict[str, tuple[float, float]] = {"linf": (0.01, 1.0), "l2": (0.05, 10.0)}
"""``norm -> (grid step, largest eps)``: the eps values a metric name can carry."""


def eps_token(eps: float) -> str:
    """``0.05 -> "0_05"``, ``2.0 -> "2"``: an eps as it appears in a metric name."""
    return f"{round(float(eps), 4):g}".replace(".", "_")


def metric_name(attack: str, norm: str, eps: float) -> str:
    """``pgd_linf_0_3``; ``attack`` ``robust`` is the worst case over attacks."""
    return f"{attack.replace('-', '_')}_{norm}_{eps_token(eps)}"


def _on_grid(norm: str) -> Callable[[list[float]], list[float]]:
    step, largest = GRID[norm]

    def check(values: list[float]) -> list[float]:
        for eps in values:
            if not 0 <= eps <= largest or abs(eps / step - round(eps / step)) > 1e-6:
                raise ValueError(
                    f"{norm} eps {eps} is not on the grid (multiples of {step} in [0, {largest}])"
                )
        if len(set(values)) != len(values):
            raise ValueError(f"{norm} eps values repeat: {values}")
        return sorted(values)

    return check


LinfGrid = Annotated[list[float], AfterValidator(_on_grid("linf"))]
L2Grid = Annotated[list[float], AfterValidator(_on_grid("l2"))]


def _attack(
    name: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: Norm,
    eps: float,
    settings: Mapping[str, Any],
) -> torch.Tensor:
    """``x_adv`` of one attack on the points ``x`` (all classified correctly)."""
    seed = settings["seed"]
    if settings["backend"] == "autoattack" and name in ("apgd-ce", "apgd-dlr", BLACK_BOX):
        return _reference_attack(name, model, x, y, norm, eps, settings)
    if name == "fgsm":
        return fgsm(model, x, y, eps, norm=norm)
    if name == "pgd":
        return pgd(
            model,
            x,
            y,
            eps,
            norm=norm,
            steps=settings["pgd_steps"],
            restarts=settings["pgd_restarts"],
            seed=seed,
        )
    if name in ("apgd-ce", "apgd-dlr"):
        objective = "ce" if name == "apgd-ce" else "dlr"
        return apgd(
            model,
            x,
            y,
            eps,
            norm=norm,
            steps=settings["apgd_steps"],
            restarts=settings["apgd_restarts"],
            objective=objective,
            seed=seed,
        )
    if name == BLACK_BOX:
        return square_linf(model, x, y, eps, queries=settings["square_queries"], seed=seed)
    raise ValueError(f"unknown attack {name!r}")


def _reference_attack(
    name: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: Norm,
    eps: float,
    settings: Mapping[str, Any],
) -> torch.Tensor:
    """The reference AutoAttack's APGD or Square on the same points (``backend: autoattack``)."""
    try:
        from pyautoattack.autopgd_base import APGDAttack
        from pyautoattack.square import SquareAttack
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise RuntimeError(
            "backend 'autoattack' needs the reference AutoAttack: "
            "pip install 'dependable-bench[autoattack]'"
        ) from error
    device = x.device
    reference_norm = "Linf" if norm == "linf" else "L2"
    if name == BLACK_BOX:
        attack = SquareAttack(
            model,
            n_queries=settings["square_queries"],
            eps=eps,
            norm=reference_norm,
            seed=settings["seed"],
            device=device,
        )
    else:
        attack = APGDAttack(
            model,
            n_iter=settings["apgd_steps"],
            norm=reference_norm,
            eps=eps,
            loss="ce" if name == "apgd-ce" else "dlr",
            n_restarts=settings["apgd_restarts"],
            seed=settings["seed"],
            device=device,
        )
    with seeded(settings["seed"], device):  # the reference reseeds torch's global generator
        return attack.perturb(x, y).detach()


def robust_on(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str,
    norm: Norm,
    eps: float,
    settings: Mapping[str, Any],
) -> torch.Tensor:
    """``(N,)`` bool: the attack does not fool point ``i`` (attacked in batches of
    ``settings["batch_size"]``; at eps 0 nothing moves)."""
    if eps == 0:
        return torch.ones(len(x), dtype=torch.bool, device=x.device)
    size = settings["batch_size"]
    robust = []
    for start in range(0, len(x), size):
        xb, yb = x[start : start + size], y[start : start + size]
        x_adv = _attack(attack, model, xb, yb, norm, eps, settings)
        robust.append(~misclassified(model, x_adv, yb))
    return torch.cat(robust)


def evaluate_robustness(
    context: EvaluationContext,
    *,
    n_images: PositiveInt = 500,
    linf_eps: LinfGrid = (0.0, 0.05, 0.1, 0.2, 0.3),
    l2_eps: L2Grid = (1.0, 2.0),
    attacks: Sequence[Attack] = ATTACKS,
    pgd_steps: PositiveInt = 40,
    pgd_restarts: PositiveInt = 1,
    apgd_steps: PositiveInt = 100,
    apgd_restarts: PositiveInt = 1,
    square_queries: NonNegativeInt = 1000,
    check_eps: Annotated[float, Field(gt=0, le=1)] = 0.3,
    check_restarts: PositiveInt = 3,
    tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.01,
    backend: Literal["native", "autoattack"] = "native",
    batch_size: PositiveInt = 500,
    seed: int | None = None,
) -> Evaluation:
    """Robust accuracy of the job's model on the first ``n_images`` test images per attack and
    eps, the worst case over attacks, and the reliability flags (see the module docstring).
    ``square_queries: 0`` turns the black-box attack (and its flag) off."""
    if not any(abs(eps - check_eps) < 1e-9 for eps in linf_eps):
        raise ValueError(f"check_eps {check_eps} must be one of linf_eps {list(linf_eps)}")
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise ValueError(f"attacks must be a non-empty subset of {ATTACKS}, got {list(attacks)}")
    settings = {
        "seed": evaluation_seed(context, seed),
        "pgd_steps": pgd_steps,
        "pgd_restarts": pgd_restarts,
        "apgd_steps": apgd_steps,
        "apgd_restarts": apgd_restarts,
        "square_queries": square_queries,
        "backend": backend,
        "batch_size": batch_size,
    }
    test = context.dataset.test
    x, y = test.x[:n_images], test.y[:n_images]
    model = context.model
    metrics: dict[str, float] = {}
    curves: dict[str, Any] = {}
    with eval_mode(model):
        correct = ~misclassified(model, x, y)
        metrics["clean_accuracy"] = int(correct.sum()) / len(x)
        xc, yc = x[correct], y[correct]
        robust_at: dict[tuple[str, float], torch.Tensor] = {}
        for norm, grid in (("linf", linf_eps), ("l2", l2_eps)):
            curve: dict[str, list[float]] = {"eps": [float(e) for e in grid]}
            for eps in grid:
                names = list(attacks) if eps > 0 else []  # at eps 0 nothing moves
                if norm == "linf" and square_queries and abs(eps - check_eps) < 1e-9:
                    names.append(BLACK_BOX)
                worst = torch.ones(len(xc), dtype=torch.bool, device=x.device)
                for attack in names:
                    survived = robust_on(model, xc, yc, attack, norm, eps, settings)
                    robust_at[(attack, norm, eps)] = survived
                    worst &= survived
                    value = float(survived.sum()) / len(x)
                    metrics[metric_name(attack, norm, eps)] = value
                    curve.setdefault(attack, []).append(value)
                if eps == 0:  # the curves start at the clean accuracy for every attack
                    for attack in attacks:
                        curve.setdefault(attack, []).append(metrics["clean_accuracy"])
                robust_at[("robust", norm, eps)] = worst
                metrics[metric_name("robust", norm, eps)] = float(worst.sum()) / len(x)
                curve.setdefault("robust", []).append(metrics[metric_name("robust", norm, eps)])
            curves[norm] = curve
        flags, details = reliability_flags(
            model, xc, yc, len(x), robust_at, curves, check_eps, check_restarts, tolerance, settings
        )
    metrics.update(flags)
    per_image = {}
    if ("robust", "linf", check_eps) in robust_at:
        headline = torch.zeros(len(x), dtype=torch.float32, device=x.device)
        headline[correct] = robust_at[("robust", "linf", check_eps)].float()
        per_image[metric_name("robust", "linf", check_eps)] = headline.cpu().numpy()
    return Evaluation(
        metrics=metrics,
        arrays={"curves": curves, "checks": details, "n_images": len(x)},
        per_image=per_image,
    )


def _catalogue() -> dict[str, Direction]:
    directions: dict[str, Direction] = {"clean_accuracy": "higher"}
    for norm, (step, largest) in GRID.items():
        for k in range(round(largest / step) + 1):
            eps = k * step
            for attack in ("robust", *ATTACKS, BLACK_BOX):
                directions[metric_name(attack, norm, eps)] = "higher"
    directions.update(FLAGS)
    return directions


def returned_metrics(params: Mapping[str, Any]) -> list[str]:
    """The metrics one job with ``params`` returns (the spec's ``metrics``)."""
    names = ["clean_accuracy"]
    attacks = list(params.get("attacks", ATTACKS))
    check_eps = params.get("check_eps", 0.3)
    for norm in ("linf", "l2"):
        for eps in params.get(f"{norm}_eps", ()):
            run = list(attacks) if eps > 0 else []
            if (
                norm == "linf"
                and params.get("square_queries", 1000)
                and abs(eps - check_eps) < 1e-9
            ):
                run.append(BLACK_BOX)
            names += [metric_name(a, norm, eps) for a in ("robust", *run)]
    return names + list(FLAGS)


GLOSSARY = {
    "clean_accuracy": "accuracy on the evaluated test images without attack",
    "robust_linf_0_3": "share of test images classified correctly and fooled by no attack at "
    "Linf eps 0.3 (the point-wise worst case over attacks, AutoAttack's rule); the same for "
    "every robust_<norm>_<eps>",
    "pgd_linf_0_3": "robust accuracy under PGD alone at Linf eps 0.3; fgsm_, apgd_ce_, "
    "apgd_dlr_ and square_ name the other attacks",
}


def specs() -> list[EvaluatorSpec]:
    """The ``robustness`` evaluator, for ``plugins.evaluators`` to register."""
    return [
        evaluator_spec(
            "robustness",
            evaluate_robustness,
            "robust accuracy under FGSM, PGD, APGD-CE/DLR and Square (Linf, L2), the worst case "
            "and AutoAttack-style reliability flags",
            _catalogue(),
            requires=frozenset({"differentiable"}),
            figures=plot_robustness,
            metrics=returned_metrics,
            glossary={**GLOSSARY, **FLAG_TEXT},
            reference="Croce & Hein 2020, Reliable Evaluation of Adversarial Robustness with an "
            "Ensemble of Diverse Parameter-free Attacks (ICML); Madry et al. 2018 (ICLR)",
        )
    ]
