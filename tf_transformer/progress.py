"""Progress display for long work (training, translating files)."""

from __future__ import annotations

import sys


def progress_verbosity(stream=None) -> int:
    """Keras's `verbose` for a progress bar on `stream` (default stdout): 1, the redrawn
    bar, on a terminal; else 2, one plain line per epoch. (Keras's "auto" draws the bar
    with carriage returns and ANSI colours into log files too: a 900-step `train` log
    was about 150 KB of them.)"""
    stream = sys.stdout if stream is None else stream
    return 1 if getattr(stream, "isatty", lambda: False)() else 2
