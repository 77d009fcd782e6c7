"""Check a learner's returns and reward-to-go against exact references.

``check_returns(fn, kind=...)`` (registered as ``"returns"``) calls
``fn(rewards [T] float64 tensor, gamma: float)`` on fixed reward sequences (length 1,
random lengths, γ = 0, γ = 1 and 0 < γ < 1) and compares with

* ``kind="return"``:                  R = Σ_t γ^t r_t                       (a scalar)
* ``kind="reward_to_go"``:            G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}          ([T])
* ``kind="discounted_reward_to_go"``: γ^t G_t = Σ_{t'≥t} γ^{t'} r_{t'}        ([T])

It recognises the common mistakes (G_0 at every t, reward-to-come, discount counted
from the end of the episode, missing or extra γ^t, the off-by-one that drops the current
reward, no discount, the immediate reward only, discounted rewards not summed, the vector in
reverse order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import torch

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    DTYPE,
    Budget,
    Check,
    Measurement,
    Rule,
    close,
    count_mismatch,
    decide,
    failed,
    finite_rows,
    fmt_vec,
    instance_seed,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    read_output,
    run_check,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

NAME = "returns"
KINDS = ("return", "reward_to_go", "discounted_reward_to_go")
OPTIONS = ["kind", "timeout", "rtol", "atol", "seed"]


def return_cases(seed: int | None = None) -> list[tuple[list[float], float]]:
    """The fixed test cases (rewards, γ): length 1, γ = 0 and γ = 1, random lengths and rewards.

    ``seed``: fresh cases of the same kinds (length 1, the same γ, rewards with zeros at the
    same places in the last case), see :func:`instance_seed`.
    """
    g = torch.Generator().manual_seed(instance_seed(4_242, seed))

    def rand(n: int) -> list[float]:
        return [round(float(v), 3) for v in torch.randn(n, generator=g, dtype=DTYPE) * 2.0]

    lengths = [int(v) for v in torch.randint(3, 12, (4,), generator=g)]
    if seed is not None:
        sparse = [v if k in (2, 3, 5) else 0.0 for k, v in enumerate(rand(6))]
        return [
            (rand(1), 0.9),
            (rand(lengths[0]), 0.9),
            (rand(lengths[1]), 1.0),
            (rand(lengths[2]), 0.0),
            (rand(lengths[3]), 0.5),
            (sparse, 0.8),
        ]
    return [
        ([2.5], 0.9),
        (rand(lengths[0]), 0.9),
        (rand(lengths[1]), 1.0),
        (rand(lengths[2]), 0.0),
        (rand(lengths[3]), 0.5),
        ([0.0, 0.0, 1.0, -2.0, 0.0, 3.0], 0.8),
    ]


def reference(rewards: np.ndarray, gamma: float, kind: str) -> np.ndarray:
    """The exact answer by the backward recursion G_t = r_t + γ G_{t+1}, G_T = 0.

    Returns R = G_0 (0-d) for "return", G (shape [T]) for "reward_to_go", γ^t G_t for
    "discounted_reward_to_go".
    """
    r = np.asarray(rewards, dtype=np.float64)
    g = np.zeros_like(r)
    acc = 0.0
    for t in range(r.size - 1, -1, -1):
        acc = r[t] + gamma * acc
        g[t] = acc
    if kind == "return":
        return np.asarray(g[0])
    if kind == "reward_to_go":
        return g
    return gamma ** np.arange(r.size, dtype=np.float64) * g


def _sum_from(weights: np.ndarray, r: np.ndarray) -> np.ndarray:
    """out_t = Σ_{t'≥t} weights[t, t'] r_{t'} for a [T,T] weight matrix."""
    return (np.triu(weights) * r[None, :]).sum(axis=1)


def candidates(rewards: list[float], gamma: float, kind: str) -> dict[str, np.ndarray]:
    """Common wrong answers on the same (rewards, γ), in order of priority for the diagnosis."""
    r = np.asarray(rewards, dtype=np.float64)
    n = r.size
    t = np.arange(n, dtype=np.float64)
    pw = gamma**t  # γ^t (with 0^0 = 1)
    g = reference(r, gamma, "reward_to_go")
    rev = (n - 1) - t  # T−1−t'
    from_end = _sum_from(np.broadcast_to(gamma ** rev[None, :], (n, n)), r)
    dropped = g - r
    shifted = np.append(g[1:], 0.0)
    come = np.array([sum(gamma ** (k - j) * r[j] for j in range(k + 1)) for k in range(n)])
    come_abs = np.cumsum(pw * r)
    undiscounted = np.cumsum(r[::-1])[::-1]
    if kind == "return":
        return {
            "undiscounted": np.asarray(r.sum()),
            "discount_from_end": np.asarray((gamma**rev * r).sum()),
            "exponent_off_by_one": np.asarray((gamma ** (t + 1) * r).sum()),
            "last_reward_only": np.asarray(r[-1]),
        }
    common = {
        "g0_everywhere": np.full(n, g[0]),
        "reward_to_come": come,
        "reward_to_come_from_start": come_abs,
        "discount_from_end": from_end,
        "drops_current_reward": dropped,
        "drops_current_reward_shifted": shifted,
        "undiscounted": undiscounted,
        "immediate_reward": r,
        "discounted_rewards_not_summed": pw * r,
        "reversed_order": g[::-1].copy(),
    }
    if kind == "reward_to_go":
        return {"extra_gamma_t": pw * g, **common}
    return {
        "missing_gamma_t": g,
        "g0_everywhere": np.full(n, g[0]),
        "g0_times_gamma_t": pw * g[0],
        "reward_to_come": pw * come,
        "reward_to_come_from_start": come_abs,
        "discount_from_end": pw * from_end,
        "drops_current_reward": pw * dropped,
        "drops_current_reward_shifted": pw * shifted,
        "undiscounted": pw * undiscounted,
        "immediate_reward": pw * r,
        "gamma_t_twice": pw * pw * g,
        "reversed_order": (pw * g)[::-1].copy(),
    }


#: Each wrong answer recognised by comparison with :func:`candidates`, once: its code, the
#: formula it computes, and its message (the message follows the first differing case).
CANDIDATE_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "undiscounted",
        "Σ_{t'≥t} r_{t'} (R: Σ_t r_t)",
        "You ignore γ: discount each reward by γ^(t'−t) (for the return, γ^t).",
    ),
    Mistake(
        "discount_from_end",
        "Σ_{t'≥t} γ^{T−1−t'} r_{t'}",
        (
            "Your discount is counted back from the end of the episode (the last reward gets "
            "γ^0). The reward k steps ahead of t gets γ^k: iterate t from T−1 down to 0 with "
            "G_t = r_t + γ G_{t+1}."
        ),
    ),
    Mistake(
        "exponent_off_by_one",
        "R = Σ_t γ^{t+1} r_t",
        (
            "Your exponents start at 1: the first reward is not discounted, R = Σ_t γ^t r_t = r_0 "
            "+ γ r_1 + …."
        ),
    ),
    Mistake(
        "last_reward_only",
        "R = r_{T−1}",
        "You return only the last reward; sum all of them: R = Σ_t γ^t r_t.",
    ),
    Mistake(
        "g0_everywhere",
        "G_0 at every t",
        (
            "You put the full return G_0 at every step. G_t only counts rewards from t on: G_t = "
            "r_t + γ G_{t+1}."
        ),
    ),
    Mistake(
        "g0_times_gamma_t",
        "γ^t G_0",
        (
            "You use γ^t G_0 at every step; it should be γ^t G_t, where G_t only counts rewards "
            "from t on."
        ),
    ),
    Mistake(
        "reward_to_come",
        "Σ_{t'≤t} γ^{t−t'} r_{t'}",
        (
            "You accumulate rewards forward (reward-to-come, Σ_{t'≤t}). The reward-to-go sums the "
            "rewards from t to the end: loop backwards, G_t = r_t + γ G_{t+1}."
        ),
    ),
    Mistake(
        "reward_to_come_from_start",
        "Σ_{t'≤t} γ^{t'} r_{t'}",
        (
            "You accumulate discounted rewards forward from the start (Σ_{t'≤t} γ^{t'} r_{t'}); "
            "the reward-to-go sums from t to the end: G_t = r_t + γ G_{t+1}."
        ),
    ),
    Mistake(
        "drops_current_reward",
        "G_t − r_t",
        (
            "Off by one: your G_t leaves out the current reward r_t. G_t = r_t + γ G_{t+1} "
            "includes it."
        ),
    ),
    Mistake(
        "drops_current_reward_shifted",
        "G_{t+1} at step t",
        (
            "Off by one: you return G_{t+1} at step t (the current reward r_t is dropped). Use G_t "
            "= r_t + γ G_{t+1}."
        ),
    ),
    Mistake(
        "immediate_reward",
        "r_t",
        (
            "You return the immediate reward r_t only; add the discounted future: G_t = r_t + γ "
            "G_{t+1}."
        ),
    ),
    Mistake(
        "discounted_rewards_not_summed",
        "γ^t r_t",
        "You discount the rewards (γ^t r_t) but never sum them; G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}.",
    ),
    Mistake(
        "reversed_order",
        "G_{T−1−t}",
        (
            "Your values are right but in reverse order: after a backward loop, reverse the list "
            "(or fill G[t] by index)."
        ),
    ),
    Mistake(
        "extra_gamma_t",
        "γ^t G_t (kind='reward_to_go')",
        (
            "You return γ^t G_t (the discount counted from the episode's start); "
            "kind='reward_to_go' wants G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}, discounted from t."
        ),
    ),
    Mistake(
        "missing_gamma_t",
        "G_t (kind='discounted_reward_to_go')",
        (
            "You return G_t without the γ^t factor (it only shows when γ < 1); "
            "kind='discounted_reward_to_go' wants γ^t G_t."
        ),
    ),
    Mistake(
        "gamma_t_twice", "γ^{2t} G_t", "You apply γ^t twice (γ^{2t} G_t); multiply G_t by γ^t once."
    ),
)
#: The other diagnoses: templates filled in by the rules.
OTHER_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "vector_instead_of_scalar",
        "[T] values where kind='return' wants R = Σ_t γ^t r_t",
        "kind='return' wants a single number R = Σ_t γ^t r_t, but you return one value per "
        "step{which}",
    ),
    Mistake(
        "mismatch",
        "none of the recognised answers",
        "Compute {formula}; the backward loop G_t = r_t + γ G_{{t+1}} (G_T = 0) is the "
        "simplest way.",
    ),
)
#: code → message of every diagnosis of this check.
MESSAGES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES + OTHER_MISTAKES}
#: code → message of the mistakes recognised by :func:`candidates` (kept for callers).
DIAGNOSES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES}
VECTOR_IS_REWARD_TO_GO = "; that is the reward-to-go, whose first entry G_0 is the return."
CORRECT = (
    "Your {what} matches {formula} on {n} reward sequences (length 1, γ = 0, γ = 1, random "
    "lengths)."
)
FIRST_BAD = "For rewards {rewards} and γ = {gamma}, you return {yours} but {label} = {exact}."

_FORMULA = {
    "return": "R = Σ_t γ^t r_t",
    "reward_to_go": "G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}",
    "discounted_reward_to_go": "γ^t G_t = Σ_{t'≥t} γ^{t'} r_{t'}",
}


class ReturnValue(TypedDict):
    """The learner's result on one case, flattened, with its shape."""

    values: list[float]
    shape: list[int]


class ReturnsMeasurement(Measurement, total=False):
    """What :func:`measure_returns` returns: one value per case of :func:`return_cases`."""

    check: str
    kind: str
    values: list[ReturnValue]


def measure_returns(
    fn: Callable[..., Any],
    *,
    kind: str = "reward_to_go",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    seed: int | None = None,
    **unknown: Any,
) -> ReturnsMeasurement:
    """Call ``fn(rewards, gamma)`` on every fixed case; plain numbers only, never raises.

    A result of the wrong shape is recorded (flattened, with its shape) when it holds numbers,
    so the judge can say what it is (e.g. the reward-to-go vector where the return was asked).
    """
    early = measure_precheck(
        "check_returns", unknown, OPTIONS, kind=("kind", kind, KINDS), seed=seed
    )
    if early is not None:
        return early
    budget = Budget(timeout)
    name = "your function"
    values: list[ReturnValue] = []
    with single_thread():
        for rewards, gamma in return_cases(seed):
            args = {"rewards": torch.tensor(rewards, dtype=DTYPE), "gamma": float(gamma)}
            value, err = learner_call(fn, args, budget, name)
            if err:
                return err
            shape: tuple[int, ...] = () if kind == "return" else (len(rewards),)
            what = "the return (a number)" if kind == "return" else "one value per step"
            arr, msg = read_output(value, shape, name, what)
            if msg is not None:
                loose, msg2 = read_output(value, (len(rewards),), name, what)
                if kind == "return" and loose is not None and msg2 is None and len(rewards) > 1:
                    values.append({"values": loose.tolist(), "shape": [len(rewards)]})
                    continue
                return failed(ErrorKind.OUTPUT, f"{msg} (rewards {rewards}, γ = {gamma})")
            values.append({"values": arr.reshape(-1).tolist(), "shape": list(arr.shape)})
    return {"check": "returns", "kind": kind, "values": values, "output": budget.output}


@dataclass
class Evidence:
    """What the rules of :func:`judge_returns` decide on.

    ``first_bad``: (rewards, γ, yours, reference) of the first case that differs;
    ``cand_ok[code]``: the learner's result equals that wrong answer of :func:`candidates` on
    every case; ``vector_for_return``: kind="return" and some result is a vector.
    """

    kind: str
    cases: list[tuple[list[float], float]]
    values: list[ReturnValue]
    rtol: float
    atol: float
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_bad: tuple[list[float], float, np.ndarray, np.ndarray] | None = None
    cand_ok: dict[str, bool] = field(default_factory=dict)
    vector_for_return: bool = False

    def first(self) -> str:
        """The first case that differs, in words."""
        assert self.first_bad is not None
        rewards, gamma, yours, ref = self.first_bad
        kind = self.kind
        return FIRST_BAD.format(
            rewards="[" + ", ".join(f"{v:.4g}" for v in rewards) + "]",
            gamma=gamma,
            yours=fmt_vec(yours),
            label="R" if kind == "return" else ("G" if kind == "reward_to_go" else "γ^t G_t"),
            exact=fmt_vec(ref),
        )

    def wrong(self, code: str, advice: str) -> Report:
        """The failed report: the first differing case, then ``advice``."""
        return Report(
            passed=False,
            verdict="wrong",
            check=NAME,
            rows=self.rows,
            notes=self.notes,
            diagnosis=code,
            message=f"{self.first()} {advice}",
        )


def gather_evidence(
    measurement: ReturnsMeasurement, kind: str, rtol: float, atol: float, seed: int | None = None
) -> Evidence:
    """Compare every case with :func:`reference` (|yours − ref| ≤ atol + rtol·|ref|) and with
    every wrong answer of :func:`candidates`."""
    cases = return_cases(seed)
    ev = Evidence(kind, cases, measurement["values"], rtol, atol)
    ev.notes = output_notes(measurement)
    for (rewards, gamma), rec in zip(cases, ev.values, strict=True):
        ref = reference(np.array(rewards), gamma, kind)
        yours = np.array(rec["values"], dtype=np.float64).reshape(rec["shape"])
        if kind == "return" and yours.shape != ():
            ev.vector_for_return = True
        ok = close(yours, ref, rtol, atol)
        ev.rows.append(
            Row(
                f"T={len(rewards)}, γ={gamma}",
                {
                    "rewards": list(rewards),
                    "yours": yours.reshape(-1).tolist(),
                    "exact": ref.reshape(-1).tolist(),
                    "max |diff|": (
                        float(np.max(np.abs(yours - ref)))
                        if yours.shape == ref.shape
                        else "shape differs"
                    ),
                },
            )
        )
        if not ok and ev.first_bad is None:
            ev.first_bad = (rewards, gamma, yours, ref)
        for key, cand in candidates(rewards, gamma, kind).items():
            ev.cand_ok[key] = ev.cand_ok.get(key, True) and close(yours, cand, rtol, atol)
    return ev


def correct(ev: Evidence) -> Report | None:
    """Every case matches the exact reference."""
    if ev.first_bad is not None:
        return None
    return Report(
        passed=True,
        verdict="correct",
        check=NAME,
        rows=ev.rows,
        notes=ev.notes,
        message=CORRECT.format(
            what=ev.kind.replace("_", "-"), formula=_FORMULA[ev.kind], n=len(ev.cases)
        ),
    )


def vector_instead_of_scalar(ev: Evidence) -> Report | None:
    """kind="return" but one value per step (often the reward-to-go G_t)."""
    if not ev.vector_for_return:
        return None
    same_as_g = all(
        close(np.array(rec["values"]), reference(np.array(r), gm, "reward_to_go"), ev.rtol, ev.atol)
        for (r, gm), rec in zip(ev.cases, ev.values, strict=True)
        if len(rec["values"]) > 1
    )
    which = VECTOR_IS_REWARD_TO_GO if same_as_g else "."
    code = "vector_instead_of_scalar"
    return ev.wrong(code, MESSAGES[code].format(which=which))


def known_mistake(ev: Evidence) -> Report | None:
    """The result equals one of the wrong answers of :func:`candidates` on every case."""
    code = next((k for k, ok in ev.cand_ok.items() if ok), None)
    return None if code is None else ev.wrong(code, MESSAGES[code])


def unrecognised(ev: Evidence) -> Report:
    """Wrong in a way none of the rules above recognises."""
    return ev.wrong("mismatch", MESSAGES["mismatch"].format(formula=_FORMULA[ev.kind]))


#: The rules in the order they are tried; the last always answers.
RULES: tuple[Rule[Evidence], ...] = (
    correct,
    vector_instead_of_scalar,
    known_mistake,
    unrecognised,
)


@finite_rows
def judge_returns(
    measurement: ReturnsMeasurement,
    *,
    kind: str = "reward_to_go",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    seed: int | None = None,
    **unknown: Any,
) -> Report:
    """Compare with the exact reference on every case: |yours − ref| ≤ atol + rtol·|ref|.

    Prechecks (options, a recorded error, the number of cases), then the :class:`Evidence`,
    then the first of :data:`RULES` that answers.
    """
    early = judge_precheck(
        measurement, NAME, "check_returns", unknown, OPTIONS, kind=("kind", kind, KINDS), seed=seed
    )
    if early is not None:
        return early
    early = count_mismatch(measurement["values"], len(return_cases(seed)), NAME, "check_returns")
    if early is not None:
        return early
    return decide(RULES, gather_evidence(measurement, kind, rtol, atol, seed))


CHECK = Check(NAME, measure_returns, judge_returns, fresh_instances=True)


def check_returns(
    fn: Callable[..., Any], kind: str = "reward_to_go", *, timeout: float = 5.0, **options: Any
) -> Report:
    """Check a returns function ``fn(rewards [T], gamma) -> ...`` on several reward sequences.

    ``kind="return"``: R = Σ_t γ^t r_t; ``"reward_to_go"``: G_t = Σ_{t'≥t} γ^{t'−t} r_{t'};
    ``"discounted_reward_to_go"``: γ^t G_t.
    """
    return run_check(CHECK, fn, kind=kind, timeout=timeout, **options)
