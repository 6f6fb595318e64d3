"""``scm-worker demo``: the whole system on one machine, in one command."""
