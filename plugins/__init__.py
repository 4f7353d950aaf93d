"""Built-in plugins of dependable-bench, registered through the ``bench`` entry points."""
