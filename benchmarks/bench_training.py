"""Train the course's CartPole agents and a tutorial-style twin, side by side, in one run.

The agents are not re-implemented here: their code is executed from the cells tagged
``agent`` in the solution notebooks (``solutions/0{4,5,6}_*/*.ipynb``), so the benchmark
measures exactly what the learner runs.

* 04: fast REINFORCE with the full return R(τ) (no graph while acting, one batched update);
* 05: the same with reward-to-go G_t;
* 06: reward-to-go minus a learned value baseline, normalised advantages (the course's agent);
* 09: PPO with GAE(λ) on the numpy-vectorised CartPole (``pgcourse.vector_agent``, saved from
  notebook 09): 32 envs stepped in one call, one batched sample per step, the update in numpy
  with the gradient by hand (checked against autograd in the notebook);
* peers, when ``stable-baselines3`` is installed (the optional ``bench`` extra): SB3 PPO with
  the RL Zoo's CartPole-v1 settings, and SB3 A2C with the Zoo's settings (8 envs, defaults);
  the run says which peers it skipped;
* tutorial style: the 06 agent's estimator and hyper-parameters, computed the way the
  tutorial seed computes REINFORCE — a ``Categorical`` and its log-probability kept with its
  autograd graph at every step, one episode at a time, ``backward`` through all of it.
  Only the organisation of the computation differs from 06, so the CPU ratio isolates it.

"Solved" = mean undiscounted return of the last 20 episodes ≥ 475. Steps and CPU seconds to
solve are read at the end of the batch in which the criterion is first met (CPU time from
``time.process_time``, which other processes on the machine do not inflate the way they
inflate wall time). Medians are over the seeds that solved. Before the measured runs every
agent trains once for a few hundred steps, untimed, so that one-time costs of the process
(lazy imports, first calls into torch) fall on no measured run.

    .venv/bin/python benchmarks/bench_training.py            # 5 seeds, all agents (~3-5 min)
    .venv/bin/python benchmarks/bench_training.py --quick    # 3 seeds, 06, 09 and the twin
    .venv/bin/python benchmarks/bench_training.py --no-peers # without the SB3 peers
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.distributions import Categorical
from torch.nn.utils.rnn import pad_sequence

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {
    "04": ROOT / "solutions/04_reinforce/04_reinforce.ipynb",
    "05": ROOT / "solutions/05_reward_to_go/05_reward_to_go.ipynb",
    "06": ROOT / "solutions/06_baselines/06_baselines.ipynb",
}
THRESHOLD, WINDOW = 475.0, 20
sys.path.insert(0, str(ROOT))


def load_agent(path: Path) -> dict:
    """Execute the notebook's code cells tagged ``agent`` in a fresh namespace.

    The namespace starts with the course library (``pgcourse``), which holds the code of the
    notebooks' ``# @save`` cells, so an agent cell may use what an untagged save cell defined.
    """
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {"__name__": f"agent_{path.stem}"}
    exec("from pgcourse import *", namespace)  # noqa: S102
    for cell in cells:
        if cell["cell_type"] == "code" and "agent" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            exec(compile(source, f"{path.name}:agent-cell", "exec"), namespace)  # noqa: S102
    return namespace


# --------------------------------------------------------------------------- tutorial style
def episode_with_graph(env, policy):
    """One episode; every log π(a_t|s_t) keeps its autograd graph until the update."""
    obs, info = env.reset()
    observations, actions, rewards, log_probs = [], [], [], []
    while True:
        dist = Categorical(logits=policy(torch.as_tensor(obs)))
        action = dist.sample()
        log_probs.append(dist.log_prob(action))
        observations.append(obs)
        actions.append(action.item())
        obs, reward, terminated, truncated, info = env.step(action.item())
        rewards.append(reward)
        if terminated or truncated:
            return observations, actions, rewards, torch.stack(log_probs)


def train_tutorial_style(
    ns: dict,
    seed: int,
    total_steps: int,
    n_episodes: int = 8,
    lr: float = 3e-2,
    value_lr: float = 3e-2,
    value_steps: int = 10,
    gamma: float = 0.99,
    hidden: int = 32,
    stop_when_solved: bool = True,
):
    """The 06 agent's algorithm (same estimator, networks, optimisers), tutorial structure."""
    torch.manual_seed(seed)
    env = gym.make("CartPole-v1")
    env.reset(seed=seed)
    policy = ns["make_policy"](4, 2, hidden)
    value_net = ns["make_policy"](4, 1, hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    value_optimizer = torch.optim.Adam(value_net.parameters(), lr=value_lr)
    log = ns["TrainingLog"](WINDOW, THRESHOLD)
    while log.total_steps < total_steps and not (stop_when_solved and log.solved):
        episodes = [episode_with_graph(env, policy) for _ in range(n_episodes)]
        lengths = [len(r) for _, _, r, _ in episodes]
        log_probs = pad_sequence([lp for *_, lp in episodes], batch_first=True)  # keeps graphs
        mask = pad_sequence([torch.ones(n) for n in lengths], batch_first=True)
        rewards = pad_sequence(
            [torch.tensor(r, dtype=torch.float32) for _, _, r, _ in episodes], batch_first=True
        )
        obs = pad_sequence([torch.as_tensor(np.array(o)) for o, *_ in episodes], batch_first=True)
        q = ns["step_weights"](
            {"rewards": rewards, "mask": mask, "lengths": torch.tensor(lengths)}, gamma
        )
        values = value_net(obs).squeeze(-1)
        loss = ns["normalised_pseudo_loss"](log_probs, q, values, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for _ in range(value_steps):
            v_loss = ns["value_loss"](value_net(obs).squeeze(-1), q, mask)
            value_optimizer.zero_grad()
            v_loss.backward()
            value_optimizer.step()
        log.record(rewards.sum(1).tolist(), lengths)
    env.close()
    return log


# --------------------------------------------------------------------------- SB3 peers
def sb3_peer(algo: str):
    """A train function for SB3 PPO/A2C with the RL Zoo's CartPole-v1 settings, or None."""
    try:
        import stable_baselines3 as sb3
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError:
        return None

    class Log(BaseCallback):
        """Feeds finished episodes (Monitor) to a course log; stops when solved."""

        def __init__(self, log):
            super().__init__()
            self.log = log

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.log.record([info["episode"]["r"]], [0])
                    self.log.steps[-1] = self.num_timesteps
            return not self.log.solved

    def linear(start: float):
        return lambda progress: progress * start  # progress goes from 1 to 0

    def train(ns: dict, seed: int, budget: int):
        env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
        if algo == "ppo":  # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1
            model = sb3.PPO(
                "MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2),
                seed=seed, device="cpu", verbose=0,
            )  # fmt: skip
        else:  # rl-baselines3-zoo hyperparams/a2c.yml, CartPole-v1: 8 envs, ent_coef 0
            model = sb3.A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu", verbose=0)
        log = ns["TrainingLog"](WINDOW, THRESHOLD)
        model.learn(total_timesteps=budget, callback=Log(log))
        env.close()
        return log

    return train


# --------------------------------------------------------------------------- running
def run(name: str, train_one, seeds: list[int], budget: int) -> dict:
    results = []
    for seed in seeds:
        start = time.process_time()
        log = train_one(seed, budget)
        total_cpu = time.process_time() - start
        solved = log.solved_episode is not None
        results.append(
            {
                "seed": seed,
                "solved": solved,
                "steps": log.steps[log.solved_episode] if solved else None,
                "cpu": log.cpu[log.solved_episode] if solved else None,
                "total_steps": log.total_steps,
                "total_cpu": total_cpu,
            }
        )
        status = (
            f"solved at {results[-1]['steps']} steps, {results[-1]['cpu']:.2f} CPU-s"
            if solved
            else f"not solved in {log.total_steps} steps"
        )
        print(f"  {name:44s} seed {seed}: {status} ({total_cpu:.2f} CPU-s in total)", flush=True)
    solved = [r for r in results if r["solved"]]
    return {
        "name": name,
        "runs": results,
        "n_solved": len(solved),
        "median_steps": statistics.median(r["steps"] for r in solved) if solved else None,
        "median_cpu": statistics.median(r["cpu"] for r in solved) if solved else None,
        "us_per_step": 1e6
        * sum(r["total_cpu"] for r in results)
        / max(1, sum(r["total_steps"] or 0 for r in results)),
    }


def table(rows: list[dict], ours: dict, n_seeds: int) -> str:
    """Markdown table; the ratio column is each agent's median CPU-s over ours."""
    head = (
        "| agent | solved | median env steps to solve | median CPU-s to solve | "
        f"CPU-s ratio to {ours['name'].split()[0]} | µs per env step |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for row in rows:
        steps = f"{row['median_steps']:,.0f}" if row["median_steps"] is not None else "—"
        cpu = f"{row['median_cpu']:.2f}" if row["median_cpu"] is not None else "—"
        if row["median_cpu"] is None or ours["median_cpu"] is None:
            ratio = "—"
        else:
            ratio = f"{row['median_cpu'] / ours['median_cpu']:.1f}×"
        lines.append(
            f"| {row['name']} | {row['n_solved']}/{n_seeds} | {steps} | {cpu} | "
            f"{ratio} | {row['us_per_step']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 seeds, only the 06 agent and its tutorial-style twin",
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    parser.add_argument(
        "--budget",
        type=int,
        default=150_000,
        help="env steps per run before giving up (default 150000)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the SB3 peers")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    n_seeds = args.seeds or (3 if args.quick else 5)
    seeds = list(range(n_seeds))

    torch.set_num_threads(1)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, gymnasium "
        f"{gym.__version__}, numpy {np.__version__}; torch threads 1; "
        f"load average at start {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)"
    )
    print(
        f"CartPole-v1, solved = mean of the last {WINDOW} returns >= {THRESHOLD:g}; "
        f"{n_seeds} seeds; budget {args.budget:,} env steps per run\n",
        flush=True,
    )

    ns = {key: load_agent(path) for key, path in NOTEBOOKS.items()}
    from pgcourse.vector_agent import train_vector_ac

    agents = {}
    if not args.quick:
        agents["04 REINFORCE, full return"] = lambda s, b: ns["04"]["train"](
            seed=s, total_steps=b, stop_when_solved=True
        )[0]
        agents["05 reward-to-go"] = lambda s, b: ns["05"]["train"](
            "reward-to-go", seed=s, total_steps=b, stop_when_solved=True
        )[0]
    agents["06 value baseline + normalised advantages"] = lambda s, b: ns["06"]["train"](
        baseline="value", normalise=True, seed=s, total_steps=b, stop_when_solved=True
    )[0]
    agents["09 PPO+GAE, numpy, vector env (pgcourse)"] = lambda s, b: train_vector_ac(
        seed=s, total_steps=b
    )[0]
    agents["tutorial style, same algorithm as 06"] = lambda s, b: train_tutorial_style(
        ns["06"], s, b
    )
    skipped = []
    for key, label in (("ppo", "SB3 PPO, RL Zoo settings"), ("a2c", "SB3 A2C, RL Zoo settings")):
        peer = None if args.no_peers else sb3_peer(key)
        if peer is None:
            skipped.append(label)
        else:
            agents[label] = lambda s, b, peer=peer: peer(ns["06"], s, b)
    print(
        "peers skipped: "
        + (", ".join(skipped) if skipped else "none")
        + ("" if args.no_peers or not skipped else " (pip install -e '.[bench]')"),
        flush=True,
    )

    # one-time costs (lazy imports, first calls into torch and gymnasium) are paid here, once,
    # by a short untimed run of every agent, so that no measured run carries them
    for fn in agents.values():
        fn(10_000 + seeds[0], 300)
    start_wall = time.time()
    rows = [run(name, fn, seeds, args.budget) for name, fn in agents.items()]
    by_name = {row["name"]: row for row in rows}
    ours = by_name["09 PPO+GAE, numpy, vector env (pgcourse)"]
    print(f"\n{table(rows, ours, n_seeds)}\n")
    print(
        f"CPU-s from time.process_time, one torch thread; wall time "
        f"{time.time() - start_wall:.0f} s; load average at the end {os.getloadavg()[0]:.2f} "
        "(the machine may be shared: CPU-s are robust-ish to load, not immune)"
    )
    zoo = by_name.get("SB3 PPO, RL Zoo settings")
    fast = ours["median_cpu"]
    targets = {
        "09 agent solves every seed": ours["n_solved"] == n_seeds,
        "09 agent median < 0.25 CPU-s": fast is not None and fast < 0.25,
    }
    if zoo is not None:
        targets[">= 20x fewer CPU-s than SB3 PPO (zoo), same or fewer steps"] = (
            fast is not None
            and zoo["median_cpu"] is not None
            and zoo["median_cpu"] / fast >= 20
            and ours["median_steps"] <= zoo["median_steps"]
        )
    for what, ok in targets.items():
        print(f"  [{'met' if ok else 'NOT met'}] {what}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "targets": targets}, indent=1))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
