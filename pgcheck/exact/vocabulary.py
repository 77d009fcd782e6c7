"""The names a pseudo-loss can ask for, and the tensors behind them.

A learner's ``loss_fn`` asks for inputs by parameter name. The θ-dependent tensors are built
from *leaf* tensors (per-state policy outputs gathered along the batch): one backward pass
then yields ∂L/∂(logits, values, mean, std) for every trajectory and step, which the engine
turns into per-trajectory gradients with respect to θ.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pgcheck.problems.base import Trajectories

VOCABULARY: dict[str, str] = {
    "log_probs": "[B,T] log π_θ(a_t|s_t), differentiable (non-zero on padded steps)",
    "logits": "[B,T,A] policy logits, differentiable (categorical problems)",
    "probs": "[B,T,A] softmax(logits), differentiable (categorical problems)",
    "dist": "torch.distributions object with batch shape [B,T] (Categorical or Normal)",
    "mean": "[B,T] mean of the Gaussian policy, differentiable (Gaussian problems)",
    "std": "[B,T] standard deviation of the Gaussian policy, differentiable (Gaussian problems)",
    "actions": "[B,T] sampled actions (long, or float for Gaussian problems)",
    "rewards": "[B,T] r_t, reward for taking a_t in s_t (0 on padding)",
    "mask": "[B,T] 1.0 on real steps, 0.0 on padding after the episode ended",
    "gamma": "float, the discount factor γ",
    "states": "[B,T] state indices s_t (long)",
    "observations": "[B,T,S] one-hot encoding of s_t (float); [B,T,n] the state vector s_t "
    "on continuous-state problems",
    "lengths": "[B] episode lengths T_i (long)",
    "q_values": "[B,T] reward-to-go G_t = Σ_{t'≥t} γ^{t'-t} r_{t'} (detached, 0 on padding)",
    "returns": "[B] R(τ) = Σ_t γ^t r_t (detached)",
    "values": "[B,T] exact V^π(s_t), depends on θ: detach it to use as a baseline",
}

THETA_NAMES = frozenset({"log_probs", "logits", "probs", "dist", "mean", "std", "values"})
CATEGORICAL_ONLY = frozenset({"logits", "probs", "values", "observations"})
GAUSSIAN_ONLY = frozenset({"mean", "std"})
#: what a problem with continuous states (vectors s_t) cannot provide
CONTINUOUS_STATE_MISSING = frozenset({"logits", "probs", "values", "states"})


def provides(problem: Any, names: Sequence[str]) -> bool:
    """Whether ``problem`` can provide every input in ``names`` (categorical vs Gaussian)."""
    if getattr(problem, "continuous_states", False):  # s_t is a vector: no state indices
        return not set(names) & (CONTINUOUS_STATE_MISSING)
    if problem.action_kind == "gaussian":
        return not set(names) & CATEGORICAL_ONLY
    return not set(names) & GAUSSIAN_ONLY


class VocabularyError(ValueError):
    """The loss asks for a name pgcheck does not provide, or its signature cannot be used."""


def vocabulary_text() -> str:
    """The vocabulary as an aligned list, for error messages and docs."""
    return "\n".join(f"  {k:<13} {v}" for k, v in VOCABULARY.items())


def requested_names(fn: Callable[..., Any]) -> list[str]:
    """The vocabulary names ``fn`` asks for (parameters with defaults may be left out)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise VocabularyError(f"pgcheck cannot read the parameters of {fn!r}: {exc}") from None
    names: list[str] = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            raise VocabularyError(
                "Your loss takes *args; name its inputs instead, e.g. "
                "def pseudo_loss(log_probs, q_values, gamma, mask): ..."
            )
        if p.kind is p.VAR_KEYWORD:
            raise VocabularyError(
                f"Your loss takes **{p.name}; pgcheck passes exactly the inputs a loss names, "
                "so name them, e.g. def pseudo_loss(log_probs, q_values, gamma, mask): ... "
                f"The names are:\n{vocabulary_text()}"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise VocabularyError("Your loss has positional-only parameters; remove the '/'.")
        if p.name in VOCABULARY:
            names.append(p.name)
        elif p.default is p.empty:
            raise VocabularyError(
                f"Your loss asks for `{p.name}`, which pgcheck does not provide. "
                f"Ask for inputs by these names:\n{vocabulary_text()}"
            )
    if not names:
        raise VocabularyError(
            "Your loss asks for no inputs. Give it parameters named from this vocabulary:\n"
            + vocabulary_text()
        )
    return names


@dataclass
class Leaves:
    """The differentiable leaves of one call and the θ-Jacobians that map them to θ."""

    tensors: dict[str, Tensor]  # name -> leaf [B,T,...] with requires_grad
    jacobians: dict[str, Tensor]  # name -> [B,T,...,P]


def build_inputs(
    problem: Any,
    traj: Trajectories,
    names: list[str],
    outputs: dict[str, Tensor],
    jacobians: dict[str, Tensor],
) -> tuple[dict[str, Any], Leaves]:
    """Fresh inputs for one call of the learner's loss on the batch ``traj``.

    ``outputs`` are per-state policy outputs at θ (``logits`` [S,A] and ``values`` [H,S] for
    categorical problems, ``mean`` and ``std`` [S] for Gaussian ones) with their Jacobians
    ``jacobians`` (same shapes plus a trailing P).
    """
    want = set(names)
    states, mask = traj.states, traj.mask
    B, T = states.shape
    leaves: dict[str, Tensor] = {}
    jac: dict[str, Tensor] = {}
    inputs: dict[str, Any] = {}
    gaussian = problem.action_kind == "gaussian"
    if gaussian:
        if want & {"log_probs", "dist", "mean", "std"}:
            per_step = problem.step_outputs(problem.theta0, traj) if "mean" not in outputs else None
            for key in ("mean", "std"):
                if per_step is not None:  # outputs depend on the trajectory's states s_t
                    leaves[key] = per_step[0][key].detach().clone().requires_grad_(True)
                    jac[key] = per_step[1][key]
                    continue
                leaves[key] = outputs[key][states].detach().clone().requires_grad_(True)
                jac[key] = jacobians[key][states]
            dist = torch.distributions.Normal(leaves["mean"], leaves["std"], validate_args=False)
            if "log_probs" in want:
                inputs["log_probs"] = dist.log_prob(traj.actions)
            if "dist" in want:
                inputs["dist"] = dist
            for key in ("mean", "std"):
                if key in want:
                    inputs[key] = leaves[key]
    else:
        if want & {"log_probs", "logits", "probs", "dist"}:
            leaves["logits"] = outputs["logits"][states].detach().clone().requires_grad_(True)
            jac["logits"] = jacobians["logits"][states]
            logits = leaves["logits"]
            if "log_probs" in want:
                inputs["log_probs"] = (
                    torch.log_softmax(logits, -1).gather(-1, traj.actions[..., None]).squeeze(-1)
                )
            if "logits" in want:
                inputs["logits"] = logits
            if "probs" in want:
                inputs["probs"] = torch.softmax(logits, -1)
            if "dist" in want:
                inputs["dist"] = torch.distributions.Categorical(logits=logits, validate_args=False)
        if "values" in want:
            t_idx = torch.arange(T)[None, :].expand(B, T)
            v = outputs["values"][t_idx, states] * mask
            leaves["values"] = v.detach().clone().requires_grad_(True)
            jac["values"] = jacobians["values"][t_idx, states] * mask[..., None]
            inputs["values"] = leaves["values"]
    data = {
        "actions": lambda: traj.actions.clone(),
        "rewards": lambda: traj.rewards.clone(),
        "mask": lambda: mask.clone(),
        "gamma": lambda: float(traj.gamma),
        "states": lambda: states.clone(),
        "observations": lambda: (
            torch.nn.functional.one_hot(states, problem.n_states).to(torch.float64)
            if not hasattr(traj, "observations")
            else traj.observations.clone()
        ),
        "lengths": lambda: traj.lengths.clone(),
        "q_values": lambda: traj.reward_to_go.clone(),
        "returns": lambda: traj.returns.clone(),
    }
    for key, make in data.items():
        if key in want:
            inputs[key] = make()
    return {k: inputs[k] for k in names}, Leaves(leaves, jac)
