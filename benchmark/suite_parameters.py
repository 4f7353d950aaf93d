"""Suite parameters: values a suite takes from the user at run time.

A built-in suite is a YAML file inside a plugin, yet part of what it runs may exist only on the
user's machine: torchvision datasets load from a local root that the user names, because
nothing downloads at run time (DESIGN.md, the dataset contract). So a suite declares what it
needs, with a default, and refers to it from a component's ``params``::

    parameters:
      fashion_mnist_root: {default: null, description: "folder with Fashion-MNIST's IDX files"}
      epochs: 3                                  # short form: the default alone
    datasets:
      - mnist
      - name: fashion-mnist
        params: {root: "${fashion_mnist_root}"}  # quoted: braces are YAML syntax in {...}

and the user gives a value: ``bench run --suite S -p fashion_mnist_root=/data/fmnist``.

The rules, and why:

* **Whole values only.** A string that is exactly ``${name}`` is replaced by the value, which
  keeps its type (``-p epochs=3`` is the int 3, checked against the factory's annotation like
  a literal written in the file). Interpolation inside longer text (``"${root}/train"``)
  would make every value text and the suite file a template language; it is refused, saying so.
* **Only in component entries' ``params``**, at any depth of lists and mappings: a parameter
  chooses a component's inputs, never the suite's shape (names, seeds, the leaderboard), so
  what a suite compares can be read from its file.
* **A null value drops the entry.** An entry that refers to a parameter without a value is
  optional: it leaves the suite, and the ``Suite`` keeps it as a ``Dropped`` with its reason,
  which ``bench plan`` prints; nothing disappears silently (DomainBed's blank cells are what we
  avoid). Its name is still checked against the registry, so a typo shows without the value.
* **Names are checked both ways.** A reference to an undeclared parameter is an error naming
  the file, line and field, with a did-you-mean; so is a ``-p`` that the suite does not declare
  or that is not ``NAME=VALUE``, listing what the suite declares.
* **The values are part of the suite's configuration.** ``Suite.parameters`` holds every
  declared value and ``Suite.config_hash`` includes it when the suite declares any (a suite
  without ``parameters:`` keeps the hash it always had), so runs with different values are not
  taken for one another; each job's key already holds the substituted params.

GitHub Actions' ``inputs`` and Helm's values do the same with template languages; choosing a
folder or a number needs none, hence this small module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator, model_validator
from pydantic.fields import FieldInfo

from benchmark.errors import BenchInputError
from benchmark.registry import suggest
from benchmark.suite_errors import dotted

if TYPE_CHECKING:
    from benchmark.suite import ComponentRef

NAME = r"^[a-z_][a-z0-9_]*$"
"""A parameter's name: what follows ``-p`` and sits inside ``${...}``."""
_NAME = re.compile(NAME)
_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_SCALARS = (str, int, float, bool, type(None))


# ----------------------------------------------------------------------------------------------
# Declaring


class Parameter(BaseModel):
    """One declared parameter: ``name: default`` or ``name: {default: ..., description: ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    default: Any = None
    """The value when no ``-p`` gives one; null makes the entries that use it optional."""
    description: str = ""
    """What to give; shown when a ``-p`` is wrong."""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {"default": value}

    @field_validator("default")
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        if not isinstance(value, _SCALARS):
            raise ValueError("a parameter's default is text, a number, true/false or null")
        return value


def _valid_names(parameters: dict[str, Parameter]) -> dict[str, Parameter]:
    for name in parameters:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"parameter name {name!r} must match {NAME} (lower-case letters, digits and "
                "'_', not starting with a digit)"
            )
    return parameters


Parameters = Annotated[dict[str, Parameter], AfterValidator(_valid_names)]
"""The type of a suite's ``parameters:`` field."""


# ----------------------------------------------------------------------------------------------
# Giving values on the command line


@dataclass(frozen=True)
class Malformed:
    """A ``-p`` that is not ``NAME=VALUE``. It is kept rather than raised at once because its
    message lists the suite's parameters, which are known only once the suite is read."""

    text: str
    problem: str


def from_command_line(assignments: Iterable[str]) -> dict[str, Any]:
    """``-p NAME=VALUE`` options as ``name -> value`` (the last of two equal names wins).

    VALUE is read as a YAML scalar, as if written in the suite file: ``3`` is an int, ``0.5`` a
    float, ``true`` a bool, ``null`` (or nothing) no value, ``/data/x`` text; quote to keep a
    number as text (``-p tag="'3'"``). A date stays the text it was written as.
    """
    given: dict[str, Any] = {}
    for text in assignments:
        name, equals, raw = text.partition("=")
        if not equals or not name:
            given[text] = Malformed(text, "expected NAME=VALUE (e.g. -p epochs=3)")
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = Malformed(text, "VALUE is not valid YAML; quote it")
        if isinstance(value, list | dict):
            value = Malformed(text, "VALUE must be one value (text, a number, true/false, null)")
        elif not isinstance(value, (*_SCALARS, Malformed)):
            value = raw
        given[name] = value
    return given


def values(
    declared: Mapping[str, Parameter], given: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """Every declared parameter's value: given on the command line, else its default."""
    for value in given.values():
        if isinstance(value, Malformed):
            message = f"-p {value.text}: {value.problem}{_listing(declared)}"
            raise BenchInputError(message, where=source)
    for name in given:
        if name not in declared:
            hint = suggest(name, declared) if declared else ""
            raise BenchInputError(
                f"-p {name}: the suite has no parameter '{name}'"
                + (hint if "did you mean" in hint else "")
                + _listing(declared),
                where=source,
            )
    return {name: given.get(name, parameter.default) for name, parameter in declared.items()}


def _listing(declared: Mapping[str, Parameter]) -> str:
    if not declared:
        return "; the suite declares no parameters"
    items = [
        f"{name} (default {json.dumps(p.default)}{': ' + p.description if p.description else ''})"
        for name, p in declared.items()
    ]
    return "; the suite's parameters: " + ", ".join(items)


# ----------------------------------------------------------------------------------------------
# Using them in component entries


@dataclass(frozen=True)
class Dropped:
    """A component entry left out of the suite because a parameter it uses has no value."""

    kind: str
    entry: str
    """The entry as the file names it: its label, name or ``tag:x``."""
    labels: tuple[str, ...]
    """The labels its components would have had (for ``exclude`` rules and the leaderboard)."""
    parameters: tuple[str, ...]
    """The parameters it uses that have no value."""

    @property
    def reason(self) -> str:
        names = ", ".join(self.parameters)
        options = " ".join(f"-p {name}=..." for name in self.parameters)
        plural = "s" if len(self.parameters) > 1 else ""
        return f"parameter{plural} {names} not given (bench run {options})"

    def describe(self) -> str:
        return f"{self.kind} {self.entry}"

    def record(self) -> dict[str, Any]:
        """JSON-able, for ``bench plan --json``."""
        return {"kind": self.kind, "entry": self.entry, "reason": self.reason}


class Binding:
    """A suite's declared parameters with their values, applied entry by entry; what it drops
    it keeps in ``dropped``."""

    def __init__(
        self,
        declared: Mapping[str, Parameter],
        given: Mapping[str, Any],
        source: str,
        line_of: Callable[[list[Any]], int | None],
    ) -> None:
        self.values = values(declared, given, source)
        self.dropped: list[Dropped] = []
        self.source, self.line_of = source, line_of

    def entry(
        self, kind: str, ref: ComponentRef, loc: list[Any], labels: Iterable[str]
    ) -> ComponentRef | None:
        """``ref`` (at ``loc`` in the file) with each ``${name}`` in its params replaced by the
        value, or ``None`` when a value is null: then the entry is recorded as dropped."""
        unset: list[str] = []
        params = self._substitute(ref.params, [*loc, "params"], unset)
        if unset:
            entry = ref.label or ref.name or f"tag:{ref.tag}"
            self.dropped.append(Dropped(kind, entry, tuple(labels), tuple(dict.fromkeys(unset))))
            return None
        return ref.model_copy(update={"params": params})

    def check_left(self, field: str, kind: str, left: Sized, info: FieldInfo) -> None:
        """A list the schema requires to be non-empty keeps an entry (all may be dropped)."""
        if left or not info.is_required():
            return
        reasons = "; ".join(f"{d.entry}: {d.reason}" for d in self.dropped if d.kind == kind)
        raise BenchInputError(
            f"field '{field}': no {kind} is left once the entries whose parameters have no "
            f"value are dropped ({reasons}); a suite needs at least one",
            where=self.source,
            line=self.line_of([field]),
        )

    def labels(self, components: Mapping[str, Iterable[Any]]) -> dict[str, list[str]]:
        """Per kind, the labels of the components and of the dropped entries: an ``exclude``
        rule may name an entry that is only sometimes there."""
        out = {kind: [c.label for c in comps] for kind, comps in components.items()}
        for dropped in self.dropped:
            out.setdefault(dropped.kind, []).extend(dropped.labels)
        return out

    def _substitute(self, value: Any, loc: list[Any], unset: list[str]) -> Any:
        if isinstance(value, dict):
            return {k: self._substitute(v, [*loc, k], unset) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v, [*loc, i], unset) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        match = _REFERENCE.fullmatch(value)
        if match is None:
            self._fail(
                loc,
                f"'${{' inside a longer string ({value!r}): a parameter is used as a whole "
                "value, exactly '${name}'; it is not interpolated into text",
            )
        name = match[1]
        if name not in self.values:
            hint = suggest(name, self.values) if self.values else ""
            hint = hint or "; declare it under 'parameters:' (name: default)"
            self._fail(
                loc,
                f"{value!r} refers to parameter '{name}', which the suite does not declare" + hint,
            )
        if self.values[name] is None:
            unset.append(name)
        return self.values[name]

    def _fail(self, loc: list[Any], message: str) -> NoReturn:
        raise BenchInputError(
            f"field '{dotted(loc)}': {message}", where=self.source, line=self.line_of(loc)
        )
