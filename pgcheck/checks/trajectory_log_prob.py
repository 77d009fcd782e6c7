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
from typing import Any

import numpy as np
import torch

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    DTYPE,
    Budget,
    Check,
    close,
    failed,
    finite_or_none,
    finite_rows,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    read_output,
    run_check,
    usage_error,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

NAME = "trajectory_log_prob"
OPTIONS = ["timeout", "rtol", "atol", "require_grad"]
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


def trajectory_instances() -> list[dict[str, Any]]:
    """The fixed test inputs (the same on every call, from fixed seeds).

    Each instance has ``name`` and ``args`` (``states``, ``actions``, ``log_p0``, ``log_pi``,
    ``log_P`` in the learner's argument order). The tables are normalised log-probabilities
    (log_softmax of random logits), every probability > 0, and the trajectory is sampled from
    the MDP itself.
    """
    out = []
    for n_states, n_actions, horizon, seed, sharp in _SPECS:
        g = torch.Generator().manual_seed(9_000 + seed)
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


DIAGNOSES: dict[str, str] = {
    "probability": "You return p(τ), the product of the probabilities, not log p(τ). Work with "
    "the log tables directly and add: log p(s_0) + Σ_t [log π(a_t|s_t) + "
    "log P(s_{t+1}|s_t,a_t)] (exp and a product underflow for long "
    "trajectories).",
    "sign": "You return −log p(τ) (a negative log-likelihood). Drop the minus sign.",
    "policy_only": "You return only the policy terms Σ_t log π(a_t|s_t). That sum has the same "
    "gradient with respect to θ (the score ∇_θ log p_θ(τ) = Σ_t ∇_θ log "
    "π_θ(a_t|s_t)), but log p(τ) itself also contains log p(s_0) and the "
    "transition terms Σ_t log P(s_{t+1}|s_t,a_t). Add them.",
    "missing_p0": "The start term is missing: add log p(s_0), i.e. log_p0[states[0]].",
    "missing_transitions": "The transition terms are missing: add Σ_t log P(s_{t+1}|s_t,a_t), "
    "i.e. log_P[states[:-1], actions, states[1:]].sum().",
    "transition_same_state": "Your transition term is log P(s_t|s_t,a_t): the next state is "
    "s_{t+1}, not s_t. Use log_P[states[:-1], actions, states[1:]].",
    "transition_reversed": "Your transition term is log P(s_t|s_{t+1},a_t), the step "
    "backwards. The environment goes from s_t to s_{t+1}: "
    "log_P[s_t, a_t, s_{t+1}], i.e. log_P[states[:-1], actions, "
    "states[1:]].",
    "transition_from_next": "Your transition term is log P(s_{t+1}|s_{t+1},a_t): the 'from' "
    "state of step t is s_t. Use log_P[states[:-1], actions, "
    "states[1:]].",
    "policy_next_state": "Your policy term is log π(a_t|s_{t+1}): action a_t is chosen in s_t. "
    "Use log_pi[states[:-1], actions] (states has T+1 entries, actions T).",
    "policy_all_actions": "You sum log π(a|s_t) over every action a; only the action taken "
    "counts: log π(a_t|s_t) = log_pi[states[:-1], actions].",
    "transition_all_states": "You sum log P(s'|s_t,a_t) over every next state s'; only the "
    "state that came next counts: log P(s_{t+1}|s_t,a_t).",
    "last_step_dropped": "Off by one: the last step t = T−1 is missing (a loop over "
    "range(T − 1)?). There are T actions and T transitions: "
    "t = 0, …, T−1 with T = len(actions).",
    "mean_over_steps": "You average the per-step terms; log p(τ) sums them over t.",
}

_ORDER = list(DIAGNOSES)


def measure_trajectory_log_prob(
    fn: Callable[..., Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    require_grad: bool = False,
    **unknown: Any,
) -> dict[str, Any]:
    """Call ``fn(states, actions, log_p0, log_pi, log_P)`` on every fixed instance.

    First on plain tensors (so a numpy solution works), then once more with the three tables
    requiring grad: if that result is a tensor on the autograd graph, its gradient with
    respect to each table is recorded. Plain numbers only; never raises.
    """
    early = measure_precheck("check_trajectory_log_prob", unknown, OPTIONS)
    if early is not None:
        return early
    if not isinstance(timeout, int | float) or timeout <= 0:
        return usage_error(
            "check_trajectory_log_prob", f"timeout={timeout!r}; use a positive number of seconds."
        )
    budget = Budget(timeout)
    with single_thread():
        return _measure(fn, budget)


def _measure(fn: Callable[..., Any], budget: Budget) -> dict[str, Any]:
    name = "your log p(τ) function"
    what = "log p(τ) as one number (the per-step terms summed)"
    values: list[float] = []
    grads: list[dict[str, Any] | None] = []
    grad_status = "checked"
    grad_error = ""
    for inst in trajectory_instances():
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
    y, r = float(yours[idx]), float(ref[idx])
    if table == "log_p0":
        entry = f"log p(s_0 = {idx[0]})"
        what = "1 for the start state s_0 and 0 elsewhere"
    elif table == "log_pi":
        entry = f"log π(a={idx[1]}|s={idx[0]})"
        what = "the number of steps t with (s_t, a_t) = (s, a)"
    else:
        entry = f"log P(s'={idx[2]}|s={idx[0]},a={idx[1]})"
        what = "the number of steps t with (s_t, a_t, s_{t+1}) = (s, a, s')"
    return (
        f"∂ log p(τ)/∂ {entry} is {y:.6g} for you but {r:.6g} in the exact answer: the "
        f"derivative with respect to each entry of {table} is {what}."
    )


@finite_rows
def judge_trajectory_log_prob(
    measurement: dict[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    require_grad: bool = False,
    **unknown: Any,
) -> Report:
    """Compare with the exact log p(τ) on every instance, then the gradient (if measured)."""
    early = judge_precheck(measurement, NAME, "check_trajectory_log_prob", unknown, OPTIONS)
    if early is not None:
        return early
    instances = trajectory_instances()
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
    notes = output_notes(measurement)
    rows: list[Row] = []
    first_bad: tuple[dict[str, Any], float, float] | None = None
    cand_ok = {k: True for k in DIAGNOSES}
    max_diff = 0.0
    for inst, y in zip(instances, values, strict=True):
        args = inst["args"]
        ref = reference(**args)
        yours = float(y)
        diff = abs(yours - ref)
        max_diff = max(max_diff, diff)
        rows.append(
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
        if not close(np.asarray(yours), np.asarray(ref), rtol, atol) and first_bad is None:
            first_bad = (inst, yours, ref)
        for key, cand in candidates(args).items():
            cand_ok[key] = cand_ok[key] and close(np.asarray(yours), np.asarray(cand), rtol, atol)
    if first_bad is not None:
        inst, yours, ref = first_bad
        first = (
            f"For {_fmt_traj(inst['args'])} ({inst['name']}), you return {yours:.6g} but "
            f"{FORMULA} = {ref:.6g}."
        )
        diagnosis = next((k for k in _ORDER if cand_ok[k]), None)
        if diagnosis is not None:
            advice = DIAGNOSES[diagnosis]
        else:
            diagnosis = "mismatch"
            advice = _unrecognised_advice(instances, grads)
        return Report(
            passed=False,
            verdict="wrong",
            check=NAME,
            rows=rows,
            notes=notes,
            diagnosis=diagnosis,
            message=f"{first} {advice}",
        )
    status = measurement.get("grad_status")
    if status != "checked":
        why = {
            "raised": "with tables that require grad, "
            + (str(measurement.get("grad_error") or "your function raised").rstrip(".")),
            "not_differentiable": "your function does not return a tensor on the autograd "
            "graph (a float, numpy, .item() or .detach())",
        }.get(str(status), "no gradient was recorded")
        if require_grad:
            return Report(
                passed=False,
                verdict="wrong",
                check=NAME,
                rows=rows,
                notes=notes,
                diagnosis="not_differentiable",
                message=(
                    f"Your values are right, but {why}. Compute log p(τ) with "
                    "torch operations so autograd can differentiate it."
                ),
            )
        notes = notes + [
            f"Gradients were not checked: {why}. The values are what this check "
            "requires; to differentiate log p(τ), use torch operations only."
        ]
    else:
        for inst, rec in zip(instances, grads, strict=True):
            args = inst["args"]
            n_s, n_a = args["log_pi"].shape
            refs = reference_grads(args["states"], args["actions"], int(n_s), int(n_a))
            for table in TABLES:
                g = rec.get(table) if isinstance(rec, dict) else None
                ref_g = refs[table]
                yours_g = (
                    np.zeros_like(ref_g)
                    if g is None
                    else np.array(
                        [np.nan if v is None else v for v in g], dtype=np.float64
                    ).reshape(ref_g.shape)
                    if len(g) == ref_g.size
                    else np.full(ref_g.shape, np.nan)
                )
                if not close(yours_g, ref_g, 1e-9, 1e-9):
                    rows.append(
                        Row(
                            f"∂/∂ {table} ({inst['name']})",
                            {
                                "yours": yours_g.reshape(-1).tolist()[:12],
                                "exact (counts)": ref_g.reshape(-1).tolist()[:12],
                            },
                        )
                    )
                    detached = (
                        " (that part of your computation is detached from the graph?)"
                        if g is None or not np.any(yours_g)
                        else ""
                    )
                    return Report(
                        passed=False,
                        verdict="wrong",
                        check=NAME,
                        rows=rows,
                        notes=notes,
                        diagnosis="gradient",
                        message=(
                            f"Your values are right but the gradient is not, on "
                            f"{_fmt_traj(args)}: {_grad_mismatch(table, yours_g, ref_g)}"
                            f"{detached} Keep every term on the autograd graph and index "
                            "the tables with the trajectory's own states and actions."
                        ),
                    )
    horizons = [int(inst["args"]["actions"].numel()) for inst in instances]
    rhs = FORMULA.split(" = ", 1)[1]
    message = (
        f"Your log p(τ) matches {rhs} on {len(instances)} trajectories (T = "
        f"{min(horizons)} to {max(horizons)}, max |diff| = {max_diff:.2g})"
        + (
            "; its gradient is the count of each (s_t, a_t) pair for log π and of each "
            "transition for log P."
            if status == "checked"
            else "."
        )
    )
    return Report(
        passed=True, verdict="correct", check=NAME, rows=rows, notes=notes, message=message
    )


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
                return (
                    f"Your result does not depend on {table} the way it should: "
                    f"{table} must enter log p(τ) once per step. Compute {FORMULA}."
                )
            yours_g = np.array([np.nan if v is None else v for v in g], dtype=np.float64).reshape(
                ref_g.shape
            )
            if not close(yours_g, ref_g, 1e-9, 1e-9):
                return (
                    f"Looking at the gradient on {_fmt_traj(args)}: "
                    f"{_grad_mismatch(table, yours_g, ref_g)} Compute {FORMULA}."
                )
    return (
        f"Compute {FORMULA}: log_p0[states[0]] + log_pi[states[:-1], actions].sum() + "
        "log_P[states[:-1], actions, states[1:]].sum()."
    )


CHECK = Check(NAME, measure_trajectory_log_prob, judge_trajectory_log_prob)


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
