"""Plugin loading and the name -> spec look-up the rest of the core uses.

Entry points of group ``bench`` are loaded one at a time, each in its own ``try``: a plugin that
fails to import or to register is recorded with its error and the others still load (users of
``llm`` asked for this after one broken plugin broke every command, simonw/llm#1280). Hooks are
called plugin by plugin for the same reason, so every error names its plugin.

Environment variables:

* ``BENCH_LOAD_PLUGINS``: comma-separated entry-point names; only these load (allow-list).
* ``BENCH_DISABLE_PLUGINS``: comma-separated entry-point names that never load (block-list).
* ``BENCH_STRICT_PLUGINS=1``: re-raise the first plugin error instead of recording it.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import os
import types
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import pluggy

from benchmark import hookspecs
from benchmark.errors import BenchInputError
from benchmark.kinds import BY_NAME, COMPONENT_KINDS, REGISTER_HOOKS
from benchmark.specs import ComponentSpec, SuiteSpec

ENTRY_POINT_GROUP = "bench"
_REGISTER_HOOKS = REGISTER_HOOKS
KNOWN_HOOKS = frozenset(
    name
    for name in dir(hookspecs)
    if name.startswith("bench_") and callable(getattr(hookspecs, name))
)
"""Every hook a plugin may implement; any other ``bench_*`` name is a misspelling."""
CORE_PLUGINS = (("core-executors", "benchmark.executors.builtin"),)
"""Registered on every registry, whatever ``BENCH_LOAD_PLUGINS`` says: without an executor
nothing runs (pytest registers its own built-in plugins the same way)."""


SpecT = TypeVar("SpecT")


@dataclass(frozen=True)
class PluginRecord:
    """One plugin as ``bench plugins`` reports it."""

    name: str
    distribution: str
    version: str
    status: str
    """``loaded``; ``partial`` (a registration hook failed after some of its components were
    registered: those run, and the error says what is missing); ``error`` (nothing of it is
    used: import failed, an unknown hook, a registration error before anything registered);
    ``disabled`` (by env var)."""
    error: str = ""
    components: int = 0
    """How many specs (components, suites, executors) it registered."""
    warning: str = ""
    """Something that loads but is probably not what the author meant: registration hooks
    that registered nothing, or no hook at all (undecorated functions)."""

    @property
    def contributes(self) -> bool:
        """Whether any of its components can be in a result: what provenance must list."""
        return self.status in ("loaded", "partial")


class PluginError(RuntimeError):
    """Raised in strict mode instead of recording a broken plugin."""


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _strict() -> bool:
    return os.environ.get("BENCH_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh manager with our hookspecs; never a global created at import time."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


class Registry:
    """Loaded plugins and every component spec they registered, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.plugins: dict[str, PluginRecord] = {}
        self._specs: dict[str, dict[str, Any]] = {kind: {} for kind in _REGISTER_HOOKS}
        self._dist_of: dict[str, tuple[str, str]] = {}
        self.entry_points = True
        self.extra_modules: list[tuple[str, str]] = []

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls, extra_plugins: Iterable[tuple[str, object]] = (), entry_points: bool = True
    ) -> Registry:
        """Load entry-point plugins (and ``extra_plugins`` given as ``(name, module)``).

        ``extra_plugins`` is how tests and embedding applications add a plugin for one
        registry without installing a distribution.
        """
        import importlib

        registry = cls(make_plugin_manager())
        registry.entry_points = entry_points
        for name, module in CORE_PLUGINS:
            registry._add(name, importlib.import_module(module), "dependable-bench", _own_version())
        if entry_points:
            registry._load_entry_points()
        for name, plugin in extra_plugins:
            registry._add(name, plugin, distribution="(in-process)", version="")
            # only a module importable by name can be registered again in a worker process
            if isinstance(plugin, types.ModuleType) and getattr(plugin, "__spec__", None):
                registry.extra_modules.append((name, plugin.__name__))
        registry._collect_specs()
        return registry

    @classmethod
    def rebuild(cls, entry_points: bool, extra_modules: Iterable[tuple[str, str]]) -> Registry:
        """The registry a worker process builds: the same entry points and in-process plugin
        modules as the coordinator's (``recipe()``), imported again by name."""
        import importlib

        plugins = [(name, importlib.import_module(module)) for name, module in extra_modules]
        return cls.load(extra_plugins=plugins, entry_points=entry_points)

    def recipe(self) -> tuple[bool, tuple[tuple[str, str], ...]]:
        """What ``rebuild`` needs to make this registry again in another process. In-process
        plugins that are objects rather than modules (a reporter) stay in the coordinator."""
        return self.entry_points, tuple(self.extra_modules)

    def _fail(self, name: str, dist: str, version: str, exc: BaseException, what: str) -> None:
        """Record a plugin error (several are joined with ``;``), or raise it in strict mode."""
        message = f"{what}: {type(exc).__name__}: {exc}"
        previous = self.plugins.get(name)
        if previous is not None and previous.status == "error" and previous.error:
            message = f"{previous.error}; {message}"
        self.plugins[name] = PluginRecord(name, dist, version, "error", message)
        if _strict():
            raise PluginError(f"plugin '{name}' ({dist} {version}) {message}") from exc

    def _load_entry_points(self) -> None:
        allow = _env_names("BENCH_LOAD_PLUGINS")
        block = _env_names("BENCH_DISABLE_PLUGINS") or set()
        seen: set[tuple[str, str]] = set()
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "(unknown)"
            version = ep.dist.version if ep.dist else ""
            if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            if ep.name in block or (allow is not None and ep.name not in allow):
                self.plugins[ep.name] = PluginRecord(ep.name, dist, version, "disabled")
                continue
            if ep.name in self.plugins:
                other = self.plugins[ep.name].distribution
                self._fail(
                    ep.name,
                    dist,
                    version,
                    ValueError(f"entry-point name '{ep.name}' is also used by {other}"),
                    "not loaded",
                )
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(ep.name, dist, version, exc, "failed to import")
                continue
            self._add(ep.name, plugin, dist, version)

    def _add(self, name: str, plugin: object, distribution: str, version: str) -> None:
        unknown = unknown_hooks(plugin)
        if unknown:
            hook = unknown[0]
            exc = PluginError(f"implements unknown hook '{hook}'" + suggest(hook, KNOWN_HOOKS))
            self._fail(name, distribution, version, exc, "not loaded")
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validates hook names and signatures here
            self._fail(name, distribution, version, exc, "failed to register")
            return
        self.plugins[name] = PluginRecord(name, distribution, version, "loaded")
        self._dist_of[name] = (distribution, version)

    def _collect_specs(self) -> None:
        """Call each registration hook plugin by plugin, so an error names its plugin."""
        counts: dict[str, int] = {}
        registering: set[str] = set()
        for kind, hook_name in _REGISTER_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order
                plugin_name = impl.plugin_name
                registering.add(plugin_name)
                callback = self._register_callback(kind, plugin_name)
                try:
                    impl.function(register=callback)
                except Exception as exc:
                    dist, version = self._dist_of.get(plugin_name, ("", ""))
                    self._fail(plugin_name, dist, version, exc, f"{hook_name} raised")
                finally:
                    counts[plugin_name] = counts.get(plugin_name, 0) + callback.count
        for name, record in self.plugins.items():
            n = counts.get(name, 0)
            if record.status == "error" and n:  # some of it registered and runs: say so
                record = replace(record, status="partial")
            elif record.status == "loaded" and not n:
                record = replace(record, warning=self._silence(name, name in registering))
            self.plugins[name] = replace(record, components=n)

    def _silence(self, name: str, registers: bool) -> str:
        """Why a loaded plugin contributes nothing, or ``""`` for a reporter (lifecycle hooks
        only), which rightly registers nothing."""
        if registers:
            return "its bench_register_* hooks registered nothing"
        plugin = self.pm.get_plugin(name)
        if plugin is not None and self.pm.get_hookcallers(plugin):
            return ""
        return (
            "implements no bench hook: are the @benchmark.hookimpl decorators missing? "
            "(an undecorated bench_register_* function is ignored)"
        )

    def _register_callback(self, kind: str, plugin_name: str):
        expected = BY_NAME[kind].spec_type
        dist, dist_version = self._dist_of.get(plugin_name, ("", ""))

        def refuse(exc: Exception) -> None:
            # recorded, not raised into the plugin: its other components still register
            self._fail(plugin_name, dist, dist_version, exc, f"{_REGISTER_HOOKS[kind]} refused")

        def register(spec: ComponentSpec | SuiteSpec) -> None:
            if not isinstance(spec, expected):
                refuse(
                    TypeError(
                        f"{_REGISTER_HOOKS[kind]} must register {expected.__name__} objects, "
                        f"got {type(spec).__name__}"
                    )
                )
                return
            existing = self._specs[kind].get(spec.name)
            if existing is not None:
                refuse(
                    ValueError(
                        f"{kind} '{spec.name}' is registered by both plugin '{existing.plugin}' "
                        f"and plugin '{plugin_name}'; the first one is kept"
                    )
                )
                return
            stamp: dict[str, str] = {"plugin": plugin_name, "distribution": dist}
            if isinstance(spec, ComponentSpec) and not spec.version:
                stamp["version"] = dist_version or "0"
            self._specs[kind][spec.name] = replace(spec, **stamp)
            register.count += 1

        register.count = 0  # type: ignore[attr-defined]
        return register

    # -- look-up ------------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, sorted."""
        return sorted(self._specs[kind])

    def specs(self, kind: str) -> list[Any]:
        """Registered specs of one kind, sorted by name."""
        return [self._specs[kind][n] for n in self.names(kind)]

    def all_specs(self) -> list[ComponentSpec]:
        """Every component spec in pipeline order (datasets first, evaluators last)."""
        return [spec for kind in COMPONENT_KINDS for spec in self.specs(kind)]

    def lookup(self, spec_type: type[SpecT], name: str, where: str = "") -> SpecT:
        """``get`` typed by spec class: ``registry.lookup(DatasetSpec, "mnist")``."""
        return self.get(spec_type.kind, name, where)

    def get(self, kind: str, name: str, where: str = "") -> Any:
        """The spec called ``name``, or a ``BenchInputError`` with a did-you-mean suggestion."""
        try:
            return self._specs[kind][name]
        except KeyError:
            raise BenchInputError(
                f"unknown {kind} '{name}'" + suggest(name, self.names(kind)),
                where=where,
            ) from None

    def broken_plugins(self) -> list[PluginRecord]:
        """Plugins that failed in whole or in part."""
        return [p for p in self.plugins.values() if p.status in ("error", "partial")]

    def plugin_version(self, plugin_name: str) -> str:
        return self.plugins[plugin_name].version if plugin_name in self.plugins else ""


def unknown_hooks(plugin: object) -> list[str]:
    """``bench_*`` names a plugin defines that are no hook: pluggy would ignore them silently
    (a misspelt ``bench_register_explainer`` registers nothing), pytest refuses them; so do we."""
    return sorted(
        name
        for name in dir(plugin)
        if name.startswith("bench_") and name not in KNOWN_HOOKS and callable(getattr(plugin, name))
    )


def _own_version() -> str:
    try:
        return md.version("dependable-bench")
    except md.PackageNotFoundError:
        return ""


def suggest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or a list of what exists."""
    candidates = sorted(candidates)
    close = (
        difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        or [c for c in candidates if len(name) >= 3 and (c.startswith(name) or name.startswith(c))][
            :1
        ]
    )
    if close:
        return f" (did you mean '{close[0]}'?)"
    if candidates:
        shown = ", ".join(candidates[:12]) + (", ..." if len(candidates) > 12 else "")
        return f" (known: {shown})"
    return " (none are registered)"
