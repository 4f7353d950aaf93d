"""``bench new plugin NAME``: a ready plugin distribution whose tests pass as generated.

A new plugin author's first hour went to guessing: which hook, which signature, how to test.
The scaffold answers with working code: a ``pyproject.toml`` with the entry point, one module per
component kind asked for (each a small but real component, written the way the built-ins are),
a demo suite that uses them beside built-in components, tests that call
``benchmark.testing``'s contract checks and run the demo suite through the CLI, and a README.

The templates are plain files beside this module (``*.tmpl``, ``string.Template`` syntax), so
what is generated can be read as it is.
"""

from __future__ import annotations

import keyword
import re
import string
from importlib import resources
from pathlib import Path

from benchmark.errors import BenchInputError
from benchmark.kinds import COMPONENT_KINDS

KINDS = COMPONENT_KINDS
"""What a plugin can contribute, in pipeline order (suites come with every scaffold)."""

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

_COMPONENTS = {
    "dataset": ("stripes", "check_dataset"),
    "model": ("tiny-cnn", "check_model"),
    "debiaser": ("label-smoothing", "check_debiaser"),
    "explainer": ("abs-gradient", "check_explainer"),
    "evaluator": ("deletion-drop", "check_evaluator"),
}
_CHECK_CALLS = {
    "dataset": 'check_dataset("{name}-stripes")',
    "model": 'check_model("{name}-tiny-cnn")',
    "debiaser": 'check_debiaser("{name}-label-smoothing")',
    "explainer": 'check_explainer("{name}-abs-gradient")',
    "evaluator": 'check_evaluator("{name}-deletion-drop", params={{"n_images": 32}})',
}


def _template(name: str) -> string.Template:
    return string.Template(resources.files(__package__).joinpath(name).read_text("utf-8"))


def _demo_lists(name: str, kinds: set[str]) -> dict[str, str]:
    """The demo suite's component lists: this plugin's components beside built-in ones, small
    enough for a test (a few hundred images, one or two epochs)."""
    datasets = (
        [f"  - {name}-stripes"]
        if "dataset" in kinds
        else ["  - {name: mnist, params: {train_limit: 500, test_limit: 100}}"]
    )
    models = [f"  - {name}-tiny-cnn"] if "model" in kinds else ["  - seed-cnn"]
    debiasers = ["  - {name: none, params: {epochs: 2, optimizer: adam, lr: 0.01}}"]
    if "debiaser" in kinds:
        debiasers.append(f"  - {{name: {name}-label-smoothing, params: {{epochs: 2, lr: 0.01}}}}")
    explainers = ["  - gradient"] + ([f"  - {name}-abs-gradient"] if "explainer" in kinds else [])
    evaluators = ["  - classification"]
    if "evaluator" in kinds:
        evaluators.append(f"  - {{name: {name}-deletion-drop, params: {{n_images: 32}}}}")
    else:
        evaluators.append("  - {name: pixel-flipping, params: {n_images: 16}}")
    lists = {
        "datasets": datasets,
        "models": models,
        "debiasers": debiasers,
        "explainers": explainers,
        "evaluators": evaluators,
    }
    return {key: "\n".join(value) for key, value in lists.items()}


def new_plugin(name: str, folder: Path, kinds: tuple[str, ...] = KINDS) -> list[Path]:
    """Write the distribution ``name`` into ``folder`` (which must not exist yet); return the
    files written."""
    if not _NAME.match(name) or len(name) > 40:
        raise BenchInputError(
            f"plugin name {name!r}: use lower-case words joined by '-' (my-plugin), at most 40 "
            "characters; it names the distribution, the package (my_plugin) and prefixes the "
            "components (my-plugin-stripes)"
        )
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        raise BenchInputError(f"plugin name {name!r} makes the package {package!r}, a keyword")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise BenchInputError(f"unknown component kind '{unknown[0]}' (known: {', '.join(KINDS)})")
    if folder.exists():
        raise BenchInputError("already exists; choose another folder or name", where=str(folder))
    chosen = [kind for kind in KINDS if kind in kinds]
    values = {"dist": name, "name": name, "package": package}
    imports = f"\nfrom {package} import {', '.join(sorted(chosen))}"
    hooks = "".join(f"bench_register_{kind}s = register_specs_of([{kind}])\n" for kind in chosen)
    checks = "\n".join(
        f"    {check}," for check in sorted({"check_plugin", *(_COMPONENTS[k][1] for k in chosen)})
    )
    tests = (
        "".join(
            f"\n\ndef test_the_{kind}_keeps_its_contract():\n"
            f"    {_CHECK_CALLS[kind].format(name=name)}\n"
            for kind in chosen
        )
        + "\n"
    )
    files = {
        "pyproject.toml": _template("pyproject.toml.tmpl").substitute(values),
        "README.md": _template("README.md.tmpl").substitute(values),
        f"{package}/__init__.py": _template("__init__.py.tmpl").substitute(
            values, imports=imports, hooks=hooks
        ),
        f"{package}/demo.yaml": _template("demo.yaml.tmpl").substitute(
            values, **_demo_lists(name, set(chosen))
        ),
        "tests/test_plugin.py": _template("test_plugin.py.tmpl").substitute(
            values, check_imports=checks, tests=tests
        ),
    }
    for kind in chosen:
        files[f"{package}/{kind}.py"] = _template(f"{kind}.py.tmpl").substitute(values)
    written = []
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
