"""Compatibility name for the ``%%rlm`` cell's display: see :mod:`rlm_jupyter.jupyter.view`.

``ProgressView`` (the former one-line status) is now the live widget view, which shows the
same status line as its header and replaces itself by a static rendering at the end.
"""

from __future__ import annotations

from .view import LiveView as ProgressView, show_result, widgets_available

__all__ = ["ProgressView", "show_result", "widgets_available"]
