"""check_log_prob: a hand-written log π against torch.distributions.

Softmax policy log π(a) = z_a − log Σ_b exp z_b against ``Categorical``; Gaussian policy
log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π against ``Normal``; plus the
normalisation Σ_a π(a) = 1 (∫ p(a) da = 1), the gradient, and numerical stability.
"""

from __future__ import annotations

import functools
import math
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
    finite_or_none,
    finite_rows,
    fit_scale,
    fmt_vec,
    instance_seed,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    read_output,
    run_check,
    scale_hint,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

NAME = "log_prob"
LOG_PROB_POLICIES = ("softmax", "gaussian", "diag_gaussian")
LOG_PROB_OPTIONS = ["policy", "timeout", "rtol", "atol", "require_grad", "seed"]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _fixed_or_drawn(
    seed: int | None, fixed: torch.Tensor, draw: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """The public tensor ``fixed`` when ``seed`` is None, else a fresh one from ``draw``."""
    return fixed if seed is None else draw()


def log_prob_instances(policy: str, seed: int | None = None) -> list[dict[str, Any]]:
    """The fixed test inputs of :func:`check_log_prob` (same on every call, from fixed seeds).

    Each instance has ``name``, ``args`` (tensors in the learner's argument order),
    ``kind`` ("values", "normalisation" or "stability") and, for normalisation instances,
    ``groups`` (softmax: number of rows; Gaussian: number of (μ, σ) pairs). ``seed``: fresh
    inputs of the same shapes and kinds (random actions and σ, the same spreads and tails),
    see :func:`instance_seed`.
    """
    g = torch.Generator().manual_seed(instance_seed(2024_06, seed))

    fresh = functools.partial(_fixed_or_drawn, seed)

    out: list[dict[str, Any]] = []
    if policy == "softmax":
        logits = torch.randn(6, 4, generator=g, dtype=DTYPE) * 1.5
        actions = fresh(
            torch.tensor([0, 3, 1, 2, 3, 1]), lambda: torch.randint(4, (6,), generator=g)
        )
        out.append(
            {
                "name": "6 states, 4 actions",
                "kind": "values",
                "args": {"logits": logits, "actions": actions},
            }
        )
        base = torch.randn(5, 3, generator=g, dtype=DTYPE) * 2.0
        out.append(
            {
                "name": "every action of 5 states",
                "kind": "normalisation",
                "groups": 5,
                "args": {
                    "logits": base.repeat_interleave(3, dim=0),
                    "actions": torch.arange(3).repeat(5),
                },
            }
        )
        wide = torch.randn(3, 7, generator=g, dtype=DTYPE) * 4.0
        out.append(
            {
                "name": "3 states, 7 actions",
                "kind": "values",
                "args": {
                    "logits": wide,
                    "actions": fresh(
                        torch.tensor([6, 0, 4]), lambda: torch.randint(7, (3,), generator=g)
                    ),
                },
            }
        )
        huge = torch.randn(4, 5, generator=g, dtype=DTYPE) * 3.0 + 1000.0
        out.append(
            {
                "name": "logits near 1000",
                "kind": "stability",
                "args": {
                    "logits": huge,
                    "actions": fresh(
                        torch.tensor([2, 0, 4, 1]), lambda: torch.randint(5, (4,), generator=g)
                    ),
                },
            }
        )
        # spread logits: softmax(z).log() underflows to −inf for the unlikely actions
        spread = torch.tensor([[0.0, 800.0, -50.0], [900.0, 0.0, 10.0]], dtype=DTYPE)
        spread = fresh(spread, lambda: spread + 20.0 * torch.rand(2, 3, generator=g, dtype=DTYPE))
        out.append(
            {
                "name": "logits 800 apart",
                "kind": "stability",
                "args": {"logits": spread, "actions": torch.tensor([0, 1])},
            }
        )
    elif policy == "diag_gaussian":
        out.extend(diag_gaussian_instances(seed))
    else:
        mean = torch.randn(6, generator=g, dtype=DTYPE) * 2.0
        std = fresh(
            torch.tensor([0.3, 2.5, 0.7, 1.6, 0.45, 3.2], dtype=DTYPE),
            lambda: torch.exp(torch.empty(6, dtype=DTYPE).uniform_(-1.2, 1.2, generator=g)),
        )
        actions = mean + std * torch.randn(6, generator=g, dtype=DTYPE) * 1.5
        out.append(
            {
                "name": "6 random (μ, σ, a)",
                "kind": "values",
                "args": {"mean": mean, "std": std, "actions": actions},
            }
        )
        mus = fresh(
            torch.tensor([-1.2, 0.5, 2.0], dtype=DTYPE),
            lambda: 1.5 * torch.randn(3, generator=g, dtype=DTYPE),
        )
        sigmas = fresh(
            torch.tensor([0.4, 1.7, 3.0], dtype=DTYPE),
            lambda: (
                torch.tensor([0.4, 1.7, 3.0], dtype=DTYPE)
                * torch.exp(torch.empty(3, dtype=DTYPE).uniform_(-0.3, 0.3, generator=g))
            ),
        )
        u = torch.linspace(-16.0, 16.0, 1601, dtype=DTYPE)
        out.append(
            {
                "name": "grid over a for 3 (μ, σ)",
                "kind": "normalisation",
                "groups": 3,
                "args": {
                    "mean": mus.repeat_interleave(u.numel()),
                    "std": sigmas.repeat_interleave(u.numel()),
                    "actions": (mus[:, None] + sigmas[:, None] * u[None, :]).reshape(-1),
                },
            }
        )
        tail_std = torch.tensor([0.1, 0.05, 2.0], dtype=DTYPE)
        tail_mean = torch.tensor([0.5, -1.0, 3.0], dtype=DTYPE)
        if seed is not None:
            tail_std = tail_std * torch.exp(
                torch.empty(3, dtype=DTYPE).uniform_(-0.2, 0.2, generator=g)
            )
            tail_mean = 2.0 * torch.randn(3, generator=g, dtype=DTYPE)
        out.append(
            {
                "name": "far tails (|a−μ| = 40σ)",
                "kind": "stability",
                "args": {
                    "mean": tail_mean,
                    "std": tail_std,
                    "actions": tail_mean
                    + tail_std * torch.tensor([40.0, -45.0, 50.0], dtype=DTYPE),
                },
            }
        )
    return out


def diag_gaussian_instances(seed: int | None = None) -> list[dict[str, Any]]:
    """Inputs for ``policy="diag_gaussian"``: mean, std, actions [N, k]; the answer is
    log N(a; μ, diag σ²) = Σ_j [−(a_j−μ_j)²/(2σ_j²) − log σ_j − ½ log 2π], one number per row.
    The σ_j differ within a row (so σ and σ² differ, and a mean over j is not a sum).
    ``seed``: fresh inputs of the same shapes, σ ranges and tails (|a−μ| of 40–50 σ), see
    :func:`instance_seed`."""
    g = torch.Generator().manual_seed(instance_seed(2025_07, seed))

    fresh = functools.partial(_fixed_or_drawn, seed)

    mean = torch.randn(5, 3, generator=g, dtype=DTYPE) * 1.5
    std = 0.3 + 2.5 * torch.rand(5, 3, generator=g, dtype=DTYPE)
    actions = mean + std * torch.randn(5, 3, generator=g, dtype=DTYPE) * 1.5
    mean2 = torch.randn(4, 2, generator=g, dtype=DTYPE)
    std2 = fresh(
        torch.tensor([[0.4, 1.9], [2.2, 0.6], [0.8, 3.0], [1.3, 0.35]], dtype=DTYPE),
        lambda: torch.empty(4, 2, dtype=DTYPE).uniform_(0.3, 3.0, generator=g),
    )
    actions2 = mean2 + std2 * torch.randn(4, 2, generator=g, dtype=DTYPE)
    tail_mean = fresh(
        torch.tensor([[0.5, -1.0], [3.0, 0.0]], dtype=DTYPE),
        lambda: torch.empty(2, 2, dtype=DTYPE).uniform_(-3.0, 3.0, generator=g),
    )
    tail_std = fresh(
        torch.tensor([[0.1, 0.05], [2.0, 0.2]], dtype=DTYPE),
        lambda: torch.empty(2, 2, dtype=DTYPE).uniform_(0.05, 2.0, generator=g),
    )
    distance = fresh(
        torch.tensor([[40.0, -45.0], [50.0, 42.0]], dtype=DTYPE),
        lambda: (
            torch.empty(2, 2, dtype=DTYPE).uniform_(40.0, 50.0, generator=g)
            * torch.where(torch.rand(2, 2, generator=g) < 0.5, -1, 1)
        ),
    )
    tails = tail_mean + tail_std * distance
    return [
        {
            "name": "5 rows, 3 action dimensions",
            "kind": "values",
            "args": {"mean": mean, "std": std, "actions": actions},
        },
        {
            "name": "4 rows, 2 action dimensions",
            "kind": "values",
            "args": {"mean": mean2, "std": std2, "actions": actions2},
        },
        {
            "name": "far tails (|a−μ| = 40σ)",
            "kind": "stability",
            "args": {"mean": tail_mean, "std": tail_std, "actions": tails},
        },
    ]


def _grad_weights(n: int) -> torch.Tensor:
    """Fixed random weights c for the gradient check ∇ Σ_i c_i log π_i."""
    return torch.randn(n, generator=torch.Generator().manual_seed(77), dtype=DTYPE)


def _differentiable_names(policy: str) -> list[str]:
    return ["logits"] if policy == "softmax" else ["mean", "std"]


def measure_log_prob(
    fn: Callable[..., Any],
    *,
    policy: str = "softmax",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    require_grad: bool = True,
    seed: int | None = None,
    **unknown: Any,
) -> LogProbMeasurement:
    """Run the learner's log π on the fixed inputs; plain numbers only, never raises.

    Records, per instance, the learner's values (None where not finite, allowed only on the
    stability instances) and, on the first instance, ∇ Σ_i c_i fn(...)_i with respect to the
    policy's parameters (logits, or mean and std), if the output is differentiable.
    """
    early = measure_precheck(
        "check_log_prob",
        unknown,
        LOG_PROB_OPTIONS,
        kind=("policy", policy, LOG_PROB_POLICIES),
        seed=seed,
    )
    if early is not None:
        return early
    budget = Budget(timeout)
    name = "your log-probability function"
    diff = _differentiable_names(policy)
    with single_thread():
        return _measure_log_prob(fn, policy, budget, name, diff, seed)


def _measure_log_prob(
    fn: Callable[..., Any],
    policy: str,
    budget: Budget,
    name: str,
    diff: list[str],
    seed: int | None = None,
) -> LogProbMeasurement:
    values: list[list[Any]] = []
    grad: Any = {"connected": False}
    for i, inst in enumerate(log_prob_instances(policy, seed)):
        args = {
            k: (v.clone().requires_grad_(True) if k in diff else v.clone())
            for k, v in inst["args"].items()
        }
        value, err = learner_call(fn, args, budget, name)
        if err:
            return err
        n = int(inst["args"]["actions"].shape[0])
        arr, msg = read_output(
            value,
            (n,),
            name,
            "log π of each action" if policy == "softmax" else "the log-density of each action",
            allow_nonfinite=inst["kind"] == "stability",
        )
        if msg:
            return failed(ErrorKind.OUTPUT, msg + f" (input: {inst['name']})")
        values.append(finite_or_none(arr))
        if i == 0 and isinstance(value, torch.Tensor) and value.requires_grad:
            weights = _grad_weights(n)
            inputs = [args[k] for k in diff]

            def backward(
                out: torch.Tensor = value,
                w: torch.Tensor = weights,
                xs: list[torch.Tensor] = inputs,
            ) -> tuple[Any, ...]:
                return torch.autograd.grad(
                    (out.reshape(-1).to(DTYPE) * w).sum(), xs, allow_unused=True
                )

            grads, gerr = learner_call(backward, {}, budget, "the backward pass of your function")
            if gerr:
                return gerr
            grad = {"connected": any(gr is not None for gr in grads)}
            for k, gr in zip(diff, grads, strict=True):
                grad[k] = finite_or_none(gr.detach().to(DTYPE).numpy()) if gr is not None else None
    return {
        "check": "log_prob",
        "policy": policy,
        "values": values,
        "grad": grad,
        "output": budget.output,
    }


def _ref_log_prob(policy: str, args: dict[str, torch.Tensor]) -> torch.Tensor:
    """log π(a) from torch.distributions (Categorical or Normal)."""
    if policy == "softmax":
        return torch.distributions.Categorical(logits=args["logits"]).log_prob(args["actions"])
    if policy == "diag_gaussian":  # independent dimensions: the log-densities add up
        normal = torch.distributions.Normal(args["mean"], args["std"])
        return torch.distributions.Independent(normal, 1).log_prob(args["actions"])
    return torch.distributions.Normal(args["mean"], args["std"]).log_prob(args["actions"])


def _log_prob_candidates(policy: str, args: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Common wrong log π's, computed on the same inputs (for the diagnosis)."""
    if policy == "softmax":
        z, a = args["logits"], args["actions"]
        idx = torch.arange(z.shape[0])
        lp = torch.log_softmax(z, dim=-1)[idx, a]
        cands = {
            "sign": -lp,
            "probability": lp.exp(),
            "missing_normaliser": z[idx, a],
            "wrong_dim": torch.log_softmax(z, dim=0)[idx, a],
        }
    else:
        mu, s, a = args["mean"], args["std"], args["actions"]
        r2 = (a - mu) ** 2
        lp = -r2 / (2 * s**2) - s.log() - HALF_LOG_2PI
        cands = {
            "sign": -lp,
            "density": lp.exp(),
            "missing_log_sigma": -r2 / (2 * s**2) - HALF_LOG_2PI,
            "missing_constant": -r2 / (2 * s**2) - s.log(),
            "std_as_variance": -r2 / (2 * s) - 0.5 * torch.log(2 * math.pi * s),
            "log_variance": -r2 / (2 * s**2) - 2 * s.log() - HALF_LOG_2PI,
            "missing_half": -r2 / s**2 - s.log() - HALF_LOG_2PI,
            "std_in_quadratic": -r2 / (2 * s) - s.log() - HALF_LOG_2PI,
        }
        if policy == "diag_gaussian":
            cands = {k: v.sum(-1) for k, v in cands.items()}
            cands["sign"] = -lp.sum(-1)
            cands["density"] = lp.sum(-1).exp()
            cands["mean_over_dims"] = lp.mean(-1)
            cands["first_dim_only"] = lp[..., 0]
    return {k: v.detach().numpy() for k, v in cands.items()}


#: Each wrong log π recognised by comparison with :func:`_log_prob_candidates` (or by its
#: normalisation), once: its code, the formula it computes and its message.
CANDIDATE_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "sign",
        "−log π(a)",
        (
            "You return −log π (the negative log-likelihood, i.e. the cross-entropy). Drop the "
            "minus sign."
        ),
    ),
    Mistake(
        "probability",
        "π(a)",
        (
            "You return π(a), not log π(a). Take the log: torch.log_softmax(logits, dim=-1) and "
            "pick each row's action."
        ),
    ),
    Mistake(
        "missing_normaliser",
        "z_a",
        (
            "You return the logit z_a, but log π(a) = z_a − log Σ_b exp z_b. Subtract "
            "torch.logsumexp(logits, dim=-1) (or use torch.log_softmax)."
        ),
    ),
    Mistake(
        "wrong_dim",
        "log_softmax(z, dim=0)[i, a_i]",
        (
            "You normalise over the batch (dim=0) instead of over actions. Use "
            "torch.log_softmax(logits, dim=-1)."
        ),
    ),
    Mistake(
        "not_normalised",
        "log π(a) + c(s)",
        (
            "Your values differ from log π by a constant per state, so exp of them does not sum to "
            "1 over actions. Subtract log Σ_b exp z_b (torch.logsumexp(logits, dim=-1))."
        ),
    ),
    Mistake(
        "density",
        "N(a; μ, σ²)",
        (
            "You return the density N(a; μ, σ²), not its log. Return the log-density −(a−μ)²/(2σ²) "
            "− log σ − ½ log 2π."
        ),
    ),
    Mistake(
        "missing_log_sigma",
        "−(a−μ)²/(2σ²) − ½ log 2π",
        (
            "The −log σ term is missing: log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π. "
            "Without it the density does not integrate to 1 and its gradient with respect to σ is "
            "wrong."
        ),
    ),
    Mistake(
        "missing_constant",
        "−(a−μ)²/(2σ²) − log σ",
        (
            "The constant −½ log(2π) is missing, so exp of your values integrates to √(2π) ≈ "
            "2.5066 instead of 1. Add − 0.5 * math.log(2 * math.pi)."
        ),
    ),
    Mistake(
        "std_as_variance",
        "−(a−μ)²/(2σ) − ½ log(2πσ)",
        (
            "You use σ where σ² belongs (std passed as the variance): the quadratic term is "
            "−(a−μ)²/(2σ²) and the log term −log σ. Square the std."
        ),
    ),
    Mistake(
        "log_variance",
        "−(a−μ)²/(2σ²) − 2 log σ − ½ log 2π",
        "You subtract log σ² = 2 log σ; the log-density has −log σ (that is −½ log σ²).",
    ),
    Mistake(
        "missing_half",
        "−(a−μ)²/σ² − log σ − ½ log 2π",
        "The ½ in the quadratic term is missing: use −(a−μ)²/(2σ²).",
    ),
    Mistake(
        "std_in_quadratic",
        "−(a−μ)²/(2σ) − log σ − ½ log 2π",
        (
            "You divide by 2σ where 2σ² belongs in the quadratic term: −(a−μ)²/(2σ²) − log σ − "
            "½ log 2π. Square the std."
        ),
    ),
    Mistake(
        "mean_over_dims",
        "(1/k) Σ_j log N(a_j; μ_j, σ_j²)",
        (
            "You average the per-dimension log-densities; for independent dimensions they add "
            "up: log N(a; μ, diag σ²) = Σ_j log N(a_j; μ_j, σ_j²). Use .sum(-1), not .mean(-1)."
        ),
    ),
    Mistake(
        "first_dim_only",
        "log N(a_0; μ_0, σ_0²)",
        (
            "You return the log-density of the first action dimension only; sum over all of "
            "them: Σ_j log N(a_j; μ_j, σ_j²)."
        ),
    ),
    Mistake(
        "not_normalised_density",
        "∫ exp(yours) da ≠ 1",
        (
            "exp of your values does not integrate to 1 over a, so it is not a log-density. "
            "Compare term by term with −(a−μ)²/(2σ²) − log σ − ½ log 2π."
        ),
    ),
)
#: The other diagnoses: templates filled in by the rules.
OTHER_MISTAKES: tuple[Mistake, ...] = (
    Mistake("scaled", "α log π(a)", "{hint}"),
    Mistake("mismatch", "none of the recognised values", "{advice}"),
    Mistake(
        "not_differentiable",
        "right values, no autograd graph",
        "Your values are right, but they have no gradient path to the {params} (numpy, "
        ".item(), .detach() or torch.no_grad?). A pseudo-loss needs log π to be "
        "differentiable: use torch operations only.",
    ),
    Mistake(
        "gradient",
        "right values, ∇ Σ_i c_i log π_i ≠ autograd",
        "Your values are right but the gradient with respect to {param} is not (yours {yours}, "
        "expected {expected}): part of your computation is detached (e.g. "
        "logsumexp(...).detach() or .item()). Keep every term on the autograd graph.",
    ),
    Mistake(
        "unstable",
        "right on ordinary inputs, wrong or not finite on extreme ones",
        "Your log π is right on ordinary inputs but wrong or not finite on {instance}. {fix}",
    ),
)
#: code → message of every diagnosis of this check.
MESSAGES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES + OTHER_MISTAKES}
#: code → message of the mistakes recognised by value (kept for callers).
LOG_PROB_DIAGNOSES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES}
#: The candidate codes in order of priority, per policy.
CANDIDATE_ORDER = {
    "softmax": ["sign", "probability", "missing_normaliser", "wrong_dim"],
    "gaussian": [
        "sign",
        "density",
        "missing_log_sigma",
        "missing_constant",
        "std_as_variance",
        "log_variance",
        "missing_half",
        "std_in_quadratic",
    ],
}
CANDIDATE_ORDER["diag_gaussian"] = [
    *CANDIDATE_ORDER["gaussian"],
    "mean_over_dims",
    "first_dim_only",
]
UNRECOGNISED = {
    "softmax": "Compare with torch.log_softmax(logits, dim=-1)[range(N), actions].",
    "gaussian": "Compare term by term with −(a−μ)²/(2σ²) − log σ − ½ log 2π.",
    "diag_gaussian": "Compare with Σ_j [−(a_j−μ_j)²/(2σ_j²) − log σ_j − ½ log 2π].",
}
UNSTABLE_FIX = {
    "softmax": "Subtract the largest logit before exponentiating, or simply use "
    "torch.log_softmax(logits, dim=-1).",
    "gaussian": "Compute the log-density directly, −(a−μ)²/(2σ²) − log σ − ½ log 2π, instead of "
    "taking the log of the density (which underflows to 0).",
}
UNSTABLE_FIX["diag_gaussian"] = UNSTABLE_FIX["gaussian"]
PARAMS = {"softmax": "logits", "gaussian": "mean and std", "diag_gaussian": "mean and std"}
FIRST_BAD = (
    "For {where}, your log π is {yours:.6g} but torch.distributions.{dist} gives {exact:.6g}."
)
NORMALISATION = "{label} = 1 {holds} (yours: {totals})"
DIAG_NORMALISATION = (
    "each dimension is a 1-D Gaussian (∫ p(a) da = 1 is checked by policy='gaussian')"
)
CORRECT = (
    "Your log π matches torch.distributions.{dist} on {n} entries (max |diff| = {max_diff:.2g}); "
    "{norm}{grad}"
)
CORRECT_GRAD = "; its gradient matches too."


class LogProbGrad(TypedDict, total=False):
    """∇ Σ_i c_i log π_i on the first instance, per differentiable input (None: no path)."""

    connected: bool
    logits: list[float | None] | None
    mean: list[float | None] | None
    std: list[float | None] | None


class LogProbMeasurement(Measurement, total=False):
    """What :func:`measure_log_prob` returns: the values on every instance of
    :func:`log_prob_instances` (None where not finite) and the gradient on the first."""

    check: str
    policy: str
    values: list[list[float | None]]
    grad: LogProbGrad


@dataclass
class Evidence:
    """What the rules of :func:`judge_log_prob` decide on.

    ``mismatch``: (instance, entry, yours, ref) per non-stability instance that differs from
    torch.distributions; ``unstable``: names of stability instances that differ or are not
    finite; ``cand_ok[code]``: the values equal that wrong log π on every non-stability
    instance; ``row_constant``: yours − log π is constant per state (softmax);
    ``grad_bad``: (input, yours, expected) of the first gradient that differs (computed only
    when the values are right, the gradient was asked for and is connected).
    """

    policy: str
    instances: list[dict[str, Any]]
    values: list[list[Any]]
    require_grad: bool
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mismatch: list[tuple[int, int, float, float]] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    cand_ok: dict[str, bool] = field(default_factory=lambda: {k: True for k in LOG_PROB_DIAGNOSES})
    row_constant: bool = True
    max_diff: float = 0.0
    norm_text: str = ""
    connected: bool = False
    grad_bad: tuple[str, np.ndarray, np.ndarray] | None = None

    @property
    def dist(self) -> str:
        return "Categorical" if self.policy == "softmax" else "Normal"

    def wrong(self, code: str, message: str) -> Report:
        """The failed report naming ``code``."""
        return Report(
            passed=False,
            verdict="wrong",
            diagnosis=code,
            check=NAME,
            rows=self.rows,
            notes=self.notes,
            message=message,
        )

    def wrong_value(self, code: str, advice: str) -> Report:
        """The failed report for wrong values: the first differing entry, then ``advice``."""
        i, j, y, r = self.mismatch[0]
        where = _describe_entry(self.policy, self.instances[i]["args"], j)
        first = FIRST_BAD.format(where=where, yours=y, dist=self.dist, exact=r)
        return Report(
            passed=False,
            verdict="wrong",
            message=f"{first} {advice}",
            diagnosis=code,
            check=NAME,
            rows=self.rows,
            notes=self.notes + ([self.norm_text] if self.norm_text else []),
        )


def gather_evidence(
    measurement: LogProbMeasurement,
    policy: str,
    instances: list[dict[str, Any]],
    require_grad: bool,
    rtol: float,
    atol: float,
) -> Evidence:
    """Compare every instance with torch.distributions and with every wrong log π; check
    Σ_a π(a) = 1 (softmax) or ∫ p(a) da = 1 (Gaussian, trapezoid rule); then, if the values are
    right, compare ∇ Σ_i c_i log π_i with autograd through torch.distributions."""
    ev = Evidence(policy, instances, measurement["values"], require_grad)
    for i, (inst, vals) in enumerate(zip(instances, ev.values, strict=True)):
        args = inst["args"]
        ref = _ref_log_prob(policy, args).detach().numpy()
        yours = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        finite = np.isfinite(yours)
        ok = close(yours, ref, rtol, atol) and bool(finite.all())
        diff = np.abs(yours - ref)
        if inst["kind"] == "stability":
            if not ok:
                ev.unstable.append(inst["name"])
        else:
            ev.max_diff = max(ev.max_diff, float(np.max(diff)))
            if not ok:
                j = int(np.argmax(np.where(np.isfinite(diff), diff, np.inf)))
                ev.mismatch.append((i, j, float(yours[j]), float(ref[j])))
            for key, cand in _log_prob_candidates(policy, args).items():
                ev.cand_ok[key] = ev.cand_ok[key] and close(yours, cand, rtol, atol)
        cols: dict[str, Any] = {}
        show = slice(0, 6)
        if inst["kind"] == "normalisation":
            groups = int(inst["groups"])
            per = yours.reshape(groups, -1)
            if policy == "softmax":
                totals = np.exp(per).sum(axis=1)
                diffs = per - ref.reshape(groups, -1)
                ev.row_constant = ev.row_constant and bool(
                    np.all(np.abs(diffs - diffs[:, :1]) <= atol + rtol * np.abs(per))
                )
                cols["Σ_a exp(yours)"] = totals.tolist()
                label = "Σ_a π(a)"
            else:
                grid = args["actions"].reshape(groups, -1).numpy()
                totals = np.array(
                    [np.trapezoid(np.exp(p), x) for p, x in zip(per, grid, strict=True)]
                )
                cols["∫ exp(yours) da"] = totals.tolist()
                label = "∫ p(a) da"
            norm_ok = bool(np.all(np.abs(totals - 1) <= 1e-6))
            ev.norm_text = NORMALISATION.format(
                label=label, holds="holds" if norm_ok else "fails", totals=fmt_vec(totals, 8)
            )
            if not norm_ok and policy == "gaussian":
                ev.cand_ok["not_normalised_density"] = True
        cols["yours"] = [None if v is None else v for v in vals[show]]
        cols["torch.distributions"] = ref[show].tolist()
        cols["max |diff|"] = float(np.nanmax(diff)) if finite.any() else float("inf")
        ev.rows.append(Row(inst["name"], cols))
    if policy == "diag_gaussian":
        ev.norm_text = DIAG_NORMALISATION
    ev.notes = output_notes(measurement)
    grad = measurement.get("grad") or {}
    ev.connected = bool(grad.get("connected"))
    if not ev.mismatch and require_grad and ev.connected:
        _compare_gradient(ev, grad)
    return ev


def _compare_gradient(ev: Evidence, grad: Any) -> None:
    """Add a row per differentiable input with ∇ Σ_i c_i log π_i (yours and autograd's), up to
    the first that differs (recorded in ``ev.grad_bad``)."""
    inst = ev.instances[0]
    diff_names = _differentiable_names(ev.policy)
    args = {
        k: (v.clone().requires_grad_(True) if k in diff_names else v)
        for k, v in inst["args"].items()
    }
    w = _grad_weights(int(args["actions"].shape[0]))
    ref_grads = torch.autograd.grad(
        (_ref_log_prob(ev.policy, args) * w).sum(), [args[k] for k in diff_names]
    )
    for k, rg in zip(diff_names, ref_grads, strict=True):
        rg_np = rg.numpy().reshape(-1)
        yg = grad.get(k)
        yg_np = (
            np.zeros_like(rg_np)
            if yg is None
            else np.array([np.nan if v is None else v for v in yg], dtype=np.float64)
        )
        ev.rows.append(
            Row(
                f"∇ w.r.t. {k} (instance 1)",
                {"yours": yg_np.tolist()[:6], "torch.distributions": rg_np.tolist()[:6]},
            )
        )
        if not close(yg_np, rg_np, 1e-6, 1e-8):
            ev.grad_bad = (k, yg_np, rg_np)
            return


def known_mistake(ev: Evidence) -> Report | None:
    """Wrong values equal to one of the wrong log π's of :func:`_log_prob_candidates`."""
    if not ev.mismatch:
        return None
    code = next((k for k in CANDIDATE_ORDER[ev.policy] if ev.cand_ok.get(k)), None)
    return None if code is None else ev.wrong_value(code, MESSAGES[code])


def not_normalised(ev: Evidence) -> Report | None:
    """Softmax: wrong values off by a constant per state (exp does not sum to 1)."""
    if not (ev.mismatch and ev.policy == "softmax" and ev.row_constant):
        return None
    return ev.wrong_value("not_normalised", MESSAGES["not_normalised"])


def not_normalised_density(ev: Evidence) -> Report | None:
    """Gaussian: wrong values whose exp does not integrate to 1 over a."""
    if not (ev.mismatch and ev.policy == "gaussian" and ev.cand_ok.get("not_normalised_density")):
        return None
    return ev.wrong_value("not_normalised_density", MESSAGES["not_normalised_density"])


def scaled(ev: Evidence) -> Report | None:
    """Wrong values equal to α log π for one α (a stray factor or sign)."""
    if not ev.mismatch:
        return None
    alpha, resid = _fit_values(ev)
    if resid >= 1e-6:
        return None
    return ev.wrong_value("scaled", MESSAGES["scaled"].format(hint=scale_hint(alpha)))


def unrecognised_values(ev: Evidence) -> Report | None:
    """Wrong values that no rule above recognises."""
    if not ev.mismatch:
        return None
    return ev.wrong_value("mismatch", MESSAGES["mismatch"].format(advice=UNRECOGNISED[ev.policy]))


def not_differentiable(ev: Evidence) -> Report | None:
    """Right values with no gradient path to the parameters (and ``require_grad``)."""
    if not (ev.require_grad and not ev.connected):
        return None
    code = "not_differentiable"
    return ev.wrong(code, MESSAGES[code].format(params=PARAMS[ev.policy]))


def gradient_wrong(ev: Evidence) -> Report | None:
    """Right values, but ∇ Σ_i c_i log π_i differs from autograd's (a detached term)."""
    if ev.grad_bad is None:
        return None
    k, yg_np, rg_np = ev.grad_bad
    message = MESSAGES["gradient"].format(param=k, yours=fmt_vec(yg_np), expected=fmt_vec(rg_np))
    return ev.wrong("gradient", message)


def unstable(ev: Evidence) -> Report | None:
    """Right on ordinary inputs, wrong or not finite on extreme logits or far tails."""
    if not ev.unstable:
        return None
    message = MESSAGES["unstable"].format(instance=ev.unstable[0], fix=UNSTABLE_FIX[ev.policy])
    return ev.wrong("unstable", message)


def correct(ev: Evidence) -> Report:
    """Values, normalisation, gradient (if asked for) and stability all right."""
    n_checked = sum(
        len(v)
        for v, inst in zip(ev.values, ev.instances, strict=True)
        if inst["kind"] != "stability"
    )
    message = CORRECT.format(
        dist=ev.dist,
        n=n_checked,
        max_diff=ev.max_diff,
        norm=ev.norm_text,
        grad=CORRECT_GRAD if ev.require_grad else ".",
    )
    return Report(
        passed=True, verdict="correct", message=message, check=NAME, rows=ev.rows, notes=ev.notes
    )


#: The rules in the order they are tried; the last always answers.
RULES: tuple[Rule[Evidence], ...] = (
    known_mistake,
    not_normalised,
    not_normalised_density,
    scaled,
    unrecognised_values,
    not_differentiable,
    gradient_wrong,
    unstable,
    correct,
)


def _fit_values(ev: Evidence) -> tuple[float, float]:
    """α and the relative residual of yours ≈ α log π over the non-stability instances."""
    main = [k for k, inst in enumerate(ev.instances) if inst["kind"] != "stability"]
    ys = np.concatenate([np.array(ev.values[k], dtype=np.float64) for k in main])
    refs = np.concatenate(
        [_ref_log_prob(ev.policy, ev.instances[k]["args"]).detach().numpy() for k in main]
    )
    return fit_scale(ys, refs)


@finite_rows
def judge_log_prob(
    measurement: LogProbMeasurement,
    *,
    policy: str = "softmax",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    require_grad: bool = True,
    seed: int | None = None,
    **unknown: Any,
) -> Report:
    """Compare the measured log π with torch.distributions and check normalisation.

    Softmax: log π(a) = z_a − log Σ_b exp z_b and Σ_a π(a) = 1 for every state.
    Gaussian: log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π and ∫ N(a; μ, σ²) da = 1
    (trapezoid rule over a ∈ μ ± 16σ, 1601 points). Gradient: ∇ Σ_i c_i log π_i with respect
    to the logits (or mean and std) against autograd through torch.distributions.
    Prechecks (options, a recorded error, the number of instances), then the
    :class:`Evidence`, then the first of :data:`RULES` that answers.
    """
    early = judge_precheck(
        measurement,
        NAME,
        "check_log_prob",
        unknown,
        LOG_PROB_OPTIONS,
        kind=("policy", policy, LOG_PROB_POLICIES),
        seed=seed,
    )
    if early is not None:
        return early
    instances = log_prob_instances(policy, seed)
    early = count_mismatch(measurement["values"], len(instances), NAME, "check_log_prob")
    if early is not None:
        return early
    return decide(RULES, gather_evidence(measurement, policy, instances, require_grad, rtol, atol))


def _describe_entry(policy: str, args: dict[str, torch.Tensor], j: int) -> str:
    if policy == "diag_gaussian":
        return (
            f"μ = {fmt_vec(args['mean'][j].numpy(), 4)}, σ = {fmt_vec(args['std'][j].numpy(), 4)}"
            f", a = {fmt_vec(args['actions'][j].numpy(), 4)}"
        )
    if policy == "softmax":
        return (
            f"logits {fmt_vec(args['logits'][j].numpy(), 4)} and action {int(args['actions'][j])}"
        )
    return (
        f"μ = {float(args['mean'][j]):.4g}, σ = {float(args['std'][j]):.4g}, "
        f"a = {float(args['actions'][j]):.4g}"
    )


CHECK = Check(NAME, measure_log_prob, judge_log_prob, fresh_instances=True)


def check_log_prob(
    fn: Callable[..., Any],
    policy: str = "softmax",
    *,
    timeout: float = 5.0,
    require_grad: bool = True,
    **options: Any,
) -> Report:
    """Check a hand-written log π against torch.distributions and its normalisation.

    ``policy="softmax"``: ``fn(logits [N,A], actions [N]) -> [N]`` with
    log π(a) = z_a − log Σ_b exp z_b; ``policy="gaussian"``: ``fn(mean [N], std [N],
    actions [N]) -> [N]`` with log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π;
    ``policy="diag_gaussian"``: ``fn(mean [N,k], std [N,k], actions [N,k]) -> [N]``, the
    diagonal Gaussian Σ_j log N(a_j; μ_j, σ_j²) (no normalisation instance: its dimensions
    are independent one-dimensional Gaussians, checked by ``policy="gaussian"``).
    Also checks Σ_a π(a) = 1 (∫ p(a) da = 1), the gradient, and numerical stability.
    """
    return run_check(
        CHECK, fn, policy=policy, timeout=timeout, require_grad=require_grad, **options
    )
