"""scm-worker: a streaming strict-inference worker for zeroproofml bundles on Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scm-worker")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
