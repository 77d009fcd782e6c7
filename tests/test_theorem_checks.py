"""Tests of the policy-gradient-theorem checks (check_q_values, check_visitation,
check_theorem_gradient) and of the episodic MDPs they use.

The problems: ∇J three ways (autograd through the solve, the theorem, finite differences), and
V, Q, d against simulation. The checks: independently written correct answers pass; each
recognised mistake, written as a learner would write it (never taken from the checks' own
candidate tables), is named; bad input gives an "error" report without stderr; measure/judge
round-trips through JSON; the hidden test raises exactly when the check fails.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pgcheck
import pgcheck.grading
from pgcheck.checks.registry import REGISTRY
from pgcheck.problems import finite_differences, random_episodic_mdp
from pgcheck.problems.episodic import q_values as ref_q
from pgcheck.problems.episodic import visitation as ref_d
from pgcheck.report import Report

DT = torch.float64


# ------------------------------------------------------------------ the problems
@pytest.mark.parametrize(
    ("seed", "gamma", "policy"), [(0, 0.9, "linear"), (1, 1.0, "linear"), (2, 0.7, "tabular")]
)
def test_gradient_three_ways(seed, gamma, policy):
    mdp = random_episodic_mdp(seed, gamma=gamma, policy=policy)
    theta = mdp.theta0.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(mdp.J(theta), theta)
    pgt = mdp.grad_J_pgt(mdp.theta0)
    fd = finite_differences(mdp.J, mdp.theta0)
    assert torch.allclose(auto, pgt, atol=1e-12, rtol=0)
    assert torch.allclose(auto, fd, atol=1e-8, rtol=0)
    assert auto.norm() > 1e-2


def _simulate(mdp, n, seed):
    """n episodes by simulation: per state, Σ_t γ^t 1[s_t = s] and Σ_t 1[s_t = s]; the return."""
    rng = np.random.default_rng(seed)
    pi = mdp.policy.probs(mdp.theta0).numpy()
    P, R, p0, gamma = mdp.P.numpy(), mdp.R.numpy(), mdp.p0.numpy(), mdp.gamma
    S, A = R.shape
    disc_visits, visits, returns = np.zeros(S), np.zeros(S), np.zeros(n)
    cont = np.concatenate([P, 1 - P.sum(-1, keepdims=True)], axis=-1)
    for i in range(n):
        s, t, ret = rng.choice(S, p=p0), 0, 0.0
        while s < S:
            disc_visits[s] += gamma**t
            visits[s] += 1
            a = rng.choice(A, p=pi[s])
            ret += gamma**t * R[s, a]
            s, t = rng.choice(S + 1, p=cont[s, a]), t + 1
        returns[i] = ret
    return disc_visits / n, visits / n, returns


def test_values_and_visitation_match_simulation():
    mdp = random_episodic_mdp(5, n_states=3, n_actions=2, gamma=0.9, termination=0.3)
    pi = mdp.policy.probs(mdp.theta0)
    disc, undisc, returns = _simulate(mdp, 4000, 0)
    d_g = ref_d(mdp.p0, mdp.P, pi, 0.9).numpy()
    d_1 = ref_d(mdp.p0, mdp.P, pi, 1.0).numpy()
    J = float(mdp.J(mdp.theta0))
    se = returns.std() / np.sqrt(len(returns))
    assert abs(returns.mean() - J) < 4 * se
    # visits per episode have standard deviation below 6 here: 4 standard errors of 6/sqrt(n)
    tol = 4 * 6 / np.sqrt(4000)
    assert np.all(np.abs(disc - d_g) < tol) and np.all(np.abs(undisc - d_1) < tol)
    assert np.all(d_1 > d_g)


def test_bellman_equation_holds():
    mdp = random_episodic_mdp(6, gamma=1.0)
    pi = mdp.policy.probs(mdp.theta0)
    q = ref_q(mdp.P, mdp.R, pi, 1.0)
    v = (pi * q).sum(-1)
    assert torch.allclose(q, mdp.R + mdp.P @ v, atol=1e-13)
    assert torch.allclose(v, mdp.values(mdp.theta0), atol=1e-13)


def test_termination_must_end_episodes():
    with pytest.raises(ValueError):
        random_episodic_mdp(0, termination=0.0)


# ------------------------------------------------------------------ learner-style answers
def _p_pi(P, pi):
    return torch.einsum("sa,sap->sp", pi, P)


def q_solve(P, R, pi, gamma):
    S = P.shape[0]
    V = torch.linalg.solve(torch.eye(S, dtype=DT) - gamma * _p_pi(P, pi), (pi * R).sum(-1))
    return R + gamma * P @ V


def q_iterate(P, R, pi, gamma):
    q = torch.zeros_like(R)
    for _ in range(4000):
        q = R + gamma * torch.einsum("sap,p->sa", P, (pi * q).sum(1))
    return q


def q_numpy_loops(P, R, pi, gamma):
    P, R, pi = P.numpy(), R.numpy(), pi.numpy()
    S, A = R.shape
    M = np.zeros((S, S))
    for s in range(S):
        for a in range(A):
            M[s] += pi[s, a] * P[s, a]
    V = np.linalg.inv(np.eye(S) - gamma * M) @ (pi * R).sum(1)
    return np.array([[R[s, a] + gamma * P[s, a] @ V for a in range(A)] for s in range(S)])


def q_returns_v(P, R, pi, gamma):
    return (pi * q_solve(P, R, pi, gamma)).sum(-1)


def q_greedy(P, R, pi, gamma):
    q = torch.zeros_like(R)
    for _ in range(4000):
        q = R + gamma * P @ q.max(dim=1).values
    return q


def q_forgets_future(P, R, pi, gamma):
    return R.clone()


def q_no_gamma(P, R, pi, gamma):
    return q_solve(P, R, pi, 1.0)


def q_transposed(P, R, pi, gamma):
    S = P.shape[0]
    M = torch.einsum("sa,sap->ps", pi, P)  # indices swapped
    V = torch.linalg.solve(torch.eye(S, dtype=DT) - gamma * M, (pi * R).sum(-1))
    return R + gamma * P @ V


def q_uniform(P, R, pi, gamma):
    return q_solve(P, R, torch.ones_like(pi) / pi.shape[1], gamma)


def q_one_step(P, R, pi, gamma):
    return R + gamma * P @ (pi * R).sum(-1)


def q_gamma_in_solve_only(P, R, pi, gamma):
    S = P.shape[0]
    V = torch.linalg.solve(torch.eye(S, dtype=DT) - gamma * _p_pi(P, pi), (pi * R).sum(-1))
    return R + P @ V  # forgot gamma in the last step


def q_weighted(P, R, pi, gamma):
    return pi * q_solve(P, R, pi, gamma)


@pytest.mark.parametrize("fn", [q_solve, q_iterate, q_numpy_loops])
def test_q_values_correct(fn):
    report = pgcheck.check_q_values(fn)
    assert report.passed and report.verdict == "correct", report.message


@pytest.mark.parametrize(
    ("fn", "code"),
    [
        (q_returns_v, "v_instead_of_q"),
        (q_greedy, "optimal_q"),
        (q_forgets_future, "immediate_reward"),
        (q_no_gamma, "undiscounted"),
        (q_transposed, "transposed_transitions"),
        (q_uniform, "policy_ignored"),
        (q_one_step, "one_backup"),
        (q_gamma_in_solve_only, "gamma_once"),
        (q_weighted, "pi_times_q"),
        (lambda P, R, pi, g: -q_solve(P, R, pi, g), "sign_flipped"),
        (lambda P, R, pi, g: q_solve(P, R, pi, g) + 0.1, "mismatch"),
    ],
)
def test_q_values_mistakes_named(fn, code):
    report = pgcheck.check_q_values(fn)
    assert not report.passed and report.verdict == "wrong"
    assert report.diagnosis == code, (report.diagnosis, report.message)
    assert "you return" in report.message


def d_solve(p0, P, pi, gamma):
    S = P.shape[0]
    return torch.linalg.solve(torch.eye(S, dtype=DT) - gamma * _p_pi(P, pi).T, p0)


def d_series(p0, P, pi, gamma):
    d, mu = torch.zeros_like(p0), p0.clone()
    for t in range(3000):
        d = d + gamma**t * mu
        mu = mu @ _p_pi(P, pi)
    return d


def d_transposed(p0, P, pi, gamma):
    S = P.shape[0]
    return torch.linalg.solve(torch.eye(S, dtype=DT) - gamma * _p_pi(P, pi), p0)


def d_normalised(p0, P, pi, gamma):
    d = d_series(p0, P, pi, gamma)
    return d / d.sum()


def d_ignores_gamma(p0, P, pi, gamma):
    return d_series(p0, P, pi, 1.0)


def d_from_one(p0, P, pi, gamma):
    d, mu = torch.zeros_like(p0), p0.clone()
    for t in range(1, 3000):
        mu = mu @ _p_pi(P, pi)
        d = d + gamma**t * mu
    return d


@pytest.mark.parametrize("fn", [d_solve, d_series])
def test_visitation_correct(fn):
    report = pgcheck.check_visitation(fn)
    assert report.passed, report.message


@pytest.mark.parametrize(
    ("fn", "code"),
    [
        (d_transposed, "transposed_transitions"),
        (d_normalised, "normalised_visitation"),
        (d_ignores_gamma, "undiscounted_visitation"),
        (d_from_one, "missing_start"),
        (lambda p0, P, pi, g: p0 * 1.0, "start_only"),
        (lambda p0, P, pi, g: d_solve(p0, P, pi, g)[:, None] * pi, "state_action_visitation"),
    ],
)
def test_visitation_mistakes_named(fn, code):
    report = pgcheck.check_visitation(fn)
    assert not report.passed and report.diagnosis == code, (report.diagnosis, report.message)


def pgt(p0, P, R, pi, score, gamma):
    d, q = d_solve(p0, P, pi, gamma), q_solve(P, R, pi, gamma)
    return torch.einsum("s,sa,sa,sap->p", d, pi, q, score)


def pgt_loops_with_advantage(p0, P, R, pi, score, gamma):
    d, q = d_series(p0, P, pi, gamma), q_iterate(P, R, pi, gamma)
    v = (pi * q).sum(1)
    g = torch.zeros(score.shape[-1], dtype=DT)
    for s in range(P.shape[0]):
        for a in range(P.shape[1]):
            g += d[s] * pi[s, a] * (q[s, a] - v[s]) * score[s, a]
    return g


def pgt_grad_pi(p0, P, R, pi, score, gamma):
    grad_pi = pi[..., None] * score  # ∇π = π ∇log π
    return torch.einsum("s,sa,sap->p", d_solve(p0, P, pi, gamma), q_solve(P, R, pi, gamma), grad_pi)


def pgt_common_estimator(p0, P, R, pi, score, gamma):
    d = d_solve(p0, P, pi, 1.0)  # undiscounted visits: what Σ_t G_t ∇log π estimates
    return torch.einsum("s,sa,sa,sap->p", d, pi, q_solve(P, R, pi, gamma), score)


def pgt_no_pi(p0, P, R, pi, score, gamma):
    d, q = d_solve(p0, P, pi, gamma), q_solve(P, R, pi, gamma)
    return (d[:, None, None] * q[..., None] * score).sum((0, 1))


def pgt_with_v(p0, P, R, pi, score, gamma):
    d, q = d_solve(p0, P, pi, gamma), q_solve(P, R, pi, gamma)
    v = (pi * q).sum(1, keepdim=True)
    return (d[:, None, None] * pi[..., None] * v[..., None] * score).sum((0, 1))


def pgt_normalised(p0, P, R, pi, score, gamma):
    d = d_solve(p0, P, pi, gamma)
    return torch.einsum("s,sa,sa,sap->p", d / d.sum(), pi, q_solve(P, R, pi, gamma), score)


def pgt_transposed_d(p0, P, R, pi, score, gamma):
    d = d_transposed(p0, P, pi, gamma)
    return torch.einsum("s,sa,sa,sap->p", d, pi, q_solve(P, R, pi, gamma), score)


def pgt_p0(p0, P, R, pi, score, gamma):
    return torch.einsum("s,sa,sa,sap->p", p0, pi, q_solve(P, R, pi, gamma), score)


def pgt_q_without_gamma(p0, P, R, pi, score, gamma):
    d, q = d_solve(p0, P, pi, gamma), q_iterate(P, R, pi, 1.0)
    return torch.einsum("s,sa,sa,sap->p", d, pi, q, score)


def pgt_greedy_q(p0, P, R, pi, score, gamma):
    d, q = d_solve(p0, P, pi, gamma), q_greedy(P, R, pi, gamma)
    return torch.einsum("s,sa,sa,sap->p", d, pi, q, score)


def pgt_pi_twice(p0, P, R, pi, score, gamma):
    grad_pi = pi[..., None] * score
    d, q = d_solve(p0, P, pi, gamma), q_solve(P, R, pi, gamma)
    return torch.einsum("s,sa,sa,sap->p", d, pi, q, grad_pi)


def pgt_all_states_equal(p0, P, R, pi, score, gamma):
    q = q_solve(P, R, pi, gamma)
    return (pi[..., None] * q[..., None] * score).sum((0, 1))


@pytest.mark.parametrize("fn", [pgt, pgt_loops_with_advantage, pgt_grad_pi])
def test_theorem_gradient_correct(fn):
    report = pgcheck.check_theorem_gradient(fn)
    assert report.passed, report.message


@pytest.mark.parametrize(
    ("fn", "code"),
    [
        (pgt_common_estimator, "undiscounted_visitation"),
        (pgt_no_pi, "missing_pi_weight"),
        (pgt_with_v, "v_instead_of_q"),
        (pgt_normalised, "normalised_visitation"),
        (pgt_transposed_d, "transposed_transitions"),
        (pgt_p0, "start_instead_of_visitation"),
        (pgt_q_without_gamma, "q_undiscounted"),
        (pgt_greedy_q, "optimal_q"),
        (pgt_pi_twice, "pi_squared"),
        (pgt_all_states_equal, "visitation_missing"),
        (lambda *a: -pgt(*a), "sign_flipped"),
        (lambda *a: 2 * pgt(*a), "scaled"),
    ],
)
def test_theorem_gradient_mistakes_named(fn, code):
    report = pgcheck.check_theorem_gradient(fn)
    assert not report.passed and report.diagnosis == code, (report.diagnosis, report.message)


def test_common_estimator_is_fine_at_gamma_one_only():
    """The undiscounted visitation is right for γ = 1: the failing case has γ < 1."""
    report = pgcheck.check_theorem_gradient(pgt_common_estimator)
    assert "γ=1," not in report.message.split("you return")[0]
    assert report.rows[1].columns["max |diff|"] < 1e-9  # the γ = 1 case


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "fn",
    [
        lambda *a: 1 / 0,
        lambda *a: None,
        lambda *a: "text",
        lambda *a: torch.full((3,), float("nan")),
    ],
)
@pytest.mark.parametrize("front", ["check_q_values", "check_visitation", "check_theorem_gradient"])
def test_bad_input_is_an_error_without_stderr(fn, front, capfd):
    report = getattr(pgcheck, front)(fn)
    assert not report.passed and report.verdict == "error" and report.message
    out, err = capfd.readouterr()
    assert err == ""


def test_unknown_option_and_timeout():
    r = pgcheck.check_visitation(d_solve, gama=0.9)
    assert r.verdict == "error" and "unknown option" in r.message

    def hang(*a):
        while True:
            pass

    r = pgcheck.check_q_values(hang, timeout=0.3)
    assert r.verdict == "error" and r.diagnosis == "timeout"


# ------------------------------------------------------------------ grading split
@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("q_values", q_solve),
        ("q_values", q_returns_v),
        ("visitation", d_normalised),
        ("theorem_gradient", pgt),
        ("theorem_gradient", pgt_with_v),
        ("theorem_gradient", lambda *a: 1 / 0),
    ],
)
def test_round_trip_through_json(name, fn):
    check = REGISTRY[name]
    wire = json.loads(json.dumps(check.measure(fn), allow_nan=False))
    direct = check(fn)
    assert check.judge(wire).to_dict() == direct.to_dict()
    assert Report.from_dict(json.loads(json.dumps(direct.to_dict()))).passed == direct.passed


def test_hidden_test_raises_only_on_failure():
    pgcheck.grading.hidden_test("theorem_gradient", "pgt")  # looked up in this module
    pgcheck.grading.hidden_test("q_values", "q_iterate")
    with pytest.raises(AssertionError, match="hidden test failed"):
        pgcheck.grading.hidden_test("theorem_gradient", "pgt_no_pi")
    with pytest.raises(AssertionError, match="hidden test failed"):
        pgcheck.grading.hidden_test("visitation", "d_transposed")
