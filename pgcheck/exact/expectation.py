"""The exact expectation of the gradient of a learner's pseudo-loss.

For a loss that treats trajectories separately, L(batch) = c_B Σ_i ℓ(τ_i), one call on the
batch of *all* trajectories of a problem and one backward pass give every per-trajectory
gradient G_j = ∂L/∂θ restricted to trajectory j, so that

    E[∇L] = Σ_τ p_θ(τ) ∇ℓ(τ)        (p_θ(τ) detached)

is a weighted sum with no sampling noise. Whether the loss is a mean (c_B = 1/B), a sum
(c_B = 1) or mixes trajectories is found by a probe: the same trajectories in a smaller batch.
A loss that mixes trajectories (leave-one-out baselines, batch normalisation) is checked
exactly over every batch of three, E[∇L₃] = Σ_{j,k,l} p_j p_k p_l ∇L(τ_j, τ_k, τ_l)
(:func:`batch_expectation`), on instances as long as the main suite's.

Batches are built as real training batches are: padded to their longest episode (what
``pad_sequence`` gives), and of a size B that differs from the padded length T, the number
of actions A and the number of states S, so that a broadcasting bug cannot hide
(:func:`batch_rows`). A batched call that raises is an error, never a reason to retry one
trajectory at a time; that mode (``one_at_a_time=True``) is the learner's choice.

The learner's code only ever runs through :func:`pgcheck.sandbox.call_learner`.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from pgcheck.errors import ErrorKind, LearnerError
from pgcheck.exact.vocabulary import build_inputs
from pgcheck.problems import Problem, Trajectories
from pgcheck.problems.base import CategoricalProblem, GaussianProblem
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
            elif isinstance(problem, GaussianProblem):
                gaussian = problem
                mean, std = gaussian.mean_std(theta)
                outputs = {"mean": mean.detach(), "std": std.detach()}
                jacobians = {
                    "mean": jac(lambda th: gaussian.mean_std(th)[0], theta),
                    "std": jac(lambda th: gaussian.mean_std(th)[1], theta),
                }
            elif isinstance(problem, CategoricalProblem):
                outputs = {"logits": problem.policy.logits(theta).detach()}
                jacobians = {"logits": problem.policy.logits_jacobian(theta)}
            else:
                raise TypeError(f"problem {problem.name!r} has no policy outputs to check")
        _OUTPUT_CACHE[key] = (outputs, jacobians)
    outputs, jacobians = _OUTPUT_CACHE[key]
    if values and isinstance(problem, CategoricalProblem) and "values" not in outputs:
        categorical = problem
        with torch.enable_grad():
            outputs["values"] = categorical.q_and_v(theta)[1].detach()
            jacobians["values"] = jac(lambda th: categorical.q_and_v(th)[1], theta)
    return outputs, jacobians


# --------------------------------------------------------------------------- one call
#: Who performs one call of the loss. None: this process, through call_learner. Otherwise
#: ``caller(inputs, leaves, seconds, traj) -> (value, gradients of value w.r.t. leaves)``,
#: given the inputs built here, the named leaves they come from and the batch. The trusted
#: grader sets it (:func:`use_caller`) to a call in its sandbox: this engine runs in the grader.
CALLER: contextvars.ContextVar[Callable[..., Any] | None] = contextvars.ContextVar(
    "pgcheck_exact_caller", default=None
)


def use_caller(caller: Callable[..., Any] | None) -> contextvars.Token[Any]:
    """Make every new :class:`Evaluator` call the loss through ``caller``; returns the token
    for ``CALLER.reset``."""
    return CALLER.set(caller)


@dataclass
class CallOutcome:
    """Per-trajectory gradients of one call and what the loss depended on."""

    grads: Tensor  # [B, P]: ∂L/∂θ through trajectory b's inputs
    leaf_norms: dict[str, float]  # |∂L/∂leaf| for each θ-dependent input
    leaf_grads: dict[str, Tensor]
    by_leaf: dict[str, Tensor] = field(default_factory=dict)  # [B, P] through each leaf


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
        self.caller = CALLER.get()

    def call(self, problem: Problem, traj: Trajectories) -> CallOutcome:
        """Evaluate the loss on ``traj`` and backpropagate to the per-trajectory leaves."""
        outputs, jacobians = policy_outputs(problem, problem.theta0, values="values" in self.names)
        inputs, leaves = build_inputs(problem, traj, self.names, outputs, jacobians)
        leaf_items = list(leaves.tensors.items())

        def run() -> tuple[LearnerError | None, tuple[Tensor | None, ...] | None]:
            # Everything that touches the learner's return value runs here, inside the
            # guarded call: a tensor subclass may do anything in __bool__ or __torch_function__.
            with torch.enable_grad():
                value = self.fn(**inputs)
                problem_with_value = _value_problem(value)
                if problem_with_value is not None:
                    return problem_with_value, None
                if not leaf_items:
                    return LearnerError(ErrorKind.NO_PATH_TO_THETA, _NO_PATH), None
                grads = torch.autograd.grad(
                    value.reshape(()), [t for _, t in leaf_items], allow_unused=True
                )
            return None, tuple(_plain(g) for g in grads)

        self.calls += 1
        if self.trusted:
            error, grads = run()
        else:
            remaining = self.timeout - self.used
            if remaining <= 0:
                raise LearnerFailure(
                    LearnerError(
                        ErrorKind.TIMEOUT,
                        f"your loss used up its time limit of {self.timeout:.1f} s of CPU time "
                        f"over {self.calls - 1} calls. Make it faster (vectorise the loops over "
                        "steps) or pass a larger timeout=",
                    )
                )
            if self.caller is not None:  # one call in the grader's jail; it checks the inputs
                start = time.monotonic()
                value, grads = self.caller(inputs, dict(leaf_items), remaining, traj)
                self.used += time.monotonic() - start
                error = _value_problem(value)
                if grads is not None:
                    grads = tuple(_plain(g) for g in grads)
            else:
                result = call_learner(lambda: run(), {}, seconds=remaining, name="your loss")
                self.used += result.cpu_seconds
                if result.output and len(self.output) < 2000:
                    self.output += result.output[: 2000 - len(self.output)]
                if result.error is not None:
                    error = result.error
                    if error.kind == ErrorKind.EXCEPTION:
                        error = LearnerError(error.kind, error.message + _shapes(inputs))
                    raise LearnerFailure(error)
                error, grads = result.value
            # call_learner guards the inputs only through the closure; check them here
            _check_inputs_unchanged(inputs, traj)
        if error is not None:
            if error.kind == ErrorKind.NOT_SCALAR:
                error = LearnerError(error.kind, error.message + _shapes(inputs))
            raise LearnerFailure(error)
        if grads is None or all(g is None for g in grads):
            raise LearnerFailure(LearnerError(ErrorKind.NO_PATH_TO_THETA, _NO_PATH))
        P = problem.theta0.numel()
        total = torch.zeros(len(traj), P, dtype=torch.float64)
        norms: dict[str, float] = {}
        leaf_grads: dict[str, Tensor] = {}
        by_leaf: dict[str, Tensor] = {}
        for (name, leaf), grad in zip(leaf_items, grads, strict=True):
            if grad is None:
                norms[name] = 0.0
                continue
            if grad.shape != leaf.shape:
                raise LearnerFailure(
                    LearnerError(ErrorKind.EXCEPTION, "your loss's gradient has the wrong shape")
                )
            grad = grad.to(torch.float64)
            leaf_grads[name] = grad
            norms[name] = float(grad.norm())
            jac = leaves.jacobians[name]
            part = torch.einsum("b...,b...p->bp", grad, jac)
            by_leaf[name] = part
            total += part
        if not torch.isfinite(total).all():
            raise LearnerFailure(
                LearnerError(
                    ErrorKind.NAN,
                    "the gradient of your loss contains NaN or inf. A common cause is "
                    "log(probs) where a probability underflows; use log_softmax or dist.log_prob.",
                )
            )
        return CallOutcome(total, norms, leaf_grads, by_leaf)


def _plain(g: Tensor | None) -> Tensor | None:
    """A plain float64 tensor copy of a gradient (never a learner's tensor subclass)."""
    if g is None:
        return None
    if type(g) is not torch.Tensor:
        return torch.tensor(g.detach().tolist(), dtype=torch.float64)
    return g.detach().to(torch.float64).clone()


def _shapes(inputs: dict[str, Any]) -> str:
    """The shapes of a call's inputs, for a message: " (inputs: log_probs [126, 3], …)"."""
    parts = []
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            parts.append(f"{name} {list(value.shape)}")
        elif isinstance(value, torch.distributions.Distribution):
            parts.append(f"{name} batch {list(value.batch_shape)}")
        else:
            parts.append(f"{name} = {value!r}")
    return (
        f" (the batched call; inputs: {', '.join(parts)}). pgcheck calls your loss on whole "
        "padded batches [B, T] as training does; make it work on a batch (a [B] tensor times "
        "a [B, T] one needs [:, None]), or pass one_at_a_time=True to check it on B = 1."
    )


_NO_PATH = (
    "your loss has no path to θ: its gradient is missing. Don't call .detach(), "
    ".item(), .numpy() or torch.tensor(...) on log_probs/logits, and don't compute it "
    "under torch.no_grad()."
)


def _value_problem(value: Any) -> LearnerError | None:
    """What is wrong with the learner's return value, or None for a usable scalar tensor."""
    if value is None:
        return LearnerError(
            ErrorKind.NOT_A_TENSOR,
            "your loss returned None. Did you forget the `return` statement?",
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        return LearnerError(
            ErrorKind.NOT_A_TENSOR,
            f"your loss returned a Python number ({float(value):.4g}), which "
            "has no gradient. Return the tensor itself: don't call .item() or float().",
        )
    if not isinstance(value, torch.Tensor):
        return LearnerError(
            ErrorKind.NOT_A_TENSOR,
            f"your loss returned a {type(value).__name__}; it must return a scalar torch tensor.",
        )
    if value.numel() != 1:
        return LearnerError(
            ErrorKind.NOT_SCALAR,
            f"your loss returned a tensor of shape {list(value.shape)}; it must be "
            "a scalar. Reduce it: sum over the steps t, then .mean() over the trajectories.",
        )
    if not value.is_floating_point():
        return LearnerError(
            ErrorKind.NOT_A_TENSOR,
            f"your loss returned a {value.dtype} tensor; it must be a float.",
        )
    number = float(value.detach().reshape(()).item())
    if not math.isfinite(number):
        return LearnerError(
            ErrorKind.NAN,
            f"your loss is {number}. A common cause is log(probs) of a tiny "
            "probability or a division by a zero standard deviation; use log_probs / "
            "log_softmax.",
        )
    if not value.requires_grad:
        return LearnerError(ErrorKind.NO_PATH_TO_THETA, _NO_PATH)
    return None


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
    padding_dependent: bool = False  # the loss changes with the padded length of the batch
    #: E[ĝ] through each θ-dependent input alone (they add up to ``expected_grad``)
    leaf_expected: dict[str, list[float]] = field(default_factory=dict)
    #: categorical, A ≥ 3: whether ∂L/∂logits_t ∝ e_{a_t} − π(·|s_t) at every step (the loss
    #: only weights log π of the taken actions); None where not measured
    score_form: bool | None = None


def batch_dims(problem: Problem, traj: Trajectories) -> set[int]:
    """Sizes a batch must not have on this problem: T, A and S (so broadcasting cannot hide)."""
    dims = {int(traj.states.shape[1]), int(problem.n_states)}
    n_actions = getattr(problem, "n_actions", None)
    if isinstance(n_actions, int):
        dims.add(n_actions)
    return dims


def batch_rows(rows: list[int], avoid: set[int]) -> list[int]:
    """``rows`` followed by copies of ``rows[0]`` until the batch size is not in ``avoid``.

    The copies get probability weight 0 (their gradient rows are dropped), so they only make
    the batch's shape [B, T] have B ∉ {T, A, S}.
    """
    out = list(rows)
    while len(out) in avoid:
        out.append(rows[0])
    return out


def make_batch(traj: Trajectories, rows: list[int]) -> Trajectories:
    """The trajectories ``rows`` as a training batch: padded to its longest episode."""
    sub = traj.select(rows)
    T = max(int(sub.lengths.max()), 1)
    if T == sub.states.shape[1]:
        return sub
    return Trajectories(
        sub.states[:, :T],
        sub.actions[:, :T],
        sub.rewards[:, :T],
        sub.mask[:, :T],
        sub.lengths,
        sub.log_prob_dynamics,
        sub.gamma,
    )


def _call_rows(
    ev: Evaluator, problem: Problem, traj: Trajectories, rows: list[int]
) -> tuple[Tensor, int]:
    """Per-trajectory gradients [len(rows), P] of one call on the batch ``rows`` (made safe
    against broadcasting: extra copies are appended and their rows dropped)."""
    padded = batch_rows(rows, batch_dims(problem, make_batch(traj, rows)))
    return ev.call(problem, make_batch(traj, padded)).grads[: len(rows)], len(padded)


def separable_expectation(
    ev: Evaluator, problem: Problem, batch_size: int, *, one_at_a_time: bool = False
) -> tuple[Expectation | None, CallOutcome | None]:
    """E[ĝ] for a loss that treats trajectories separately, or None if it mixes them.

    With ``one_at_a_time`` every call is a batch of one trajectory (the learner asked for it).
    """
    traj, p = problem.support(problem.theta0)
    M = len(traj)
    if one_at_a_time:
        return _one_at_a_time(ev, problem, traj, p), None
    rows = batch_rows(list(range(M)), batch_dims(problem, traj))
    full = ev.call(problem, make_batch(traj, rows))
    full = CallOutcome(
        full.grads[:M],
        full.leaf_norms,
        {k: v[:M] for k, v in full.leaf_grads.items()},
        {k: v[:M] for k, v in full.by_leaf.items()},
    )
    subset = list(range(0, M, 2)) if M > 1 else [0]
    sub_rows = batch_rows(subset, batch_dims(problem, traj) | {len(rows)})
    sub = ev.call(problem, traj.select(sub_rows)).grads[: len(subset)]
    reduction = classify_reduction(full.grads[subset], sub, len(rows) / len(sub_rows))
    if reduction == "mixing":
        return None, full
    per_traj = p @ full.grads * (len(rows) if reduction == "mean" else 1.0)
    factor = 1.0 if reduction == "mean" else float(batch_size)
    g = -per_traj * factor
    exp = Expectation(problem.name, g.tolist(), reduction, full.leaf_norms, batch_size)
    mult = (len(rows) if reduction == "mean" else 1.0) * factor
    exp.leaf_expected = {k: (-(p @ v) * mult).tolist() for k, v in full.by_leaf.items()}
    exp.padding_dependent = _padding_dependent(ev, problem, traj)
    return exp, full


def _padding_dependent(ev: Evaluator, problem: Problem, traj: Trajectories) -> bool:
    """Whether the loss changes when the same short episodes are padded less.

    Training pads each batch to its longest episode, so such a loss (a mean over all B×T
    entries, a forgotten mask) weighs batches by their padded length: biased in training.
    """
    longest = int(traj.lengths.max())
    short = [j for j in range(len(traj)) if int(traj.lengths[j]) < longest][::2]
    if not short:
        return False
    trimmed = make_batch(traj, short)
    avoid = batch_dims(problem, trimmed) | batch_dims(problem, traj)
    rows = batch_rows(short, avoid)
    a = ev.call(problem, traj.select(rows)).grads[: len(short)]
    b = ev.call(problem, make_batch(traj, rows)).grads[: len(short)]
    scale = max(float(a.abs().max()), 1e-300)
    return float((a - b).abs().max()) > PROBE_RTOL * scale


def _one_at_a_time(ev: Evaluator, problem: Problem, traj: Trajectories, p: Tensor) -> Expectation:
    """E[ĝ] from batches of one trajectory each (``one_at_a_time=True``)."""
    acc = torch.zeros(problem.theta0.numel(), dtype=torch.float64)
    norms: dict[str, float] = {}
    for j in range(len(traj)):
        out = ev.call(problem, make_batch(traj, [j]))
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


#: The batch size at which losses that mix trajectories are checked (B ≥ 3: at B = 2 a
#: leave-one-out baseline and several normalisations degenerate).
MIXING_BATCH = 3


def mixing_batch_size(problem: Problem) -> int:
    """The smallest B ≥ :data:`MIXING_BATCH` that differs from the problem's T, A and S."""
    traj = problem.support(problem.theta0)[0]
    B = MIXING_BATCH
    while B in batch_dims(problem, traj):
        B += 1
    return B


def batch_expectation(ev: Evaluator, problem: Problem, size: int | None = None) -> Expectation:
    """E[−∇L(τ_1, …, τ_B)] over every batch of B i.i.d. trajectories τ_b ~ p_θ.

    E = Σ_{j_1..j_B} Π_b p_{j_b} ∇L(τ_{j_1}, …, τ_{j_B}). For a loss that is symmetric in
    the order of the batch (checked by a probe) the sum runs over multisets with their
    multinomial counts, B!/Π_k n_k!, instead of every ordered tuple.
    """
    traj, p = problem.support(problem.theta0)
    M = len(traj)
    B = mixing_batch_size(problem) if size is None else size
    acc = torch.zeros(problem.theta0.numel(), dtype=torch.float64)
    norms: dict[str, float] = {}

    def grad_of(rows: tuple[int, ...]) -> Tensor:
        out = ev.call(problem, make_batch(traj, list(rows)))
        for name, v in out.leaf_norms.items():
            norms[name] = max(norms.get(name, 0.0), v)
        return out.grads.sum(0)

    symmetric = True
    if M >= 2:
        probe = tuple((i * 5 + 1) % M for i in range(B))
        turned = probe[1:] + probe[:1]
        a, b = grad_of(probe), grad_of(turned)
        scale = max(float(a.abs().max()), 1e-300)
        symmetric = float((a - b).abs().max()) <= PROBE_RTOL * scale
    if symmetric:
        fact = math.factorial(B)
        for rows in itertools.combinations_with_replacement(range(M), B):
            counts = Counter(rows).values()
            weight = fact / math.prod(math.factorial(c) for c in counts)
            acc += weight * float(torch.prod(p[list(rows)])) * grad_of(rows)
    else:
        for rows in itertools.product(range(M), repeat=B):
            acc += float(torch.prod(p[list(rows)])) * grad_of(rows)
    return Expectation(problem.name, (-acc).tolist(), "mixing", norms, B)


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
