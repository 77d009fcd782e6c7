"""check_score_function: a hand-derived ∇_θ log π against autograd and central finite
differences (float64, eps 1e-6, as torch.autograd.gradcheck does).

softmax-linear: ∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b); Gaussian N(θᵀx, σ²):
∇_θ = (a − θᵀx) x / σ², ∂/∂σ = ((a − θᵀx)² − σ²) / σ³.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    DTYPE,
    FD_EPS,
    Budget,
    Check,
    close,
    count_mismatch,
    failed,
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
)
from pgcheck.checks.log_prob import (
    HALF_LOG_2PI,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

SCORE_POLICIES = (
    "softmax_linear",
    "gaussian_linear",
    "gaussian_linear_sigma",
    "diag_gaussian_linear",
)
SCORE_OPTIONS = ["policy", "timeout", "rtol", "atol"]


def score_instances(policy: str) -> list[dict[str, Any]]:
    """The fixed inputs of :func:`check_score_function`: several dimensions, fixed seeds.

    softmax_linear: ``theta [d]``, ``features [A,d]``, ``action`` (int).
    gaussian_linear(_sigma): ``theta [d]``, ``x [d]``, ``action`` (float), ``sigma`` (float),
    with σ ≠ 1 so σ and σ² differ and a drawn around θᵀx.
    """
    g = torch.Generator().manual_seed(31_415)
    out: list[dict[str, Any]] = []
    if policy == "softmax_linear":
        for d, n_actions, action in [(3, 4, 2), (3, 4, 0), (2, 3, 1), (5, 6, 5), (1, 3, 2)]:
            theta = torch.randn(d, generator=g, dtype=DTYPE)
            features = torch.randn(n_actions, d, generator=g, dtype=DTYPE)
            out.append(
                {
                    "name": f"d={d}, A={n_actions}, action {action}",
                    "args": {"theta": theta, "features": features, "action": action},
                }
            )
    elif policy == "diag_gaussian_linear":
        out.extend(diag_score_instances())
    else:
        for d, sigma in [(3, 0.5), (3, 1.7), (2, 0.8), (4, 2.5), (1, 0.35)]:
            theta = torch.randn(d, generator=g, dtype=DTYPE)
            x = torch.randn(d, generator=g, dtype=DTYPE)
            z = float(torch.randn((), generator=g, dtype=DTYPE))
            action = float(theta @ x) + sigma * (1.0 + abs(z))  # |a − μ| ≥ σ: no hiding at 0
            if z < 0:
                action = float(theta @ x) - sigma * (1.0 + abs(z))
            out.append(
                {
                    "name": f"d={d}, σ={sigma}",
                    "args": {"theta": theta, "x": x, "action": action, "sigma": sigma},
                }
            )
    return out


def diag_score_instances() -> list[dict[str, Any]]:
    """Inputs for ``diag_gaussian_linear``: ``theta [k,d]``, ``x [d]``, ``action [k]``,
    ``sigma [k]`` (σ_j ≠ 1 and different per dimension, |a_j − μ_j| ≥ σ_j)."""
    g = torch.Generator().manual_seed(27_182)
    out: list[dict[str, Any]] = []
    for k, d in [(2, 3), (3, 2), (1, 4), (4, 1)]:
        theta = torch.randn(k, d, generator=g, dtype=DTYPE)
        x = torch.randn(d, generator=g, dtype=DTYPE)
        sigma = 0.3 + 2.0 * torch.rand(k, generator=g, dtype=DTYPE)
        z = torch.randn(k, generator=g, dtype=DTYPE)
        action = theta @ x + sigma * torch.sign(z) * (1.0 + z.abs())
        out.append(
            {
                "name": f"k={k} action dims, d={d}",
                "args": {"theta": theta, "x": x, "action": action, "sigma": sigma},
            }
        )
    return out


def _score_log_pi(
    policy: str,
    args: dict[str, Any],
    theta: torch.Tensor,
    sigma: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """log π_θ(action) in closed form (the function whose gradient is the score)."""
    if policy == "softmax_linear":
        return torch.log_softmax(args["features"] @ theta, dim=0)[args["action"]]
    if policy == "diag_gaussian_linear":  # Σ_j log N(a_j; (Θx)_j, σ_j²)
        th = theta.reshape(args["theta"].shape)
        s = args["sigma"]
        mu = th @ args["x"]
        return (-((args["action"] - mu) ** 2) / (2 * s**2) - torch.log(s) - HALF_LOG_2PI).sum()
    s = args["sigma"] if sigma is None else sigma
    s = torch.as_tensor(s, dtype=DTYPE)
    mu = theta @ args["x"]
    return -((args["action"] - mu) ** 2) / (2 * s**2) - torch.log(s) - HALF_LOG_2PI


def score_reference(policy: str, args: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The exact score two ways: autograd of log π, and central finite differences (eps 1e-6).

    For ``gaussian_linear_sigma`` the vector is [∇_θ log π, ∂ log π/∂σ] (length d+1).
    """
    with_sigma = policy == "gaussian_linear_sigma"
    theta = args["theta"].clone().reshape(-1).requires_grad_(True)
    params = [theta]
    sigma = None
    if with_sigma:
        sigma = torch.tensor(float(args["sigma"]), dtype=DTYPE, requires_grad=True)
        params.append(sigma)
    grads = torch.autograd.grad(_score_log_pi(policy, args, theta, sigma), params)
    auto = torch.cat([gr.reshape(-1) for gr in grads]).numpy()
    base = torch.cat(
        [args["theta"].reshape(-1)]
        + ([torch.tensor([float(args["sigma"])], dtype=DTYPE)] if with_sigma else [])
    )
    d = args["theta"].numel()

    def f(v: torch.Tensor) -> float:
        return float(_score_log_pi(policy, args, v[:d], v[d] if with_sigma else None))

    fd = np.empty(base.numel())
    for k in range(base.numel()):
        e = torch.zeros_like(base)
        e[k] = FD_EPS
        fd[k] = (f(base + e) - f(base - e)) / (2 * FD_EPS)
    return auto, fd


def score_candidates(policy: str, args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Common wrong scores on the same inputs: θ part (and, for the σ variant, σ part)."""
    theta = args["theta"]
    if policy == "softmax_linear":
        feats, a = args["features"], args["action"]
        pi = torch.softmax(feats @ theta, dim=0)
        xa, xbar = feats[a], pi @ feats
        cands = {
            "sign": xbar - xa,
            "missing_normaliser": xa,
            "only_normaliser": -xbar,
            "uniform_normaliser": xa - feats.mean(dim=0),
            "probability_gradient": pi[a] * (xa - xbar),
            "factor_2": 2 * (xa - xbar),
            "factor_half": (xa - xbar) / 2,
        }
        return {k: v.numpy() for k, v in cands.items()}
    if policy == "diag_gaussian_linear":
        x, s = args["x"], args["sigma"]
        u = args["action"] - theta @ x  # [k]
        diag = {
            "sign": -(u / s**2)[:, None] * x,
            "sigma_not_squared": (u / s)[:, None] * x,
            "missing_sigma": u[:, None] * x,
            "factor_2": 2 * (u / s**2)[:, None] * x,
            "missing_x": (u / s**2)[:, None].expand(theta.shape),
            # the right numbers in a transposed layout ([d,k] read as [k,d]); NaN (never
            # matched) where k = d would make it indistinguishable from the wrong numbers
            "transposed": ((u / s**2)[:, None] * x).T.reshape(theta.shape)
            if theta.shape[0] != theta.shape[1]
            else torch.full_like(theta, float("nan")),
            "shared_sigma": (u / s.mean() ** 2)[:, None] * x,
        }
        return {k: v.reshape(-1).numpy() for k, v in diag.items()}
    x, a, s = args["x"], float(args["action"]), float(args["sigma"])
    r = a - float(theta @ x)
    theta_cands = {
        "sign": -r * x / s**2,
        "sigma_not_squared": r * x / s,
        "sigma_to_the_4": r * x / s**4,
        "factor_2": 2 * r * x / s**2,
        "factor_half": r * x / (2 * s**2),
        "missing_x": torch.full_like(x, r / s**2),
        "missing_sigma": r * x,
    }
    out = {k: v.numpy() for k, v in theta_cands.items()}
    if policy == "gaussian_linear_sigma":
        out.update(
            {
                "sigma:sign": np.array([1 / s - r**2 / s**3]),
                "sigma:wrt_variance": np.array([-1 / (2 * s**2) + r**2 / (2 * s**4)]),
                "sigma:wrt_log_sigma": np.array([-1 + r**2 / s**2]),
                "sigma:missing_minus_1_over_sigma": np.array([r**2 / s**3]),
                "sigma:sigma_power": np.array([-1 / s + r**2 / s**2]),
                "sigma:factor_2": np.array([2 * (-1 / s + r**2 / s**3)]),
            }
        )
    return out


SCORE_DIAGNOSES: dict[str, str] = {
    "sign": "Your score has the wrong sign; ∇_θ log π points towards making the taken action "
    "more likely.",
    "missing_normaliser": "You return x(s,a) only: the normalising term is missing. "
    "∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b).",
    "only_normaliser": "You return only −Σ_b π(b|s) x(s,b); add the taken action's features: "
    "∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b).",
    "uniform_normaliser": "You subtract the plain mean of the features over actions; weight it "
    "by the policy: subtract Σ_b π(b|s) x(s,b).",
    "probability_gradient": "You return ∇_θ π(a|s), not ∇_θ log π(a|s). Divide by π(a|s): "
    "∇ log π = ∇π / π = x(s,a) − Σ_b π(b|s) x(s,b).",
    "factor_2": "Your score is twice the correct one: the derivative of −(a−θᵀx)²/(2σ²) keeps "
    "no factor 2 (the ½ cancels it).",
    "factor_half": "Your score is half the correct one: d/dθ (a−θᵀx)² = −2(a−θᵀx)x, and the 2 "
    "cancels the ½.",
    "sigma_not_squared": "You divide by σ where σ² belongs: ∇_θ log N(a; θᵀx, σ²) = "
    "(a − θᵀx) x / σ².",
    "sigma_to_the_4": "You divide by σ⁴ (σ² squared again?); the score is (a − θᵀx) x / σ².",
    "missing_x": "The feature vector x is missing: by the chain rule ∇_θ(θᵀx) = x, so the score "
    "is (a − θᵀx) x / σ².",
    "missing_sigma": "The 1/σ² is missing: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ².",
    "transposed": "Your score has the right numbers in the wrong layout: it must be shaped "
    "like theta [k, d], entry (j, i) = (a_j − μ_j) x_i / σ_j² — an outer product "
    "((a − Θx)/σ²)[:, None] * x[None, :].",
    "shared_sigma": "You divide every action dimension by one σ²; dimension j has its own "
    "variance: row j of the score is (a_j − μ_j) x / σ_j².",
    "sigma:sign": "∂/∂σ has the wrong sign: ∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    "sigma:wrt_variance": "Your last entry is the derivative with respect to the variance σ², "
    "not σ: ∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    "sigma:wrt_log_sigma": "Your last entry is the derivative with respect to log σ, not σ: "
    "divide it by σ, ∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    "sigma:missing_minus_1_over_sigma": "The −1/σ from the −log σ term is missing: "
    "∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    "sigma:sigma_power": "The power of σ in the second term is wrong: ∂/∂σ of "
    "−(a − θᵀx)²/(2σ²) is (a − θᵀx)²/σ³.",
    "sigma:factor_2": "Your ∂/∂σ is twice the correct −1/σ + (a − θᵀx)²/σ³.",
}


def _score_shapes(policy: str, args: dict[str, Any]) -> tuple[int, ...]:
    if policy == "diag_gaussian_linear":
        return tuple(args["theta"].shape)
    d = int(args["theta"].numel())
    return (d + 1,) if policy == "gaussian_linear_sigma" else (d,)


def measure_score_function(
    fn: Callable[..., Any],
    *,
    policy: str = "softmax_linear",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    **unknown: Any,
) -> dict[str, Any]:
    """Call the learner's ∇_θ log π on the fixed inputs; plain numbers only, never raises."""
    early = measure_precheck(
        "check_score_function", unknown, SCORE_OPTIONS, kind=("policy", policy, SCORE_POLICIES)
    )
    if early is not None:
        return early
    with single_thread():
        return _measure_score_function(fn, policy, Budget(timeout))


def _measure_score_function(fn: Callable[..., Any], policy: str, budget: Budget) -> dict[str, Any]:
    name = "your score function"
    values = []
    for inst in score_instances(policy):
        args = {
            k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inst["args"].items()
        }
        value, err = learner_call(fn, args, budget, name)
        if err:
            return err
        shape = _score_shapes(policy, inst["args"])
        what = (
            "[∇_θ log π, ∂ log π/∂σ]"
            if policy == "gaussian_linear_sigma"
            else "∇_θ log π (shaped like theta)"
        )
        arr, msg = read_output(value, shape, name, what)
        if msg:
            return failed(ErrorKind.OUTPUT, msg + f" (input: {inst['name']})")
        values.append(arr.reshape(-1).tolist())  # [k,d] scores are compared flattened
    return {"check": "score_function", "policy": policy, "values": values, "output": budget.output}


@finite_rows
def judge_score_function(
    measurement: dict[str, Any],
    *,
    policy: str = "softmax_linear",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    **unknown: Any,
) -> Report:
    """Compare the measured scores with autograd and central finite differences.

    softmax_linear: ∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b), π = softmax(features @ θ).
    gaussian_linear: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ².
    gaussian_linear_sigma: additionally ∂/∂σ log N = −1/σ + (a − θᵀx)²/σ³.
    Accepted when |yours − autograd| ≤ atol + rtol·|autograd| for every entry of every input.
    """
    check = "score_function"
    early = judge_precheck(
        measurement,
        check,
        "check_score_function",
        unknown,
        SCORE_OPTIONS,
        kind=("policy", policy, SCORE_POLICIES),
    )
    if early is not None:
        return early
    instances = score_instances(policy)
    values = measurement["values"]
    early = count_mismatch(values, len(instances), check, "check_score_function")
    if early is not None:
        return early
    rows: list[Row] = []
    notes = output_notes(measurement)
    first_bad: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
    parts = {"theta": True, "sigma": True}
    cand_ok: dict[str, bool] = {}
    ys, refs = [], []
    max_diff = 0.0
    for i, (inst, vals) in enumerate(zip(instances, values, strict=True)):
        args = inst["args"]
        auto, fd = score_reference(policy, args)
        ref_gap = float(np.max(np.abs(auto - fd)))
        if ref_gap > 1e-6 * (1 + float(np.max(np.abs(auto)))):
            notes.append(
                f"pgcheck's references disagree on {inst['name']} by {ref_gap:.2g} "
                "(autograd vs finite differences); please report this."
            )
        y = np.array(vals, dtype=np.float64)
        d = int(args["theta"].numel())
        diff = np.abs(y - auto)
        max_diff = max(max_diff, float(np.max(diff)))
        rows.append(
            Row(
                inst["name"],
                {
                    "yours": y.tolist(),
                    "autograd": auto.tolist(),
                    "finite differences": fd.tolist(),
                    "max |diff|": float(np.max(diff)),
                },
            )
        )
        ok_theta = close(y[:d], auto[:d], rtol, atol)
        ok_sigma = close(y[d:], auto[d:], rtol, atol)
        parts["theta"] &= ok_theta
        parts["sigma"] &= ok_sigma
        if not (ok_theta and ok_sigma) and first_bad is None:
            first_bad = (i, y, auto, fd)
        for key, cand in score_candidates(policy, args).items():
            part = y[d:] if key.startswith("sigma:") else y[:d]
            cand_ok[key] = cand_ok.get(key, True) and close(part, cand, rtol, atol)
        ys.append(y[:d])
        refs.append(auto[:d])
    if first_bad is None:
        what = {
            "softmax_linear": "x(s,a) − Σ_b π(b|s) x(s,b)",
            "gaussian_linear": "(a − θᵀx) x / σ²",
            "gaussian_linear_sigma": "(a − θᵀx) x / σ² and −1/σ + (a − θᵀx)²/σ³",
            "diag_gaussian_linear": "((a − Θx)/σ²) xᵀ",
        }[policy]
        return Report(
            passed=True,
            verdict="correct",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"Your score {what} matches autograd and finite differences on "
                f"{len(instances)} inputs (max |diff| = {max_diff:.2g})."
            ),
        )
    i, y, auto, fd = first_bad
    inst = instances[i]
    first = (
        f"On input {i + 1} ({inst['name']}), your score is {fmt_vec(y)} but autograd gives "
        f"{fmt_vec(auto)} (finite differences: {fmt_vec(fd)})."
    )
    advice: list[str] = []
    codes: list[str] = []
    if not parts["theta"]:
        code = next(
            (k for k in SCORE_DIAGNOSES if not k.startswith("sigma:") and cand_ok.get(k)), None
        )
        if code is None:
            alpha, resid = fit_scale(np.concatenate(ys), np.concatenate(refs))
            if resid < 1e-6:
                code, text = "scaled", scale_hint(alpha)
            else:
                code, text = (
                    "mismatch",
                    {
                        "softmax_linear": "Derive it again: ∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) "
                        "x(s,b) with π = softmax(features @ θ).",
                    }.get(policy, "Derive it again: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ²."),
                )
        else:
            text = SCORE_DIAGNOSES[code]
        codes.append(code)
        advice.append(text)
    if policy == "gaussian_linear_sigma" and not parts["sigma"]:
        code = next(
            (k for k in SCORE_DIAGNOSES if k.startswith("sigma:") and cand_ok.get(k)),
            "sigma:mismatch",
        )
        codes.append(code)
        advice.append(
            SCORE_DIAGNOSES.get(
                code, "Your last entry ∂ log N/∂σ is wrong: it is −1/σ + (a − θᵀx)²/σ³."
            )
        )
    if policy == "gaussian_linear_sigma" and parts["theta"]:
        advice.insert(0, "Your ∇_θ part is right.")
    return Report(
        passed=False,
        verdict="wrong",
        diagnosis="+".join(codes),
        check=check,
        rows=rows,
        notes=notes,
        message=f"{first} {' '.join(advice)}",
    )


CHECK = Check("score_function", measure_score_function, judge_score_function)


def check_score_function(
    fn: Callable[..., Any], policy: str = "softmax_linear", *, timeout: float = 5.0, **options: Any
) -> Report:
    """Check a hand-derived score ∇_θ log π against autograd and finite differences.

    ``"softmax_linear"``: ``fn(theta [d], features [A,d], action) -> [d]``, the score
    x(s,a) − Σ_b π(b|s) x(s,b). ``"gaussian_linear"``: ``fn(theta [d], x [d], action, sigma)
    -> [d]``, the score (a − θᵀx) x / σ². ``"gaussian_linear_sigma"``: the same arguments,
    returning [d+1] with ∂/∂σ = ((a − θᵀx)² − σ²)/σ³ last. ``"diag_gaussian_linear"``:
    ``fn(theta [k,d], x [d], action [k], sigma [k]) -> [k,d]``, the score of the diagonal
    Gaussian N(Θx, diag σ²): row j is (a_j − (Θx)_j) x / σ_j².
    """
    return run_check(CHECK, fn, policy=policy, timeout=timeout, **options)
