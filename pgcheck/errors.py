"""One vocabulary of errors: why a learner's code could not be checked.

Every check reports an error the same way: a :class:`Report` with verdict ``"error"`` whose
``diagnosis`` is one :class:`ErrorKind`. On the learner side a failure travels as a
:class:`LearnerError` (inside pgcheck) or as a :class:`MeasuredError` (plain data inside a
measurement, so that it can cross a process boundary as JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict


class ErrorKind(StrEnum):
    """Why a call of the learner's code failed (a ``str``, so it compares equal to its value)."""

    TIMEOUT = "timeout"  # used up the time budget
    EXCEPTION = "exception"  # raised
    NOT_IMPLEMENTED = "not_implemented"  # still `raise NotImplementedError()`
    OUTPUT = "output"  # printed too much
    GLOBAL_STATE = "global_state"  # changed torch/numpy/random global state
    IN_PLACE = "in_place"  # modified an input in place
    NO_PATH_TO_THETA = "no_path_to_theta"  # the result has no gradient
    NOT_A_TENSOR = "not_a_tensor"  # returned something that is not a float tensor
    NOT_SCALAR = "not_scalar"  # a loss that is not a scalar
    NAN = "nan"  # NaN or inf
    VOCABULARY = "vocabulary"  # asks for inputs pgcheck does not provide
    PROBLEM = "problem"  # an unknown or unusable problem
    USAGE = "usage"  # the caller's mistake: an unknown or invalid option
    INTERNAL = "internal"  # pgcheck itself failed (a bug to report)
    RECURSION = "recursion"  # recursed without end (RecursionError)
    NOT_SELF_CONTAINED = "not_self_contained"  # uses pgcheck or pgcourse, which grading lacks


@dataclass
class LearnerError:
    """Why a call of the learner's function failed, in words meant for the learner."""

    kind: ErrorKind
    message: str


class MeasuredError(TypedDict):
    """A :class:`LearnerError` as plain data, the shape every measurement uses under "error"."""

    kind: str
    message: str


def measured(kind: ErrorKind | str, message: str) -> MeasuredError:
    """The plain-data form of an error, for a measurement."""
    return {"kind": str(kind), "message": message}
