"""Logging of rlm_jupyter: every component logs through :mod:`logging` under ``rlm_jupyter.*``.

Loggers: ``rlm_jupyter.rlm`` (``RLM.log``: runs started and finished), ``rlm_jupyter.core``
(sub-call errors, limits), ``rlm_jupyter.events`` (failed subscribers), ``rlm_jupyter.lm``
(retries, cache hits), ``rlm_jupyter.environment`` (kernel start, restarts),
``rlm_jupyter.jupyter`` (the notebook views).

Quiet by default: the package logger has a :class:`logging.NullHandler`, so nothing is shown
unless the host configures logging or the user sets a level — ``%config RLM.log_level =
"INFO"`` in IPython, ``--log-level INFO`` on the command line, or :func:`set_level`.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "rlm_jupyter"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMAT = "[%(name)s %(levelname)s] %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (in a kernel: the cell's stderr stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


def set_level(level: str) -> None:
    """Show rlm_jupyter's log records of ``level`` and above on stderr (one handler, added once).

    Args:
        level: ``""`` (back to quiet: the handler is removed, records go only to the host's
            logging configuration) or one of :data:`LEVELS` (any case).

    Raises:
        ValueError: another level name.
    """
    logger = logging.getLogger(LOGGER)
    name = (level or "").upper()
    if name and name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)} (or ''), not {level!r}")
    handlers = [h for h in logger.handlers if isinstance(h, _StderrHandler)]
    if not name:
        for h in handlers:
            logger.removeHandler(h)
        logger.setLevel(logging.NOTSET)
        return
    if not handlers:
        logger.addHandler(_StderrHandler())
    logger.setLevel(name)


logging.getLogger(LOGGER).addHandler(logging.NullHandler())
