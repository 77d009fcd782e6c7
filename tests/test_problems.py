"""The references: ∇J three independent ways (autograd of exact J, policy gradient theorem,
finite differences), J by dynamic programming vs enumeration vs simulation."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pgcheck import problems
from pgcheck.problems.policies import LinearSoftmax, MLPSoftmax, TabularSoftmax

NAMED = [
    "mdp-linear",
    "mdp-mlp",
    "mdp-tabular-undiscounted",
    "bandit",
    "gaussian",
    "mdp-small",
    "gaussian-small",
    "discounted",
]


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-8) -> bool:
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("name", NAMED)
def test_three_gradients_agree_on_named_problems(name):
    prob = problems.get(name)
    th = prob.theta0
    g_auto, g_pgt, g_fd = prob.grad_J(th), prob.grad_J_pgt(th), prob.grad_J_fd(th)
    assert float(g_auto.norm()) > 1e-3  # a non-trivial instance
    assert close(g_auto, g_pgt, 1e-12)
    assert close(g_auto, g_fd, 1e-8)


@given(
    seed=st.integers(0, 10_000),
    policy=st.sampled_from(["tabular", "linear", "mlp"]),
    gamma=st.sampled_from([0.5, 0.9, 1.0]),
    horizon=st.integers(1, 4),
    n_states=st.integers(1, 4),
    n_actions=st.integers(2, 3),
)
def test_three_gradients_agree_on_random_mdps(seed, policy, gamma, horizon, n_states, n_actions):
    prob = problems.random_mdp(
        seed, n_states=n_states, n_actions=n_actions, horizon=horizon, gamma=gamma, policy=policy
    )
    th = prob.theta0 + 0.3 * torch.randn(
        prob.theta0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    g = prob.grad_J(th)
    assert close(g, prob.grad_J_pgt(th), 1e-10)
    assert close(g, prob.grad_J_fd(th), 1e-8)


@given(seed=st.integers(0, 10_000), gamma=st.sampled_from([0.0, 0.5, 0.95]))
def test_discounted_mdp_gradients_agree(seed, gamma):
    prob = problems.random_discounted_mdp(seed, gamma=gamma)
    g = prob.grad_J(prob.theta0)
    assert close(g, prob.grad_J_pgt(prob.theta0), 1e-10)
    assert close(g, prob.grad_J_fd(prob.theta0), 1e-8)


def test_discounted_mdp_value_matches_a_long_finite_horizon():
    """The linear solve against backward induction over 400 steps (γ^400 ≈ 5e-19)."""
    disc = problems.random_discounted_mdp(3, gamma=0.9)
    finite = problems.FiniteHorizonMDP(disc.p0, disc.P, disc.R, 400, 0.9, disc.policy, disc.theta0)
    assert abs(float(disc.J(disc.theta0) - finite.J(disc.theta0))) < 1e-12


@given(seed=st.integers(0, 10_000), learn_sigma=st.booleans())
def test_gaussian_bandit_closed_form(seed, learn_sigma):
    prob = problems.gaussian_bandit(seed, learn_sigma=learn_sigma)
    th = prob.theta0
    g = prob.grad_J(th)
    assert close(g, prob.grad_J_closed(th), 1e-12)
    assert close(g, prob.grad_J_pgt(th), 1e-10)
    assert close(g, prob.grad_J_fd(th), 1e-8)


def test_gaussian_quadrature_against_sampling():
    prob = problems.get("gaussian")
    batch = prob.sample(200_000, generator=torch.Generator().manual_seed(0))
    mc = batch.rewards[:, 0]
    assert abs(float(mc.mean() - prob.J(prob.theta0))) < 5 * float(mc.std()) / math.sqrt(len(mc))


@pytest.mark.parametrize("name", ["mdp-linear", "mdp-mlp", "mdp-tabular-undiscounted", "mdp-small"])
def test_enumeration_is_a_probability_distribution_and_gives_J(name):
    prob = problems.get(name)
    traj = prob.trajectories()
    p = prob.prob(prob.theta0)
    assert abs(float(p.sum()) - 1) < 1e-13
    assert abs(float(prob.J_enumerated(prob.theta0) - prob.J(prob.theta0))) < 1e-13
    assert len(set(traj.lengths.tolist())) > 1  # random termination: lengths differ
    # padding: mask 0, reward 0, and a real (non-zero) log-probability
    pad = traj.mask == 0
    assert pad.any() and (traj.rewards[pad] == 0).all()
    logp = prob.policy.log_probs(prob.theta0)[traj.states, traj.actions]
    assert (logp[pad] != 0).all()


@pytest.mark.parametrize("name", ["mdp-linear", "mdp-tabular-undiscounted"])
def test_simulation_agrees_with_exact_J(name):
    prob = problems.get(name)
    batch = prob.sample(100_000, generator=torch.Generator().manual_seed(1))
    returns = batch.returns
    se = float(returns.std()) / math.sqrt(len(returns))
    assert abs(float(returns.mean() - prob.J(prob.theta0))) < 5 * se
    # the sampled trajectories' lengths follow the enumerated distribution
    traj, p = prob.support()
    for T in traj.lengths.unique().tolist():
        exact = float(p[traj.lengths == T].sum())
        freq = float((batch.lengths == T).double().mean())
        assert abs(freq - exact) < 5 * math.sqrt(exact * (1 - exact) / len(returns)) + 1e-12


def _policies():
    g = torch.Generator().manual_seed(0)
    return [
        TabularSoftmax(3, 2),
        LinearSoftmax(torch.randn(3, 2, 4, generator=g, dtype=torch.float64)),
        MLPSoftmax(torch.randn(3, 2, generator=g, dtype=torch.float64), 5, 3),
    ]


@pytest.mark.parametrize("policy", _policies(), ids=lambda p: p.kind)
def test_closed_form_score_and_jacobian_match_autograd(policy):
    theta = torch.randn(
        policy.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    jac = torch.autograd.functional.jacobian(policy.logits, theta)
    assert close(policy.logits_jacobian(theta), jac, 1e-12)
    score = torch.autograd.functional.jacobian(policy.log_probs, theta)
    assert close(policy.score(theta), score, 1e-12)
    assert close(policy.probs(theta).sum(-1), torch.ones(policy.n_states, dtype=torch.float64))


def test_unknown_problem_and_policy_names_are_clear_errors():
    with pytest.raises(KeyError, match="known"):
        problems.get("nope")
    with pytest.raises(ValueError, match="tabular"):
        problems.random_mdp(0, policy="transformer")
