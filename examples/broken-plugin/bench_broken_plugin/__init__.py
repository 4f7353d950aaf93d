"""Fails at import on purpose, like a plugin whose optional dependency is missing."""

raise ImportError("bench_broken_plugin needs a GPU driver that is not installed")
