"""Settings: one home for every default, shared by the library, the CLI and clusters."""

from __future__ import annotations

import argparse
import pickle
import typing
from pathlib import Path

import pytest

from downloader import Downloader, Settings
from downloader._cli import build_parser
from downloader._settings import DEFAULTS, NAMES, Options, settings_from


def test_keywords_are_exactly_the_settings() -> None:
    hints = typing.get_type_hints(Settings)
    keywords = typing.get_type_hints(Options)
    assert set(keywords) == set(NAMES)
    for name in NAMES:
        if name == "headers":  # None is accepted as "no headers"
            assert keywords[name] == hints[name] | None
        else:
            assert keywords[name] == hints[name], name


def test_settings_pickle_and_are_frozen() -> None:
    settings = Settings(jobs=3, headers={"X-Token": "t"})
    assert pickle.loads(pickle.dumps(settings)) == settings
    with pytest.raises(AttributeError):
        settings.jobs = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    "changes",
    [
        {"jobs": 0},
        {"per_host": 0},
        {"max_connections": 0},
        {"split": 0},
        {"retries": -1},
        {"min_split_size": 0},
        {"timeout": 0},
        {"connect_timeout": -1.0},
        {"retry_wait": -0.5},
        {"limit_rate": 0},
    ],
)
def test_unusable_values_are_refused(changes: dict[str, typing.Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(changes))):
        Settings(**changes)


def test_an_unknown_keyword_names_itself_and_the_known_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown setting 'job' \(known: jobs, "):
        settings_from(None, {"job": 3})
    with pytest.raises(TypeError, match="'job'"):
        Downloader(".", job=3)  # type: ignore[call-arg]


def test_keywords_go_on_top_of_a_settings_object(tmp_path: Path) -> None:
    base = Settings(jobs=3, retries=1)
    dl = Downloader(tmp_path, base, retries=7, headers=None)
    assert (dl.settings.jobs, dl.settings.retries, dl.settings.headers) == (3, 7, {})
    assert base.retries == 1  # untouched


@pytest.mark.parametrize(
    ("given", "workers", "shared"),
    [
        # jobs, per_host, max_connections, limit_rate after sharing
        (Settings(jobs=16, limit_rate=10.0, retries=3), 3, (6, 3, 86, 10.0 / 3)),
        (Settings(per_host=2), 4, (64, 1, 64, None)),  # at least one each
        (Settings(), 2, (128, 4, 128, None)),  # no cap stays no cap
        (Settings(), 1, (256, 8, 256, None)),
        (Settings(adapt=False), 2, (4, 4, 128, None)),  # the fixed 8, shared
    ],
)
def test_limits_are_shared_out_over_the_workers(
    given: Settings, workers: int, shared: tuple[object, ...]
) -> None:
    out = given.shared_out(workers)
    assert (out.jobs, out.per_host, out.max_connections, out.limit_rate) == shared
    assert out.retries == given.retries  # not a total: unchanged


def _get_parser() -> argparse.ArgumentParser:
    sub = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    return sub.choices["get"]


def test_the_command_line_defaults_are_the_settings_defaults() -> None:
    get = _get_parser()
    args = get.parse_args([])
    for name in (
        "jobs",
        "per_host",
        "max_connections",
        "split",
        "min_split_size",
        "retries",
        "timeout",
        "connect_timeout",
        "limit_rate",
        "overwrite",
        "ca_bundle",
        "insecure",
    ):
        assert getattr(args, name) == getattr(DEFAULTS, name), name
    assert args.no_wait is not DEFAULTS.wait_for_others


def test_the_command_line_help_starts_from_the_settings_docs() -> None:
    text = " ".join(_get_parser().format_help().split())
    for name in ("per_host", "max_connections", "retries", "min_split_size"):
        assert Settings.doc(name) in text, name
    assert "(default: 32M)" in text  # sizes shown as a user types them
    assert "(default: 8)" in text
