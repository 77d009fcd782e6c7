"""The course library pgcourse: built from the notebooks' ``# @save`` cells, and correct.

Sync: ``pgcourse/*.py`` is exactly what ``tools/build_pgcourse.py`` generates from the solution
notebooks, the released notebooks keep those cells, and no notebook re-defines a library
function outside its ``# @save`` cell. Behaviour: padding and mask of ``collect_batch`` on a
tiny environment, the sampler's frequencies, the band's t quantile for 5, 7 and 9 seeds.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import matplotlib
import numpy as np
import pytest
import torch
from scipy import stats

import pgcourse
from pgcourse import (
    MLP,
    TrainingLog,
    collect_batch,
    collect_episode,
    curve_on_grid,
    log_probs_of,
    make_policy,
    mean_and_half_width,
    n_step_targets,
    numpy_sampler,
    plot_band,
    ppo_softmax_gradient,
    sample_categorical,
    sample_index,
    softmax,
    step_weights,
    t_quantile,
    torch_sampler,
    train_categorical_ac,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _load_build() -> Any:
    path = ROOT / "tools" / "build_pgcourse.py"
    spec = importlib.util.spec_from_file_location("build_pgcourse", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


build = _load_build()


# ---------------------------------------------------------------- sync with the notebooks


def test_library_is_generated_from_the_save_cells() -> None:
    stale = build.stale_files()
    assert stale == [], f"pgcourse/ is out of date ({stale}): run python tools/build_pgcourse.py"


def test_every_library_name_comes_from_one_save_cell() -> None:
    cells = build.saved_cells()
    names = [n for c in cells for n in c.names]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(pgcourse.__all__)
    assert {c.notebook.split("/")[1] for c in cells} == {
        "04_reinforce",
        "05_reward_to_go",
        "07_gaussian_policies",
        "09_actor_critic",
    }


def _code_cells(path: Path) -> list[dict[str, Any]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if c["cell_type"] == "code"]


def _source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


def _top_level_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics
        return set()
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}


SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_no_notebook_repastes_a_library_function(path: Path) -> None:
    """A library function is defined only in its ``# @save`` cell; elsewhere it is imported."""
    library = set(pgcourse.__all__)
    for cell in _code_cells(path):
        if build.cell_code(_source(cell)) is None:
            pasted = _top_level_names(_source(cell)) & library
            assert not pasted, f"{path.name} cell {cell.get('id')} re-defines {sorted(pasted)}"


def test_released_notebooks_keep_the_save_cells() -> None:
    for cell in build.saved_cells():
        released = ROOT / cell.notebook.replace("solutions/", "notebooks/", 1)
        by_id = {c.get("id"): _source(c) for c in _code_cells(released)}
        first = by_id[cell.cell_id].split("\n", 1)[0]
        assert build.SAVE.match(first), f"{released.name} cell {cell.cell_id} lost its # @save"


def test_save_cell_marker_and_solution_markers() -> None:
    source = (
        "# @save pgcourse/batches.py\ndef f(x):\n    ### BEGIN SOLUTION\n    return x\n"
        "    ### END SOLUTION\n"
    )
    assert build.cell_code(source) == ("batches", "def f(x):\n    return x\n")
    assert build.cell_code("#@save pgcourse/curves.py\nx = 1")[0] == "curves"
    assert build.cell_code("def f(x):\n    return x\n") is None


# ---------------------------------------------------------------- a tiny environment


class Countdown(gym.Env):
    """Episodes of the lengths in ``lengths`` (cycled); obs = (episode, t), r_t = t + 1.

    The last step of an episode is terminated, or truncated when ``truncate`` is set.
    """

    def __init__(self, lengths: list[int], truncate: bool = False) -> None:
        self.lengths, self.truncate = lengths, truncate
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode, self.t = -1, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(self.t + 1)
        self.t += 1
        end = self.t == self.lengths[self.episode % len(self.lengths)]
        return self._obs(), reward, end and not self.truncate, end and self.truncate, {}


def first_action(obs: np.ndarray, rng: np.random.Generator) -> int:
    return int(obs[1]) % 2


@pytest.mark.parametrize("truncate", [False, True])
def test_collect_episode_stops_on_terminated_or_truncated(truncate: bool) -> None:
    obs, actions, rewards = collect_episode(
        Countdown([3], truncate), first_action, np.random.default_rng(0)
    )
    assert obs.tolist() == [[0, 0], [0, 1], [0, 2]]  # s_t before each action, not s_{t+1}
    assert actions.tolist() == [0, 1, 0]
    assert rewards.dtype == np.float64 and rewards.tolist() == [1.0, 2.0, 3.0]


def test_collect_batch_pads_to_the_longest_episode_and_masks_the_padding() -> None:
    batch = collect_batch(Countdown([3, 1, 4]), first_action, 3, np.random.default_rng(0))
    assert batch["lengths"].tolist() == [3, 1, 4]
    assert batch["observations"].shape == (3, 4, 2) and batch["observations"].dtype == torch.float32
    assert batch["actions"].dtype == torch.int64 and batch["mask"].dtype == torch.float32
    expected_mask = [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert batch["mask"].tolist() == expected_mask
    assert batch["rewards"].tolist() == [[1, 2, 3, 0], [1, 0, 0, 0], [1, 2, 3, 4]]
    assert batch["actions"].tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]]
    assert batch["observations"][1].tolist() == [[1, 0], [0, 0], [0, 0], [0, 0]]
    assert batch["observations"][2, :, 1].tolist() == [0, 1, 2, 3]


def _old_step_weights(batch: dict[str, torch.Tensor], gamma: float, kind: str) -> torch.Tensor:
    """The per-episode loop that step_weights replaced (notebooks 05 and 06 before pgcourse)."""
    q = torch.zeros(batch["mask"].shape)
    for i, n in enumerate(batch["lengths"].tolist()):
        out, running = [], 0.0
        for r in reversed(batch["rewards"][i, :n].double().tolist()):
            running = r + gamma * running
            out.append(running)
        G = torch.tensor(out[::-1], dtype=torch.float64).float()
        q[i, :n] = G if kind == "reward-to-go" else G[0]
    return q


@pytest.mark.parametrize("kind", ["reward-to-go", "full return"])
def test_step_weights_equal_the_per_episode_recursion_bit_for_bit(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 1, 9, 3])
    mask = (torch.arange(9)[None] < lengths[:, None]).float()
    rewards = torch.randn(4, 9, generator=g) * mask
    batch = {"rewards": rewards, "mask": mask, "lengths": lengths}
    new = step_weights(batch, 0.9, kind)
    assert torch.equal(new, _old_step_weights(batch, 0.9, kind))
    assert torch.all(new[mask == 0] == 0)
    if kind == "reward-to-go":
        assert abs(float(new[0, 3]) - float(rewards[0, 3] + 0.9 * rewards[0, 4])) < 1e-6


# ---------------------------------------------------------------- policies and sampling


def test_make_policy_and_log_probs_of() -> None:
    torch.manual_seed(0)
    policy = make_policy(4, 3, hidden=8)
    logits = policy(torch.randn(2, 5, 4))
    assert logits.shape == (2, 5, 3)
    actions = torch.randint(3, (2, 5))
    expected = torch.distributions.Categorical(logits=logits).log_prob(actions)
    assert torch.allclose(log_probs_of(logits, actions), expected, atol=1e-6)


def test_sample_index_frequencies_match_the_weights() -> None:
    rng = np.random.default_rng(0)
    weights = np.array([1.0, 0.0, 2.0, 7.0])  # unnormalised, with a zero
    n = 40_000
    counts = np.bincount([sample_index(weights, rng) for _ in range(n)], minlength=4)
    p = weights / weights.sum()
    assert counts[1] == 0
    assert np.all(np.abs(counts / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_numpy_sampler_samples_from_the_policy() -> None:
    torch.manual_seed(0)
    policy = make_policy(4, 2)
    s = np.array([0.02, -0.3, 0.05, 0.4], dtype=np.float32)
    with torch.no_grad():
        p1 = float(torch.softmax(policy(torch.as_tensor(s)), -1)[1])
    sample, n = numpy_sampler(policy), 20_000
    rng = np.random.default_rng(1)
    freq = np.mean([sample(s, rng) for _ in range(n)])
    assert abs(freq - p1) < 4 * np.sqrt(p1 * (1 - p1) / n)
    # the snapshot does not follow later changes of the network
    with torch.no_grad():
        policy[2].bias += torch.tensor([100.0, -100.0])
    assert np.mean([sample(s, rng) for _ in range(200)]) > 0
    assert np.mean([torch_sampler(policy)(s, rng) for _ in range(200)]) == 0


def test_numpy_and_torch_samplers_agree_on_the_same_random_numbers() -> None:
    torch.manual_seed(0)
    policy = make_policy(4, 3)
    obs = np.random.default_rng(2).normal(size=(500, 4)).astype(np.float32)
    a = [numpy_sampler(policy)(o, np.random.default_rng(i)) for i, o in enumerate(obs)]
    b = [torch_sampler(policy)(o, np.random.default_rng(i)) for i, o in enumerate(obs)]
    assert np.mean(np.array(a) == np.array(b)) > 0.99


# ---------------------------------------------------------------- log and curves


def _log(returns: list[float], lengths: list[int] | None = None, window: int = 3) -> TrainingLog:
    log = TrainingLog(window=window, threshold=10.0)
    log.record(returns, lengths or [int(r) for r in returns])
    return log


def test_training_log_counts_steps_and_finds_the_first_solved_window() -> None:
    log = _log([5, 12, 9, 13, 20, 1])  # windows of 3: means 8.67, 11.33, ...
    assert log.steps == [5, 17, 26, 39, 59, 60] and log.total_steps == 60
    assert log.solved and log.solved_episode == 3
    assert not _log([10, 10]).solved  # a window needs `window` episodes


def test_curve_on_grid_is_a_running_mean_as_a_step_function_of_steps() -> None:
    log = _log([2.0, 4.0, 6.0, 8.0], lengths=[10, 10, 10, 10])
    curve = curve_on_grid(log, np.array([0, 9, 10, 25, 40, 100]), smooth=2)
    # episode ends at steps 10, 20, 30, 40; running means 2 (short window), 3, 5, 7
    assert curve.tolist() == [2.0, 2.0, 2.0, 3.0, 7.0, 7.0]


@pytest.mark.parametrize(("n", "table"), [(5, 2.776), (7, 2.447), (9, 2.306)])
def test_t_quantile_for_5_7_and_9_seeds(n: int, table: float) -> None:
    assert t_quantile(0.975, n - 1) == pytest.approx(stats.t.ppf(0.975, n - 1), rel=1e-12)
    assert abs(t_quantile(0.975, n - 1) - table) < 1e-3
    assert t_quantile(0.95, n - 1) == pytest.approx(stats.t.ppf(0.95, n - 1), rel=1e-12)


@pytest.mark.parametrize("n", [5, 7, 9])
def test_band_is_the_t_interval_of_the_mean_over_seeds(n: int) -> None:
    rng = np.random.default_rng(n)
    logs = [_log(list(rng.uniform(1, 50, size=12).round())) for _ in range(n)]
    grid = np.linspace(0, 200, 21)
    curves = np.stack([curve_on_grid(log, grid) for log in logs])
    mean, half = mean_and_half_width(curves)
    expected = stats.t.ppf(0.975, n - 1) * curves.std(0, ddof=1) / np.sqrt(n)
    np.testing.assert_allclose(mean, curves.mean(0))
    np.testing.assert_allclose(half, expected, rtol=1e-12)
    fig, ax = plt.subplots()
    try:
        plot_band(ax, logs, grid, "label")
        (line,) = ax.get_lines()
        np.testing.assert_allclose(line.get_ydata(), mean)
        assert line.get_label() == "label" and len(ax.collections) == 1
    finally:
        plt.close(fig)


def test_collect_batch_counts_the_batch_in_steps() -> None:
    """min_steps adds whole episodes until sum_i T_i >= min_steps; n_episodes is a minimum."""
    batch = collect_batch(Countdown([3, 1, 4, 2]), first_action, 1, np.random.default_rng(0), 7)
    assert batch["lengths"].tolist() == [3, 1, 4]  # 3 + 1 < 7 <= 3 + 1 + 4
    assert batch["mask"].sum().item() == 8 and batch["observations"].shape == (3, 4, 2)
    batch = collect_batch(Countdown([3, 1, 4]), first_action, 2, np.random.default_rng(0), 2)
    assert batch["lengths"].tolist() == [3, 1]  # already enough steps: n_episodes episodes


# ---------------------------------------------------------------- n-step targets (notebook 09)


def _n_step_by_episode_end(
    rewards: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    n: int,
) -> np.ndarray:
    """The same targets another way: find the stop step j first, then one dot product."""
    T, N = rewards.shape
    y = np.zeros((T, N))
    for i in range(N):
        ends = [j for j in range(T) if dones[j, i]] + [T - 1]
        for t in range(T):
            j = min(t + n - 1, next(e for e in ends if e >= t))
            powers = gamma ** np.arange(j - t + 2)
            bootstrap = (1 - terminated[j, i]) * next_values[j, i]
            y[t, i] = powers[:-1] @ rewards[t : j + 1, i] + powers[-1] * bootstrap
    return y


def test_n_step_targets_by_hand() -> None:
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]])
    next_values = np.array([[10.0], [20.0], [30.0], [40.0]])
    terminated = np.array([[0.0], [1.0], [0.0], [0.0]])  # the first episode terminates at t = 1
    y = n_step_targets(rewards, next_values, terminated, terminated, 0.5, 2)
    # y0 = 1 + 0.5 * 2 (no bootstrap after the termination); y1 = 2;
    # y2 = 3 + 0.5 * 4 + 0.25 * V(s_4); y3 = 4 + 0.5 * V(s_4) (the rollout ends)
    assert y[:, 0].tolist() == [2.0, 2.0, 15.0, 24.0]
    truncated = n_step_targets(rewards, next_values, np.zeros((4, 1)), terminated, 0.5, 2)
    assert truncated[:, 0].tolist() == [7.0, 12.0, 15.0, 24.0]  # bootstrap from V(s_2) = 20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_n_step_targets_match_a_loop_over_episode_ends(seed: int) -> None:
    rng = np.random.default_rng(seed)
    T, N, gamma = 15, 7, 0.9
    rewards, next_values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    terminated = (rng.random((T, N)) < 0.15).astype(float)
    dones = np.maximum(terminated, rng.random((T, N)) < 0.15)  # truncations too
    assert 0 < terminated.sum() < dones.sum()
    for n in (1, 2, 3, 7, T, T + 5):
        got = n_step_targets(rewards, next_values, terminated, dones, gamma, n)
        want = _n_step_by_episode_end(rewards, next_values, terminated, dones, gamma, n)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    td = rewards + gamma * (1 - terminated) * next_values  # n = 1: the TD target
    y1 = n_step_targets(rewards, next_values, terminated, dones, gamma, 1)
    np.testing.assert_allclose(y1, td, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- the softmax agent (notebook 09)


def test_k_logit_mlp_and_ppo_softmax_gradient_match_autograd() -> None:
    rng = np.random.default_rng(0)
    net = MLP(5, 7, rng, lr=1e-2, n_out=4, dtype=np.float64)
    x, actions = rng.normal(size=(40, 5)), rng.integers(4, size=40)
    pi_old, adv = rng.uniform(0.05, 0.5, 40), rng.normal(size=40)
    probs = softmax(net(x))
    assert probs.shape == (40, 4) and np.allclose(probs.sum(1), 1)
    by_hand = net.gradients(ppo_softmax_gradient(probs, actions, pi_old, adv, 0.2))
    params = [torch.tensor(p, requires_grad=True) for p in net.params]
    logits = torch.tanh(torch.tensor(x) @ params[0].T + params[1]) @ params[2] + params[3]
    ratio = torch.softmax(logits, -1)[torch.arange(40), torch.tensor(actions)] / torch.tensor(
        pi_old
    )
    A = torch.tensor(adv)
    loss = -torch.minimum(ratio * A, ratio.clamp(0.8, 1.2) * A).mean()
    clipped = int(((ratio > 1.2) & (A > 0) | (ratio < 0.8) & (A < 0)).sum())
    assert 0 < clipped < 40  # both kinds of samples are in the batch
    for g, t in zip(by_hand, torch.autograd.grad(loss, params), strict=True):
        np.testing.assert_allclose(g, t.numpy(), rtol=0, atol=1e-12)


def test_sample_categorical_frequencies_match_the_probabilities() -> None:
    rng = np.random.default_rng(0)
    p = np.array([0.1, 0.0, 0.6, 0.3])
    n = 40_000
    counts = np.bincount(sample_categorical(np.tile(p, (n, 1)), rng), minlength=4)
    assert counts[1] == 0
    assert np.all(np.abs(counts / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-12)


@pytest.mark.parametrize(
    ("env_id", "n_obs", "n_actions"), [("CartPole-v1", 4, 2), ("Acrobot-v1", 6, 3)]
)
def test_train_categorical_ac_runs_on_both_kinds_of_vector_env(
    env_id: str, n_obs: int, n_actions: int
) -> None:
    """CartPole has a numpy vector_entry_point, Acrobot runs in the "sync" loop."""
    log, policy, critic = train_categorical_ac(
        env_id, seed=0, total_steps=4_000, n_envs=4, stop_when_solved=False
    )
    assert policy(np.zeros((3, n_obs))).shape == (3, n_actions)
    assert critic(np.zeros((3, n_obs))).shape == (3,)
    returns = np.array(log.returns)
    assert len(returns) >= 4 and log.total_steps <= 4_000 + 4 * 32  # one rollout past
    if env_id == "CartPole-v1":  # r_t = 1: a return is the episode's length
        assert np.all((returns >= 1) & (returns <= 500))
        assert returns.sum() <= log.total_steps  # plus the steps of the unfinished episodes
    else:  # r_t = -1, and 0 on the terminating step
        assert np.all((returns <= 0) & (returns >= -500))


def test_mlp_adam_step_on_its_flat_vector_equals_torch_adam() -> None:
    """Three Adam steps of MLP (parameters as views of one flat vector) == torch.optim.Adam."""
    rng = np.random.default_rng(1)
    for n_out in (1, 3):
        net = MLP(4, 6, rng, lr=0.05, n_out=n_out, dtype=np.float64)
        params = [torch.tensor(p.copy(), requires_grad=True) for p in net.params]
        opt = torch.optim.Adam(params, lr=0.05, eps=1e-8)
        for _ in range(3):
            x = rng.normal(size=(16, 4))
            y = rng.normal(size=(16,) if n_out == 1 else (16, n_out))
            net.step(2 * (net(x) - y) / len(x))  # dL/df of L = sum_i |f(x_i) - y_i|^2 / B
            out = torch.tanh(torch.tensor(x) @ params[0].T + params[1]) @ params[2] + params[3]
            loss = ((out - torch.tensor(y)) ** 2).sum() / len(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for mine, theirs in zip(net.params, params, strict=True):
            np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=0, atol=1e-12)
        assert all(np.shares_memory(p, net.theta) for p in net.params)
