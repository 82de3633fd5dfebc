"""SpineBench: reproducible build of the SpineBench benchmark and the harness that scores models on it."""

__version__ = "0.1.0"
