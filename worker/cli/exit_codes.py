"""Named exit codes, so scripts and orchestrators can tell failures apart."""

from __future__ import annotations

import sys
from collections.abc import Callable

from worker.errors import FatalError, PoisonInputError

EXIT_OK = 0  # success; for `bundle validate`: the bundle is valid
EXIT_INVALID = 1  # the input was refused: an invalid bundle, or input arrays that do not fit
EXIT_USAGE = 2  # bad flags (argparse's own convention)
EXIT_FATAL = 3  # the command could not run as configured (config, bundle or model load)
EXIT_INTERNAL = 70  # interrupted or an unexpected internal error (EX_SOFTWARE)


def exit_code_of(command: Callable[[], int]) -> int:
    """Run ``command``; our errors become one clear line on stderr and their exit code."""
    try:
        return command()
    except FatalError as exc:
        print(f"scm-worker: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except PoisonInputError as exc:
        print(f"scm-worker: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return EXIT_INTERNAL
