"""``python -m worker`` is ``scm-worker``."""

from worker.cli import run_main

run_main()
