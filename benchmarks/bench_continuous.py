"""Notebook 07's agent on InvertedPendulum-v5, over 5 seeds.

The agent is the one the notebook trains (its ``# @save`` cells, saved to
``pgcourse/continuous.py``): a linear Gaussian policy N(θᵀ[s; 1], σ²) with a learned log σ,
Gaussian REINFORCE on batches of 1000 steps, reward-to-go with γ = 0.99 normalised over the
batch, Adam with learning rate 0.05. "Solved" = the mean return of the last 10 episodes
reaches the task's reward threshold (950); the step and CPU counts are read at the end of
the batch in which that first happens. CPU time is ``time.process_time`` (robust to other
processes on the machine).

    .venv/bin/python benchmarks/bench_continuous.py            # 5 seeds
    .venv/bin/python benchmarks/bench_continuous.py --seeds 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import torch

from pgcourse.continuous import LinearGaussianPolicy, train_gaussian

MAX_STEPS = 300_000


def run(seed: int) -> tuple[bool, int, float, float]:
    """(solved, env steps, CPU-s, final mean return) of one seed."""
    torch.manual_seed(seed)
    env = gym.make("InvertedPendulum-v5")
    threshold = env.spec.reward_threshold
    policy = LinearGaussianPolicy(4, 1, sigma=1.0)
    start = time.process_time()
    hist = train_gaussian(
        env,
        policy,
        total_steps=MAX_STEPS,
        steps_per_update=1000,
        lr=0.05,
        gamma=0.99,
        seed=seed,
        solved_at=threshold,
    )
    cpu = time.process_time() - start
    final = hist["mean_return"][-1]
    return final >= threshold, hist["steps"][-1], cpu, final


def main() -> None:
    """Train every seed and print one line each, then the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for seed in range(args.seeds):
        solved, steps, cpu, final = run(seed)
        results.append((solved, steps, cpu))
        print(f"seed {seed}: solved={solved} steps={steps} cpu={cpu:.1f}s final={final:.0f}")
    ok = [r for r in results if r[0]]
    line = f"InvertedPendulum-v5, notebook 07 agent: solved {len(ok)}/{len(results)}"
    if ok:
        line += (
            f", median {statistics.median(r[1] for r in ok):.0f} steps, "
            f"{statistics.median(r[2] for r in ok):.1f} CPU-s to solve"
        )
    print(line)


if __name__ == "__main__":
    main()
