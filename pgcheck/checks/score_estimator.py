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
    fit_scale,
    fmt_vec,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    read_output,
    run_check,
    scale_hint,
    usage_error,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

ESTIMATOR_FAMILIES = ("bernoulli", "categorical", "gaussian")
ESTIMATOR_OPTIONS = ["family", "f", "timeout", "rtol", "atol", "batch_size", "n_batches", "z_max"]
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


def estimator_theta(family: str) -> torch.Tensor:
    """θ of each family: Bernoulli logit 0.4 (0-d); categorical logits [K=4];
    Gaussian [μ, log σ] = [0.7, log 1.5] (σ ≠ 1, so σ, σ² and log σ differ)."""
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


ESTIMATOR_DIAGNOSES: dict[str, str] = {
    "sign": "Your estimate has the wrong sign: ∇_θ E[f] ≈ mean of f(x_i) ∇_θ log p_θ(x_i), "
    "with a plus.",
    "missing_f": "f(x) is missing: your estimate does not change when f changes. Multiply each "
    "score by f(x_i): ĝ = mean of f(x_i) ∇_θ log p_θ(x_i).",
    "grad_f": "Your estimate is zero for every sample: it is the gradient of f(x), not of E[f]. "
    "Once x is sampled f(x) does not depend on θ; the dependence is in p_θ, so use "
    "ĝ = mean of f(x_i) ∇_θ log p_θ(x_i).",
    "score_wrt_p": "You differentiate log p with respect to the probabilities, not θ (the "
    "logits). Differentiate through the sigmoid/softmax: for logits "
    "∇_θ log p_θ(x) = onehot(x) − p_θ.",
    "missing_normaliser": "The −p_θ term of the score is missing: for logits "
    "∇_θ log p_θ(x) = onehot(x) − p_θ (Bernoulli: x − σ(θ)).",
    "probability_gradient": "You use ∇_θ p_θ(x) where ∇_θ log p_θ(x) = ∇_θ p_θ(x) / p_θ(x) "
    "belongs (log-derivative trick).",
    "score_wrt_sigma": "Your second entry differentiates with respect to σ, but θ holds log σ: "
    "∂ log p/∂ log σ = (x−μ)²/σ² − 1.",
    "sigma_not_squared": "You divide by σ where σ² belongs: ∂ log p/∂μ = (x−μ)/σ².",
    "missing_minus_one": "The −1 from the −log σ term is missing: ∂ log p/∂ log σ = (x−μ)²/σ² − 1.",
    "sum_not_mean": "Your estimate grows with the number of samples: you sum where you should "
    "average. Divide by N (use .mean()).",
}


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
    **unknown: Any,
) -> dict[str, Any]:
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
    )
    if early is not None:
        return early
    try:
        fs = _resolve_f(family, f)
    except ValueError as exc:
        return usage_error("check_score_estimator", str(exc))
    budget = Budget(timeout)
    name = "your estimator"
    theta = estimator_theta(family)
    shape = tuple(theta.shape)
    what = "the gradient estimate (shaped like theta)"
    atoms, _ = estimator_atoms(family, theta)

    def run(
        samples: torch.Tensor,
        func: Callable[[Any], torch.Tensor],
        label: str,
        allow_nonfinite: bool = False,
    ) -> tuple[list[Any] | None, dict[str, Any] | None]:
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
        gen = torch.Generator().manual_seed(8_675_309)
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


def _sample(family: str, theta: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n samples of p_θ from the generator (float {0,1} / long / float)."""
    if family == "bernoulli":
        return torch.bernoulli(torch.sigmoid(theta).expand(n), generator=gen)
    if family == "categorical":
        return torch.multinomial(torch.softmax(theta, 0), n, replacement=True, generator=gen)
    return theta[0] + theta[1].exp() * torch.randn(n, generator=gen, dtype=DTYPE)


@finite_rows
def judge_score_estimator(
    measurement: dict[str, Any],
    *,
    family: str = "gaussian",
    f: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    batch_size: int = 16,
    n_batches: int = 32,
    z_max: float = 4.0,
    **unknown: Any,
) -> Report:
    """Decide whether the estimator is unbiased for ∇_θ E_{x~p_θ}[f(x)].

    Exact expectation of a per-sample estimator: E[ĝ] = Σ_i w_i ĝ({x_i}) over atoms or
    Gauss–Hermite nodes, compared with the exact gradient (|diff| ≤ atol + rtol·|∇|) for every
    test function. An estimator that is not a per-sample mean (the probe on several samples
    disagrees with the mean of single-sample values) is judged by the empirical mean over
    the fixed batches: |mean − ∇| ≤ z_max · standard error in every component.
    """
    check = "score_estimator"
    early = judge_precheck(
        measurement,
        check,
        "check_score_estimator",
        unknown,
        ESTIMATOR_OPTIONS,
        kind=("family", family, ESTIMATOR_FAMILIES),
    )
    if early is not None:
        return early
    fs = _resolve_f(family, f)
    theta = estimator_theta(family)
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
        ok = close(expect, truth, rtol, atol)
        exact_ok.append(ok)
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
    # ---- is the estimator a mean of per-sample terms?
    idx = _probe_indices(family)
    probe = _nan_array(measurement["probe"])
    singles = per_atom[0][idx]
    per_sample = bool(np.all(np.isfinite(singles))) and close(
        probe, singles.mean(axis=0), 1e-6, 1e-9
    )
    summed = close(probe, singles.sum(axis=0), 1e-6, 1e-9) and not per_sample
    f_independent = len(per_atom) > 1 and close(per_atom[0], per_atom[1], 1e-9, 1e-12)
    emp_text = (
        f"Over {batch_desc}: mean {fmt_vec(emp_mean)} ± {fmt_vec(emp_se, 3)} (standard error)."
    )
    z = np.abs(emp_mean - truths[0]) / np.maximum(emp_se, 1e-300)
    consistent = bool(np.all(z <= z_max))
    if summed:
        return Report(
            passed=False,
            verdict="wrong",
            diagnosis="sum_not_mean",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"On {len(idx)} samples your estimate is {fmt_vec(probe)}, the sum "
                f"of its values on each sample alone ({fmt_vec(singles.sum(0))}). "
                + ESTIMATOR_DIAGNOSES["sum_not_mean"]
            ),
        )
    if not per_sample:
        return _judge_batch_estimator(
            measurement,
            family,
            fs,
            theta,
            truths,
            rows,
            notes,
            emp_text,
            consistent,
            float(np.max(z)),
            z_max,
            rtol,
            atol,
        )
    bad_atoms = [
        i
        for i in range(per_atom[0].shape[0])
        if not all(np.all(np.isfinite(v[i])) for v in per_atom)
    ]
    if bad_atoms:
        return Report.error(
            f"Your estimator returned NaN or inf for the single sample x = "
            f"{float(atoms[bad_atoms[0]]):.6g}. Look for log of 0 or division "
            "by 0.",
            check=check,
            diagnosis="output",
        )
    if all(exact_ok) and not consistent:
        return Report(
            passed=False,
            verdict="wrong",
            diagnosis="inconsistent",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"Your estimator is right on single samples, but its mean over "
                f"{batch_desc} is {float(np.max(z)):.1f} standard errors from "
                f"the exact gradient {fmt_vec(truths[0])}: it treats batches "
                "differently from single samples. " + emp_text
            ),
        )
    if all(exact_ok):
        return Report(
            passed=True,
            verdict="correct",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"The exact expectation of your estimator equals ∇_θ E[f] for "
                f"f = {', '.join(n for n, _ in fs)} (e.g. {fmt_vec(expectations[0])}"
                f" vs {fmt_vec(truths[0])}). {emp_text}"
            ),
        )
    k = exact_ok.index(False)
    first = (
        f"For f = {fs[k][0]}, the exact expectation of your estimator is "
        f"{fmt_vec(expectations[k])} but ∇_θ E[f] = {fmt_vec(truths[k])}."
    )
    order = [
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
    diagnosis = next((c for c in order if cand_match.get(c)), None)
    if diagnosis is None and f_independent:
        diagnosis = "missing_f"
    if diagnosis is None:
        diagnosis = next((c for c in order if cand_expect.get(c)), None)
    if diagnosis is not None:
        advice = ESTIMATOR_DIAGNOSES[diagnosis]
    else:
        alpha, resid = fit_scale(np.concatenate(expectations), np.concatenate(truths))
        if resid < 1e-6:
            diagnosis, advice = "scaled", scale_hint(alpha)
        else:
            diagnosis = "biased"
            advice = (
                "Your estimator is biased. The score-function estimator is ĝ = mean of "
                "f(x_i) ∇_θ log p_θ(x_i); check it term by term."
            )
    if exact_ok[0] and not exact_ok[k]:
        advice = (
            "It is right for the default f but not for another, so it must not assume a "
            f"particular f. {advice}"
        )
    return Report(
        passed=False,
        verdict="wrong",
        diagnosis=diagnosis,
        check=check,
        rows=rows,
        notes=notes,
        message=f"{first} {advice}",
    )


def _nan_array(values: Any) -> np.ndarray:
    """A float64 array from nested lists, None → NaN."""

    def conv(v: Any) -> Any:
        if isinstance(v, list):
            return [conv(u) for u in v]
        return np.nan if v is None else float(v)

    return np.array(conv(values), dtype=np.float64)


def _judge_batch_estimator(
    measurement: dict[str, Any],
    family: str,
    fs: list[tuple[str, Callable[[Any], torch.Tensor]]],
    theta: torch.Tensor,
    truths: list[np.ndarray],
    rows: list[Row],
    notes: list[str],
    emp_text: str,
    consistent: bool,
    z_worst: float,
    z_max: float,
    rtol: float,
    atol: float,
) -> Report:
    """Judge an estimator that uses the batch as a whole (e.g. a batch-mean baseline).

    Exact at batch size two: E[ĝ(x₁, x₂)] = Σ_ij w_i w_j ĝ(x_i, x_j), plus the empirical
    check on the fixed batches. A baseline that includes the sample itself, b = mean_j f(x_j),
    gives E[ĝ] = (1 − 1/N) ∇ = ½ ∇ at N = 2.
    """
    check = "score_estimator"
    if measurement.get("pairs") is None:
        return Report.error(
            "pgcheck.check_score_estimator: the measurement has no batches of "
            "two (measured with another pgcheck version?).",
            check=check,
            diagnosis=ErrorKind.USAGE,
        )
    _, w2 = estimator_pair_atoms(family, theta)
    ww = np.outer(w2.numpy(), w2.numpy()).reshape(-1)
    pair_vals = [_nan_array(v) for v in measurement["pairs"]]
    if not all(np.all(np.isfinite(v)) for v in pair_vals):
        return Report.error(
            "Your estimator returned NaN or inf for a batch of two samples. "
            "Look for division by N − 1 or by a standard deviation that can "
            "be 0.",
            check=check,
            diagnosis="output",
        )
    expect2 = [ww @ v for v in pair_vals]
    for row, e2 in zip(rows, expect2, strict=True):
        row.columns["E[yours], batches of 2"] = e2.tolist()
    notes = notes + [
        "your estimator is not a mean of per-sample terms (it uses the whole "
        "batch), so its exact expectation was taken over every batch of two "
        "samples."
    ]
    tol = max(rtol, 1e-3) if family == "gaussian" else rtol  # 8-node quadrature per sample
    ok = [close(e, t, tol, atol) for e, t in zip(expect2, truths, strict=True)]
    if all(ok) and consistent:
        return Report(
            passed=True,
            verdict="correct",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"Over every batch of two samples, the exact expectation of your "
                f"estimator equals ∇_θ E[f] (e.g. {fmt_vec(expect2[0])} vs "
                f"{fmt_vec(truths[0])}). {emp_text}"
            ),
        )
    if all(ok):
        return Report(
            passed=False,
            verdict="wrong",
            diagnosis="biased",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"Your estimator is unbiased for batches of two, but over larger "
                f"batches its mean is {z_worst:.1f} standard errors from the exact "
                f"gradient {fmt_vec(truths[0])}. {emp_text}"
            ),
        )
    k = ok.index(False)
    first = (
        f"For f = {fs[k][0]} and batches of two samples, the exact expectation of your "
        f"estimator is {fmt_vec(expect2[k])} but ∇_θ E[f] = {fmt_vec(truths[k])}."
    )
    if all(close(e, 0.5 * t, tol, 1e-9) for e, t in zip(expect2, truths, strict=True)):
        return Report(
            passed=False,
            verdict="wrong",
            diagnosis="baseline_includes_sample",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"{first} That is (1 − 1/N) ∇ with N = 2: your baseline includes "
                "the sample it is subtracted from (the batch mean of f). Use a "
                "leave-one-out baseline b_i = mean of f(x_j) over j ≠ i."
            ),
        )
    alpha, resid = fit_scale(np.concatenate(expect2), np.concatenate(truths))
    advice = (
        scale_hint(alpha)
        if resid < 1e-6
        else "It is biased: a baseline must not depend on the sample it multiplies; use "
        "ĝ = mean of (f(x_i) − b_i) ∇_θ log p_θ(x_i) with b_i built from the other samples."
    )
    return Report(
        passed=False,
        verdict="wrong",
        diagnosis="scaled" if resid < 1e-6 else "biased",
        check=check,
        rows=rows,
        notes=notes,
        message=f"{first} {advice}",
    )


CHECK = Check("score_estimator", measure_score_estimator, judge_score_estimator)


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
