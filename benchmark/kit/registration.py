"""One registration idiom for a package of components: each module says what it defines, the
package lists its modules.

A built-in package (``plugins.debiasers``, ``plugins.models``, ...) is one plugin, but each of
its components lives in its own module next to the code it names. Registering them inline in
the package's ``__init__`` kept a second copy of every spec away from its factory, and a module
whose spec was forgotten there registered nothing without a word. Instead every module that
defines components exposes ``specs() -> list[<Spec>]`` and the package ``__init__`` lists its
modules once::

    MODULES = (erm, augment, padain)
    bench_register_debiasers = register_specs_of(MODULES)

:func:`register_specs_of` builds the hook implementation, so a third-party plugin with several
modules can register them the same way. pluggy finds a hook by the module attribute's name
(``bench_register_debiasers``) and checks the implementation's argument names, which is why
the returned function takes exactly ``register``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from benchmark.hookspecs import hookimpl

SpecT = TypeVar("SpecT", covariant=True)


class SpecSource(Protocol[SpecT]):
    """A module (or any object) whose ``specs()`` lists the components it defines."""

    def specs(self) -> Sequence[SpecT]: ...


def register_specs_of(
    modules: Sequence[SpecSource[SpecT]],
) -> Callable[[Callable[[SpecT], None]], None]:
    """A ``@hookimpl`` registration hook that calls ``register(spec)`` for every spec of every
    module, in the order given; assign it to the hook's name in the package's ``__init__``.

    A module without a callable ``specs`` is refused here, at import, naming the module: a
    plugin whose list is wrong fails to load with that message rather than registering less.
    """
    modules = tuple(modules)
    names = [getattr(module, "__name__", repr(module)) for module in modules]
    missing = [
        name
        for name, module in zip(names, modules, strict=True)
        if not callable(getattr(module, "specs", None))
    ]
    if missing:
        raise TypeError(f"register_specs_of: {', '.join(missing)} defines no specs() function")

    @hookimpl
    def register_specs(register: Callable[[SpecT], None]) -> None:
        for module in modules:
            for spec in module.specs():
                register(spec)

    register_specs.__doc__ = f"Register the specs of {', '.join(names)}, in this order."
    return register_specs
