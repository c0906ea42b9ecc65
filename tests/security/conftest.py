"""Fixtures of the attack suite; the helpers live in ``sec_support.py`` beside this file."""

from __future__ import annotations

import pytest

from security.sec_support import TALLY, Agent


def pytest_terminal_summary(terminalreporter):
    if TALLY["attacks"]:
        terminalreporter.write_line(f"security suite: {TALLY['attacks']} attacks tried, {TALLY['leaks']} leaks found")


@pytest.fixture
def agent(tmp_path):
    started: list[Agent] = []

    def _start(**options) -> Agent:
        a = Agent(tmp_path, **options)
        started.append(a)
        return a

    yield _start
    for a in started:
        a.close()


