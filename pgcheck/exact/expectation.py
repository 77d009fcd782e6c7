"""The exact expectation of the gradient of a learner's pseudo-loss.

For a loss that treats trajectories separately, L(batch) = c_B Σ_i ℓ(τ_i), one call on the
batch of *all* trajectories of a problem and one backward pass give every per-trajectory
gradient G_j = ∂L/∂θ restricted to trajectory j, so that

    E[∇L] = Σ_τ p_θ(τ) ∇ℓ(τ)        (p_θ(τ) detached)

is a weighted sum with no sampling noise. Whether the loss is a mean (c_B = 1/B), a sum
(c_B = 1) or mixes trajectories is found by a probe: the same trajectories in a smaller batch.
A loss that mixes trajectories (leave-one-out baselines, batch normalisation) is checked
exactly over every batch of two: E[∇L₂] = Σ_{j,k} p_j p_k ∇L(τ_j, τ_k).

The learner's code only ever runs through :func:`pgcheck.sandbox.call_learner`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pgcheck.errors import ErrorKind, LearnerError
from pgcheck.exact.vocabulary import build_inputs
from pgcheck.problems import Problem, Trajectories
from pgcheck.sandbox import call_learner

#: Relative tolerance for "the same vector" in the probes (computations are float64 and exact).
PROBE_RTOL = 1e-9


class LearnerFailure(Exception):
    """The learner's loss could not be evaluated; carries the message for the learner."""

    def __init__(self, error: LearnerError) -> None:
        super().__init__(error.message)
        self.error = error


# --------------------------------------------------------------------------- policy outputs
_OUTPUT_CACHE: dict[tuple[int, bytes], tuple[dict[str, Tensor], dict[str, Tensor]]] = {}


def policy_outputs(
    problem: Problem, theta: Tensor, *, values: bool = False
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Per-state policy outputs at θ and their Jacobians w.r.t. θ (cached).

    Categorical problems: ``logits`` [S,A], and with ``values`` also V_t(s) [H,S] (its
    Jacobian is the costly part, so it is only computed for losses that ask for it);
    Gaussian problems: ``mean`` and ``std`` [S]. Jacobians have a trailing axis of size P.
    """
    key = (id(problem), theta.detach().numpy().tobytes())
    theta = theta.detach()
    jac = torch.autograd.functional.jacobian
    if key not in _OUTPUT_CACHE:
        with torch.enable_grad():
            if hasattr(problem, "step_outputs"):  # per-step outputs, built per batch
                outputs, jacobians = {}, {}
            elif problem.action_kind == "gaussian":
                mean, std = problem.mean_std(theta)
                outputs = {"mean": mean.detach(), "std": std.detach()}
                jacobians = {
                    "mean": jac(lambda th: problem.mean_std(th)[0], theta),
                    "std": jac(lambda th: problem.mean_std(th)[1], theta),
                }
            else:
                outputs = {"logits": problem.policy.logits(theta).detach()}
                jacobians = {"logits": problem.policy.logits_jacobian(theta)}
        _OUTPUT_CACHE[key] = (outputs, jacobians)
    outputs, jacobians = _OUTPUT_CACHE[key]
    if values and problem.action_kind != "gaussian" and "values" not in outputs:
        with torch.enable_grad():
            outputs["values"] = problem.q_and_v(theta)[1].detach()
            jacobians["values"] = jac(lambda th: problem.q_and_v(th)[1], theta)
    return outputs, jacobians


# --------------------------------------------------------------------------- one call
@dataclass
class CallOutcome:
    """Per-trajectory gradients of one call and what the loss depended on."""

    grads: Tensor  # [B, P]: ∂L/∂θ through trajectory b's inputs
    leaf_norms: dict[str, float]  # |∂L/∂leaf| for each θ-dependent input
    leaf_grads: dict[str, Tensor]


class Evaluator:
    """Calls a loss on batches of a problem's trajectories within a shared time budget."""

    def __init__(
        self, fn: Callable[..., Any], names: list[str], *, timeout: float, trusted: bool = False
    ) -> None:
        self.fn = fn
        self.names = names
        self.used = 0.0  # seconds spent in the learner's code (pgcheck's own work is not counted)
        self.timeout = timeout
        self.trusted = trusted
        self.output = ""
        self.calls = 0

    def call(self, problem: Problem, traj: Trajectories) -> CallOutcome:
        """Evaluate the loss on ``traj`` and backpropagate to the per-trajectory leaves."""
        outputs, jacobians = policy_outputs(problem, problem.theta0, values="values" in self.names)
        inputs, leaves = build_inputs(problem, traj, self.names, outputs, jacobians)
        leaf_items = list(leaves.tensors.items())

        def run() -> tuple[Any, tuple[Tensor | None, ...] | None]:
            with torch.enable_grad():
                value = self.fn(**inputs)
                if not _usable(value) or not leaf_items:
                    return value, None
                grads = torch.autograd.grad(
                    value.reshape(()), [t for _, t in leaf_items], allow_unused=True
                )
            return value, grads

        self.calls += 1
        if self.trusted:
            value, grads = run()
        else:
            remaining = self.timeout - self.used
            if remaining <= 0:
                raise LearnerFailure(
                    LearnerError(
                        ErrorKind.TIMEOUT,
                        f"your loss used up the time limit of {self.timeout:.1f} s over "
                        f"{self.calls - 1} calls. Make it faster (vectorise the loops over steps) "
                        "or pass a larger timeout=",
                    )
                )
            start = time.monotonic()
            result = call_learner(lambda: run(), {}, seconds=remaining, name="your loss")
            self.used += time.monotonic() - start
            if result.output and len(self.output) < 2000:
                self.output += result.output[: 2000 - len(self.output)]
            if result.error is not None:
                raise LearnerFailure(result.error)
            value, grads = result.value
            # call_learner guards the inputs only through the closure; check them here
            _check_inputs_unchanged(inputs, traj)
        _check_value(value, self.names)
        if grads is None or all(g is None for g in grads):
            raise LearnerFailure(LearnerError(ErrorKind.NO_PATH_TO_THETA, _NO_PATH))
        P = problem.theta0.numel()
        total = torch.zeros(len(traj), P, dtype=torch.float64)
        norms: dict[str, float] = {}
        leaf_grads: dict[str, Tensor] = {}
        for (name, _), grad in zip(leaf_items, grads, strict=True):
            if grad is None:
                norms[name] = 0.0
                continue
            grad = grad.to(torch.float64)
            leaf_grads[name] = grad
            norms[name] = float(grad.norm())
            jac = leaves.jacobians[name]
            total += torch.einsum("b...,b...p->bp", grad, jac)
        if not torch.isfinite(total).all():
            raise LearnerFailure(
                LearnerError(
                    ErrorKind.NAN,
                    "the gradient of your loss contains NaN or inf. A common cause is "
                    "log(probs) where a probability underflows; use log_softmax or dist.log_prob.",
                )
            )
        return CallOutcome(total, norms, leaf_grads)


_NO_PATH = (
    "your loss has no path to θ: its gradient is missing. Don't call .detach(), "
    ".item(), .numpy() or torch.tensor(...) on log_probs/logits, and don't compute it "
    "under torch.no_grad()."
)


def _usable(value: Any) -> bool:
    return (
        isinstance(value, torch.Tensor)
        and value.numel() == 1
        and value.requires_grad
        and value.is_floating_point()
    )


def _check_value(value: Any, names: list[str]) -> None:
    if value is None:
        raise LearnerFailure(
            LearnerError(
                ErrorKind.NOT_A_TENSOR,
                "your loss returned None. Did you forget the `return` statement?",
            )
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise LearnerFailure(
            LearnerError(
                ErrorKind.NOT_A_TENSOR,
                f"your loss returned a Python number ({float(value):.4g}), which "
                "has no gradient. Return the tensor itself: don't call .item() or float().",
            )
        )
    if not isinstance(value, torch.Tensor):
        raise LearnerFailure(
            LearnerError(
                ErrorKind.NOT_A_TENSOR,
                f"your loss returned a {type(value).__name__}; it must return a "
                "scalar torch tensor.",
            )
        )
    if value.numel() != 1:
        raise LearnerFailure(
            LearnerError(
                ErrorKind.NOT_SCALAR,
                f"your loss returned a tensor of shape {list(value.shape)}; it must be "
                "a scalar. Reduce it: sum over the steps t, then .mean() over the trajectories.",
            )
        )
    if not value.is_floating_point():
        raise LearnerFailure(
            LearnerError(
                ErrorKind.NOT_A_TENSOR,
                f"your loss returned a {value.dtype} tensor; it must be a float.",
            )
        )
    if not torch.isfinite(value).all():
        raise LearnerFailure(
            LearnerError(
                ErrorKind.NAN,
                f"your loss is {value.item()}. A common cause is log(probs) of a tiny "
                "probability or a division by a zero standard deviation; use log_probs / "
                "log_softmax.",
            )
        )
    if not value.requires_grad:
        raise LearnerFailure(LearnerError(ErrorKind.NO_PATH_TO_THETA, _NO_PATH))


def _check_inputs_unchanged(inputs: dict[str, Any], traj: Trajectories) -> None:
    fresh = {
        "actions": traj.actions,
        "rewards": traj.rewards,
        "mask": traj.mask,
        "states": traj.states,
        "lengths": traj.lengths,
        "q_values": traj.reward_to_go,
        "returns": traj.returns,
    }
    for name, value in inputs.items():
        if name in fresh and isinstance(value, torch.Tensor):
            if value.shape != fresh[name].shape or not torch.equal(value, fresh[name]):
                raise LearnerFailure(
                    LearnerError(
                        ErrorKind.IN_PLACE,
                        f"your loss modified its input `{name}` in place. Use "
                        "out-of-place operations (x = x * g instead of x *= g) or x.clone().",
                    )
                )
        elif isinstance(value, torch.Tensor) and value.requires_grad and value._version != 0:
            raise LearnerFailure(
                LearnerError(
                    ErrorKind.IN_PLACE,
                    f"your loss modified its input `{name}` in place. Use out-of-place "
                    "operations or work on a .clone().",
                )
            )


# --------------------------------------------------------------------------- expectations
@dataclass
class Expectation:
    """E[−∇L] on one problem, and how the loss treats the batch."""

    problem: str
    expected_grad: list[float]  # E[ĝ] with ĝ = −∇_θ L at the nominal batch size
    reduction: str  # "mean", "sum" or "mixing"
    leaf_norms: dict[str, float]
    batch_size: int


def separable_expectation(
    ev: Evaluator, problem: Problem, batch_size: int
) -> tuple[Expectation | None, CallOutcome | None]:
    """E[ĝ] for a loss that treats trajectories separately, or None if it mixes them."""
    traj, p = problem.support(problem.theta0)
    M = len(traj)
    try:
        full = ev.call(problem, traj)
    except LearnerFailure as failure:
        if failure.error.kind != ErrorKind.EXCEPTION or M == 1:
            raise
        return _one_at_a_time(ev, problem, traj, p, failure), None
    subset = list(range(0, M, 2)) if M > 1 else [0]
    sub = ev.call(problem, traj.select(subset))
    reduction = classify_reduction(full.grads[subset], sub.grads, M / len(subset))
    if reduction == "mixing":
        return None, full
    per_traj = p @ full.grads * (M if reduction == "mean" else 1.0)
    factor = 1.0 if reduction == "mean" else float(batch_size)
    g = -per_traj * factor
    return Expectation(problem.name, g.tolist(), reduction, full.leaf_norms, batch_size), full


def _one_at_a_time(
    ev: Evaluator, problem: Problem, traj: Trajectories, p: Tensor, failure: LearnerFailure
) -> Expectation:
    """Fallback for a loss that only works on one trajectory: a loop over batches of one."""
    acc = torch.zeros(problem.theta0.numel(), dtype=torch.float64)
    norms: dict[str, float] = {}
    for j in range(len(traj)):
        try:
            out = ev.call(problem, traj.select([j]))
        except LearnerFailure as single:
            raise failure if single.error.kind == ErrorKind.EXCEPTION else single from None
        acc += p[j] * out.grads[0]
        for name, v in out.leaf_norms.items():
            norms[name] = max(norms.get(name, 0.0), v)
    return Expectation(problem.name, (-acc).tolist(), "one-at-a-time", norms, 1)


def classify_reduction(in_full: Tensor, in_subset: Tensor, size_ratio: float) -> str:
    """ "mean" if the subset's rows are ``size_ratio`` × the full batch's, "sum" if equal,
    "mixing" otherwise (a trajectory's gradient depends on the others in its batch)."""
    scale = max(float(in_full.abs().max()), float(in_subset.abs().max()), 1e-300)
    if scale <= 1e-13:  # a (numerically) zero gradient: nothing to mix
        return "mean"
    for name, rho in (("mean", size_ratio), ("sum", 1.0)):
        if float((in_subset - rho * in_full).abs().max()) <= PROBE_RTOL * scale * max(rho, 1):
            return name
    return "mixing"


def pairwise_expectation(ev: Evaluator, problem: Problem) -> Expectation:
    """E[−∇L(τ_j, τ_k)] over every ordered batch of two, τ_j, τ_k ~ p_θ independently."""
    traj, p = problem.support(problem.theta0)
    M = len(traj)
    acc = torch.zeros(problem.theta0.numel(), dtype=torch.float64)
    norms: dict[str, float] = {}
    for j in range(M):
        for k in range(M):
            out = ev.call(problem, traj.select([j, k]))
            acc += p[j] * p[k] * out.grads.sum(0)
            for name, v in out.leaf_norms.items():
                norms[name] = max(norms.get(name, 0.0), v)
    return Expectation(problem.name, (-acc).tolist(), "mixing", norms, 2)


def extract_weights(
    problem: Problem, traj: Trajectories, outcome: CallOutcome, reduction: str
) -> list[list[float]] | None:
    """The per-step weights w_t of a loss of the form L = −c Σ_i Σ_t w_it log π(a_it|s_it).

    For such a loss ∂L/∂logits_it = −c·w_it (e_{a_it} − π(·|s_it)); returns the w (scaled to a
    mean over trajectories) if every step's gradient has that form, else None.
    """
    grad = outcome.leaf_grads.get("logits")
    if grad is None or reduction not in ("mean", "sum"):
        return None
    if any(v > 0 for k, v in outcome.leaf_norms.items() if k != "logits"):
        return None
    outputs, _ = policy_outputs(problem, problem.theta0)
    pi = torch.softmax(outputs["logits"], -1)[traj.states]  # [M, T, A]
    direction = torch.nn.functional.one_hot(traj.actions, pi.shape[-1]).to(pi.dtype) - pi
    c = (grad * direction).sum(-1) / (direction * direction).sum(-1).clamp_min(1e-300)
    scale = float(grad.abs().max())
    if scale == 0 or float((grad - c[..., None] * direction).abs().max()) > 1e-9 * scale:
        return None
    w = -c * (len(traj) if reduction == "mean" else 1.0)
    return w.tolist()
