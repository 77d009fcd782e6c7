"""From expected gradients to a verdict, a diagnosis and a message in the course's notation.

E[ĝ] = α ∇J + r with ĝ = −∇_θ L. α = 1, r = 0: unbiased. α > 0, r = 0: scaled (passes with a
note). α < 0: the sign is flipped. r ≠ 0: biased; the learner's expected gradients on every
instance are matched (up to a factor) against reference estimators of known mistakes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

#: Relative tolerance on ‖E[ĝ] − ∇J‖ / ‖∇J‖. Correct estimators are exact to ~1e-14 in
#: float64; the subtlest mistake in the default suite (missing γ^t) is off by > 1e-2.
RTOL = 1e-6
#: Tolerance for matching a reference estimator (same expected gradient up to a factor).
MATCH_RTOL = 1e-7

MESSAGES: dict[str, str] = {
    "correct": "Your pseudo-loss is a correct policy-gradient estimator.",
    "sign_flipped": (
        "The sign is flipped: minimising your loss climbs down J. The optimiser minimises, so "
        "return the negative surrogate, L = −(1/N) Σ_i Σ_t γ^t G_t log π(a_t|s_t)."),
    "probs_instead_of_log_probs": (
        "You weight the probability π(a_t|s_t) where the log-derivative trick needs "
        "log π(a_t|s_t): use log_probs (or −F.cross_entropy(logits, actions)), not probs."),
    "zero_gradient": (
        "Your loss depends on θ but its expected gradient is exactly zero. If you summed "
        "softmax(logits)·q over all actions: the probabilities always add up to 1, so that sum "
        "does not move with θ. Weight log π(a_t|s_t) of the action that was actually taken."),
    "theta_leak": (
        "θ leaks into your weights: `values` depends on θ and your loss differentiates it. "
        "Use values.detach() as the baseline, so only log π(a_t|s_t) is differentiated."),
    "action_dependent_baseline": (
        "What you subtract from the return depends on the action a_t, so it is not a baseline: "
        "E[b(s_t,a_t) ∇log π(a_t|s_t)] ≠ 0. Subtract something that depends only on s_t "
        "(and the past), e.g. values.detach()."),
    "drops_current_reward": (
        "Your reward-to-go leaves out r_t, the reward that a_t itself earned (it starts at "
        "r_{t+1}). Use G_t = r_t + γ G_{t+1}."),
    "reward_to_come": (
        "You weight log π(a_t|s_t) by the rewards collected up to step t. An action cannot "
        "change the past: weight it by the rewards from t on, G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}."),
    "discount_backwards": (
        "Your discounted sum runs the wrong way: a forward loop G = r_t + γ·G gives "
        "Σ_{t'≤t} γ^{t−t'} r_{t'}. Loop backwards from the last step: G_t = r_t + γ G_{t+1}."),
    "immediate_reward": (
        "You weight log π(a_t|s_t) by the immediate reward r_t only; an action also shapes "
        "the rewards after it. Use the reward-to-go γ^t G_t."),
    "undiscounted_return": (
        "Your return ignores γ: use R(τ) = Σ_t γ^t r_t (the objective is discounted)."),
    "undiscounted_reward_to_go": (
        "Your reward-to-go ignores γ: use G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}."),
    "missing_gamma_t": (
        "You weight log π(a_t|s_t) by G_t without the factor γ^t. For the discounted "
        "objective J = E[Σ_t γ^t r_t] the weight is γ^t G_t. (Dropping γ^t is a common "
        "convention, biased when γ < 1; pass accept_missing_gamma_t=True to accept it.)"),
    "discounted_twice": (
        "R(τ) is already discounted from t = 0; multiplying it by γ^t again discounts twice. "
        "Use R(τ) at every step, or γ^t G_t."),
    "per_episode_mean": (
        "You divide each episode's sum by its length T_i. Lengths differ and depend on θ, so "
        "this biases the gradient: sum over t, and average over episodes only."),
    "forgotten_mask": (
        "Padded steps after an episode ended enter your loss (log π is not zero there). "
        "Multiply by mask before summing over t."),
    "advantage_normalisation": (
        "You normalise the weights over the batch ((w − mean)/std). For a finite batch this is "
        "biased (here checked exactly at B = 2); it is a popular variance-reduction trick, but "
        "it does not estimate ∇J. Subtract a baseline instead, or accept the bias knowingly."),
    "sum_over_batch": (
        "Your loss sums over the trajectories of the batch, so its gradient is B·∇J (B = the "
        "batch size). It points the right way; use .mean() over trajectories so that the "
        "learning rate does not depend on B."),
    "mean_over_steps": (
        "Your loss averages over all B×T entries, so its gradient is ∇J / T (T = padded "
        "length). It points the right way; summing over t and averaging over trajectories "
        "gives ∇J itself."),
    "no_path_to_theta": (
        "Your loss has no path to θ: its gradient is missing. Don't call .detach(), .item(), "
        ".numpy() or torch.tensor(...) on log_probs or logits."),
}


def message_for(code: str) -> str:
    """The message for a (possibly combined, '+'-joined) diagnosis code."""
    return " ".join(MESSAGES.get(part, "") for part in code.split("+")).strip()


def decompose(g: Tensor, grad_j: Tensor) -> tuple[float, float, float]:
    """α = ⟨g, ∇J⟩ / ‖∇J‖², the relative residual ‖r‖ / ‖g‖, and ‖g − ∇J‖ / ‖∇J‖."""
    denom = float(grad_j @ grad_j)
    alpha = float(g @ grad_j) / denom if denom > 0 else 0.0
    r = g - alpha * grad_j
    scale = max(float(g.norm()), abs(alpha) * float(grad_j.norm()), 1e-300)
    return alpha, float(r.norm()) / scale, float((g - grad_j).norm()) / max(
        float(grad_j.norm()), 1e-300)


def match_factor(gs: Sequence[Tensor], refs: Sequence[Tensor]) -> float | None:
    """β with gs ≈ β·refs on every instance (within MATCH_RTOL), or None."""
    num = sum(float(g @ m) for g, m in zip(gs, refs, strict=True))
    den = sum(float(m @ m) for m in refs)
    if den <= 0:
        return None
    beta = num / den
    if beta == 0:
        return None
    for g, m in zip(gs, refs, strict=True):
        scale = max(float(g.norm()), abs(beta) * float(m.norm()), 1e-300)
        if float((g - beta * m).norm()) > MATCH_RTOL * scale:
            return None
    return beta
