"""Verdicts as ordered lists of small named rules.

A check's ``judge`` gathers its evidence, then asks its rules in order: each rule returns the
:class:`~pgcheck.report.Report` when it recognises the evidence, or None to pass it on. The
last rule of a list always answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from pgcheck.report import Report

#: The evidence a check's rules look at (each check defines its own evidence class).
EvidenceT = TypeVar("EvidenceT")
AnswerT = TypeVar("AnswerT")
#: A verdict rule: the report when it recognises the evidence, else None (pass it on).
Rule = Callable[[EvidenceT], Report | None]


def first_answer(
    rules: Sequence[Callable[[EvidenceT], AnswerT | None]], evidence: EvidenceT
) -> AnswerT | None:
    """The answer of the first rule that does not return None, or None if none answers."""
    for rule in rules:
        answer = rule(evidence)
        if answer is not None:
            return answer
    return None


def decide(rules: Sequence[Rule[EvidenceT]], evidence: EvidenceT) -> Report:
    """The report of the first rule that answers; the last rule of ``rules`` must always answer."""
    report = first_answer(rules, evidence)
    if report is None:
        raise AssertionError("no rule answered: the last rule must always answer")
    return report
