"""check_score_function: a hand-derived ∇_θ log π against autograd and central finite
differences (float64, eps 1e-6, as torch.autograd.gradcheck does).

softmax-linear: ∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b); Gaussian N(θᵀx, σ²):
∇_θ = (a − θᵀx) x / σ², ∂/∂σ = ((a − θᵀx)² − σ²) / σ³.
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
    FD_EPS,
    Budget,
    Check,
    Measurement,
    Rule,
    close,
    count_mismatch,
    decide,
    failed,
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
from pgcheck.checks.log_prob import (
    HALF_LOG_2PI,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

NAME = "score_function"
SCORE_POLICIES = (
    "softmax_linear",
    "gaussian_linear",
    "gaussian_linear_sigma",
    "diag_gaussian_linear",
)
SCORE_OPTIONS = ["policy", "timeout", "rtol", "atol", "seed"]


def score_instances(policy: str, seed: int | None = None) -> list[dict[str, Any]]:
    """The fixed inputs of :func:`check_score_function`: several dimensions, fixed seeds.

    softmax_linear: ``theta [d]``, ``features [A,d]``, ``action`` (int).
    gaussian_linear(_sigma): ``theta [d]``, ``x [d]``, ``action`` (float), ``sigma`` (float),
    with σ ≠ 1 so σ and σ² differ and a drawn around θᵀx. ``seed``: fresh inputs of the same
    dimensions and σ (random actions), see :func:`instance_seed`.
    """
    g = torch.Generator().manual_seed(instance_seed(31_415, seed))
    out: list[dict[str, Any]] = []
    action: float
    if policy == "softmax_linear":
        for d, n_actions, action in [(3, 4, 2), (3, 4, 0), (2, 3, 1), (5, 6, 5), (1, 3, 2)]:
            theta = torch.randn(d, generator=g, dtype=DTYPE)
            features = torch.randn(n_actions, d, generator=g, dtype=DTYPE)
            if seed is not None:
                action = int(torch.randint(n_actions, (), generator=g))
            out.append(
                {
                    "name": f"d={d}, A={n_actions}, action {action}",
                    "args": {"theta": theta, "features": features, "action": action},
                }
            )
    elif policy == "diag_gaussian_linear":
        out.extend(diag_score_instances(seed))
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


def diag_score_instances(seed: int | None = None) -> list[dict[str, Any]]:
    """Inputs for ``diag_gaussian_linear``: ``theta [k,d]``, ``x [d]``, ``action [k]``,
    ``sigma [k]`` (σ_j ≠ 1 and different per dimension, |a_j − μ_j| ≥ σ_j). ``seed``: fresh
    inputs of the same dimensions, see :func:`instance_seed`."""
    g = torch.Generator().manual_seed(instance_seed(27_182, seed))
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


#: Each wrong score recognised by comparison with :func:`score_candidates`, once: its code, the
#: formula it computes and its message (``sigma:`` codes are about the last entry, ∂/∂σ).
CANDIDATE_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "sign",
        "−∇_θ log π",
        (
            "Your score has the wrong sign; ∇_θ log π points towards making the taken action more "
            "likely."
        ),
    ),
    Mistake(
        "missing_normaliser",
        "x(s,a)",
        (
            "You return x(s,a) only: the normalising term is missing. ∇_θ log π(a|s) = x(s,a) − "
            "Σ_b π(b|s) x(s,b)."
        ),
    ),
    Mistake(
        "only_normaliser",
        "−Σ_b π(b|s) x(s,b)",
        (
            "You return only −Σ_b π(b|s) x(s,b); add the taken action's features: ∇_θ log π(a|s) = "
            "x(s,a) − Σ_b π(b|s) x(s,b)."
        ),
    ),
    Mistake(
        "uniform_normaliser",
        "x(s,a) − mean_b x(s,b)",
        (
            "You subtract the plain mean of the features over actions; weight it by the policy: "
            "subtract Σ_b π(b|s) x(s,b)."
        ),
    ),
    Mistake(
        "probability_gradient",
        "∇_θ π(a|s) = π(a|s) (x(s,a) − Σ_b π(b|s) x(s,b))",
        (
            "You return ∇_θ π(a|s), not ∇_θ log π(a|s). Divide by π(a|s): ∇ log π = ∇π / π = "
            "x(s,a) − Σ_b π(b|s) x(s,b)."
        ),
    ),
    Mistake(
        "factor_2",
        "2 ∇_θ log π",
        (
            "Your score is twice the correct one: the derivative of −(a−θᵀx)²/(2σ²) keeps no "
            "factor 2 (the ½ cancels it)."
        ),
    ),
    Mistake(
        "factor_half",
        "½ ∇_θ log π",
        "Your score is half the correct one: d/dθ (a−θᵀx)² = −2(a−θᵀx)x, and the 2 cancels the ½.",
    ),
    Mistake(
        "sigma_not_squared",
        "(a − θᵀx) x / σ",
        "You divide by σ where σ² belongs: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ².",
    ),
    Mistake(
        "sigma_to_the_4",
        "(a − θᵀx) x / σ⁴",
        "You divide by σ⁴ (σ² squared again?); the score is (a − θᵀx) x / σ².",
    ),
    Mistake(
        "missing_x",
        "(a − θᵀx) / σ² in every entry",
        (
            "The feature vector x is missing: by the chain rule ∇_θ(θᵀx) = x, so the score is (a − "
            "θᵀx) x / σ²."
        ),
    ),
    Mistake(
        "missing_sigma",
        "(a − θᵀx) x",
        "The 1/σ² is missing: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ².",
    ),
    Mistake(
        "transposed",
        "((a − Θx)/σ²) xᵀ laid out as [d, k]",
        (
            "Your score has the right numbers in the wrong layout: it must be shaped like theta "
            "[k, d], entry (j, i) = (a_j − μ_j) x_i / σ_j² — an outer product "
            "((a − Θx)/σ²)[:, None] * x[None, :]."
        ),
    ),
    Mistake(
        "shared_sigma",
        "((a − Θx)/mean(σ)²) xᵀ",
        (
            "You divide every action dimension by one σ²; dimension j has its own variance: row j "
            "of the score is (a_j − μ_j) x / σ_j²."
        ),
    ),
    Mistake(
        "sigma:sign",
        "1/σ − (a − θᵀx)²/σ³",
        "∂/∂σ has the wrong sign: ∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    ),
    Mistake(
        "sigma:wrt_variance",
        "∂ log N/∂σ² = −1/(2σ²) + (a − θᵀx)²/(2σ⁴)",
        (
            "Your last entry is the derivative with respect to the variance σ², not σ: ∂ log N/∂σ "
            "= −1/σ + (a − θᵀx)²/σ³."
        ),
    ),
    Mistake(
        "sigma:wrt_log_sigma",
        "∂ log N/∂ log σ = −1 + (a − θᵀx)²/σ²",
        (
            "Your last entry is the derivative with respect to log σ, not σ: divide it by σ, ∂ log "
            "N/∂σ = −1/σ + (a − θᵀx)²/σ³."
        ),
    ),
    Mistake(
        "sigma:missing_minus_1_over_sigma",
        "(a − θᵀx)²/σ³",
        "The −1/σ from the −log σ term is missing: ∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    ),
    Mistake(
        "sigma:sigma_power",
        "−1/σ + (a − θᵀx)²/σ²",
        "The power of σ in the second term is wrong: ∂/∂σ of −(a − θᵀx)²/(2σ²) is (a − θᵀx)²/σ³.",
    ),
    Mistake(
        "sigma:factor_2",
        "2 (−1/σ + (a − θᵀx)²/σ³)",
        "Your ∂/∂σ is twice the correct −1/σ + (a − θᵀx)²/σ³.",
    ),
)
#: The other diagnoses: templates filled in by the rules.
OTHER_MISTAKES: tuple[Mistake, ...] = (
    Mistake("scaled", "α ∇_θ log π", "{hint}"),
    Mistake("mismatch", "none of the recognised scores", "Derive it again: {formula}."),
    Mistake(
        "sigma:mismatch",
        "none of the recognised ∂/∂σ",
        "Your last entry ∂ log N/∂σ is wrong: it is −1/σ + (a − θᵀx)²/σ³.",
    ),
)
#: code → message of every diagnosis of this check.
MESSAGES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES + OTHER_MISTAKES}
#: code → message of the mistakes recognised by :func:`score_candidates` (kept for callers).
SCORE_DIAGNOSES: dict[str, str] = {m.code: m.message for m in CANDIDATE_MISTAKES}
#: The correct score of each policy, for the messages.
SCORE_FORMULAS = {
    "softmax_linear": "x(s,a) − Σ_b π(b|s) x(s,b)",
    "gaussian_linear": "(a − θᵀx) x / σ²",
    "gaussian_linear_sigma": "(a − θᵀx) x / σ² and −1/σ + (a − θᵀx)²/σ³",
    "diag_gaussian_linear": "((a − Θx)/σ²) xᵀ",
}
#: The score to derive again, for an unrecognised θ part.
DERIVE = {
    "softmax_linear": "∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b) with π = softmax(features @ θ)",
    "gaussian": "∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ²",
}
CORRECT = (
    "Your score {what} matches autograd and finite differences on {n} inputs "
    "(max |diff| = {max_diff:.2g})."
)
FIRST_BAD = (
    "On input {i} ({name}), your score is {yours} but autograd gives {auto} "
    "(finite differences: {fd})."
)
THETA_RIGHT = "Your ∇_θ part is right."
REFERENCES_DISAGREE = (
    "pgcheck's references disagree on {name} by {gap:.2g} (autograd vs finite differences); "
    "please report this."
)


class ScoreMeasurement(Measurement, total=False):
    """What :func:`measure_score_function` returns: the learner's score on every instance of
    :func:`score_instances` ([d], or [d+1] for ``gaussian_linear_sigma``)."""

    check: str
    policy: str
    values: list[list[float]]


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
    seed: int | None = None,
    **unknown: Any,
) -> ScoreMeasurement:
    """Call the learner's ∇_θ log π on the fixed inputs; plain numbers only, never raises."""
    early = measure_precheck(
        "check_score_function",
        unknown,
        SCORE_OPTIONS,
        kind=("policy", policy, SCORE_POLICIES),
        seed=seed,
    )
    if early is not None:
        return early
    with single_thread():
        return _measure_score_function(fn, policy, Budget(timeout), seed)


def _measure_score_function(
    fn: Callable[..., Any], policy: str, budget: Budget, seed: int | None = None
) -> ScoreMeasurement:
    name = "your score function"
    values: list[list[float]] = []
    for inst in score_instances(policy, seed):
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


@dataclass
class Evidence:
    """What the rules of :func:`judge_score_function` decide on.

    ``theta_ok`` / ``sigma_ok``: the θ part (first d entries) / the ∂/∂σ entry matches autograd
    on every instance; ``cand_ok[code]``: that part equals the wrong score of
    :func:`score_candidates` on every instance; ``ys`` / ``refs``: the θ parts, for a fit
    yours ≈ α · autograd; ``first_bad``: (index, yours, autograd, finite differences).
    """

    policy: str
    instances: list[dict[str, Any]]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    theta_ok: bool = True
    sigma_ok: bool = True
    cand_ok: dict[str, bool] = field(default_factory=dict)
    ys: list[np.ndarray] = field(default_factory=list)
    refs: list[np.ndarray] = field(default_factory=list)
    max_diff: float = 0.0
    first_bad: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None

    def sigma_part(self) -> tuple[list[str], list[str]]:
        """(codes, advice) for a wrong ∂/∂σ entry, else empty lists."""
        if self.policy != "gaussian_linear_sigma" or self.sigma_ok:
            return [], []
        code = next(
            (k for k in SCORE_DIAGNOSES if k.startswith("sigma:") and self.cand_ok.get(k)),
            "sigma:mismatch",
        )
        return [code], [MESSAGES[code]]

    def wrong(self, codes: list[str], advice: list[str]) -> Report:
        """The failed report: the first differing input, then the advice; codes joined by +."""
        assert self.first_bad is not None
        i, y, auto, fd = self.first_bad
        first = FIRST_BAD.format(
            i=i + 1,
            name=self.instances[i]["name"],
            yours=fmt_vec(y),
            auto=fmt_vec(auto),
            fd=fmt_vec(fd),
        )
        return Report(
            passed=False,
            verdict="wrong",
            diagnosis="+".join(codes),
            check=NAME,
            rows=self.rows,
            notes=self.notes,
            message=f"{first} {' '.join(advice)}",
        )

    def theta_wrong(self, code: str, text: str) -> Report:
        """The failed report for a wrong θ part (and the ∂/∂σ entry, if that is wrong too)."""
        codes, advice = self.sigma_part()
        return self.wrong([code, *codes], [text, *advice])


def gather_evidence(
    measurement: ScoreMeasurement, policy: str, rtol: float, atol: float, seed: int | None = None
) -> Evidence:
    """Compare every instance with autograd (and note where autograd and central finite
    differences disagree), part by part, and with every wrong score of :func:`score_candidates`."""
    ev = Evidence(policy, score_instances(policy, seed))
    ev.notes = output_notes(measurement)
    for i, (inst, vals) in enumerate(zip(ev.instances, measurement["values"], strict=True)):
        args = inst["args"]
        auto, fd = score_reference(policy, args)
        ref_gap = float(np.max(np.abs(auto - fd)))
        if ref_gap > 1e-6 * (1 + float(np.max(np.abs(auto)))):
            ev.notes.append(REFERENCES_DISAGREE.format(name=inst["name"], gap=ref_gap))
        y = np.array(vals, dtype=np.float64)
        d = int(args["theta"].numel())
        diff = np.abs(y - auto)
        ev.max_diff = max(ev.max_diff, float(np.max(diff)))
        ev.rows.append(
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
        ev.theta_ok &= ok_theta
        ev.sigma_ok &= ok_sigma
        if not (ok_theta and ok_sigma) and ev.first_bad is None:
            ev.first_bad = (i, y, auto, fd)
        for key, cand in score_candidates(policy, args).items():
            part = y[d:] if key.startswith("sigma:") else y[:d]
            ev.cand_ok[key] = ev.cand_ok.get(key, True) and close(part, cand, rtol, atol)
        ev.ys.append(y[:d])
        ev.refs.append(auto[:d])
    return ev


def correct(ev: Evidence) -> Report | None:
    """Every entry of every input matches autograd."""
    if ev.first_bad is not None:
        return None
    return Report(
        passed=True,
        verdict="correct",
        check=NAME,
        rows=ev.rows,
        notes=ev.notes,
        message=CORRECT.format(
            what=SCORE_FORMULAS[ev.policy], n=len(ev.instances), max_diff=ev.max_diff
        ),
    )


def only_sigma_wrong(ev: Evidence) -> Report | None:
    """The θ part is right; the ∂/∂σ entry is not (named when recognised)."""
    if not ev.theta_ok:
        return None
    codes, advice = ev.sigma_part()
    return ev.wrong(codes, [THETA_RIGHT, *advice])


def theta_known_mistake(ev: Evidence) -> Report | None:
    """The θ part equals one of the wrong scores of :func:`score_candidates`."""
    code = next(
        (k for k in SCORE_DIAGNOSES if not k.startswith("sigma:") and ev.cand_ok.get(k)), None
    )
    return None if code is None else ev.theta_wrong(code, MESSAGES[code])


def theta_scaled(ev: Evidence) -> Report | None:
    """The θ part is α × the correct score (one α for all inputs)."""
    alpha, resid = fit_scale(np.concatenate(ev.ys), np.concatenate(ev.refs))
    if resid >= 1e-6:
        return None
    return ev.theta_wrong("scaled", MESSAGES["scaled"].format(hint=scale_hint(alpha)))


def theta_unrecognised(ev: Evidence) -> Report:
    """The θ part is wrong in a way none of the rules above recognises."""
    formula = DERIVE["softmax_linear" if ev.policy == "softmax_linear" else "gaussian"]
    return ev.theta_wrong("mismatch", MESSAGES["mismatch"].format(formula=formula))


#: The rules in the order they are tried; the last always answers.
RULES: tuple[Rule[Evidence], ...] = (
    correct,
    only_sigma_wrong,
    theta_known_mistake,
    theta_scaled,
    theta_unrecognised,
)


@finite_rows
def judge_score_function(
    measurement: ScoreMeasurement,
    *,
    policy: str = "softmax_linear",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    seed: int | None = None,
    **unknown: Any,
) -> Report:
    """Compare the measured scores with autograd and central finite differences.

    softmax_linear: ∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b), π = softmax(features @ θ).
    gaussian_linear: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ².
    gaussian_linear_sigma: additionally ∂/∂σ log N = −1/σ + (a − θᵀx)²/σ³.
    Accepted when |yours − autograd| ≤ atol + rtol·|autograd| for every entry of every input.
    Prechecks (options, a recorded error, the number of inputs), then the :class:`Evidence`,
    then the first of :data:`RULES` that answers.
    """
    early = judge_precheck(
        measurement,
        NAME,
        "check_score_function",
        unknown,
        SCORE_OPTIONS,
        kind=("policy", policy, SCORE_POLICIES),
        seed=seed,
    )
    if early is not None:
        return early
    early = count_mismatch(
        measurement["values"], len(score_instances(policy, seed)), NAME, "check_score_function"
    )
    if early is not None:
        return early
    return decide(RULES, gather_evidence(measurement, policy, rtol, atol, seed))


CHECK = Check(NAME, measure_score_function, judge_score_function, fresh_instances=True)


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
