"""Fails at import on purpose, like a plugin whose optional dependency is missing.

The core must record this error against the entry point ``broken`` and go on loading every
other plugin; the test suite installs this distribution to check exactly that.
"""

raise ImportError("bench_broken_plugin needs a GPU driver that is not installed")
