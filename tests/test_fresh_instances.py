"""Fresh instances: every smaller check draws new inputs of the same kinds from ``seed``.

``seed=None`` keeps the fixed, public inputs (the notebooks' instant feedback); an int draws
fresh ones, in ``measure`` and ``judge`` alike (the grader passes a seed of its own, see
:func:`pgcheck.grading.grader.check_seed`). Per check: a correct function passes on several
seeds and a known mistake is still named on them; the instances are deterministic in the
seed, differ from the fixed ones, keep their edge cases, and the measurement never holds the
seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from pgcheck.checks import (
    gae,
    log_prob,
    ppo_surrogate,
    returns,
    rollout,
    score_estimator,
    score_function,
    td_target,
    trajectory_log_prob,
    value_loss,
)
from pgcheck.checks.base import instance_seed
from pgcheck.checks.registry import REGISTRY
from pgcheck.grading.grader import check_seed

torch.set_num_threads(1)

SEEDS = [1, 2**40 + 7, 987_654_321]
FRESH = [
    "log_prob",
    "score_function",
    "score_estimator",
    "returns",
    "trajectory_log_prob",
    "rollout",
    "value_loss",
    "td_target",
    "gae",
    "ppo_surrogate",
]


# ------------------------------------------------------------------ learner-style functions
def lp_good(logits, actions):
    return torch.log_softmax(logits, dim=-1).gather(1, actions[:, None]).squeeze(1)


def lp_missing_normaliser(logits, actions):
    return logits.gather(1, actions[:, None]).squeeze(1)


def glp_good(mean, std, actions):
    return torch.distributions.Normal(mean, std).log_prob(actions)


def glp_std_as_variance(mean, std, actions):
    return -((actions - mean) ** 2) / (2 * std) - 0.5 * torch.log(2 * torch.pi * std)


def sf_good(theta, features, action):
    pi = torch.softmax(features @ theta, dim=0)
    return features[action] - pi @ features


def sf_gauss_good(theta, x, action, sigma):
    return (action - theta @ x) * x / sigma**2


def est_good(samples, theta, f):
    th = theta.detach().clone().requires_grad_(True)
    mu, sigma = th[0], th[1].exp()
    (f(samples) * torch.distributions.Normal(mu, sigma).log_prob(samples)).mean().backward()
    return th.grad


def est_sign(samples, theta, f):
    return -est_good(samples, theta, f)


def est_bernoulli_good(samples, theta, f):
    return (f(samples) * (samples - torch.sigmoid(theta))).mean()


def est_bernoulli_missing_f(samples, theta, f):
    return (samples - torch.sigmoid(theta)).mean()


def rtg_good(rewards, gamma):
    out, acc = [], 0.0
    for r in reversed(rewards.tolist()):
        acc = r + gamma * acc
        out.append(acc)
    return torch.tensor(out[::-1], dtype=torch.float64)


def rtg_reward_to_come(rewards, gamma):
    out, acc = [], 0.0
    for r in rewards.tolist():
        acc = acc * gamma + r
        out.append(acc)
    return torch.tensor(out, dtype=torch.float64)


def ret_good(rewards, gamma):
    return sum(gamma**t * float(r) for t, r in enumerate(rewards))


def ret_off_by_one(rewards, gamma):
    return sum(gamma ** (t + 1) * float(r) for t, r in enumerate(rewards))


def traj_good(states, actions, log_p0, log_pi, log_P):
    return (
        log_p0[states[0]]
        + log_pi[states[:-1], actions].sum()
        + log_P[states[:-1], actions, states[1:]].sum()
    )


def traj_missing_p0(states, actions, log_p0, log_pi, log_P):
    return log_pi[states[:-1], actions].sum() + log_P[states[:-1], actions, states[1:]].sum()


def _episode(env, policy, rng, stop: Callable[[bool, bool], bool]):
    observations, actions, rewards = [], [], []
    obs, _ = env.reset()
    while True:
        action = policy(obs, rng)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs = next_obs
        if stop(terminated, truncated):
            break
    return np.array(observations), np.array(actions), np.array(rewards)


def rollout_good(env, policy, rng):
    return _episode(env, policy, rng, lambda term, trunc: term or trunc)


def rollout_only_terminated(env, policy, rng):
    return _episode(env, policy, rng, lambda term, trunc: term)


def vl_good(values, targets, mask):
    return ((values - targets) ** 2 * mask).sum() / mask.sum()


def vl_divides_by_all(values, targets, mask):
    return ((values - targets) ** 2 * mask).mean()


def td_good(rewards, next_values, terminated, truncated, gamma):
    with torch.no_grad():
        return rewards + gamma * torch.where(terminated > 0, 0.0, next_values)


def td_done_mask(rewards, next_values, terminated, truncated, gamma):
    done = torch.logical_or(terminated > 0, truncated > 0).double()
    return rewards + gamma * (1 - done) * next_values.detach()


def gae_good(rewards, values, next_values, terminated, dones, gamma, lam):
    deltas = rewards + gamma * (1 - terminated) * next_values.detach() - values.detach()
    out, running = [], torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * (1 - dones[t]) * running
        out.insert(0, running)
    return torch.stack(out)


def gae_no_done(rewards, values, next_values, terminated, dones, gamma, lam):
    return gae_good(rewards, values, next_values, terminated, torch.zeros_like(dones), gamma, lam)


def ppo_good(log_probs, old_log_probs, advantages, clip):
    ratio = (log_probs - old_log_probs.detach()).exp()
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip)
    return -torch.min(ratio * advantages, clipped * advantages).mean()


def ppo_unclipped(log_probs, old_log_probs, advantages, clip):
    return -((log_probs - old_log_probs).exp() * advantages).mean()


#: (check, options, correct function, a mistake, its diagnosis)
CASES: list[tuple[str, dict[str, Any], Callable[..., Any], Callable[..., Any], str]] = [
    ("log_prob", {"policy": "softmax"}, lp_good, lp_missing_normaliser, "missing_normaliser"),
    ("log_prob", {"policy": "gaussian"}, glp_good, glp_std_as_variance, "std_as_variance"),
    (
        "log_prob",
        {"policy": "diag_gaussian"},
        lambda m, s, a: glp_good(m, s, a).sum(-1),
        lambda m, s, a: glp_good(m, s, a).mean(-1),
        "mean_over_dims",
    ),
    (
        "score_function",
        {"policy": "softmax_linear"},
        sf_good,
        lambda th, f, a: f[a] - f.mean(0),
        "uniform_normaliser",
    ),
    (
        "score_function",
        {"policy": "gaussian_linear"},
        sf_gauss_good,
        lambda th, x, a, s: (a - th @ x) * x / s,
        "sigma_not_squared",
    ),
    (
        "score_function",
        {"policy": "diag_gaussian_linear"},
        lambda th, x, a, s: torch.outer((a - th @ x) / s**2, x),
        lambda th, x, a, s: torch.outer((a - th @ x) / s, x),
        "sigma_not_squared",
    ),
    ("score_estimator", {"family": "gaussian"}, est_good, est_sign, "sign"),
    (
        "score_estimator",
        {"family": "bernoulli"},
        est_bernoulli_good,
        est_bernoulli_missing_f,
        "missing_f",
    ),
    ("returns", {"kind": "reward_to_go"}, rtg_good, rtg_reward_to_come, "reward_to_come"),
    ("returns", {"kind": "return"}, ret_good, ret_off_by_one, "exponent_off_by_one"),
    ("trajectory_log_prob", {}, traj_good, traj_missing_p0, "missing_p0"),
    ("rollout", {}, rollout_good, rollout_only_terminated, "ignores_truncated"),
    ("value_loss", {}, vl_good, vl_divides_by_all, "divides_by_all"),
    ("td_target", {}, td_good, td_done_mask, "td_no_bootstrap_at_truncation"),
    ("gae", {}, gae_good, gae_no_done, "gae_no_done_mask"),
    ("ppo_surrogate", {}, ppo_good, ppo_unclipped, "no_clipping"),
]
IDS = [f"{c[0]}-{'-'.join(map(str, c[1].values())) or 'default'}" for c in CASES]


@pytest.mark.parametrize(("name", "options", "good", "bad", "diagnosis"), CASES, ids=IDS)
def test_correct_passes_and_mistake_is_named_on_fresh_seeds(name, options, good, bad, diagnosis):
    check = REGISTRY[name]
    assert check.fresh_instances
    for seed in SEEDS:
        report = check(good, seed=seed, **options)
        assert report.passed, (seed, report.message)
        report = check(bad, seed=seed, **options)
        assert not report.passed and report.diagnosis == diagnosis, (seed, report.message)


# ------------------------------------------------------------------ the instances themselves
def _builders() -> dict[str, Callable[[int | None], Any]]:
    """Each check's instance builder as a function of the seed (plain data, comparable)."""

    def tensors(instances: list[dict[str, Any]]) -> list[Any]:
        return [
            {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in i["args"].items()}
            for i in instances
        ]

    return {
        "log_prob/softmax": lambda s: tensors(log_prob.log_prob_instances("softmax", s)),
        "log_prob/gaussian": lambda s: tensors(log_prob.log_prob_instances("gaussian", s)),
        "log_prob/diag_gaussian": lambda s: tensors(
            log_prob.log_prob_instances("diag_gaussian", s)
        ),
        "score_function/diag_gaussian_linear": lambda s: tensors(
            score_function.score_instances("diag_gaussian_linear", s)
        ),
        "score_function": lambda s: tensors(score_function.score_instances("softmax_linear", s)),
        "score_estimator": lambda s: score_estimator.estimator_theta("categorical", s).tolist(),
        "returns": returns.return_cases,
        "trajectory_log_prob": lambda s: tensors(trajectory_log_prob.trajectory_instances(s)),
        "rollout": rollout.rollout_cases,
        "value_loss": value_loss.value_cases,
        "td_target": td_target.td_cases,
        "gae": gae.gae_cases,
        "ppo_surrogate": ppo_surrogate.ppo_cases,
    }


@pytest.mark.parametrize("which", list(_builders()))
def test_instances_are_deterministic_fresh_and_none_is_the_fixed_set(which):
    build = _builders()[which]
    fixed = json.dumps(build(None))
    assert json.dumps(build(None)) == fixed
    seen = {fixed}
    for seed in SEEDS:
        fresh = json.dumps(build(seed))
        assert fresh == json.dumps(build(seed)), "the judge must rebuild the same instances"
        assert fresh not in seen, "every seed gives new instances"
        seen.add(fresh)


def test_fresh_instances_keep_the_edge_cases():
    for seed in SEEDS:
        cases = returns.return_cases(seed)
        assert len(cases[0][0]) == 1 and [g for _, g in cases] == [0.9, 0.9, 1.0, 0.0, 0.5, 0.8]
        assert [k for k, v in enumerate(cases[-1][0]) if v == 0.0] == [0, 1, 4]
        td = td_target.td_cases(seed)
        assert [len(c["rewards"]) for c in td] == [1, 6, 8, 10]
        assert all(c["terminated"][1] == 1.0 and c["truncated"][2] == 1.0 for c in td[1:])
        for case in value_loss.value_cases(seed)[1:]:
            assert 0.0 in np.array(case["mask"]), "fresh padded batches have padding"
        fixed = [(label, p, limit) for label, _, p, limit in rollout.CASES]
        fresh = rollout.rollout_cases(seed)
        assert [(label, p, limit) for label, _, p, limit in fresh] == fixed
        for (_, case_seed, p, limit), (_, old_seed, _, _) in zip(fresh, rollout.CASES, strict=True):
            assert rollout._end_kinds(case_seed, p, limit) == rollout._end_kinds(old_seed, p, limit)
        sizes = [
            (i["args"]["log_pi"].shape, i["args"]["actions"].shape)
            for i in trajectory_log_prob.trajectory_instances(seed)
        ]
        assert sizes == [
            (i["args"]["log_pi"].shape, i["args"]["actions"].shape)
            for i in trajectory_log_prob.trajectory_instances()
        ]
        spread = log_prob.log_prob_instances("softmax", seed)[-1]["args"]["logits"]
        assert float((spread.max(1).values - spread.min(1).values).min()) > 700
        *rows, tails = log_prob.log_prob_instances("diag_gaussian", seed)
        assert [r["args"]["mean"].shape for r in rows] == [(5, 3), (4, 2)]
        assert all(float(r["args"]["std"].min()) >= 0.3 for r in rows)
        far = (tails["args"]["actions"] - tails["args"]["mean"]).abs() / tails["args"]["std"]
        assert tails["kind"] == "stability" and float(far.min()) > 39.9 and float(far.max()) < 50.1
        theta = score_estimator.estimator_theta("gaussian", seed)
        assert abs(float(theta[1].exp()) - 1.0) > 0.2 and abs(float(theta[1])) > 0.2


def test_measurement_never_holds_the_seed_and_judge_needs_it():
    seed = 2**40 + 7
    measurement = td_target.measure_td_target(td_good, seed=seed)
    text = json.dumps(measurement)
    assert str(seed) not in text and "seed" not in text
    assert str(instance_seed(1_212, seed)) not in text
    assert td_target.judge_td_target(measurement, seed=seed).passed
    other = td_target.judge_td_target(measurement, seed=seed + 1)
    assert not other.passed, "judged on other instances, the same numbers are wrong"
    assert not td_target.judge_td_target(measurement).passed


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_a_bad_seed_is_a_clear_usage_error(bad):
    for name, options in [("returns", {}), ("gae", {}), ("log_prob", {"policy": "softmax"})]:
        report = REGISTRY[name](lambda *a: 0.0, seed=bad, **options)
        assert report.verdict == "error" and report.diagnosis == "usage", report.message
        assert "seed=" in report.message and "integer" in report.message


def test_grader_seed_per_check_is_deterministic_and_differs_by_check_and_run():
    assert check_seed(5, "returns") == check_seed(5, "returns")
    seeds = {check_seed(run, name) for run in (5, 6) for name in FRESH}
    assert len(seeds) == 2 * len(FRESH)
    assert all(0 <= s < 2**63 for s in seeds)


def test_every_built_in_check_but_the_pseudo_loss_draws_fresh_instances():
    assert {n for n, c in REGISTRY.items() if c.fresh_instances} == set(FRESH)
    assert not REGISTRY["pseudo_loss"].fresh_instances  # it gets fresh problems instead
