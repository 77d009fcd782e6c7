"""Tests of pgcheck.rollout_checks: the collection-loop check on a correct loop and common bugs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pgcheck.checks.registry import REGISTRY
from pgcheck.checks.rollout import CASES, check_rollout, judge_rollout, measure_rollout, replay


def correct(env, policy, rng):
    observations, actions, rewards = [], [], []
    obs, info = env.reset()
    while True:
        action = policy(obs, rng)
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs = next_obs
        if terminated or truncated:
            break
    return np.array(observations), np.array(actions), np.array(rewards)


def only_terminated(env, policy, rng):
    observations, actions, rewards = [], [], []
    obs, info = env.reset()
    terminated = False
    while not terminated:
        action = policy(obs, rng)
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs = next_obs
    return observations, actions, rewards


def only_truncated(env, policy, rng):
    observations, actions, rewards = [], [], []
    obs, info = env.reset()
    truncated = False
    while not truncated:
        action = policy(obs, rng)
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs = next_obs
    return observations, actions, rewards


def next_obs_recorded(env, policy, rng):
    observations, actions, rewards = [], [], []
    obs, info = env.reset()
    done = False
    while not done:
        action = policy(obs, rng)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        done = terminated or truncated
    return observations, actions, rewards


def seeded_reset(env, policy, rng):
    observations, actions, rewards = [], [], []
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        action = policy(obs, rng)
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs, done = next_obs, terminated or truncated
    return observations, actions, rewards


def greedy(env, policy, rng):
    observations, actions, rewards = [], [], []
    obs, info = env.reset()
    done = False
    while not done:
        policy(obs, rng)
        action = 0
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs, done = next_obs, terminated or truncated
    return observations, actions, rewards


def old_gym_api(env, policy, rng):
    obs = env.reset()
    observations, actions, rewards, done = [], [], [], False
    while not done:
        action = policy(obs, rng)
        next_obs, reward, done, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs = next_obs
    return observations, actions, rewards


def running_sum_rewards(env, policy, rng):
    observations, actions, rewards = correct(env, policy, rng)
    return observations, actions, np.cumsum(rewards)


def no_reset(env, policy, rng):
    observations, actions, rewards = [], [], []
    if env.episode < 0:
        obs, info = env.reset()
    else:
        obs = np.array([env.episode, env.t, env.s], dtype=np.float32)
    done = False
    while not done:
        action = policy(obs, rng)
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        obs, done = next_obs, terminated or truncated
    return observations, actions, rewards


def test_correct_loop_passes():
    report = check_rollout(correct)
    assert report.passed, report.message
    assert report.verdict == "correct"


@pytest.mark.parametrize(
    ("fn", "diagnosis"),
    [
        (only_terminated, "ignores_truncated"),
        (only_truncated, "ignores_terminated"),
        (next_obs_recorded, "next_observation"),
        (seeded_reset, "seeded_reset"),
        (greedy, "wrong_action"),
        (running_sum_rewards, "rewards"),
        (no_reset, "no_reset"),
    ],
)
def test_common_mistakes_are_named(fn, diagnosis):
    report = check_rollout(fn)
    assert not report.passed
    assert report.diagnosis == diagnosis, (report.diagnosis, report.message)


def test_old_api_gets_a_gymnasium_hint():
    report = check_rollout(old_gym_api)
    assert not report.passed
    assert "gymnasium 1.x" in report.message or "(obs, info)" in report.message


def test_extra_final_observation():
    def with_final(env, policy, rng):
        o, a, r = correct(env, policy, rng)
        return np.vstack([o, o[-1:] + 1]), a, r

    report = check_rollout(with_final)
    assert not report.passed and report.diagnosis == "lengths"
    assert "one observation too many" in report.message


def test_measure_is_plain_json_and_judge_is_split():
    m = measure_rollout(correct)
    assert json.loads(json.dumps(m)) == m
    assert judge_rollout(json.loads(json.dumps(m))).passed
    assert REGISTRY["rollout"].measure is measure_rollout


def test_probe_cases_end_both_ways():
    # the probes must contain episodes ended by each flag, otherwise a bug could hide
    ended = set()
    for _, seed, p_term, limit in CASES:
        for episode in range(4):
            ended.add(replay(seed, p_term, limit, episode, [0] * 100)["ended_by"])
    assert ended == {"terminated", "truncated"}


def test_exception_in_learner_code_is_a_report():
    def broken(env, policy, rng):
        raise RuntimeError("boom")

    report = check_rollout(broken)
    assert not report.passed and report.verdict == "error" and "boom" in report.message


def test_infinite_loop_times_out():
    def forever(env, policy, rng):
        env.reset()
        while True:
            pass

    report = check_rollout(forever, timeout=0.5)
    assert not report.passed and report.verdict == "error"


# ----------------------------------------------------------------------------- value_loss
def test_value_loss_correct_and_mistakes():
    from pgcheck.checks.value_loss import check_value_loss

    def good(values, targets, mask):
        return ((values - targets) ** 2 * mask).sum() / mask.sum()

    def unmasked(values, targets, mask):
        return ((values - targets) ** 2).mean()

    def all_entries(values, targets, mask):
        return ((values - targets) ** 2 * mask).mean()

    def summed(values, targets, mask):
        return ((values - targets) ** 2 * mask).sum()

    def detached(values, targets, mask):
        return (((values - targets) ** 2 * mask).sum() / mask.sum()).detach()

    assert check_value_loss(good).passed
    assert check_value_loss(unmasked).diagnosis == "padding"
    assert check_value_loss(all_entries).diagnosis == "divides_by_all"
    assert check_value_loss(summed).diagnosis == "sum"
    report = check_value_loss(detached)
    assert not report.passed and report.verdict == "error"
