"""Learner-style tests of the actor-critic checks: td_target, gae, ppo_surrogate.

Each wrong function is written the way a learner would write it (no pgcheck imports) and
must be named by its diagnosis; each correct one, written differently from the reference,
must pass.
"""

from __future__ import annotations

import pytest
import torch

import pgcheck
from pgcheck.checks.registry import REGISTRY

torch.set_num_threads(1)


# ------------------------------------------------------------------ TD target
def td_good(rewards, next_values, terminated, truncated, gamma):
    with torch.no_grad():
        return rewards + gamma * torch.where(terminated > 0, 0.0, next_values)


def td_no_mask(rewards, next_values, terminated, truncated, gamma):
    return rewards + gamma * next_values.detach()


def td_done_mask(rewards, next_values, terminated, truncated, gamma):
    done = torch.logical_or(terminated > 0, truncated > 0).double()
    return rewards + gamma * (1 - done) * next_values.detach()


def td_attached(rewards, next_values, terminated, truncated, gamma):
    return rewards + gamma * (1 - terminated) * next_values


@pytest.mark.parametrize(
    ("fn", "diagnosis"),
    [
        (td_no_mask, "td_bootstraps_terminal"),
        (td_done_mask, "td_no_bootstrap_at_truncation"),
        (td_attached, "target_not_detached"),
    ],
)
def test_td_target_mistakes(fn, diagnosis):
    report = pgcheck.check_td_target(fn)
    assert not report.passed and report.diagnosis == diagnosis, report.message


def test_td_target_correct():
    report = pgcheck.check_td_target(td_good)
    assert report.passed, report.message


# ------------------------------------------------------------------ GAE
def gae_good(rewards, values, next_values, terminated, dones, gamma, lam):
    v, vn = values.detach(), next_values.detach()
    deltas = rewards + gamma * (1 - terminated) * vn - v
    out = []
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * (1 - dones[t]) * running
        out.insert(0, running)
    return torch.stack(out)


def gae_no_done(rewards, values, next_values, terminated, dones, gamma, lam):
    return gae_good(rewards, values, next_values, terminated, torch.zeros_like(dones), gamma, lam)


def gae_done_for_bootstrap(rewards, values, next_values, terminated, dones, gamma, lam):
    return gae_good(rewards, values, next_values, dones, dones, gamma, lam)


def gae_attached(rewards, values, next_values, terminated, dones, gamma, lam):
    deltas = rewards + gamma * (1 - terminated) * next_values - values
    out = [deltas[-1]]
    for t in range(deltas.shape[0] - 2, -1, -1):
        out.insert(0, deltas[t] + gamma * lam * (1 - dones[t]) * out[0])
    return torch.stack(out)


def gae_no_lambda(rewards, values, next_values, terminated, dones, gamma, lam):
    return gae_good(rewards, values, next_values, terminated, dones, gamma, 1.0)


@pytest.mark.parametrize(
    ("fn", "diagnosis"),
    [
        (gae_no_done, "gae_no_done_mask"),
        (gae_done_for_bootstrap, "gae_no_bootstrap_at_truncation"),
        (gae_attached, "critic_not_detached"),
        (gae_no_lambda, "gae_missing_lambda"),
    ],
)
def test_gae_mistakes(fn, diagnosis):
    report = pgcheck.check_gae(fn)
    assert not report.passed and report.diagnosis == diagnosis, report.message


def test_gae_correct_and_bad_output():
    assert pgcheck.check_gae(gae_good).passed
    bad = pgcheck.check_gae(lambda *args: args[0][:, 0])
    assert not bad.passed and bad.verdict == "error" and "shape" in bad.message


# ------------------------------------------------------------------ PPO surrogate
def ppo_good(log_probs, old_log_probs, advantages, clip):
    ratio = (log_probs - old_log_probs.detach()).exp()
    clipped = torch.clamp(ratio, min=1 - clip, max=1 + clip)
    return -torch.min(ratio * advantages, clipped * advantages).mean()


def ppo_new_detached(log_probs, old_log_probs, advantages, clip):
    ratio = (log_probs.detach() - old_log_probs).exp()
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip)
    return -torch.min(ratio * advantages, clipped * advantages).mean()


def ppo_clip_advantage(log_probs, old_log_probs, advantages, clip):
    ratio = (log_probs - old_log_probs).exp()
    return -torch.min(ratio * advantages, ratio * advantages.clamp(1 - clip, 1 + clip)).mean()


def ppo_unclipped(log_probs, old_log_probs, advantages, clip):
    return -((log_probs - old_log_probs).exp() * advantages).mean()


@pytest.mark.parametrize(
    ("fn", "diagnosis"),
    [
        (ppo_new_detached, "ratio_new_log_probs_detached"),
        (ppo_clip_advantage, "clip_on_advantage"),
        (ppo_unclipped, "no_clipping"),
    ],
)
def test_ppo_mistakes(fn, diagnosis):
    report = pgcheck.check_ppo_surrogate(fn)
    assert not report.passed and report.diagnosis == diagnosis, report.message


def test_ppo_unclipped_is_right_at_theta_old():
    """Clipping acts only after the first step: at θ_old the unclipped loss is correct."""
    report = pgcheck.check_ppo_surrogate(ppo_unclipped)
    at_old = [r for r in report.rows if "θ_old" in r.instance]
    assert at_old and all(r.columns["max |diff|"] < 1e-12 for r in at_old)


def test_ppo_correct_registered_and_surrogate_is_policy_gradient_at_theta_old():
    assert pgcheck.check_ppo_surrogate(ppo_good).passed
    assert {"td_target", "gae", "ppo_surrogate"} <= set(REGISTRY)

    def surrogate_pseudo_loss(log_probs, q_values, values, mask):
        advantage = (q_values - values).detach()
        ratio = torch.exp(log_probs - log_probs.detach())  # θ = θ_old
        clipped = ratio.clamp(0.8, 1.2)
        per_step = torch.min(ratio * advantage, clipped * advantage) * mask
        return -per_step.sum() / q_values.shape[0]

    report = pgcheck.check_pseudo_loss(surrogate_pseudo_loss, accept_missing_gamma_t=True)
    assert report.passed, report.message


def test_unknown_option_is_a_clear_error():
    report = pgcheck.check_gae(gae_good, lamda=0.9)
    assert not report.passed and report.verdict == "error" and "unknown option" in report.message
