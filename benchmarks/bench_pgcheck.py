"""How fast is pgcheck's exact check, and what would a Monte Carlo check need to match it?

Run:  .venv/bin/python benchmarks/bench_pgcheck.py            (about a minute)
      .venv/bin/python benchmarks/bench_pgcheck.py --quick    (a few seconds)

1. The default suite on a correct pseudo-loss: CPU time per check (median of repeats, warm)
   and in a fresh process (cold: first call, caches empty; import time reported apart).
2. The subtlest common mistake, weighting log π by G_t without γ^t: the exact check tells
   it from ∇J on every run. A Monte Carlo check compares the learner's estimator with the
   correct one on the same sampled trajectories (a paired test). Even in the best case — one
   known direction, the most favourable instance — telling a bias δ from noise with a false
   alarm rate and a miss rate of 1e-6 each needs N ≥ ((z + z) σ_u / ‖δ‖)² trajectories, with
   σ_u² the exact variance of the per-trajectory difference along u = δ/‖δ‖ (computed by
   enumeration). The benchmark then *runs* that Monte Carlo check and times it.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pgcheck  # noqa: E402
from pgcheck import problems  # noqa: E402
from pgcheck.diagnosis import estimators as E  # noqa: E402
from pgcheck.exact.expectation import Evaluator  # noqa: E402
from pgcheck.exact.vocabulary import requested_names  # noqa: E402


def cpu_now() -> float:
    """CPU seconds of this process and of its reaped children (pgcheck measures a loss in a
    forked child, whose CPU time.process_time() does not count)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_seconds(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = cpu_now()
        fn()
        times.append(cpu_now() - start)
    return times


def cold_run() -> tuple[float, float]:
    code = (
        "import resource\n"
        "def cpu():\n"
        "    a, b = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, "
        "resource.RUSAGE_CHILDREN))\n"
        "    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime\n"
        "t0 = cpu(); import torch; torch.set_num_threads(1); import pgcheck\n"
        "from pgcheck.diagnosis import estimators as E; t1 = cpu()\n"
        "r = pgcheck.check_pseudo_loss(E.reward_to_go); t2 = cpu()\n"
        "assert r.passed; print(t1 - t0, t2 - t1)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    imp, first = map(float, out.stdout.split())
    return imp, first


def per_trajectory_scores(prob, traj):
    """∇log π(a_t|s_t) for every step of every trajectory [N, T, P] (closed form)."""
    return prob.policy.score(prob.theta0)[traj.states, traj.actions]


def normal_quantile(q: float) -> float:
    """z with Φ(z) = q (bisection on erfc; no scipy needed)."""
    lo, hi = 0.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > 1 - q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def per_trajectory(fn, prob, traj) -> torch.Tensor:
    """−∇ℓ(τ_i) for each trajectory of a batch, through pgcheck's engine (one call)."""
    ev = Evaluator(fn, requested_names(fn), timeout=600.0)
    return -ev.call(prob, traj).grads * len(traj)  # the losses are means over the batch


def needed_samples(prob, learner, reference) -> dict[str, float]:
    """Sample sizes for Monte Carlo checks with false-alarm and miss rates of 1e-6 each.

    * paired, best case: the test knows the direction u of the bias δ;
    * paired, per coordinate: P two-sided z-tests with Bonferroni (α = 1e-6 / P);
    * unpaired, best case: the learner's estimates against the exact ∇J along u.
    """
    traj, p = prob.support()
    g_learner = per_trajectory(learner, prob, traj)
    d = g_learner - per_trajectory(reference, prob, traj)
    delta = p @ d
    P = delta.numel()

    def var(x: torch.Tensor) -> torch.Tensor:
        return p @ (x - p @ x) ** 2

    u = delta / delta.norm()
    z_one, z_bonf = normal_quantile(1 - 1e-6), normal_quantile(1 - 1e-6 / (2 * P))
    best_dir = (2 * z_one) ** 2 * float(var(d @ u)) / float(delta.norm()) ** 2
    coord = min(
        ((z_bonf + z_one) ** 2 * float(var(d[:, k])) / float(delta[k]) ** 2)
        for k in range(P)
        if abs(float(delta[k])) > 0
    )
    unpaired = (2 * z_one) ** 2 * float(var(g_learner @ u)) / float(delta.norm()) ** 2
    unpaired_coord = min(
        ((z_bonf + z_one) ** 2 * float(var(g_learner[:, k])) / float(delta[k]) ** 2)
        for k in range(P)
        if abs(float(delta[k])) > 0
    )
    return {
        "unpaired_coord": math.ceil(unpaired_coord),
        "bias": float(delta.norm()),
        "bias_rel": float(delta.norm() / prob.grad_J().norm()),
        "paired_best": math.ceil(best_dir),
        "paired_coord": math.ceil(coord),
        "unpaired_best": math.ceil(unpaired),
        "z_bonf": z_bonf,
        "z_one": z_one,
    }


def monte_carlo_check(
    prob, learner, reference, n: int, z_bonf: float, seed: int = 0, chunk: int = 100_000
) -> tuple[bool, float, float]:
    """Run a per-coordinate test on n simulated trajectories, calling the learner's loss.

    Paired (``reference`` given): the mean of −∇ℓ_learner + ∇ℓ_reference against 0.
    Unpaired (``reference`` None): the mean of −∇ℓ_learner against the exact ∇J.
    Returns (mistake detected, largest |z|, CPU seconds).
    """
    target = prob.grad_J() if reference is None else 0.0
    gen = torch.Generator().manual_seed(seed)
    start = time.process_time()
    total = total_sq = None
    done = 0
    while done < n:
        m = min(chunk, n - done)
        batch = prob.sample(m, generator=gen)
        d = per_trajectory(learner, prob, batch)
        if reference is not None:
            d = d - per_trajectory(reference, prob, batch)
        total = d.sum(0) if total is None else total + d.sum(0)
        total_sq = (d**2).sum(0) if total_sq is None else total_sq + (d**2).sum(0)
        done += m
    mean = total / n
    sd = (total_sq / n - mean**2).clamp_min(1e-300).sqrt()
    z = ((mean - target) / (sd / math.sqrt(n))).abs()
    return bool((z > z_bonf).any()), float(z.max()), time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip the MC run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 5 if args.quick else 30

    imp, first = cold_run()
    pgcheck.check_pseudo_loss(E.reward_to_go)  # warm the caches
    warm = cpu_seconds(lambda: pgcheck.check_pseudo_loss(E.reward_to_go), repeats)
    wrong = cpu_seconds(lambda: pgcheck.check_pseudo_loss(E.MISTAKES["missing_gamma_t"]), repeats)
    exact = statistics.median(warm)
    n_suite = len(problems.default_suite())
    print(f"pgcheck.check_pseudo_loss, default suite ({n_suite} instances), one CPU thread")
    print("  (CPU time of this process and of the forked measurement child)")
    print(f"  correct loss, warm: median {exact * 1e3:.1f} ms CPU over {repeats} runs")
    print(
        f"  missing γ^t, warm:  median {statistics.median(wrong) * 1e3:.1f} ms CPU "
        "(includes the diagnosis)"
    )
    print(
        f"  fresh process: first check {first:.2f} s CPU (import of torch+pgcheck {imp:.2f} s more)"
    )

    learner, reference = E.MISTAKES["missing_gamma_t"], E.reward_to_go
    rows = {
        name: needed_samples(problems.get(name), learner, reference)
        for name in ("mdp-linear", "mdp-mlp")
    }
    print(
        "\nMonte Carlo checks that would catch the missing γ^t with false-alarm and miss "
        "rates of 1e-6 (trajectories needed):"
    )
    print(
        f"  {'instance':<12} {'bias/‖∇J‖':>10} {'paired':>9} {'paired':>11} "
        f"{'unpaired':>10} {'unpaired':>11}"
    )
    print(
        f"  {'':<12} {'':>10} {'known dir.':>9} {'per coord.':>11} {'known dir.':>10} "
        f"{'per coord.':>11}"
    )
    for name, r in rows.items():
        print(
            f"  {name:<12} {r['bias_rel']:>10.2%} {r['paired_best']:>9,} "
            f"{r['paired_coord']:>11,} {r['unpaired_best']:>10,} {r['unpaired_coord']:>11,}"
        )
    if args.quick:
        print("\n(--quick: the Monte Carlo runs are skipped)")
        return
    print(
        "\nruns of the per-coordinate checks (Bonferroni over the P coordinates), on the "
        "instance where each is cheapest:"
    )
    for label, ref, key in (
        ("paired (needs a reference estimator)", reference, "paired_coord"),
        ("unpaired (learner's estimates vs exact ∇J)", None, "unpaired_coord"),
    ):
        name = min(rows, key=lambda k, key=key: rows[k][key])
        n = rows[name][key]
        caught, zmax, seconds = monte_carlo_check(
            problems.get(name), learner, ref, n, rows[name]["z_bonf"]
        )
        print(
            f"  {label}: {name}, N = {n:,}, largest |z| = {zmax:.2f} (threshold "
            f"{rows[name]['z_bonf']:.2f}), caught: {caught}, {seconds:.2f} s CPU, "
            f"ratio to the exact check: {seconds / exact:,.1f}×"
        )
    print("The exact check needs no N, no threshold, and gives the same verdict on every run.")


if __name__ == "__main__":
    main()
