"""The multi-step linear-Gaussian problem, its quadrature, and Gaussian pseudo-loss mistakes.

The mistake losses are written the way a learner writes them (hand-written log-densities,
loops over t, ``torch.distributions.Normal``), not taken from pgcheck's bank; only the public
report (``passed``, ``verdict``, ``diagnosis``, rows) is asserted on.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal

import pgcheck
from pgcheck import problems
from pgcheck.exact.expectation import Evaluator, separable_expectation
from pgcheck.exact.vocabulary import requested_names
from pgcheck.problems.linear_gaussian import LinearGaussianProblem, linear_gaussian

LQG = ("lqg-sigma", "lqg-noise-undiscounted", "lqg-h4")
GAUSSIAN_ONLY = ["gaussian", "lqg-sigma", "lqg-noise-undiscounted"]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# ----------------------------------------------------------------------------- learner helpers
def reward_to_go(rewards, gamma):
    """G_t = r_t + γ G_{t+1} by a backward loop (out of place, so it works on θ-carrying r)."""
    out, running = [], torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        out.insert(0, running)
    return torch.stack(out, 1)


def powers(gamma, T):
    return torch.tensor([gamma**t for t in range(T)], dtype=torch.float64)


def my_log_density(a, mu, sigma):
    return -((a - mu) ** 2) / (2 * sigma**2) - torch.log(sigma) - HALF_LOG_2PI


def correct_by_hand(mean, std, actions, rewards, gamma, mask):
    G = reward_to_go(rewards, gamma)
    w = powers(gamma, rewards.shape[1]) * G
    return -(w * my_log_density(actions, mean, std) * mask).sum(1).mean()


# ============================================================================ references
@pytest.mark.parametrize("name", LQG)
def test_three_references_agree(name: str) -> None:
    """Autograd of the closed form, the PGT by quadrature, finite differences: to 1e-8."""
    p = problems.get(name)
    a, b, c = p.grad_J(p.theta0), p.grad_J_pgt(p.theta0), p.grad_J_fd(p.theta0)
    scale = float(a.norm())
    assert scale > 1e-3
    assert float((a - b).norm()) <= 1e-8 * scale
    assert float((a - c).norm()) <= 1e-8 * scale


@pytest.mark.parametrize("name", LQG)
def test_closed_form_J_equals_quadrature(name: str) -> None:
    p = problems.get(name)
    traj, w = p.support()
    assert abs(float(w.sum()) - 1) < 1e-12
    assert abs(float(p.J(p.theta0)) - float(w @ traj.returns)) <= 1e-10 * abs(float(p.J(p.theta0)))


def test_references_agree_at_random_parameters() -> None:
    """Away from θ₀ too (several seeds, horizons 2-4, with and without noise and log σ)."""
    for seed, kw in enumerate(
        [
            {"horizon": 2, "gamma": 1.0, "noise": 0.4},
            {"horizon": 4, "gamma": 0.8, "n_nodes": 5},
            {"horizon": 3, "gamma": 0.95, "learn_sigma": False, "state_dim": 3},
        ]
    ):
        p = linear_gaussian(100 + seed, **kw)
        theta = p.theta0 + 0.3 * torch.randn(
            p.theta0.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        a, b, c = p.grad_J(theta), p.grad_J_pgt(theta), p.grad_J_fd(theta)
        assert float((a - b).norm()) <= 1e-8 * float(a.norm())
        assert float((a - c).norm()) <= 1e-8 * float(a.norm())


# ============================================================================ quadrature
def _expectation(loss, prob: LinearGaussianProblem) -> torch.Tensor:
    ev = Evaluator(loss, requested_names(loss), timeout=60.0, trusted=True)
    exp, _ = separable_expectation(ev, prob, 1)
    assert exp is not None
    return torch.tensor(exp.expected_grad, dtype=torch.float64)


def sigma_for_variance(mean, std, actions, q_values, gamma, mask):
    lp = -((actions - mean) ** 2) / (2 * std) - torch.log(std) - HALF_LOG_2PI
    return -(powers(gamma, mask.shape[1]) * q_values * lp * mask).sum(1).mean()


def squared_returns(log_probs, returns):
    return -((returns**2)[:, None] * log_probs).sum(1).mean()


def missing_gamma(log_probs, q_values, mask):
    return -(q_values * log_probs * mask).sum(1).mean()


@pytest.mark.parametrize("name", ["lqg-sigma", "lqg-noise-undiscounted"])
@pytest.mark.parametrize("loss", [sigma_for_variance, squared_returns, missing_gamma])
def test_quadrature_error_below_1e10_on_incorrect_estimators(name: str, loss) -> None:
    """The suite's node count against 4 more nodes per variable: the same E[∇L] to 1e-10."""
    p = problems.get(name)
    more = dataclasses.replace(p, n_nodes=p.n_nodes + 4, name=p.name + "+4")
    g, g_more = _expectation(loss, p), _expectation(loss, more)
    assert float(g.norm()) > 1e-3
    assert float((g - g_more).norm()) <= 1e-10 * max(1.0, float(g.norm()))


@pytest.mark.parametrize("loss", [correct_by_hand, missing_gamma])
def test_quadrature_matches_monte_carlo(loss) -> None:
    """E[∇L] by quadrature vs the mean over 10⁶ sampled episodes: within 4 standard errors."""
    p = problems.get("lqg-sigma")
    exact = _expectation(loss, p)
    gen = torch.Generator().manual_seed(7)
    ev = Evaluator(loss, requested_names(loss), timeout=600.0, trusted=True)
    chunk, n_chunks = 100_000, 10
    total = torch.zeros_like(exact)
    total_sq = torch.zeros_like(exact)
    for _ in range(n_chunks):
        traj = p.sample(chunk, generator=gen)
        per = -ev.call(p, traj).grads * chunk  # per-episode −∇ℓ (the loss is a mean)
        total += per.sum(0)
        total_sq += (per**2).sum(0)
    n = chunk * n_chunks
    mc = total / n
    se = ((total_sq / n - mc**2) / n).sqrt()
    z = (mc - exact).abs() / se
    assert float(z.max()) < 4.0, (mc, exact, se)
    assert float(se.max()) < 0.05 * float(exact.abs().max())  # the test has power


# ============================================================================ mistakes, named
def test_correct_by_hand_passes_everywhere() -> None:
    r = pgcheck.check_pseudo_loss(correct_by_hand)
    assert r.passed and r.verdict == "unbiased", r.message
    assert {row.instance for row in r.rows} >= {"lqg-sigma", "lqg-noise-undiscounted"}


def test_forgotten_detach_of_environment_returns_cannot_matter() -> None:
    """Returns from the environment carry no gradient: leaving out .detach() is harmless."""

    def loss(dist, actions, returns):
        R = returns  # no .detach()
        return -(R[:, None] * dist.log_prob(actions)).sum(1).mean()

    r = pgcheck.check_pseudo_loss(loss, GAUSSIAN_ONLY)
    assert r.passed, r.message


def test_missing_log_sigma() -> None:
    def loss(mean, std, actions, rewards, gamma, mask):
        lp = -((actions - mean) ** 2) / (2 * std**2) - 0.5 * math.log(2 * math.pi)
        G = reward_to_go(rewards, gamma)
        return -(powers(gamma, mask.shape[1]) * G * lp * mask).sum(1).mean()

    r = pgcheck.check_pseudo_loss(loss)
    assert not r.passed and r.diagnosis == "gaussian_missing_log_sigma", r.message
    # harmless with σ fixed: on the fixed-σ instance alone it passes
    assert pgcheck.check_pseudo_loss(loss, "lqg-noise-undiscounted").passed


def test_sigma_where_sigma_squared_belongs() -> None:
    def loss(mean, std, actions, q_values, gamma, mask):
        log_pi = -((actions - mean) ** 2) / (2 * std) - torch.log(std) - HALF_LOG_2PI
        total = 0
        for t in range(mask.shape[1]):
            total = total - gamma**t * q_values[:, t] * log_pi[:, t] * mask[:, t]
        return total.mean()

    r = pgcheck.check_pseudo_loss(loss)
    assert not r.passed and r.diagnosis == "gaussian_sigma_for_variance", r.message


def test_variance_passed_as_scale() -> None:
    def loss(mean, std, actions, q_values, gamma, mask):
        dist = Normal(mean, std**2)
        return -(powers(gamma, mask.shape[1]) * q_values * dist.log_prob(actions)).sum(1).mean()

    r = pgcheck.check_pseudo_loss(loss)
    assert not r.passed and r.diagnosis == "gaussian_variance_as_std", r.message


def test_mean_gradient_blocked() -> None:
    def loss(mean, std, actions, returns):
        mu = torch.tensor(mean.detach().numpy())  # "just the numbers"
        log_pi = Normal(mu, std).log_prob(actions)
        return -(returns[:, None] * log_pi).sum(1).mean()

    r = pgcheck.check_pseudo_loss(loss)
    assert not r.passed and r.diagnosis == "gaussian_mean_blocked", r.message


def test_flipped_sign() -> None:
    def loss(mean, std, actions, returns):
        return (returns[:, None] * Normal(mean, std).log_prob(actions)).sum(1).mean()

    r = pgcheck.check_pseudo_loss(loss)
    assert not r.passed and r.diagnosis == "sign_flipped", r.message


def test_missing_gamma_t_caught_by_multistep_gaussian() -> None:
    """The one-step bandit hides it; the linear-Gaussian instances do not."""

    def loss(mean, std, actions, q_values):
        return -(q_values * Normal(mean, std).log_prob(actions)).sum(1).mean()

    assert pgcheck.check_pseudo_loss(loss, "gaussian").passed
    r = pgcheck.check_pseudo_loss(loss)
    assert not r.passed and r.diagnosis == "missing_gamma_t", r.message


def _soft_loss(detach: bool, alpha: float):
    def loss(mean, std, actions, rewards, gamma, mask):
        log_pi = Normal(mean, std).log_prob(actions)
        G = reward_to_go(rewards - alpha * log_pi, gamma)  # "soft" rewards: r − α log π
        if detach:
            G = G.detach()
        return -(powers(gamma, mask.shape[1]) * G * log_pi * mask).sum(1).mean()

    return loss


def test_entropy_bonus_is_the_gradient_of_another_objective() -> None:
    def loss(dist, actions, q_values, gamma, mask):
        disc = powers(gamma, mask.shape[1])
        pg = -(disc * q_values * dist.log_prob(actions) * mask).sum(1).mean()
        return pg - 0.05 * (disc * dist.entropy() * mask).sum(1).mean()

    r = pgcheck.check_pseudo_loss(loss)
    assert not r.passed and r.diagnosis == "entropy_bonus", r.message
    ok = pgcheck.check_pseudo_loss(loss, entropy_coef=0.05)
    assert ok.passed and ok.verdict == "unbiased", ok.message
    assert not pgcheck.check_pseudo_loss(loss, entropy_coef=0.1).passed


def test_forgotten_detach_of_a_return_that_carries_theta() -> None:
    """A return built from log π: detached it is an entropy bonus with β = α; forgetting the
    detach adds E[log π ∇log π] = −∇H once more, so β = 2α (σ learned: it matters)."""
    alpha = 0.1
    for detach, beta in ((True, alpha), (False, 2 * alpha)):
        loss = _soft_loss(detach, alpha)
        r = pgcheck.check_pseudo_loss(loss)
        assert not r.passed and r.diagnosis == "entropy_bonus", r.message
        assert pgcheck.check_pseudo_loss(loss, entropy_coef=beta).passed
    # with σ fixed the entropy does not move, so neither version is biased
    assert pgcheck.check_pseudo_loss(_soft_loss(False, alpha), "lqg-noise-undiscounted").passed


def test_entropy_coef_needs_a_closed_form_entropy() -> None:
    def loss(log_probs, q_values, gamma, mask):
        return -(powers(gamma, mask.shape[1]) * q_values * log_probs * mask).sum(1).mean()

    r = pgcheck.check_pseudo_loss(loss, "mdp-linear", entropy_coef=0.1)
    assert not r.passed and r.verdict == "error" and "entropy_coef" in r.message


def test_observations_are_the_state_vectors() -> None:
    """A loss recomputing the mean from `observations` sees s_t (checked against `mean`)."""
    p = problems.get("lqg-sigma")
    w = p.theta0[:-1]

    def loss(observations, mean, std, actions, q_values, gamma, mask):
        x = torch.cat([observations, torch.ones_like(observations[..., :1])], -1)
        assert torch.allclose(x @ w, mean.detach())
        lp = Normal(mean, std).log_prob(actions)
        return -(powers(gamma, mask.shape[1]) * q_values * lp * mask).sum(1).mean()

    r = pgcheck.check_pseudo_loss(loss, "lqg-sigma")
    assert r.passed, r.message


# ============================================================================ log π and score
def test_log_prob_diagonal_gaussian() -> None:
    good = pgcheck.check_log_prob(
        lambda mean, std, actions: Normal(mean, std).log_prob(actions).sum(-1),
        policy="diag_gaussian",
    )
    assert good.passed, good.message
    averaged = pgcheck.check_log_prob(
        lambda mean, std, actions: my_log_density(actions, mean, std).mean(-1),
        policy="diag_gaussian",
    )
    assert not averaged.passed and averaged.diagnosis == "mean_over_dims"
    no_log_sigma = pgcheck.check_log_prob(
        lambda mean, std, actions: (-((actions - mean) ** 2) / (2 * std**2) - HALF_LOG_2PI).sum(-1),
        policy="diag_gaussian",
    )
    assert not no_log_sigma.passed and no_log_sigma.diagnosis == "missing_log_sigma"
    per_dim = pgcheck.check_log_prob(
        lambda mean, std, actions: Normal(mean, std).log_prob(actions), policy="diag_gaussian"
    )
    assert not per_dim.passed and per_dim.verdict == "error"


def test_score_function_diagonal_gaussian() -> None:
    def score(theta, x, action, sigma):
        return torch.outer((action - theta @ x) / sigma**2, x)

    assert pgcheck.check_score_function(score, policy="diag_gaussian_linear").passed

    def one_sigma(theta, x, action, sigma):
        return torch.outer((action - theta @ x) / sigma[0] ** 2, x)

    r = pgcheck.check_score_function(one_sigma, policy="diag_gaussian_linear")
    assert not r.passed and r.diagnosis in ("shared_sigma", "mismatch")

    def not_squared(theta, x, action, sigma):
        return torch.outer((action - theta @ x) / sigma, x)

    r = pgcheck.check_score_function(not_squared, policy="diag_gaussian_linear")
    assert not r.passed and r.diagnosis == "sigma_not_squared"


# ============================================================================ continuous rollout
def _good_collect(env, policy, n_episodes, rng):
    low, high = env.action_space.low, env.action_space.high
    eps = []
    for _ in range(n_episodes):
        obs, _ = env.reset()
        rows = []
        done = False
        while not done:
            a = np.asarray(policy.act(obs, rng), dtype=np.float64)
            nxt, r, terminated, truncated, _ = env.step(np.clip(a, low, high))
            rows.append((obs, a, r))
            obs, done = nxt, terminated or truncated
        eps.append(rows)
    T = max(len(e) for e in eps)
    out = {
        "observations": torch.zeros(len(eps), T, 3, dtype=torch.float64),
        "actions": torch.zeros(len(eps), T, 1, dtype=torch.float64),
        "rewards": torch.zeros(len(eps), T, dtype=torch.float64),
        "mask": torch.zeros(len(eps), T, dtype=torch.float64),
    }
    for i, e in enumerate(eps):
        for t, (o, a, r) in enumerate(e):
            out["observations"][i, t] = torch.as_tensor(o)
            out["actions"][i, t] = torch.as_tensor(a)
            out["rewards"][i, t] = r
            out["mask"][i, t] = 1.0
    return out


def test_continuous_rollout_accepts_a_correct_loop() -> None:
    r = pgcheck.check_continuous_rollout(_good_collect)
    assert r.passed, r.message


def test_continuous_rollout_names_storing_the_clipped_action() -> None:
    def loop(env, policy, n_episodes, rng):
        class Clipping:
            def act(self, obs, rng):
                return np.clip(policy.act(obs, rng), -1.0, 1.0)

        return _good_collect(env, Clipping(), n_episodes, rng)

    r = pgcheck.check_continuous_rollout(loop)
    assert not r.passed and r.diagnosis == "stores_clipped_action"


def test_continuous_rollout_names_an_unclipped_env_action_and_a_missed_truncation() -> None:
    def unclipped(env, policy, n_episodes, rng):
        class Wide:
            low, high = np.array([-1e9]), np.array([1e9])

        class Env:
            action_space = Wide()

            def reset(self, **kw):
                return env.reset(**kw)

            def step(self, a):
                return env.step(a)

        return _good_collect(Env(), policy, n_episodes, rng)

    def terminated_only(env, policy, n_episodes, rng):
        class Env:
            action_space = env.action_space

            def reset(self, **kw):
                return env.reset(**kw)

            def step(self, a):
                o, r, term, _trunc, info = env.step(a)
                return o, r, term, False, info

        return _good_collect(Env(), policy, n_episodes, rng)

    assert pgcheck.check_continuous_rollout(unclipped).diagnosis == "env_not_clipped"
    assert pgcheck.check_continuous_rollout(terminated_only).diagnosis == "episode_end"
    assert pgcheck.check_continuous_rollout(lambda e, p, n, r: 3).verdict == "error"
