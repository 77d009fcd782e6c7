"""pgcourse/continuous.py: in sync with notebook 07's ``# @save`` cells, and behaving as the
notebook says (a valid gymnasium env, reward-to-go per episode, clipping only for the env)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from gymnasium.utils.env_checker import check_env

from pgcourse.continuous import (
    LinearGaussianPolicy,
    MovingParticle,
    collect_steps,
    reward_to_go_flat,
    train_gaussian,
)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "solutions" / "07_gaussian_policies" / "07_gaussian_policies.ipynb"
SAVE = "# @save pgcourse/continuous.py"


def test_every_saved_cell_is_in_the_module() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    saved = [
        "".join(c["source"]).split("\n", 1)[1]
        for c in cells
        if c["cell_type"] == "code" and "".join(c["source"]).startswith(SAVE)
    ]
    module = (ROOT / "pgcourse" / "continuous.py").read_text()
    assert len(saved) == 3
    for code in saved:
        assert code in module


def test_particle_is_a_valid_env() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no checker warning either
        check_env(MovingParticle(), skip_render_check=True)


def test_reward_to_go_restarts_at_episode_ends() -> None:
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    ends = np.array([False, True, False, False, True])
    g = 0.5
    expected = [1 + g * 2, 2, 3 + g * 4 + g * g * 5, 4 + g * 5, 5]
    assert np.allclose(reward_to_go_flat(r, ends, g), expected, atol=0, rtol=1e-15)


def test_collect_steps_stores_sampled_actions_and_clips_for_the_env() -> None:
    env = MovingParticle(horizon=5)
    env.reset(seed=0)
    policy = LinearGaussianPolicy(2, 2, sigma=3.0)
    batch = collect_steps(env, policy, 40, np.random.default_rng(0), {})
    assert batch["actions"].shape == (40, 2) and np.abs(batch["actions"]).max() > 1.0
    # the positions moved by the clipped action: s_{t+1} − s_t = dt · clip(a_t) within episodes
    obs, acts, ends = batch["obs"], batch["actions"], batch["ends"]
    for t in range(39):
        if not ends[t]:
            assert np.allclose(obs[t + 1] - obs[t], env.dt * np.clip(acts[t], -1, 1))
    assert ends.sum() == 8 and len(batch["returns"]) == 8


def test_training_improves_the_particle_policy() -> None:
    torch.manual_seed(0)
    policy = LinearGaussianPolicy(2, 2, sigma=0.5)
    hist = train_gaussian(MovingParticle(), policy, total_steps=12_000, steps_per_update=600)
    assert hist["mean_return"][-1] > hist["mean_return"][0] + 30  # from about −70 to −10
