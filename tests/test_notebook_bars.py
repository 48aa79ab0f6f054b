"""Bars in Jupyter: tqdm.auto picks widgets in a kernel, the terminal bar elsewhere.

A real kernel run (``jupyter nbconvert --execute``) is not part of the suite:
jupyter is no dependency of ours. These check the two pieces it relies on.
"""

from __future__ import annotations

import io

import pytest
import tqdm.auto
import tqdm.std

from downloader import TqdmProgress
from downloader._progress import byte_bar, set_total


def test_bars_come_from_tqdm_auto_and_stay_plain_in_a_terminal() -> None:
    stream = io.StringIO()
    bars = TqdmProgress(stream, jobs=2)
    assert bars._tqdm is tqdm.auto.tqdm  # a widget class inside a kernel
    bar = byte_bar(stream, total=10)
    try:
        assert type(bar) is tqdm.auto.tqdm
        assert isinstance(bar, tqdm.std.tqdm)  # outside one: the terminal bar
    finally:
        bar.close()


def test_a_widget_bar_learns_its_new_total() -> None:
    """``tqdm.notebook`` sizes its widget once; a total found later must reach it."""
    pytest.importorskip("ipywidgets", reason="ipywidgets draws Jupyter's bars")
    from tqdm.notebook import tqdm as notebook_tqdm

    bar = notebook_tqdm(total=None, display=False)
    try:
        set_total(bar, 5_000)
        assert bar.total == 5_000
        assert bar.container.children[1].max == 5_000
    finally:
        bar.close()
