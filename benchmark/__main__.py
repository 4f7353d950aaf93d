"""``python -m benchmark`` is ``bench``."""

from benchmark.cli import main

main()
