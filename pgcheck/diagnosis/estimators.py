"""A zoo of pseudo-losses: correct policy-gradient estimators and the common mistakes.

Every function takes inputs from :data:`pgcheck.vocabulary.VOCABULARY` by name and returns the
scalar to minimise. :data:`CORRECT` must pass :func:`pgcheck.check_pseudo_loss`; each entry of
:data:`MISTAKES` must fail (or, for the scaled ones, pass with a note) with its diagnosis code.
The diagnosis matches a learner's expected gradient against these references.

Notation: G_t = Σ_{t'≥t} γ^{t'-t} r_{t'} (``q_values``), R(τ) = Σ_t γ^t r_t (``returns``),
the correct weight of log π(a_t|s_t) is γ^t G_t (or R(τ), or either minus a baseline b(s_t)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Loss = Callable[..., Tensor]


def discounts(gamma: float, T: int) -> Tensor:
    """γ^t for t = 0..T-1."""
    return gamma ** torch.arange(T, dtype=torch.float64)


def weighted_log_probs(weights: Tensor, log_probs: Tensor, mask: Tensor) -> Tensor:
    """L = −(1/B) Σ_i Σ_t mask·w_t·log π(a_t|s_t) (weights detached)."""
    return -(weights.detach() * log_probs * mask).sum(-1).mean()


# =========================================================================== correct
def full_return(log_probs: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """∇J = E[R(τ) Σ_t ∇log π(a_t|s_t)]: the whole return at every step."""
    return weighted_log_probs(returns[:, None].expand_as(log_probs), log_probs, mask)


def reward_to_go(log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """∇J = E[Σ_t γ^t G_t ∇log π(a_t|s_t)]: causality drops the past rewards."""
    return weighted_log_probs(discounts(gamma, mask.shape[1]) * q_values, log_probs, mask)


def constant_baseline(log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """γ^t (G_t − b) with a constant b: E[b ∇log π] = 0."""
    return weighted_log_probs(discounts(gamma, mask.shape[1]) * (q_values - 0.7), log_probs, mask)


def state_value_baseline(
    log_probs: Tensor, q_values: Tensor, values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """γ^t (G_t − V(s_t)) with V detached: the advantage estimate."""
    adv = q_values - values.detach()
    return weighted_log_probs(discounts(gamma, mask.shape[1]) * adv, log_probs, mask)


def leave_one_out_baseline(log_probs: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """R(τ_i) − mean_{j≠i} R(τ_j): the baseline is independent of trajectory i."""
    B = returns.shape[0]
    others = (returns.sum() - returns) / max(B - 1, 1)
    return weighted_log_probs((returns - others)[:, None].expand_as(log_probs), log_probs, mask)


def magic_box(log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """DiCE: ⊡(x) = exp(x − x.detach()) is 1 in value and has gradient ∇x."""
    lp = log_probs * mask
    box = torch.exp(lp - lp.detach())
    return -(box * discounts(gamma, mask.shape[1]) * q_values * mask).sum(-1).mean()


def cross_entropy_form(
    logits: Tensor, actions: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """The lecture's form: cross-entropy with the sampled actions as labels = −log π(a|s)."""
    B, T, A = logits.shape
    nll = F.cross_entropy(
        logits.reshape(B * T, A), actions.reshape(B * T), reduction="none"
    ).reshape(B, T)
    return (nll * discounts(gamma, T) * q_values * mask).sum(-1).mean()


def loop_style(
    dist: Any, actions: Tensor, rewards: Tensor, gamma: float, lengths: Tensor
) -> Tensor:
    """One trajectory at a time with Python loops, as in many tutorials."""
    log_probs = dist.log_prob(actions)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(actions.shape[0]):
        T = int(lengths[i])
        g = 0.0
        for t in reversed(range(T)):
            g = float(rewards[i, t]) + gamma * g
            total = total - (gamma**t) * g * log_probs[i, t]
    return total / actions.shape[0]


def numpy_style(log_probs: Tensor, rewards: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """Weights computed with numpy (they carry no gradient anyway)."""
    r = rewards.numpy()
    g = np.zeros_like(r)
    running = np.zeros(r.shape[0])
    for t in range(r.shape[1] - 1, -1, -1):
        running = r[:, t] + gamma * running
        g[:, t] = running
    w = torch.from_numpy(g * gamma ** np.arange(r.shape[1]))
    return weighted_log_probs(w, log_probs, mask)


CORRECT: dict[str, Loss] = {
    "full_return": full_return,
    "reward_to_go": reward_to_go,
    "constant_baseline": constant_baseline,
    "state_value_baseline": state_value_baseline,
    "leave_one_out_baseline": leave_one_out_baseline,
    "magic_box": magic_box,
    "cross_entropy_form": cross_entropy_form,
    "loop_style": loop_style,
    "numpy_style": numpy_style,
}


# =========================================================================== weight patterns
def _cumsum_discounted_from_start(rewards: Tensor, gamma: float) -> Tensor:
    return torch.cumsum(rewards * discounts(gamma, rewards.shape[1]), -1)


def _forward_loop(rewards: Tensor, gamma: float) -> Tensor:
    out, running = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1]):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out


def _undiscounted_rtg(rewards: Tensor) -> Tensor:
    return torch.flip(torch.cumsum(torch.flip(rewards, [-1]), -1), [-1])


def _discount_from_end(rewards: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """Σ_{t'≥t} γ^{T_i−1−t'} r_{t'}: the discount counted back from the episode's last step."""
    lengths = mask.sum(-1, keepdim=True)
    t = torch.arange(rewards.shape[1], dtype=torch.float64)
    power = (lengths - 1 - t).clamp_min(0)
    return _undiscounted_rtg(rewards * gamma**power * mask)


def _next_step(q: Tensor) -> Tensor:
    """G_{t+1} (0 after the last step): the weight of the next step."""
    return torch.cat([q[:, 1:], torch.zeros_like(q[:, :1])], dim=1)


#: weight patterns w_t (before the optional γ^t factor), as functions of the batch
#: (q = G_t, r = r_t, R = R(τ), g = γ, m = mask)
PATTERNS: dict[str, Callable[..., Tensor]] = {
    "reward_to_go": lambda q, r, R, g, m: q,
    "full_return": lambda q, r, R, g, m: R[:, None].expand_as(q),
    "drops_current_reward": lambda q, r, R, g, m: q - r,
    "immediate_reward": lambda q, r, R, g, m: r,
    "reward_to_come": lambda q, r, R, g, m: _forward_loop(r, g),
    "reward_to_come_from_start": lambda q, r, R, g, m: _cumsum_discounted_from_start(r, g),
    "undiscounted_return": lambda q, r, R, g, m: r.sum(-1, keepdim=True).expand_as(q),
    "undiscounted_reward_to_go": lambda q, r, R, g, m: _undiscounted_rtg(r),
    "reward_to_come_undiscounted": lambda q, r, R, g, m: torch.cumsum(r, -1),
    "discount_from_end": lambda q, r, R, g, m: _discount_from_end(r, g, m),
    "next_step_weight": lambda q, r, R, g, m: _next_step(q),
    "gamma_t_twice": lambda q, r, R, g, m: q * discounts(g, q.shape[1]),
}

#: weight patterns whose mistake has another pattern's code (the same mistake, written
#: without the discount)
PATTERN_CODES: dict[str, str] = {"reward_to_come_undiscounted": "reward_to_come"}


@dataclass(frozen=True)
class WeightSpec:
    """A weight pattern and its variations: L = −(1/B) Σ_i c_i Σ_t [γ^t] w_t · score_t [· mask].

    ``score_t`` is log π(a_t|s_t), or π(a_t|s_t) with ``probs``; c_i = 1/T_i with
    ``per_episode_mean``.
    """

    code: str
    pattern: str
    gamma_t: bool
    use_mask: bool = True
    per_episode_mean: bool = False
    probs: bool = False

    def weights(
        self,
        q_values: Tensor,
        rewards: Tensor,
        returns: Tensor,
        gamma: float,
        mask: Tensor,
        lengths: Tensor,
    ) -> Tensor:
        """The coefficient of log π(a_t|s_t) (of π(a_t|s_t) with ``probs``) [B, T]."""
        w = PATTERNS[self.pattern](q_values, rewards, returns, gamma, mask)
        if self.gamma_t:
            w = w * discounts(gamma, mask.shape[1])
        if self.use_mask:
            w = w * mask
        if self.per_episode_mean:
            w = w / lengths.to(w.dtype)[:, None]
        return w

    def loss(self) -> Loss:
        """The pseudo-loss with these weights."""

        def loss(
            log_probs: Tensor,
            q_values: Tensor,
            rewards: Tensor,
            returns: Tensor,
            gamma: float,
            mask: Tensor,
            lengths: Tensor,
        ) -> Tensor:
            w = self.weights(q_values, rewards, returns, gamma, mask, lengths)
            score = log_probs.exp() if self.probs else log_probs
            return -(w.detach() * score).sum(-1).mean()

        loss.__name__ = self.code.replace("+", "__")
        loss.spec = self  # type: ignore[attr-defined]  # lets matching skip the calls
        return loss


def pattern_loss(
    pattern: str,
    *,
    gamma_t: bool,
    use_mask: bool = True,
    per_episode_mean: bool = False,
    probs: bool = False,
) -> Loss:
    """−(1/B) Σ_i c_i Σ_t [γ^t] w_t · log π(a_t|s_t) [· mask] for a weight pattern."""
    return WeightSpec(pattern, pattern, gamma_t, use_mask, per_episode_mean, probs).loss()


def _correct_gamma_t(pattern: str) -> bool:
    """Whether the pattern needs the γ^t factor to be correct (G_t does, R(τ) doesn't)."""
    return pattern not in (
        "full_return",
        "undiscounted_return",
        "reward_to_come_from_start",
        "reward_to_come_undiscounted",
    )


# =========================================================================== named mistakes
def sign_flipped(log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """+J surrogate: minimising it descends J."""
    return -reward_to_go(log_probs, q_values, gamma, mask)


def probs_times_q(
    probs: Tensor, actions: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """π(a_t|s_t) instead of log π(a_t|s_t)."""
    p_taken = probs.gather(-1, actions[..., None]).squeeze(-1)
    return -(discounts(gamma, mask.shape[1]) * q_values * p_taken * mask).sum(-1).mean()


def softmax_times_q(probs: Tensor, q_values: Tensor, mask: Tensor) -> Tensor:
    """The forum's proposal: mean of softmax(logits) · q over every action: gradient exactly 0."""
    return -(probs * (q_values * mask)[..., None]).sum(-1).mean()


def values_not_detached(
    log_probs: Tensor, q_values: Tensor, values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """A baseline that carries θ: ∇ flows into V(s_t) as well."""
    w = discounts(gamma, mask.shape[1]) * (q_values - values)
    return -(w * log_probs * mask).sum(-1).mean()


def action_dependent_baseline(
    log_probs: Tensor, q_values: Tensor, actions: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """Subtracts b(s,a) that depends on the action taken: E[b ∇log π] ≠ 0."""
    b = 0.5 + 0.8 * actions.to(torch.float64)
    return weighted_log_probs(discounts(gamma, mask.shape[1]) * (q_values - b), log_probs, mask)


def advantage_normalisation(
    log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """(w − mean)/std over the batch: biased for a finite batch."""
    w = discounts(gamma, mask.shape[1]) * q_values
    real = mask.bool()
    mu, sd = w[real].mean(), w[real].std(unbiased=False)
    return weighted_log_probs((w - mu) / (sd + 1e-8), log_probs, mask)


def return_normalisation(log_probs: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """(R − mean)/std over the batch of returns: biased for a finite batch."""
    w = (returns - returns.mean()) / (returns.std(unbiased=False) + 1e-8)
    return weighted_log_probs(w[:, None].expand_as(log_probs), log_probs, mask)


def normalisation_with_padding(
    log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """(w − mean)/std over all B×T entries, the zeros of the padding included."""
    w = discounts(gamma, mask.shape[1]) * q_values
    return weighted_log_probs((w - w.mean()) / (w.std() + 1e-8), log_probs, mask)


def normalisation_without_gamma_t(log_probs: Tensor, q_values: Tensor, mask: Tensor) -> Tensor:
    """G_t normalised over the real steps of the batch, without γ^t (the popular form)."""
    real = mask.bool()
    w = q_values
    mu, sd = w[real].mean(), w[real].std(unbiased=False)
    return weighted_log_probs((w - mu) / (sd + 1e-8), log_probs, mask)


def sum_over_batch(log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """Sum instead of mean over trajectories: B·∇J (scaled)."""
    return -(discounts(gamma, mask.shape[1]) * q_values * log_probs * mask).sum()


def mean_over_steps(log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """.mean() over all B×T entries: ∇J / T (scaled)."""
    return -(discounts(gamma, mask.shape[1]) * q_values * log_probs * mask).mean()


def everything_detached(log_probs: Tensor, q_values: Tensor, mask: Tensor) -> Tensor:
    """No path to θ."""
    return -(q_values * log_probs.detach() * mask).sum(-1).mean()


def _log_prob_of_argmax(logits: Tensor) -> Tensor:
    """log π(a*|s_t) with a* = argmax_a logits: the greedy action, not the taken one."""
    return torch.log_softmax(logits, -1).gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)


def argmax_reward_to_go(logits: Tensor, q_values: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """γ^t G_t times log π of the argmax action instead of the taken action."""
    w = discounts(gamma, mask.shape[1]) * q_values
    return weighted_log_probs(w, _log_prob_of_argmax(logits), mask)


def argmax_full_return(logits: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """R(τ) times log π of the argmax action instead of the taken action."""
    w = returns[:, None].expand_as(mask)
    return weighted_log_probs(w, _log_prob_of_argmax(logits), mask)


def argmax_missing_gamma_t(logits: Tensor, q_values: Tensor, mask: Tensor) -> Tensor:
    """G_t (no γ^t) times log π of the argmax action instead of the taken action."""
    return weighted_log_probs(q_values, _log_prob_of_argmax(logits), mask)


def entropy_of_visited_states(dist: Any, mask: Tensor) -> Tensor:
    """L = −(1/B) Σ_i Σ_t mask·H(π(·|s_t)): E[−∇L] = E[Σ_t ∇_θ H(π(·|s_t))] (states fixed).

    Not a mistake on its own: the direction an entropy bonus adds to a policy gradient."""
    return -(dist.entropy() * mask).sum(-1).mean()


def entropy_with_padding(dist: Any, mask: Tensor) -> Tensor:
    """The entropy of every padded entry too, −(1/B) Σ_i Σ_t H(π(·|s_t)) (mask forgotten)."""
    return -(dist.entropy() + 0 * mask).sum(-1).mean()


def _normalise_per_episode(w: Tensor, mask: Tensor) -> Tensor:
    """(w − mean_t w)/std_t w over each episode's real steps (0 on padding)."""
    n = mask.sum(-1, keepdim=True).clamp_min(1)
    mu = (w * mask).sum(-1, keepdim=True) / n
    var = (((w - mu) * mask) ** 2).sum(-1, keepdim=True) / n
    return (w - mu) / (var.sqrt() + 1e-8) * mask


def normalisation_per_episode(
    log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """γ^t G_t normalised over the steps of its own episode (what a batch normalisation
    computes on a batch of one, ``one_at_a_time=True``): biased."""
    w = _normalise_per_episode(discounts(gamma, mask.shape[1]) * q_values, mask)
    return weighted_log_probs(w, log_probs, mask)


def normalisation_per_episode_without_gamma_t(
    log_probs: Tensor, q_values: Tensor, mask: Tensor
) -> Tensor:
    """G_t normalised over the steps of its own episode, without γ^t: biased."""
    return weighted_log_probs(_normalise_per_episode(q_values, mask), log_probs, mask)


def entropy_discounted(dist: Any, gamma: float, mask: Tensor) -> Tensor:
    """−(1/B) Σ_i Σ_t γ^t mask·H(π(·|s_t)): the discounted entropy bonus (the direction of
    J + β E[Σ_t γ^t H], with the states held fixed)."""
    return -(discounts(gamma, mask.shape[1]) * dist.entropy() * mask).sum(-1).mean()


#: Directions of an entropy bonus, E[Σ_t [γ^t] ∇_θ H(π(·|s_t))], with and without the mask.
ENTROPY_REFERENCES: tuple[tuple[str, Loss], ...] = (
    ("entropy_bonus", entropy_of_visited_states),
    ("entropy_bonus", entropy_discounted),
    ("entropy_bonus+forgotten_mask", entropy_with_padding),
)


#: (diagnosis code, loss). Scaled ones pass with a note; everything_detached is an error.
MISTAKES: dict[str, Loss] = {
    "sign_flipped": sign_flipped,
    "probs_instead_of_log_probs": probs_times_q,
    "zero_gradient": softmax_times_q,
    "theta_leak": values_not_detached,
    "action_dependent_baseline": action_dependent_baseline,
    "drops_current_reward": pattern_loss("drops_current_reward", gamma_t=True),
    "reward_to_come": pattern_loss("reward_to_come", gamma_t=True),
    "reward_to_come_from_start": pattern_loss("reward_to_come_from_start", gamma_t=False),
    "immediate_reward": pattern_loss("immediate_reward", gamma_t=True),
    "missing_gamma_t": pattern_loss("reward_to_go", gamma_t=False),
    "discount_from_end": pattern_loss("discount_from_end", gamma_t=True),
    "per_episode_mean": pattern_loss("reward_to_go", gamma_t=True, per_episode_mean=True),
    "forgotten_mask": pattern_loss("full_return", gamma_t=False, use_mask=False),
    "advantage_normalisation": advantage_normalisation,
    "sum_over_batch": sum_over_batch,
    "mean_over_steps": mean_over_steps,
    "no_path_to_theta": everything_detached,
}


@cache
def weight_bank() -> list[WeightSpec]:
    """Weight patterns for diagnosis, most common first.

    Codes join several mistakes with '+', e.g. ``reward_to_come+forgotten_mask``.
    """
    bank: list[WeightSpec] = []
    for probs in (False, True):
        for pattern in PATTERNS:
            base = "" if pattern in ("reward_to_go", "full_return") else pattern
            base = PATTERN_CODES.get(base, base)
            needs = _correct_gamma_t(pattern)
            for gamma_t in (needs, not needs):
                for use_mask in (True, False):
                    for per_ep in (False, True):
                        parts = [base] if base else []
                        if probs:
                            parts.insert(0, "probs_instead_of_log_probs")
                        if gamma_t != needs:
                            parts.append("missing_gamma_t" if needs else "discounted_twice")
                        if not use_mask:
                            parts.append("forgotten_mask")
                        if per_ep:
                            parts.append("per_episode_mean")
                        code = "+".join(parts) or "correct"
                        bank.append(WeightSpec(code, pattern, gamma_t, use_mask, per_ep, probs))
    return bank


@cache
def reference_bank() -> list[tuple[str, Loss]]:
    """Reference estimators for diagnosis by expected gradient: (code, loss)."""
    named: list[tuple[str, Loss]] = [
        ("probs_instead_of_log_probs", probs_times_q),
        ("action_dependent_baseline", action_dependent_baseline),
        ("argmax_action", argmax_reward_to_go),
        ("argmax_action", argmax_full_return),
        ("argmax_action+missing_gamma_t", argmax_missing_gamma_t),
        ("advantage_normalisation", normalisation_per_episode),
        ("advantage_normalisation", normalisation_per_episode_without_gamma_t),
    ]
    bank: list[tuple[str, Loss]] = [("correct", reward_to_go), *named]
    return bank + [(w.code, w.loss()) for w in weight_bank()]


@cache
def mixing_bank() -> list[tuple[str, Loss]]:
    """References that mix trajectories in a batch (checked over batches of two)."""
    return [
        ("mean_over_steps", mean_over_steps),
        ("advantage_normalisation", advantage_normalisation),
        ("advantage_normalisation", normalisation_without_gamma_t),
        ("advantage_normalisation", return_normalisation),
        ("advantage_normalisation", normalisation_with_padding),
    ]


# =========================================================================== Gaussian policies
# Mistakes of a hand-written Gaussian log-density N(a; μ, σ²) inside an otherwise correct
# pseudo-loss (weights γ^t G_t). They need ``mean`` and ``std``, so they are only tried on
# Gaussian problems; with σ fixed (not learned) several of them are harmless or a pure scale.
HALF_LOG_2PI = 0.5 * float(np.log(2 * np.pi))


def _gaussian_pg(lp: Tensor, q_values: Tensor, gamma: float, mask: Tensor) -> Tensor:
    """−(1/B) Σ_i Σ_t γ^t G_t · lp_t · mask."""
    return weighted_log_probs(discounts(gamma, mask.shape[1]) * q_values, lp, mask)


def gaussian_missing_log_sigma(
    mean: Tensor, std: Tensor, actions: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """log π = −(a−μ)²/(2σ²) − ½ log 2π: the −log σ term left out (matters when σ is learned)."""
    lp = -((actions - mean) ** 2) / (2 * std**2) - HALF_LOG_2PI
    return _gaussian_pg(lp, q_values, gamma, mask)


def gaussian_sigma_for_variance(
    mean: Tensor, std: Tensor, actions: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """log π = −(a−μ)²/(2σ) − log σ − ½ log 2π: σ where σ² belongs."""
    lp = -((actions - mean) ** 2) / (2 * std) - torch.log(std) - HALF_LOG_2PI
    return _gaussian_pg(lp, q_values, gamma, mask)


def gaussian_variance_as_std(
    mean: Tensor, std: Tensor, actions: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """Normal(μ, σ²) where Normal(μ, σ) is meant: torch's second argument is the scale σ."""
    lp = torch.distributions.Normal(mean, std**2).log_prob(actions)
    return _gaussian_pg(lp, q_values, gamma, mask)


def gaussian_mean_blocked(
    mean: Tensor, std: Tensor, actions: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """Normal(μ.detach(), σ): no gradient reaches θ through the mean, only through σ."""
    lp = torch.distributions.Normal(mean.detach(), std).log_prob(actions)
    return _gaussian_pg(lp, q_values, gamma, mask)


def entropy_bonus(
    dist: Any, log_probs: Tensor, q_values: Tensor, gamma: float, mask: Tensor
) -> Tensor:
    """Correct estimator minus 1 · Σ_t γ^t H(π(·|s_t)): the gradient of J + E[Σ_t γ^t H_t]."""
    H = dist.entropy()
    return (
        reward_to_go(log_probs, q_values, gamma, mask)
        - (discounts(gamma, mask.shape[1]) * H * mask).sum(-1).mean()
    )


#: (diagnosis code, loss) for Gaussian pseudo-losses, matched after the reference bank.
GAUSSIAN_MISTAKES: dict[str, Loss] = {
    "gaussian_missing_log_sigma": gaussian_missing_log_sigma,
    "gaussian_sigma_for_variance": gaussian_sigma_for_variance,
    "gaussian_variance_as_std": gaussian_variance_as_std,
    "gaussian_mean_blocked": gaussian_mean_blocked,
}

#: (diagnosis code, loss with coefficient 1, the correct loss): mistakes that *add* a term,
#: E[ĝ] = ∇J + β·(E[ĝ_code] − ∇J) for some β > 0 the learner chose (an entropy bonus).
OFFSET_MISTAKES: tuple[tuple[str, Loss, Loss], ...] = (
    ("entropy_bonus", entropy_bonus, reward_to_go),
)
