"""Named exit codes, so scripts and orchestrators can tell failures apart."""

EXIT_OK = 0  # success; for `bundle validate`: the bundle is valid
EXIT_INVALID = 1  # the input was refused: an invalid bundle, or input arrays that do not fit
EXIT_USAGE = 2  # bad flags (argparse's own convention)
EXIT_FATAL = 3  # the command could not run as configured (config, bundle or model load)
EXIT_INTERNAL = 70  # interrupted or an unexpected internal error (EX_SOFTWARE)
