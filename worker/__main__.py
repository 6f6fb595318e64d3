"""``python -m worker`` is ``scm-worker``."""

from worker.cli import run_main

# Guarded: a spawned worker process (``run --processes``) imports this module as
# ``__mp_main__`` and must not run the command line again.
if __name__ == "__main__":
    run_main()
