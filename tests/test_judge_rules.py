"""The judges of the smaller checks are ordered tuples of small named rules (base.decide)."""

from __future__ import annotations

import importlib

import pytest

from pgcheck.checks.base import decide, first_answer
from pgcheck.report import Report

MODULES = [
    "log_prob",
    "score_function",
    "score_estimator",
    "returns",
    "trajectory_log_prob",
    "rollout",
    "value_loss",
    "q_values",
    "visitation",
    "theorem_gradient",
]


def test_decide_returns_the_first_answer_in_order():
    calls: list[str] = []

    def skip(ev: int) -> Report | None:
        calls.append("skip")
        return None

    def answer(ev: int) -> Report | None:
        calls.append("answer")
        return Report(True, "correct", f"got {ev}")

    def never(ev: int) -> Report | None:  # pragma: no cover - must not be reached
        calls.append("never")
        return Report(False, "wrong", "too late")

    report = decide((skip, answer, never), 3)
    assert report.message == "got 3" and calls == ["skip", "answer"]


def test_decide_refuses_rules_that_do_not_answer():
    with pytest.raises(AssertionError):
        decide((lambda ev: None,), 0)
    assert first_answer((lambda ev: None,), 0) is None


@pytest.mark.parametrize("name", MODULES)
def test_every_check_has_named_documented_rules_and_one_message_table(name):
    mod = importlib.import_module(f"pgcheck.checks.{name}")
    assert isinstance(mod.RULES, tuple) and len(mod.RULES) >= 2
    names = [rule.__name__ for rule in mod.RULES]
    assert len(set(names)) == len(names)
    for rule in mod.RULES:
        assert rule.__doc__ and "\n" not in rule.__doc__.strip(), rule.__name__
    assert isinstance(mod.MESSAGES, dict) and mod.MESSAGES
    assert all(isinstance(v, str) and v for v in mod.MESSAGES.values())
