"""Every row of docs/reliability.md runs here, and the page quotes the real messages."""

from __future__ import annotations

import difflib

import pytest
from reliability_cases import CASES, DOC, Env, render_table

OBSERVED: dict[str, str] = {}


@pytest.fixture(scope="module")
def env():
    e = Env()
    yield e
    e.close()


def observe(env: Env, case) -> str:
    if case.id not in OBSERVED:
        OBSERVED[case.id] = case.run(env)
    return OBSERVED[case.id]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_row(env, case):
    message = observe(env, case)
    assert case.expect in message, message
    if not message.startswith("accepted"):
        # A message says what was given and what is allowed: never a bare type name.
        assert len(message.split(": ", 1)[-1]) > 25, message


def test_ids_are_unique_and_every_group_has_rows():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len({c.group for c in CASES}) >= 6


def test_the_docs_table_is_the_real_messages(env):
    """docs/reliability.md == the table rendered from this run's messages (all rows tested)."""
    observed = {case.id: observe(env, case) for case in CASES}
    expected = render_table(observed)
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    diff = "\n".join(difflib.unified_diff(actual.splitlines(), expected.splitlines(), lineterm=""))
    assert actual == expected, (
        "docs/reliability.md is out of date; regenerate it with\n"
        "  .venv/bin/python tests/reliability/reliability_cases.py > docs/reliability.md\n" + diff
    )
