"""check_score_estimator: an estimator of ∇_θ E_{x~p_θ}[f(x)] computed from samples.

The exact gradient comes by enumeration (discrete) or Gauss–Hermite quadrature (Gaussian);
the exact expectation of the learner's estimator, Σ_x p_θ(x) ĝ({x}), by calling it on single
samples at every atom or node; an empirical mean and standard error over fixed-seed batches
is reported too.
"""

from __future__ import annotations

import functools
import math
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
    usage_error,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

NAME = "score_estimator"
ESTIMATOR_FAMILIES = ("bernoulli", "categorical", "gaussian")
ESTIMATOR_OPTIONS = [
    "family", "f", "timeout", "rtol", "atol", "batch_size", "n_batches", "z_max", "seed"
]  # fmt: skip
#: Gauss–Hermite nodes used to take the exact expectation of the learner's estimator.
GH_NODES = 16
#: Gauss–Hermite nodes used for the reference gradient (reparameterised quadrature).
GH_NODES_REF = 80
CATEGORICAL_TABLE = (1.0, -2.0, 0.5, 3.0)


def _f_linear(x: Any) -> torch.Tensor:
    """Bernoulli test function f(x) = 1.5 − 2x (f(0) = 1.5, f(1) = −0.5)."""
    return 1.5 - 2.0 * torch.as_tensor(x, dtype=DTYPE)


def _f_shifted_square(x: Any) -> torch.Tensor:
    """Test function f(x) = (x + 1)²."""
    return (torch.as_tensor(x, dtype=DTYPE) + 1.0) ** 2


def _f_table(x: Any) -> torch.Tensor:
    """Categorical test function f(k) = (1, −2, 0.5, 3)[k]."""
    return torch.tensor(CATEGORICAL_TABLE, dtype=DTYPE)[torch.as_tensor(x).long()]


def _f_square_sin(x: Any) -> torch.Tensor:
    """Gaussian test function f(x) = x² + sin x."""
    x = torch.as_tensor(x, dtype=DTYPE)
    return x**2 + torch.sin(x)


def _f_cubic(x: Any) -> torch.Tensor:
    """Gaussian test function f(x) = x³ − x."""
    x = torch.as_tensor(x, dtype=DTYPE)
    return x**3 - x


#: Named test functions per family; the first is the default, the second is also checked.
TEST_FUNCTIONS: dict[str, dict[str, Callable[[Any], torch.Tensor]]] = {
    "bernoulli": {"linear": _f_linear, "shifted_square": _f_shifted_square},
    "categorical": {"table": _f_table, "shifted_square": _f_shifted_square},
    "gaussian": {"square_sin": _f_square_sin, "cubic": _f_cubic},
}


def estimator_theta(family: str, seed: int | None = None) -> torch.Tensor:
    """θ of each family: Bernoulli logit 0.4 (0-d); categorical logits [K=4];
    Gaussian [μ, log σ] = [0.7, log 1.5] (σ ≠ 1, so σ, σ² and log σ differ).

    ``seed`` (:func:`instance_seed`): a fresh θ of the same kind: a logit ±[0.3, 1]
    (p ≠ ½), logits 0.8·N(0, 1), or μ ∈ [0.2, 1.2] and σ ∈ [1.3, 1.8].
    """
    if seed is not None:
        rng = np.random.default_rng(instance_seed(4_004, seed))
        if family == "bernoulli":
            return torch.tensor(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0), dtype=DTYPE)
        if family == "categorical":
            return torch.tensor(0.8 * rng.normal(size=4), dtype=DTYPE)
        mu, sigma = rng.uniform(0.2, 1.2), rng.uniform(1.3, 1.8)
        return torch.tensor([mu, math.log(sigma)], dtype=DTYPE)
    if family == "bernoulli":
        return torch.tensor(0.4, dtype=DTYPE)
    if family == "categorical":
        return torch.tensor([0.5, -0.3, 1.2, 0.0], dtype=DTYPE)
    return torch.tensor([0.7, math.log(1.5)], dtype=DTYPE)


def estimator_atoms(family: str, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points x_i and weights w_i with E_{x~p_θ}[h(x)] = Σ_i w_i h(x_i).

    Exact for the discrete families (every atom); Gauss–Hermite with 16 nodes for the
    Gaussian: x_i = μ + √2 σ z_i, w_i = ω_i / √π (exact for polynomials of degree ≤ 31; error
    ~1e-14 for the default f = x² + sin x).
    """
    if family == "bernoulli":
        p = torch.sigmoid(theta)
        return torch.tensor([0.0, 1.0], dtype=DTYPE), torch.stack([1 - p, p]).detach()
    if family == "categorical":
        return torch.arange(theta.numel()), torch.softmax(theta, 0).detach()
    z, w = _hermgauss(GH_NODES)
    mu, sigma = float(theta[0]), math.exp(float(theta[1]))
    x = torch.tensor(mu + math.sqrt(2) * sigma * z, dtype=DTYPE)
    return x, torch.tensor(w / math.sqrt(math.pi), dtype=DTYPE)


#: Gauss–Hermite nodes per sample when every batch of two samples is enumerated.
GH_PAIR_NODES = 8


def estimator_pair_atoms(family: str, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Atoms and weights for batches of two: E[h(x₁, x₂)] = Σ_ij w_i w_j h(x_i, x_j).

    Every atom for the discrete families; 8 Gauss–Hermite nodes per sample for the Gaussian
    (exact for polynomials of degree ≤ 15 in each sample, ~1e-5 relative for sin; the judge
    then compares with a relative tolerance of 1e-3).
    """
    if family != "gaussian":
        return estimator_atoms(family, theta)
    z, w = _hermgauss(GH_PAIR_NODES)
    mu, sigma = float(theta[0]), math.exp(float(theta[1]))
    x = torch.tensor(mu + math.sqrt(2) * sigma * z, dtype=DTYPE)
    return x, torch.tensor(w / math.sqrt(math.pi), dtype=DTYPE)


@functools.lru_cache(maxsize=8)
def _hermgauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Hermite nodes and weights (∫ e^{−z²} h(z) dz ≈ Σ ω_i h(z_i)), cached."""
    z, w = np.polynomial.hermite.hermgauss(n)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def _resolve_f(family: str, f: Any) -> list[tuple[str, Callable[[Any], torch.Tensor]]]:
    """The test functions to check: the chosen one (default: the family's first), then another."""
    library = TEST_FUNCTIONS[family]
    names = list(library)
    if f is None:
        return [(n, library[n]) for n in names[:2]]
    if isinstance(f, str):
        if f not in library:
            raise ValueError(f"f={f!r}; named test functions for {family!r} are {names}")
        other = next(n for n in names if n != f)
        return [(f, library[f]), (other, library[other])]
    if callable(f):
        return [(getattr(f, "__name__", "your f"), f), (names[0], library[names[0]])]
    raise ValueError(f"f must be None, a name in {names}, or a function; got {type(f).__name__}")


def exact_gradient(
    family: str, theta: torch.Tensor, f: Callable[[Any], torch.Tensor]
) -> np.ndarray:
    """∇_θ E_{x~p_θ}[f(x)], exactly.

    Discrete: autograd of the enumeration Σ_x p_θ(x) f(x). Gaussian: autograd of the
    reparameterised Gauss–Hermite quadrature E f(μ + σ√2 z) (80 nodes), or central finite
    differences of that quadrature if f is not differentiable by torch.
    """
    th = theta.clone().requires_grad_(True)
    if family == "bernoulli":
        p = torch.sigmoid(th)
        value = (1 - p) * f(torch.tensor([0.0], dtype=DTYPE))[0] + p * f(
            torch.tensor([1.0], dtype=DTYPE)
        )[0]
        return torch.autograd.grad(value, th)[0].detach().numpy().reshape(theta.shape)
    if family == "categorical":
        vals = f(torch.arange(theta.numel())).detach().to(DTYPE)
        value = (torch.softmax(th, 0) * vals).sum()
        return torch.autograd.grad(value, th)[0].detach().numpy()
    z, w = _hermgauss(GH_NODES_REF)
    zt, wt = torch.tensor(z, dtype=DTYPE), torch.tensor(w / math.sqrt(math.pi), dtype=DTYPE)

    def expectation(t: torch.Tensor) -> torch.Tensor:
        return (wt * torch.as_tensor(f(t[0] + math.sqrt(2) * t[1].exp() * zt), dtype=DTYPE)).sum()

    value = expectation(th)
    if value.requires_grad:
        return torch.autograd.grad(value, th)[0].detach().numpy()
    out = np.empty(2)
    for k in range(2):
        e = torch.zeros(2, dtype=DTYPE)
        e[k] = 1e-5
        out[k] = (float(expectation(theta + e)) - float(expectation(theta - e))) / 2e-5
    return out


def estimator_candidates(
    family: str, theta: torch.Tensor, x: torch.Tensor, fx: torch.Tensor
) -> dict[str, np.ndarray]:
    """Per-sample values ĝ(x_i) of correct and common wrong single-sample estimators [n, d]."""
    if family == "bernoulli":
        p = torch.sigmoid(theta)
        score = (x - p)[:, None]
        cands = {
            "correct": fx[:, None] * score,
            "sign": -fx[:, None] * score,
            "missing_f": score,
            "grad_f": torch.zeros_like(score),
            "score_wrt_p": fx[:, None] * score / (p * (1 - p)),
            "missing_normaliser": fx[:, None] * x[:, None],
            "probability_gradient": fx[:, None] * score * torch.where(x > 0.5, p, 1 - p)[:, None],
        }
    elif family == "categorical":
        pi = torch.softmax(theta, 0)
        onehot = torch.nn.functional.one_hot(x.long(), theta.numel()).to(DTYPE)
        score = onehot - pi
        cands = {
            "correct": fx[:, None] * score,
            "sign": -fx[:, None] * score,
            "missing_f": score,
            "grad_f": torch.zeros_like(score),
            "score_wrt_p": fx[:, None] * onehot / pi,
            "missing_normaliser": fx[:, None] * onehot,
            "probability_gradient": fx[:, None] * score * pi[x.long()][:, None],
        }
    else:
        mu, sigma = theta[0], theta[1].exp()
        r = x - mu
        score = torch.stack([r / sigma**2, r**2 / sigma**2 - 1], dim=1)
        cands = {
            "correct": fx[:, None] * score,
            "sign": -fx[:, None] * score,
            "missing_f": score,
            "grad_f": torch.zeros_like(score),
            "score_wrt_sigma": fx[:, None]
            * torch.stack([r / sigma**2, r**2 / sigma**3 - 1 / sigma], dim=1),
            "sigma_not_squared": fx[:, None] * torch.stack([r / sigma, r**2 / sigma**2 - 1], dim=1),
            "missing_minus_one": fx[:, None] * torch.stack([r / sigma**2, r**2 / sigma**2], dim=1),
            "probability_gradient": fx[:, None]
            * score
            * torch.exp(torch.distributions.Normal(mu, sigma).log_prob(x))[:, None],
        }
    return {k: v.detach().numpy() for k, v in cands.items()}


#: Each wrong estimator recognised (by :func:`estimator_candidates`, or by the probe on several
#: samples for ``sum_not_mean``), once: its code, the formula it computes and its message.
CANDIDATE_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "sign",
        "−mean f(x_i) ∇ log p_θ(x_i)",
        (
            "Your estimate has the wrong sign: ∇_θ E[f] ≈ mean of f(x_i) ∇_θ log p_θ(x_i), with a "
            "plus."
        ),
    ),
    Mistake(
        "missing_f",
        "mean ∇ log p_θ(x_i)",
        (
            "f(x) is missing: your estimate does not change when f changes. Multiply each score by "
            "f(x_i): ĝ = mean of f(x_i) ∇_θ log p_θ(x_i)."
        ),
    ),
    Mistake(
        "grad_f",
        "0 (∇_θ f(x) with x fixed)",
        (
            "Your estimate is zero for every sample: it is the gradient of f(x), not of E[f]. Once "
            "x is sampled f(x) does not depend on θ; the dependence is in p_θ, so use ĝ = mean of "
            "f(x_i) ∇_θ log p_θ(x_i)."
        ),
    ),
    Mistake(
        "score_wrt_p",
        "mean f(x_i) ∂ log p/∂p",
        (
            "You differentiate log p with respect to the probabilities, not θ (the logits). "
            "Differentiate through the sigmoid/softmax: for logits ∇_θ log p_θ(x) = onehot(x) − "
            "p_θ."
        ),
    ),
    Mistake(
        "missing_normaliser",
        "mean f(x_i) onehot(x_i)",
        (
            "The −p_θ term of the score is missing: for logits ∇_θ log p_θ(x) = onehot(x) − p_θ "
            "(Bernoulli: x − σ(θ))."
        ),
    ),
    Mistake(
        "probability_gradient",
        "mean f(x_i) ∇_θ p_θ(x_i)",
        (
            "You use ∇_θ p_θ(x) where ∇_θ log p_θ(x) = ∇_θ p_θ(x) / p_θ(x) belongs (log-derivative "
            "trick)."
        ),
    ),
    Mistake(
        "score_wrt_sigma",
        "∂/∂σ where θ holds log σ",
        (
            "Your second entry differentiates with respect to σ, but θ holds log σ: ∂ log p/∂ log "
            "σ = (x−μ)²/σ² − 1."
        ),
    ),
    Mistake(
        "sigma_not_squared",
        "f(x) (x−μ)/σ for ∂/∂μ",
        "You divide by σ where σ² belongs: ∂ log p/∂μ = (x−μ)/σ².",
    ),
    Mistake(
        "missing_minus_one",
        "f(x) (x−μ)²/σ² for ∂/∂ log σ",
        "The −1 from the −log σ term is missing: ∂ log p/∂ log σ = (x−μ)²/σ² − 1.",
    ),
    Mistake(
        "sum_not_mean",
        "Σ_i f(x_i) ∇ log p_θ(x_i)",
        (
            "Your estimate grows with the number of samples: you sum where you should average. "
            "Divide by N (use .mean())."
        ),
    ),
)
#: The other diagnoses: templates filled in by the rules.
OTHER_MISTAKES: tuple[Mistake, ...] = (
    Mistake("scaled", "α ∇_θ E[f]", "{hint}"),
    Mistake(
        "biased",
        "E[ĝ] ≠ ∇_θ E[f], unrecognised",
        "Your estimator is biased. The score-function estimator is ĝ = mean of f(x_i) ∇_θ log "
        "p_θ(x_i); check it term by term.",
    ),
    Mistake(
        "inconsistent",
        "right on single samples, not on batches",
        "Your estimator is right on single samples, but its mean over {batches} is {z:.1f} "
        "standard errors from the exact gradient {truth}: it treats batches differently from "
        "single samples. {emp}",
    ),
    Mistake(
        "baseline_includes_sample",
        "b = mean_j f(x_j) including x_i: E[ĝ] = (1 − 1/N) ∇",
        "{first} That is (1 − 1/N) ∇ with N = 2: your baseline includes the sample it is "
        "subtracted from (the batch mean of f). Use a leave-one-out baseline b_i = mean of "
        "f(x_j) over j ≠ i.",
    ),
)
#: code → message of every diagnosis of this check.
MESSAGES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES + OTHER_MISTAKES}
#: code → message of the recognised estimators (kept for callers).
ESTIMATOR_DIAGNOSES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES}
#: The candidate codes in order of priority.
CANDIDATE_ORDER = [
    "grad_f",
    "missing_f",
    "sign",
    "score_wrt_p",
    "missing_normaliser",
    "probability_gradient",
    "score_wrt_sigma",
    "sigma_not_squared",
    "missing_minus_one",
]
SUMMED = (
    "On {n} samples your estimate is {probe}, the sum of its values on each sample alone "
    "({total}). "
)
EMPIRICAL = "Over {batches}: mean {mean} ± {se} (standard error)."
CORRECT = (
    "The exact expectation of your estimator equals ∇_θ E[f] for f = {fs} (e.g. {expect} vs "
    "{truth}). {emp}"
)
FIRST_BAD = (
    "For f = {f}, the exact expectation of your estimator is {expect} but ∇_θ E[f] = {truth}."
)
OTHER_F = (
    "It is right for the default f but not for another, so it must not assume a particular "
    "f. {advice}"
)
SINGLE_NOT_FINITE = (
    "Your estimator returned NaN or inf for the single sample x = {x:.6g}. Look for log of 0 "
    "or division by 0."
)
#: Messages of the batch path (an estimator that is not a mean of per-sample terms).
PAIRS_MISSING = (
    "pgcheck.check_score_estimator: the measurement has no batches of two (measured with "
    "another pgcheck version?)."
)
PAIRS_NOT_FINITE = (
    "Your estimator returned NaN or inf for a batch of two samples. Look for division by N − 1 "
    "or by a standard deviation that can be 0."
)
PAIRS_NOTE = (
    "your estimator is not a mean of per-sample terms (it uses the whole batch), so its exact "
    "expectation was taken over every batch of two samples."
)
PAIRS_CORRECT = (
    "Over every batch of two samples, the exact expectation of your estimator equals ∇_θ E[f] "
    "(e.g. {expect} vs {truth}). {emp}"
)
PAIRS_LARGER_BIASED = (
    "Your estimator is unbiased for batches of two, but over larger batches its mean is "
    "{z:.1f} standard errors from the exact gradient {truth}. {emp}"
)
PAIRS_FIRST_BAD = (
    "For f = {f} and batches of two samples, the exact expectation of your estimator is "
    "{expect} but ∇_θ E[f] = {truth}."
)
PAIRS_BIASED = (
    "It is biased: a baseline must not depend on the sample it multiplies; use ĝ = mean of "
    "(f(x_i) − b_i) ∇_θ log p_θ(x_i) with b_i built from the other samples."
)


class EstimatorMeasurement(Measurement, total=False):
    """What :func:`measure_score_estimator` returns (None where a value is not finite):
    ``per_atom[f][i]`` = ĝ({x_i}); ``probe`` = ĝ on the atoms :func:`_probe_indices`;
    ``pairs[f][i·n + j]`` = ĝ({x_i, x_j}) (only when ĝ is not a per-sample mean, else None);
    ``batches[b]`` = ĝ on fixed-seed batch b."""

    check: str
    family: str
    f_names: list[str]
    per_atom: list[list[list[float | None]]]
    probe: list[float | None]
    pairs: list[list[list[float | None]]] | None
    batches: list[list[float | None]]
    batch_size: int


def _probe_indices(family: str) -> list[int]:
    return {"bernoulli": [0, 1, 1], "categorical": [0, 2, 3, 2]}.get(family, [3, 8, 12])


def measure_score_estimator(
    fn: Callable[..., Any],
    *,
    family: str = "gaussian",
    f: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    batch_size: int = 16,
    n_batches: int = 32,
    z_max: float = 4.0,
    seed: int | None = None,
    **unknown: Any,
) -> EstimatorMeasurement:
    """Call the learner's estimator; plain numbers only, never raises.

    Records ĝ({x_i}) for every atom / Gauss–Hermite node x_i (one sample per call) and every
    test function; a probe ĝ({x_a, x_b, x_c}) on several atoms at once (is ĝ a per-sample
    mean?); and ĝ on ``n_batches`` batches of ``batch_size`` samples drawn with a fixed
    torch.Generator (for the empirical mean and standard error).
    """
    early = measure_precheck(
        "check_score_estimator",
        unknown,
        ESTIMATOR_OPTIONS,
        kind=("family", family, ESTIMATOR_FAMILIES),
        seed=seed,
    )
    if early is not None:
        return early
    try:
        fs = _resolve_f(family, f)
    except ValueError as exc:
        return usage_error("check_score_estimator", str(exc))
    budget = Budget(timeout)
    name = "your estimator"
    theta = estimator_theta(family, seed)
    shape = tuple(theta.shape)
    what = "the gradient estimate (shaped like theta)"
    atoms, _ = estimator_atoms(family, theta)

    def run(
        samples: torch.Tensor,
        func: Callable[[Any], torch.Tensor],
        label: str,
        allow_nonfinite: bool = False,
    ) -> tuple[Any, Any]:
        value, err = learner_call(
            fn, {"samples": samples, "theta": theta.clone(), "f": func}, budget, name
        )
        if err:
            return None, err
        arr, msg = read_output(value, shape, name, what, allow_nonfinite=allow_nonfinite)
        if msg:
            return None, failed(ErrorKind.OUTPUT, f"{msg} (input: {label})")
        return finite_or_none(arr), None

    with single_thread():
        per_atom: list[list[list[Any]]] = []
        for fname, func in fs:
            rows = []
            for i in range(atoms.shape[0]):
                # one sample alone: a leave-one-out baseline may give NaN here (0/0), allowed
                vals, err = run(
                    atoms[i : i + 1].clone(),
                    func,
                    f"one sample x = {float(atoms[i]):.4g}, f = {fname}",
                    True,
                )
                if err:
                    return err
                rows.append(vals)
            per_atom.append(rows)
        idx = _probe_indices(family)
        probe, err = run(atoms[idx].clone(), fs[0][1], f"{len(idx)} samples, f = {fs[0][0]}")
        if err:
            return err
        singles = [per_atom[0][i] for i in idx]
        per_sample = all(None not in v for v in singles) and close(
            np.array(probe), np.mean(np.array(singles, dtype=np.float64), axis=0), 1e-6, 1e-9
        )
        pairs: list[list[list[Any]]] | None = None
        if not per_sample:
            # the estimator uses the batch as a whole: enumerate every batch of two samples
            pair_atoms, _ = estimator_pair_atoms(family, theta)
            pairs = []
            for fname, func in fs:
                rows = []
                for i in range(pair_atoms.shape[0]):
                    for j in range(pair_atoms.shape[0]):
                        vals, err = run(
                            pair_atoms[[i, j]].clone(), func, f"two samples, f = {fname}"
                        )
                        if err:
                            return err
                        rows.append(vals)
                pairs.append(rows)
        gen = torch.Generator().manual_seed(
            _batch_seed(family, theta, fs[0][1], int(batch_size), int(n_batches), z_max, seed)
        )
        batches: list[list[Any]] = []
        for b in range(int(n_batches)):
            samples = _sample(family, theta, int(batch_size), gen)
            vals, err = run(samples, fs[0][1], f"batch {b + 1} of {batch_size} samples")
            if err:
                return err
            batches.append(vals)
    return {
        "check": "score_estimator",
        "family": family,
        "f_names": [n for n, _ in fs],
        "per_atom": per_atom,
        "probe": probe,
        "pairs": pairs,
        "batches": batches,
        "batch_size": int(batch_size),
        "output": budget.output,
    }


def _batch_seed(
    family: str,
    theta: torch.Tensor,
    f: Callable[[Any], torch.Tensor],
    batch_size: int,
    n_batches: int,
    z_max: float,
    seed: int | None,
) -> int:
    """The seed of the batches' generator: fixed for ``seed=None``; else the first fresh one
    (:func:`instance_seed`) whose batches put the correct estimator's mean within z_max − 1
    standard errors of ∇_θ E[f] (|mean − ∇| ≤ (z_max − 1)·std/√n_batches per component), so
    that a correct estimator never fails the empirical check by bad luck of the draw."""
    if seed is None:
        return 8_675_309
    fresh = instance_seed(8_675_309, seed)
    try:
        truth = exact_gradient(family, theta, f).reshape(-1)
        for retry in range(100):
            fresh = instance_seed(8_675_309 + retry, seed)
            gen = torch.Generator().manual_seed(fresh)
            means = []
            for _ in range(n_batches):
                x = _sample(family, theta, batch_size, gen)
                fx = torch.as_tensor(f(x), dtype=DTYPE).detach()
                g = torch.as_tensor(estimator_candidates(family, theta, x, fx)["correct"])
                means.append(g.mean(dim=0).reshape(-1).numpy())
            batches = np.array(means)
            if n_batches < 2:
                break
            se = batches.std(axis=0, ddof=1) / math.sqrt(n_batches)
            if np.all(np.abs(batches.mean(axis=0) - truth) <= (z_max - 1.0) * se):
                break
    except Exception:  # noqa: BLE001 - a learner's own f that fails here fails in measure too
        pass
    return fresh


def _sample(family: str, theta: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n samples of p_θ from the generator (float {0,1} / long / float)."""
    if family == "bernoulli":
        return torch.bernoulli(torch.sigmoid(theta).expand(n), generator=gen)
    if family == "categorical":
        return torch.multinomial(torch.softmax(theta, 0), n, replacement=True, generator=gen)
    return theta[0] + theta[1].exp() * torch.randn(n, generator=gen, dtype=DTYPE)


def _nan_array(values: Any) -> np.ndarray:
    """A float64 array from nested lists, None → NaN."""

    def conv(v: Any) -> Any:
        if isinstance(v, list):
            return [conv(u) for u in v]
        return np.nan if v is None else float(v)

    return np.array(conv(values), dtype=np.float64)


@dataclass
class Evidence:
    """What the rules of :func:`judge_score_estimator` decide on.

    Per test function: ``truths`` (∇_θ E[f]), ``expectations`` (E[ĝ] = Σ_i w_i ĝ({x_i})),
    ``exact_ok``; ``cand_match`` / ``cand_expect``: ĝ equals a candidate estimator on every atom
    / in expectation; ``per_sample``: the probe on several samples is the mean of their single
    values (``summed``: their sum); ``consistent``: |batch mean − ∇| ≤ z_max · standard error.
    For an estimator that is not a per-sample mean: ``expect2`` (E[ĝ] over every batch of two,
    None when not measured), ``pairs_finite``, ``pair_ok``, ``pair_tol``.
    """

    family: str
    fs: list[tuple[str, Callable[[Any], torch.Tensor]]]
    atoms: torch.Tensor
    per_atom: list[np.ndarray]
    rows: list[Row]
    notes: list[str]
    truths: list[np.ndarray]
    expectations: list[np.ndarray]
    exact_ok: list[bool]
    cand_match: dict[str, bool]
    cand_expect: dict[str, bool]
    probe: np.ndarray
    singles: np.ndarray
    per_sample: bool
    summed: bool
    f_independent: bool
    consistent: bool
    z_worst: float
    batch_desc: str
    emp_text: str
    expect2: list[np.ndarray] | None = None
    pairs_finite: bool = True
    pair_ok: list[bool] = field(default_factory=list)
    pair_tol: float = 0.0

    def report(self, passed: bool, code: str | None, message: str) -> Report:
        """A report with this check's table and notes."""
        return Report(
            passed=passed,
            verdict="correct" if passed else "wrong",
            diagnosis=code,
            check=NAME,
            rows=self.rows,
            notes=self.notes,
            message=message,
        )

    def wrong_exact(self, code: str, advice: str) -> Report:
        """A per-sample estimator whose exact expectation is wrong for some f."""
        k = self.exact_ok.index(False)
        first = FIRST_BAD.format(
            f=self.fs[k][0], expect=fmt_vec(self.expectations[k]), truth=fmt_vec(self.truths[k])
        )
        if self.exact_ok[0] and not self.exact_ok[k]:
            advice = OTHER_F.format(advice=advice)
        return self.report(False, code, f"{first} {advice}")

    def pairs_first_bad(self) -> str:
        """The first f whose exact expectation over batches of two is wrong, in words."""
        assert self.expect2 is not None
        k = self.pair_ok.index(False)
        return PAIRS_FIRST_BAD.format(
            f=self.fs[k][0], expect=fmt_vec(self.expect2[k]), truth=fmt_vec(self.truths[k])
        )


def gather_evidence(
    measurement: EstimatorMeasurement,
    family: str,
    f: Any,
    rtol: float,
    atol: float,
    z_max: float,
    seed: int | None = None,
) -> Evidence:
    """The exact expectation Σ_i w_i ĝ({x_i}) per test function against the exact gradient,
    the candidate estimators, the probe, the empirical mean ± standard error over the fixed
    batches, and (not a per-sample mean) the exact expectation over every batch of two."""
    fs = _resolve_f(family, f)
    theta = estimator_theta(family, seed)
    atoms, weights = estimator_atoms(family, theta)
    w = weights.numpy()
    notes = output_notes(measurement)
    rows: list[Row] = []
    per_atom = [_nan_array(v) for v in measurement["per_atom"]]
    batches = _nan_array(measurement["batches"])
    n_b = batches.shape[0]
    emp_mean = batches.mean(axis=0)
    emp_se = (
        batches.std(axis=0, ddof=1) / math.sqrt(n_b) if n_b > 1 else np.full_like(emp_mean, np.inf)
    )
    exact_ok: list[bool] = []
    expectations, truths = [], []
    cand_match: dict[str, bool] = {}
    cand_expect: dict[str, bool] = {}
    for (fname, func), vals in zip(fs, per_atom, strict=True):
        truth = exact_gradient(family, theta, func).reshape(-1)
        expect = w @ vals
        truths.append(truth)
        expectations.append(expect)
        exact_ok.append(close(expect, truth, rtol, atol))
        fx = torch.as_tensor(func(atoms), dtype=DTYPE).detach()
        for key, cand in estimator_candidates(family, theta, atoms, fx).items():
            cand_match[key] = cand_match.get(key, True) and close(vals, cand, 1e-6, 1e-9)
            cand_expect[key] = cand_expect.get(key, True) and close(expect, w @ cand, 1e-6, 1e-9)
        cols: dict[str, Any] = {
            "exact ∇E[f]": truth.tolist(),
            "E[your estimate]": expect.tolist(),
            "max |diff|": float(np.max(np.abs(expect - truth))),
        }
        if len(rows) == 0:
            cols["batch mean"] = emp_mean.tolist()
            cols["standard error"] = emp_se.tolist()
        rows.append(Row(f"f = {fname}", cols))
    batch_desc = f"{n_b} batches of {measurement.get('batch_size')} samples"
    probe = _nan_array(measurement["probe"])
    singles = per_atom[0][_probe_indices(family)]
    per_sample = bool(np.all(np.isfinite(singles))) and close(
        probe, singles.mean(axis=0), 1e-6, 1e-9
    )
    z = np.abs(emp_mean - truths[0]) / np.maximum(emp_se, 1e-300)
    ev = Evidence(
        family=family,
        fs=fs,
        atoms=atoms,
        per_atom=per_atom,
        rows=rows,
        notes=notes,
        truths=truths,
        expectations=expectations,
        exact_ok=exact_ok,
        cand_match=cand_match,
        cand_expect=cand_expect,
        probe=probe,
        singles=singles,
        per_sample=per_sample,
        summed=close(probe, singles.sum(axis=0), 1e-6, 1e-9) and not per_sample,
        f_independent=len(per_atom) > 1 and close(per_atom[0], per_atom[1], 1e-9, 1e-12),
        consistent=bool(np.all(z <= z_max)),
        z_worst=float(np.max(z)),
        batch_desc=batch_desc,
        emp_text=EMPIRICAL.format(
            batches=batch_desc, mean=fmt_vec(emp_mean), se=fmt_vec(emp_se, 3)
        ),
    )
    if not per_sample and not ev.summed and measurement.get("pairs") is not None:
        _pair_evidence(ev, measurement, theta, rtol, atol)
    return ev


def _pair_evidence(
    ev: Evidence, measurement: EstimatorMeasurement, theta: torch.Tensor, rtol: float, atol: float
) -> None:
    """E[ĝ(x₁, x₂)] = Σ_ij w_i w_j ĝ(x_i, x_j) per test function (added to the table), with a
    relative tolerance of 1e-3 for the Gaussian (8 Gauss–Hermite nodes per sample)."""
    _, w2 = estimator_pair_atoms(ev.family, theta)
    ww = np.outer(w2.numpy(), w2.numpy()).reshape(-1)
    pair_vals = [_nan_array(v) for v in measurement["pairs"] or []]
    if not all(np.all(np.isfinite(v)) for v in pair_vals):
        ev.pairs_finite = False
        return
    ev.expect2 = [ww @ v for v in pair_vals]
    for row, e2 in zip(ev.rows, ev.expect2, strict=True):
        row.columns["E[yours], batches of 2"] = e2.tolist()
    ev.notes = ev.notes + [PAIRS_NOTE]
    ev.pair_tol = max(rtol, 1e-3) if ev.family == "gaussian" else rtol
    ev.pair_ok = [
        close(e, t, ev.pair_tol, atol) for e, t in zip(ev.expect2, ev.truths, strict=True)
    ]


def sum_not_mean(ev: Evidence) -> Report | None:
    """ĝ on several samples is the sum of its single-sample values, not their mean."""
    if not ev.summed:
        return None
    message = SUMMED.format(
        n=len(ev.singles), probe=fmt_vec(ev.probe), total=fmt_vec(ev.singles.sum(0))
    )
    return ev.report(False, "sum_not_mean", message + MESSAGES["sum_not_mean"])


def batch_without_pairs(ev: Evidence) -> Report | None:
    """Not a per-sample mean, but the measurement has no batches of two."""
    if ev.per_sample or ev.expect2 is not None or not ev.pairs_finite:
        return None
    return Report.error(PAIRS_MISSING, check=NAME, diagnosis=ErrorKind.USAGE)


def batch_not_finite(ev: Evidence) -> Report | None:
    """Not a per-sample mean, and NaN or inf on some batch of two."""
    if ev.per_sample or ev.pairs_finite:
        return None
    return Report.error(PAIRS_NOT_FINITE, check=NAME, diagnosis="output")


def batch_unbiased(ev: Evidence) -> Report | None:
    """Not a per-sample mean; unbiased over batches of two and consistent on larger batches."""
    if ev.per_sample or not (all(ev.pair_ok) and ev.consistent):
        return None
    assert ev.expect2 is not None
    message = PAIRS_CORRECT.format(
        expect=fmt_vec(ev.expect2[0]), truth=fmt_vec(ev.truths[0]), emp=ev.emp_text
    )
    return ev.report(True, None, message)


def batch_biased_when_larger(ev: Evidence) -> Report | None:
    """Not a per-sample mean; unbiased over batches of two, not on the larger batches."""
    if ev.per_sample or not all(ev.pair_ok):
        return None
    message = PAIRS_LARGER_BIASED.format(z=ev.z_worst, truth=fmt_vec(ev.truths[0]), emp=ev.emp_text)
    return ev.report(False, "biased", message)


def baseline_includes_sample(ev: Evidence) -> Report | None:
    """E[ĝ] = ½ ∇ over batches of two: a batch-mean baseline that includes the sample."""
    if ev.per_sample or ev.expect2 is None:
        return None
    if not all(
        close(e, 0.5 * t, ev.pair_tol, 1e-9) for e, t in zip(ev.expect2, ev.truths, strict=True)
    ):
        return None
    code = "baseline_includes_sample"
    return ev.report(False, code, MESSAGES[code].format(first=ev.pairs_first_bad()))


def batch_biased(ev: Evidence) -> Report | None:
    """Not a per-sample mean and biased over batches of two (α ∇ or unrecognised)."""
    if ev.per_sample or ev.expect2 is None:
        return None
    alpha, resid = fit_scale(np.concatenate(ev.expect2), np.concatenate(ev.truths))
    advice = scale_hint(alpha) if resid < 1e-6 else PAIRS_BIASED
    code = "scaled" if resid < 1e-6 else "biased"
    return ev.report(False, code, f"{ev.pairs_first_bad()} {advice}")


def single_sample_not_finite(ev: Evidence) -> Report | None:
    """NaN or inf on some single sample."""
    bad = [
        i
        for i in range(ev.per_atom[0].shape[0])
        if not all(np.all(np.isfinite(v[i])) for v in ev.per_atom)
    ]
    if not bad:
        return None
    message = SINGLE_NOT_FINITE.format(x=float(ev.atoms[bad[0]]))
    return Report.error(message, check=NAME, diagnosis="output")


def inconsistent(ev: Evidence) -> Report | None:
    """Right on single samples, but the batch mean is more than z_max standard errors off."""
    if not (all(ev.exact_ok) and not ev.consistent):
        return None
    message = MESSAGES["inconsistent"].format(
        batches=ev.batch_desc, z=ev.z_worst, truth=fmt_vec(ev.truths[0]), emp=ev.emp_text
    )
    return ev.report(False, "inconsistent", message)


def correct(ev: Evidence) -> Report | None:
    """E[ĝ] = ∇_θ E[f] exactly for every test function (and consistent on batches)."""
    if not all(ev.exact_ok):
        return None
    message = CORRECT.format(
        fs=", ".join(n for n, _ in ev.fs),
        expect=fmt_vec(ev.expectations[0]),
        truth=fmt_vec(ev.truths[0]),
        emp=ev.emp_text,
    )
    return ev.report(True, None, message)


def known_mistake(ev: Evidence) -> Report | None:
    """ĝ equals a candidate estimator on every atom, ignores f, or equals one in expectation."""
    code = next((c for c in CANDIDATE_ORDER if ev.cand_match.get(c)), None)
    if code is None and ev.f_independent:
        code = "missing_f"
    if code is None:
        code = next((c for c in CANDIDATE_ORDER if ev.cand_expect.get(c)), None)
    return None if code is None else ev.wrong_exact(code, MESSAGES[code])


def scaled(ev: Evidence) -> Report | None:
    """E[ĝ] = α ∇_θ E[f] for one α."""
    alpha, resid = fit_scale(np.concatenate(ev.expectations), np.concatenate(ev.truths))
    if resid >= 1e-6:
        return None
    return ev.wrong_exact("scaled", MESSAGES["scaled"].format(hint=scale_hint(alpha)))


def biased(ev: Evidence) -> Report:
    """Biased in a way none of the rules above recognises."""
    return ev.wrong_exact("biased", MESSAGES["biased"])


#: The rules in the order they are tried; the last always answers. The ``batch_`` rules (and
#: ``baseline_includes_sample``) are about an estimator that is not a per-sample mean.
RULES: tuple[Rule[Evidence], ...] = (
    sum_not_mean,
    batch_without_pairs,
    batch_not_finite,
    batch_unbiased,
    batch_biased_when_larger,
    baseline_includes_sample,
    batch_biased,
    single_sample_not_finite,
    inconsistent,
    correct,
    known_mistake,
    scaled,
    biased,
)


@finite_rows
def judge_score_estimator(
    measurement: EstimatorMeasurement,
    *,
    family: str = "gaussian",
    f: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    batch_size: int = 16,
    n_batches: int = 32,
    z_max: float = 4.0,
    seed: int | None = None,
    **unknown: Any,
) -> Report:
    """Decide whether the estimator is unbiased for ∇_θ E_{x~p_θ}[f(x)].

    Exact expectation of a per-sample estimator: E[ĝ] = Σ_i w_i ĝ({x_i}) over atoms or
    Gauss–Hermite nodes, compared with the exact gradient (|diff| ≤ atol + rtol·|∇|) for every
    test function. An estimator that is not a per-sample mean (the probe on several samples
    disagrees with the mean of single-sample values) is judged exactly over every batch of two,
    E[ĝ] = Σ_ij w_i w_j ĝ(x_i, x_j), and by the empirical mean over the fixed batches:
    |mean − ∇| ≤ z_max · standard error in every component (a baseline that includes the
    sample itself gives E[ĝ] = (1 − 1/N) ∇ = ½ ∇ at N = 2). Prechecks, then the
    :class:`Evidence`, then the first of :data:`RULES` that answers.
    """
    early = judge_precheck(
        measurement,
        NAME,
        "check_score_estimator",
        unknown,
        ESTIMATOR_OPTIONS,
        kind=("family", family, ESTIMATOR_FAMILIES),
        seed=seed,
    )
    if early is not None:
        return early
    return decide(RULES, gather_evidence(measurement, family, f, rtol, atol, z_max, seed))


CHECK = Check(NAME, measure_score_estimator, judge_score_estimator, fresh_instances=True)


def check_score_estimator(
    fn: Callable[..., Any],
    family: str = "gaussian",
    *,
    f: Any = None,
    timeout: float = 5.0,
    **options: Any,
) -> Report:
    """Check an estimator of ∇_θ E_{x~p_θ}[f(x)] computed from samples.

    ``fn(samples [N], theta, f) -> estimate shaped like theta``. Families: ``"bernoulli"``
    (θ a logit), ``"categorical"`` (θ logits [K]), ``"gaussian"`` (θ = [μ, log σ]). The exact
    expectation of the estimator is compared with the exact gradient; an empirical mean and
    standard error over fixed-seed batches is reported too.
    """
    return run_check(CHECK, fn, family=family, f=f, timeout=timeout, **options)
