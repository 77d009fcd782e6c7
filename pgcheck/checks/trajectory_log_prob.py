"""Check a learner's trajectory log-probability log p(τ) against the exact sum.

``check_trajectory_log_prob(fn)`` (registered as ``"trajectory_log_prob"``) calls
``fn(states [T+1] long, actions [T] long, log_p0 [S], log_pi [S,A], log_P [S,A,S])`` on
fixed random MDPs and trajectories (T = 1 included, near-deterministic dynamics included, every
probability > 0) and compares the scalar it returns with

    log p(τ) = log p(s_0) + Σ_{t=0}^{T−1} [log π(a_t|s_t) + log P(s_{t+1}|s_t,a_t)].

When the result is differentiable it also checks the gradient: ∂ log p(τ)/∂ log π(a|s) is the
number of steps with (s_t, a_t) = (s, a), ∂/∂ log P(s'|s,a) the number of transitions
s → s' under a, and ∂/∂ log p(s) is 1 for s = s_0 only. It recognises the common mistakes
(policy terms only, no log p(s_0), transitions off by one, p(τ) instead of log p(τ), log π
summed over all actions, the last step dropped, …).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    decide,
    failed,
    finite_or_none,
    finite_rows,
    instance_seed,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    read_output,
    run_check,
    usage_error,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

NAME = "trajectory_log_prob"
OPTIONS = ["timeout", "rtol", "atol", "require_grad", "seed"]
TABLES = ("log_p0", "log_pi", "log_P")
FORMULA = "log p(τ) = log p(s_0) + Σ_t [log π(a_t|s_t) + log P(s_{t+1}|s_t,a_t)]"

#: (S, A, T, seed, sharpness of the dynamics' logits): T = 1, near-deterministic dynamics, …
_SPECS = [
    (3, 2, 5, 11, 1.0),
    (4, 3, 1, 12, 1.0),
    (2, 4, 8, 13, 1.5),
    (4, 2, 7, 14, 8.0),  # near-deterministic: one next state has P ≈ 1, the others ≈ e^−8
    (5, 3, 12, 15, 1.0),
]


def trajectory_instances(seed: int | None = None) -> list[dict[str, Any]]:
    """The fixed test inputs (the same on every call, from fixed seeds); ``seed``: fresh
    tables and trajectories of the same sizes and kinds, see :func:`instance_seed`.

    Each instance has ``name`` and ``args`` (``states``, ``actions``, ``log_p0``, ``log_pi``,
    ``log_P`` in the learner's argument order). The tables are normalised log-probabilities
    (log_softmax of random logits), every probability > 0, and the trajectory is sampled from
    the MDP itself.
    """
    out = []
    for n_states, n_actions, horizon, spec_seed, sharp in _SPECS:
        g = torch.Generator().manual_seed(instance_seed(9_000 + spec_seed, seed))
        log_p0 = torch.log_softmax(torch.randn(n_states, generator=g, dtype=DTYPE), dim=-1)
        log_pi = torch.log_softmax(
            1.2 * torch.randn(n_states, n_actions, generator=g, dtype=DTYPE), dim=-1
        )
        logits = torch.randn(n_states, n_actions, n_states, generator=g, dtype=DTYPE)
        if sharp > 1.0:
            # a favoured next state that differs from s, so the chain keeps moving
            favoured = (
                torch.arange(n_states)[:, None] + 1 + torch.arange(n_actions)[None, :]
            ) % n_states
            if n_states > 1:
                favoured = torch.where(
                    favoured == torch.arange(n_states)[:, None], (favoured + 1) % n_states, favoured
                )
            logits = logits + sharp * torch.nn.functional.one_hot(favoured, n_states).to(DTYPE)
        log_P = torch.log_softmax(logits, dim=-1)
        s = int(torch.multinomial(log_p0.exp(), 1, generator=g))
        states, actions = [s], []
        for _ in range(horizon):
            a = int(torch.multinomial(log_pi[s].exp(), 1, generator=g))
            s = int(torch.multinomial(log_P[s, a].exp(), 1, generator=g))
            actions.append(a)
            states.append(s)
        out.append(
            {
                "name": f"S={n_states}, A={n_actions}, T={horizon}"
                + (" (near-deterministic P)" if sharp > 4 else ""),
                "args": {
                    "states": torch.tensor(states),
                    "actions": torch.tensor(actions),
                    "log_p0": log_p0,
                    "log_pi": log_pi,
                    "log_P": log_P,
                },
            }
        )
    return out


def reference(states: Any, actions: Any, log_p0: Any, log_pi: Any, log_P: Any) -> float:
    """log p(τ) by an explicit loop over the steps (float64)."""
    s = [int(v) for v in states]
    a = [int(v) for v in actions]
    total = float(log_p0[s[0]])
    for t in range(len(a)):
        total += float(log_pi[s[t], a[t]]) + float(log_P[s[t], a[t], s[t + 1]])
    return total


def reference_grads(
    states: Any, actions: Any, n_states: int, n_actions: int
) -> dict[str, np.ndarray]:
    """∂ log p(τ) / ∂ each table: one-hot of s_0, counts of (s_t, a_t), counts of transitions."""
    s = [int(v) for v in states]
    a = [int(v) for v in actions]
    g0 = np.zeros(n_states)
    g0[s[0]] = 1.0
    gpi = np.zeros((n_states, n_actions))
    gP = np.zeros((n_states, n_actions, n_states))
    for t in range(len(a)):
        gpi[s[t], a[t]] += 1.0
        gP[s[t], a[t], s[t + 1]] += 1.0
    return {"log_p0": g0, "log_pi": gpi, "log_P": gP}


def candidates(args: dict[str, torch.Tensor]) -> dict[str, float]:
    """Common wrong answers on the same inputs, in order of priority for the diagnosis."""
    s, a = args["states"], args["actions"]
    lp0, lpi, lP = args["log_p0"], args["log_pi"], args["log_P"]
    now, nxt = s[:-1], s[1:]
    start = float(lp0[s[0]])
    pol = lpi[now, a]
    trans = lP[now, a, nxt]
    correct = start + float(pol.sum()) + float(trans.sum())
    return {
        "probability": float(np.exp(correct)),
        "sign": -correct,
        "policy_only": float(pol.sum()),
        "missing_p0": correct - start,
        "missing_transitions": start + float(pol.sum()),
        "transition_same_state": start + float(pol.sum()) + float(lP[now, a, now].sum()),
        "transition_reversed": start + float(pol.sum()) + float(lP[nxt, a, now].sum()),
        "transition_from_next": start + float(pol.sum()) + float(lP[nxt, a, nxt].sum()),
        "policy_next_state": start + float(lpi[nxt, a].sum()) + float(trans.sum()),
        "policy_all_actions": start + float(lpi[now].sum()) + float(trans.sum()),
        "transition_all_states": start + float(pol.sum()) + float(lP[now, a].sum()),
        "last_step_dropped": start + float(pol[:-1].sum()) + float(trans[:-1].sum()),
        "mean_over_steps": start + float(pol.mean()) + float(trans.mean()),
    }


#: Each wrong log p(τ) recognised by comparison with :func:`candidates`, once, in order of
#: priority: its code, the formula it computes and its message.
CANDIDATE_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "probability",
        "p(τ) = exp log p(τ)",
        (
            "You return p(τ), the product of the probabilities, not log p(τ). Work with the log "
            "tables directly and add: log p(s_0) + Σ_t [log π(a_t|s_t) + log P(s_{t+1}|s_t,a_t)] "
            "(exp and a product underflow for long trajectories)."
        ),
    ),
    Mistake(
        "sign",
        "−log p(τ)",
        "You return −log p(τ) (a negative log-likelihood). Drop the minus sign.",
    ),
    Mistake(
        "policy_only",
        "Σ_t log π(a_t|s_t)",
        (
            "You return only the policy terms Σ_t log π(a_t|s_t). That sum has the same gradient "
            "with respect to θ (the score ∇_θ log p_θ(τ) = Σ_t ∇_θ log π_θ(a_t|s_t)), but log p(τ) "
            "itself also contains log p(s_0) and the transition terms Σ_t log P(s_{t+1}|s_t,a_t). "
            "Add them."
        ),
    ),
    Mistake(
        "missing_p0",
        "log p(τ) − log p(s_0)",
        "The start term is missing: add log p(s_0), i.e. log_p0[states[0]].",
    ),
    Mistake(
        "missing_transitions",
        "log p(s_0) + Σ_t log π(a_t|s_t)",
        (
            "The transition terms are missing: add Σ_t log P(s_{t+1}|s_t,a_t), i.e. "
            "log_P[states[:-1], actions, states[1:]].sum()."
        ),
    ),
    Mistake(
        "transition_same_state",
        "log P(s_t|s_t,a_t) for the transitions",
        (
            "Your transition term is log P(s_t|s_t,a_t): the next state is s_{t+1}, not s_t. Use "
            "log_P[states[:-1], actions, states[1:]]."
        ),
    ),
    Mistake(
        "transition_reversed",
        "log P(s_t|s_{t+1},a_t) for the transitions",
        (
            "Your transition term is log P(s_t|s_{t+1},a_t), the step backwards. The environment "
            "goes from s_t to s_{t+1}: log_P[s_t, a_t, s_{t+1}], i.e. log_P[states[:-1], actions, "
            "states[1:]]."
        ),
    ),
    Mistake(
        "transition_from_next",
        "log P(s_{t+1}|s_{t+1},a_t) for the transitions",
        (
            "Your transition term is log P(s_{t+1}|s_{t+1},a_t): the 'from' state of step t is "
            "s_t. Use log_P[states[:-1], actions, states[1:]]."
        ),
    ),
    Mistake(
        "policy_next_state",
        "log π(a_t|s_{t+1}) for the policy terms",
        (
            "Your policy term is log π(a_t|s_{t+1}): action a_t is chosen in s_t. Use "
            "log_pi[states[:-1], actions] (states has T+1 entries, actions T)."
        ),
    ),
    Mistake(
        "policy_all_actions",
        "Σ_a log π(a|s_t) for the policy terms",
        (
            "You sum log π(a|s_t) over every action a; only the action taken counts: log "
            "π(a_t|s_t) = log_pi[states[:-1], actions]."
        ),
    ),
    Mistake(
        "transition_all_states",
        "Σ_{s'} log P(s'|s_t,a_t) for the transitions",
        (
            "You sum log P(s'|s_t,a_t) over every next state s'; only the state that came next "
            "counts: log P(s_{t+1}|s_t,a_t)."
        ),
    ),
    Mistake(
        "last_step_dropped",
        "the sum over t = 0, …, T−2",
        (
            "Off by one: the last step t = T−1 is missing (a loop over range(T − 1)?). There are T "
            "actions and T transitions: t = 0, …, T−1 with T = len(actions)."
        ),
    ),
    Mistake(
        "mean_over_steps",
        "log p(s_0) + mean_t log π(a_t|s_t) + mean_t log P(s_{t+1}|s_t,a_t)",
        "You average the per-step terms; log p(τ) sums them over t.",
    ),
)
#: The other diagnoses: templates filled in by the rules.
OTHER_MISTAKES: tuple[Mistake, ...] = (
    Mistake("mismatch", "none of the recognised values", "{advice}"),
    Mistake(
        "not_differentiable",
        "right values, no autograd graph (require_grad=True)",
        "Your values are right, but {why}. Compute log p(τ) with torch operations so autograd "
        "can differentiate it.",
    ),
    Mistake(
        "gradient",
        "right values, ∂ log p(τ)/∂ table ≠ the counts",
        "Your values are right but the gradient is not, on {trajectory}: {mismatch}{detached} "
        "Keep every term on the autograd graph and index the tables with the trajectory's own "
        "states and actions.",
    ),
)
#: code → message of every diagnosis of this check.
MESSAGES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES + OTHER_MISTAKES}
#: code → message of the mistakes recognised by :func:`candidates`, in order of priority.
DIAGNOSES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES}
FIRST_BAD = "For {trajectory} ({name}), you return {yours:.6g} but {formula} = {exact:.6g}."
CORRECT = (
    "Your log p(τ) matches {rhs} on {n} trajectories (T = {t_min} to {t_max}, max |diff| = "
    "{max_diff:.2g}){grad}"
)
CORRECT_GRAD = (
    "; its gradient is the count of each (s_t, a_t) pair for log π and of each transition for "
    "log P."
)
GRAD_NOT_CHECKED = (
    "Gradients were not checked: {why}. The values are what this check requires; to "
    "differentiate log p(τ), use torch operations only."
)
#: Why no gradient was checked, by the measurement's ``grad_status``.
WHY_NO_GRADIENT = {
    "raised": "with tables that require grad, {error}",
    "not_differentiable": "your function does not return a tensor on the autograd graph (a "
    "float, numpy, .item() or .detach())",
    "other": "no gradient was recorded",
}
DETACHED = " (that part of your computation is detached from the graph?)"
#: Advice for an unrecognised value: from the gradient when it was recorded, else the formula.
UNRECOGNISED_NOT_ENTERING = (
    "Your result does not depend on {table} the way it should: {table} must enter log p(τ) "
    "once per step. Compute {formula}."
)
UNRECOGNISED_GRADIENT = "Looking at the gradient on {trajectory}: {mismatch} Compute {formula}."
UNRECOGNISED = (
    "Compute {formula}: log_p0[states[0]] + log_pi[states[:-1], actions].sum() + "
    "log_P[states[:-1], actions, states[1:]].sum()."
)
#: Per table: the entry that differs, and what the derivative with respect to it should be.
GRAD_ENTRY = {
    "log_p0": ("log p(s_0 = {0})", "1 for the start state s_0 and 0 elsewhere"),
    "log_pi": ("log π(a={1}|s={0})", "the number of steps t with (s_t, a_t) = (s, a)"),
    "log_P": (
        "log P(s'={2}|s={0},a={1})",
        "the number of steps t with (s_t, a_t, s_{{t+1}}) = (s, a, s')",
    ),
}
GRAD_MISMATCH = (
    "∂ log p(τ)/∂ {entry} is {yours:.6g} for you but {exact:.6g} in the exact answer: the "
    "derivative with respect to each entry of {table} is {what}."
)


class TrajectoryMeasurement(Measurement, total=False):
    """What :func:`measure_trajectory_log_prob` returns, per instance of
    :func:`trajectory_instances`: the value, and (``grad_status == "checked"``) the gradient
    with respect to each table (flattened, None where not finite or not connected)."""

    check: str
    values: list[float]
    grads: list[dict[str, Any] | None]
    grad_status: str
    grad_error: str


_ORDER = list(DIAGNOSES)


def measure_trajectory_log_prob(
    fn: Callable[..., Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    require_grad: bool = False,
    seed: int | None = None,
    **unknown: Any,
) -> TrajectoryMeasurement:
    """Call ``fn(states, actions, log_p0, log_pi, log_P)`` on every fixed instance.

    First on plain tensors (so a numpy solution works), then once more with the three tables
    requiring grad: if that result is a tensor on the autograd graph, its gradient with
    respect to each table is recorded. Plain numbers only; never raises.
    """
    early = measure_precheck("check_trajectory_log_prob", unknown, OPTIONS, seed=seed)
    if early is not None:
        return early
    if not isinstance(timeout, int | float) or timeout <= 0:
        return usage_error(
            "check_trajectory_log_prob", f"timeout={timeout!r}; use a positive number of seconds."
        )
    budget = Budget(timeout)
    with single_thread():
        return _measure(fn, budget, seed)


def _measure(
    fn: Callable[..., Any], budget: Budget, seed: int | None = None
) -> TrajectoryMeasurement:
    name = "your log p(τ) function"
    what = "log p(τ) as one number (the per-step terms summed)"
    values: list[float] = []
    grads: list[dict[str, Any] | None] = []
    grad_status = "checked"
    grad_error = ""
    for inst in trajectory_instances(seed):
        args = {k: v.clone() for k, v in inst["args"].items()}
        value, err = learner_call(fn, args, budget, name)
        if err:
            return err
        arr, msg = read_output(value, (), name, what)
        if msg:
            return failed(ErrorKind.OUTPUT, f"{msg} (input: {inst['name']})")
        values.append(float(arr))
        if grad_status != "checked":
            grads.append(None)
            continue
        gargs = {
            k: (v.clone().requires_grad_(True) if k in TABLES else v.clone())
            for k, v in inst["args"].items()
        }
        gvalue, gerr = learner_call(fn, gargs, budget, name)
        if gerr:
            if gerr["error"]["kind"] in (ErrorKind.TIMEOUT, ErrorKind.OUTPUT):
                return gerr
            grad_status = "raised"
            grad_error = str(gerr["error"]["message"]).split(" pgcheck passes")[0][:300]
            grads.append(None)
            continue
        if not isinstance(gvalue, torch.Tensor) or not gvalue.requires_grad or gvalue.numel() != 1:
            grad_status = "not_differentiable"
            grads.append(None)
            continue
        inputs = [gargs[k] for k in TABLES]

        def backward(
            out: torch.Tensor = gvalue, xs: list[torch.Tensor] = inputs
        ) -> tuple[Any, ...]:
            return torch.autograd.grad(out.reshape(()).to(DTYPE), xs, allow_unused=True)

        result, berr = learner_call(backward, {}, budget, "the backward pass of your function")
        if berr:
            if berr["error"]["kind"] in (ErrorKind.TIMEOUT, ErrorKind.OUTPUT):
                return berr
            grad_status = "raised"
            grad_error = str(berr["error"]["message"]).split(" pgcheck passes")[0][:300]
            grads.append(None)
            continue
        grads.append(
            {
                k: (finite_or_none(gr.detach().to(DTYPE).numpy()) if gr is not None else None)
                for k, gr in zip(TABLES, result, strict=True)
            }
        )
    if grad_status != "checked":
        grads = [None] * len(values)
    return {
        "check": NAME,
        "values": values,
        "grads": grads,
        "grad_status": grad_status,
        "grad_error": grad_error,
        "output": budget.output,
    }


def _fmt_traj(args: dict[str, torch.Tensor]) -> str:
    s = args["states"].tolist()
    a = args["actions"].tolist()
    short = lambda v: str(v) if len(v) <= 8 else str(v[:8])[:-1] + ", …]"  # noqa: E731
    return f"states {short(s)}, actions {short(a)}"


def _grad_mismatch(table: str, yours: np.ndarray, ref: np.ndarray) -> str:
    """Words for the first entry where the learner's gradient differs from the count."""
    diff = np.abs(yours - ref)
    idx = np.unravel_index(int(np.argmax(diff)), ref.shape)
    entry, what = GRAD_ENTRY[table]
    return GRAD_MISMATCH.format(
        entry=entry.format(*(int(i) for i in idx)),
        yours=float(yours[idx]),
        exact=float(ref[idx]),
        table=table,
        what=what.format(),
    )


def _table_grad(rec: Any, table: str, ref_g: np.ndarray) -> np.ndarray:
    """The learner's recorded gradient for ``table`` shaped like ``ref_g``: 0 when not
    connected, NaN where not finite or when it has the wrong size."""
    g = rec.get(table) if isinstance(rec, dict) else None
    if g is None:
        return np.zeros_like(ref_g)
    if len(g) != ref_g.size:
        return np.full(ref_g.shape, np.nan)
    return np.array([np.nan if v is None else v for v in g], dtype=np.float64).reshape(ref_g.shape)


@dataclass
class Evidence:
    """What the rules of :func:`judge_trajectory_log_prob` decide on.

    ``first_bad``: (instance, yours, exact) of the first value that differs; ``cand_ok[code]``:
    the value equals that wrong answer of :func:`candidates` on every instance.
    """

    measurement: TrajectoryMeasurement
    instances: list[dict[str, Any]]
    grads: list[Any]
    require_grad: bool
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_bad: tuple[dict[str, Any], float, float] | None = None
    cand_ok: dict[str, bool] = field(default_factory=lambda: {k: True for k in DIAGNOSES})
    max_diff: float = 0.0

    @property
    def status(self) -> Any:
        """The measurement's ``grad_status`` ("checked", "raised", "not_differentiable")."""
        return self.measurement.get("grad_status")

    def why_no_gradient(self) -> str:
        """Why the gradient was not checked, in words."""
        status = str(self.status)
        if status == "raised":
            error = str(self.measurement.get("grad_error") or "your function raised").rstrip(".")
            return WHY_NO_GRADIENT["raised"].format(error=error)
        return WHY_NO_GRADIENT.get(status, WHY_NO_GRADIENT["other"])

    def wrong(self, code: str, message: str) -> Report:
        """The failed report naming ``code``."""
        return Report(
            passed=False,
            verdict="wrong",
            check=NAME,
            rows=self.rows,
            notes=self.notes,
            diagnosis=code,
            message=message,
        )

    def wrong_value(self, code: str, advice: str) -> Report:
        """The failed report for a wrong value: the first differing instance, then ``advice``."""
        assert self.first_bad is not None
        inst, yours, ref = self.first_bad
        first = FIRST_BAD.format(
            trajectory=_fmt_traj(inst["args"]),
            name=inst["name"],
            yours=yours,
            formula=FORMULA,
            exact=ref,
        )
        return self.wrong(code, f"{first} {advice}")


def gather_evidence(
    measurement: TrajectoryMeasurement,
    instances: list[dict[str, Any]],
    require_grad: bool,
    rtol: float,
    atol: float,
) -> Evidence:
    """Compare every value with :func:`reference` and with every wrong answer of
    :func:`candidates` (|yours − ref| ≤ atol + rtol·|ref|)."""
    values = measurement["values"]
    ev = Evidence(measurement, instances, measurement["grads"], require_grad)
    ev.notes = output_notes(measurement)
    for inst, y in zip(instances, values, strict=True):
        args = inst["args"]
        ref = reference(**args)
        yours = float(y)
        diff = abs(yours - ref)
        ev.max_diff = max(ev.max_diff, diff)
        ev.rows.append(
            Row(
                inst["name"],
                {
                    "states": args["states"].tolist(),
                    "actions": args["actions"].tolist(),
                    "yours": yours,
                    "exact log p(τ)": ref,
                    "|diff|": diff,
                },
            )
        )
        if not close(np.asarray(yours), np.asarray(ref), rtol, atol) and ev.first_bad is None:
            ev.first_bad = (inst, yours, ref)
        for key, cand in candidates(args).items():
            ev.cand_ok[key] = ev.cand_ok[key] and close(
                np.asarray(yours), np.asarray(cand), rtol, atol
            )
    return ev


def known_mistake(ev: Evidence) -> Report | None:
    """A wrong value that equals one of the wrong answers of :func:`candidates`."""
    if ev.first_bad is None:
        return None
    code = next((k for k in _ORDER if ev.cand_ok[k]), None)
    return None if code is None else ev.wrong_value(code, MESSAGES[code])


def unrecognised_value(ev: Evidence) -> Report | None:
    """A wrong value that matches no known mistake (advice from the gradient if recorded)."""
    if ev.first_bad is None:
        return None
    advice = _unrecognised_advice(ev.instances, ev.grads)
    return ev.wrong_value("mismatch", MESSAGES["mismatch"].format(advice=advice))


def not_differentiable(ev: Evidence) -> Report | None:
    """Right values, no gradient recorded, and ``require_grad=True``."""
    if ev.status == "checked" or not ev.require_grad:
        return None
    code = "not_differentiable"
    return ev.wrong(code, MESSAGES[code].format(why=ev.why_no_gradient()))


def gradient_wrong(ev: Evidence) -> Report | None:
    """Right values, but ∂ log p(τ)/∂ some table is not the count it should be."""
    if ev.status != "checked":
        return None
    for inst, rec in zip(ev.instances, ev.grads, strict=True):
        args = inst["args"]
        n_s, n_a = args["log_pi"].shape
        refs = reference_grads(args["states"], args["actions"], int(n_s), int(n_a))
        for table in TABLES:
            ref_g = refs[table]
            yours_g = _table_grad(rec, table, ref_g)
            if close(yours_g, ref_g, 1e-9, 1e-9):
                continue
            ev.rows.append(
                Row(
                    f"∂/∂ {table} ({inst['name']})",
                    {
                        "yours": yours_g.reshape(-1).tolist()[:12],
                        "exact (counts)": ref_g.reshape(-1).tolist()[:12],
                    },
                )
            )
            g = rec.get(table) if isinstance(rec, dict) else None
            detached = DETACHED if g is None or not np.any(yours_g) else ""
            message = MESSAGES["gradient"].format(
                trajectory=_fmt_traj(args),
                mismatch=_grad_mismatch(table, yours_g, ref_g),
                detached=detached,
            )
            return ev.wrong("gradient", message)
    return None


def correct(ev: Evidence) -> Report:
    """Right values, and the gradient (when checked) is the count of each term."""
    notes = ev.notes
    if ev.status != "checked":
        notes = notes + [GRAD_NOT_CHECKED.format(why=ev.why_no_gradient())]
    horizons = [int(inst["args"]["actions"].numel()) for inst in ev.instances]
    message = CORRECT.format(
        rhs=FORMULA.split(" = ", 1)[1],
        n=len(ev.instances),
        t_min=min(horizons),
        t_max=max(horizons),
        max_diff=ev.max_diff,
        grad=CORRECT_GRAD if ev.status == "checked" else ".",
    )
    return Report(
        passed=True, verdict="correct", check=NAME, rows=ev.rows, notes=notes, message=message
    )


#: The rules in the order they are tried; the last always answers.
RULES: tuple[Rule[Evidence], ...] = (
    known_mistake,
    unrecognised_value,
    not_differentiable,
    gradient_wrong,
    correct,
)


@finite_rows
def judge_trajectory_log_prob(
    measurement: TrajectoryMeasurement,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    require_grad: bool = False,
    seed: int | None = None,
    **unknown: Any,
) -> Report:
    """Compare with the exact log p(τ) on every instance, then the gradient (if measured).

    Prechecks (options, a recorded error, the shape of the measurement), then the
    :class:`Evidence`, then the first of :data:`RULES` that answers.
    """
    early = judge_precheck(
        measurement, NAME, "check_trajectory_log_prob", unknown, OPTIONS, seed=seed
    )
    if early is not None:
        return early
    instances = trajectory_instances(seed)
    values = measurement.get("values")
    grads = measurement.get("grads")
    if (
        measurement.get("check") != NAME
        or not isinstance(values, list)
        or not isinstance(grads, list)
        or len(values) != len(instances)
        or len(grads) != len(instances)
    ):
        return Report.error(
            "pgcheck.check_trajectory_log_prob: the measurement does not match the instances.",
            check=NAME,
            diagnosis=ErrorKind.USAGE,
        )
    return decide(RULES, gather_evidence(measurement, instances, require_grad, rtol, atol))


def _unrecognised_advice(instances: list[dict[str, Any]], grads: list[Any]) -> str:
    """Advice for a wrong value that matches no known mistake: use the gradient if recorded."""
    for inst, rec in zip(instances, grads, strict=True):
        if not isinstance(rec, dict):
            break
        args = inst["args"]
        n_s, n_a = args["log_pi"].shape
        refs = reference_grads(args["states"], args["actions"], int(n_s), int(n_a))
        for table in TABLES:
            g = rec.get(table)
            ref_g = refs[table]
            if g is None or len(g) != ref_g.size:
                return UNRECOGNISED_NOT_ENTERING.format(table=table, formula=FORMULA)
            yours_g = _table_grad(rec, table, ref_g)
            if not close(yours_g, ref_g, 1e-9, 1e-9):
                return UNRECOGNISED_GRADIENT.format(
                    trajectory=_fmt_traj(args),
                    mismatch=_grad_mismatch(table, yours_g, ref_g),
                    formula=FORMULA,
                )
    return UNRECOGNISED.format(formula=FORMULA)


CHECK = Check(NAME, measure_trajectory_log_prob, judge_trajectory_log_prob, fresh_instances=True)


def check_trajectory_log_prob(
    fn: Callable[..., Any], *, timeout: float = 5.0, require_grad: bool = False, **options: Any
) -> Report:
    """Check the log-probability of one trajectory against the exact sum.

    ``fn(states [T+1] long, actions [T] long, log_p0 [S], log_pi [S,A], log_P [S,A,S])`` must
    return the scalar log p(τ) = log p(s_0) + Σ_t [log π(a_t|s_t) + log P(s_{t+1}|s_t,a_t)]
    (a tensor or a float). When the result is a tensor on the autograd graph, its gradient
    must be the count of each (s_t, a_t) pair (for log_pi), of each transition (for log_P)
    and the one-hot of s_0 (for log_p0); ``require_grad=True`` rejects a float result.
    """
    return run_check(CHECK, fn, timeout=timeout, require_grad=require_grad, **options)


__all__ = [
    "DIAGNOSES",
    "candidates",
    "check_trajectory_log_prob",
    "judge_trajectory_log_prob",
    "measure_trajectory_log_prob",
    "reference",
    "reference_grads",
    "trajectory_instances",
]
