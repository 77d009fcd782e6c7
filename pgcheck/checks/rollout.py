"""Check a learner's collection loop: one episode with the gymnasium 1.x API.

``check_rollout(fn)`` (registered as ``"rollout"``) calls ``fn(env, policy, rng)`` on small
probe environments and expects ``(observations [T, S], actions [T], rewards [T])`` for one
episode, where ``policy(obs, rng) -> int`` samples the action. The probe environments are
deterministic functions of (case, episode number, step, action), so the judge replays every
returned episode without running learner code. Recognised mistakes:

* stopping only on ``terminated`` (the loop runs past the time limit) or only on ``truncated``;
* recording the *next* observation with the action (off by one) or the observation after
  the last step as an extra row;
* not resetting at the start of the episode, or resetting with a seed (identical episodes);
* recording an action other than the one the policy returned, or not calling the policy on
  the current observation (e.g. acting greedily, or on a stale observation);
* rewards that do not belong to the step (shifted, or the running sum);
* the gym < 0.26 API (``step`` returning four values, ``reset`` returning only ``obs``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    Budget,
    Check,
    count_mismatch,
    failed,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    run_check,
    to_array,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row

OPTIONS = ["timeout", "n_episodes"]
N_STATES = 5
N_ACTIONS = 3
#: after this many steps past the end of an episode the probe ends it, so that a loop that
#: ignores a flag still stops (and the mistake is named instead of a time-out)
EXTRA_STEPS = 3

#: (name, case seed, probability of terminating at each step, time limit)
CASES = (
    ("terminations and truncations", 101, 0.22, 6),
    ("time limit only (never terminates)", 202, 0.0, 4),
    ("terminations only (long time limit)", 303, 0.45, 60),
)


# --------------------------------------------------------------------------- the probe world
def initial_state(seed: int, episode: int) -> int:
    """s_0 of episode ``episode`` (0-based count of resets) of a case."""
    return int(np.random.default_rng([seed, episode, 7]).integers(N_STATES))


def terminates(seed: int, episode: int, t: int, p_term: float) -> bool:
    """Whether step t of that episode reaches a terminal state (independent of the action)."""
    return bool(np.random.default_rng([seed, episode, t, 11]).random() < p_term)


def next_state(s: int, a: int) -> int:
    return (2 * s + a + 1) % N_STATES


def reward(s: int, a: int, t: int) -> float:
    """Distinct for every (s, a, t), so a shifted or summed reward is recognised."""
    return float(10 * s + a + 1) + 0.125 * t


def observation(episode: int, t: int, s: int) -> np.ndarray:
    """[episode number, step, state] (as float32, like a gymnasium Box observation)."""
    return np.array([episode, t, s], dtype=np.float32)


def policy_probs(obs: np.ndarray) -> np.ndarray:
    """The probe policy's π(·|s): depends on the state and the step, never uniform."""
    s, t = int(obs[2]), int(obs[1])
    logits = np.array([0.0, 0.7 * np.sin(s + 1.0), -0.4 + 0.3 * ((s + t) % 3)])
    p = np.exp(logits - logits.max())
    return p / p.sum()


class ProbeEnv:
    """A gymnasium-1.x-style environment (``reset -> (obs, info)``, ``step -> 5 values``)
    that logs how it is used."""

    def __init__(self, seed: int, p_term: float, limit: int) -> None:
        import gymnasium as gym

        self.seed, self.p_term, self.limit = seed, p_term, limit
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.episode = -1
        self.t = 0
        self.s = 0
        self.ended_at: int | None = None
        self.log: dict[str, Any] = {
            "resets": 0,
            "seeded_resets": 0,
            "steps_after_end": 0,
            "steps_before_reset": 0,
            "bad_actions": 0,
        }

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        self.log["resets"] += 1
        if seed is not None:
            self.log["seeded_resets"] += 1
            self.episode = 0  # a seeded reset replays the first episode
        else:
            self.episode += 1
        self.t = 0
        self.s = initial_state(self.seed, self.episode)
        self.ended_at = None
        return observation(self.episode, 0, self.s), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.episode < 0:
            self.log["steps_before_reset"] += 1
            self.episode, self.s = 0, initial_state(self.seed, 0)
        try:
            a = int(action)
        except (TypeError, ValueError):
            a = -1
        if not 0 <= a < N_ACTIONS:
            self.log["bad_actions"] += 1
            a = 0
        if self.ended_at is not None:
            self.log["steps_after_end"] += 1
        r = reward(self.s, a, self.t)
        terminated = terminates(self.seed, self.episode, self.t, self.p_term)
        self.s = next_state(self.s, a)
        self.t += 1
        truncated = self.t >= self.limit
        if (terminated or truncated) and self.ended_at is None:
            self.ended_at = self.t
        if self.ended_at is not None and self.t >= self.ended_at + EXTRA_STEPS:
            terminated = True  # stop a loop that ignores the flags (the log has it)
        return observation(self.episode, self.t, self.s), r, terminated, truncated, {}

    def close(self) -> None:
        pass


class ProbePolicy:
    """``policy(obs, rng) -> int``: samples from :func:`policy_probs` and logs every call."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []
        self.bad_calls = 0

    def __call__(self, obs: Any, rng: Any = None) -> int:
        try:
            x = np.asarray(obs, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            x = np.zeros(0)
        if x.shape != (3,) or not isinstance(rng, np.random.Generator):
            self.bad_calls += 1
            if x.shape != (3,):
                return 0
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0)
        cdf = np.cumsum(policy_probs(x))
        a = int(np.searchsorted(cdf, gen.random() * cdf[-1], side="right"))
        self.calls.append([[float(v) for v in x], a])
        return a


# --------------------------------------------------------------------------- reference
def replay(
    seed: int, p_term: float, limit: int, episode: int, actions: list[int]
) -> dict[str, Any]:
    """The true episode for these actions: observations, rewards, and the true length.

    ``actions`` may be longer than the episode; the replay stops where the episode ends
    and reports which flag ended it.
    """
    s, obs, rewards, ended_by = initial_state(seed, episode), [], [], None
    for t, a in enumerate(actions):
        obs.append(observation(episode, t, s).tolist())
        rewards.append(reward(s, a, t))
        term = terminates(seed, episode, t, p_term)
        s = next_state(s, a)
        if term or t + 1 >= limit:
            ended_by = "terminated" if term else "truncated"
            break
    return {
        "observations": obs,
        "rewards": rewards,
        "ended_by": ended_by,
        "final_observation": observation(episode, len(rewards), s).tolist(),
    }


# --------------------------------------------------------------------------- measure
def measure_rollout(
    fn: Callable[..., Any], *, timeout: float = DEFAULT_TIMEOUT, n_episodes: int = 4, **unknown: Any
) -> dict[str, Any]:
    """Call ``fn(env, policy, rng)`` ``n_episodes`` times per probe case; plain numbers only."""
    early = measure_precheck("check_rollout", unknown, OPTIONS)
    if early is not None:
        return early
    budget = Budget(timeout)
    name = "your collection loop"
    cases = []
    for label, seed, p_term, limit in CASES:
        env = ProbeEnv(seed, p_term, limit)
        policy = ProbePolicy()
        rng = np.random.default_rng(seed)
        episodes = []
        for _ in range(n_episodes):
            resets_before = env.log["resets"]
            value, err = learner_call(fn, {"env": env, "policy": policy, "rng": rng}, budget, name)
            if err:
                return _explain_error(err)
            if not isinstance(value, tuple | list) or len(value) != 3:
                what = (
                    type(value).__name__
                    if not isinstance(value, tuple | list)
                    else (f"{len(value)} items")
                )
                return failed(
                    ErrorKind.OUTPUT,
                    f"{name} returned {what}; return three arrays "
                    "(observations [T, obs_dim], actions [T], rewards [T]).",
                )
            try:
                obs, act, rew = (to_array(v) for v in value)
            except (TypeError, ValueError, RuntimeError) as exc:
                return failed(
                    ErrorKind.OUTPUT,
                    f"{name} returned {exc} among its three results; return "
                    "numpy arrays (or lists / tensors) of numbers.",
                )
            episodes.append(
                {
                    "observations": obs.tolist(),
                    "obs_shape": list(obs.shape),
                    "actions": act.reshape(-1).tolist(),
                    "act_shape": list(act.shape),
                    "rewards": rew.reshape(-1).tolist(),
                    "rew_shape": list(rew.shape),
                    "resets": env.log["resets"] - resets_before,
                }
            )
        cases.append(
            {
                "label": label,
                "episodes": episodes,
                "log": dict(env.log),
                "policy_calls": policy.calls,
                "bad_policy_calls": policy.bad_calls,
            }
        )
    return {"check": "rollout", "cases": cases, "n_episodes": n_episodes, "output": budget.output}


def _explain_error(err: dict[str, Any]) -> dict[str, Any]:
    msg = err["error"]["message"]
    if "not enough values to unpack (expected 5, got" in msg or "too many values to unpack" in msg:
        msg += (
            " — gymnasium 1.x: `obs, info = env.reset()` and "
            "`obs, reward, terminated, truncated, info = env.step(action)`."
        )
    return failed(err["error"]["kind"], msg)


# --------------------------------------------------------------------------- judge
def _episode_problem(
    ep: dict[str, Any],
    seed: int,
    p_term: float,
    limit: int,
    calls: dict[tuple[float, ...], list[int]],
) -> tuple[str, str] | None:
    """(diagnosis, message) for the first thing wrong with one returned episode, or None."""
    obs = np.asarray(ep["observations"], dtype=np.float64)
    acts = [int(round(a)) for a in ep["actions"]]
    rews = ep["rewards"]
    n = len(rews)
    if len(ep["obs_shape"]) != 2 or ep["obs_shape"][1] != 3:
        return (
            "shape",
            f"observations have shape {ep['obs_shape']}; expected [T, 3] "
            "(one row per step, the observation s_t the action was chosen in).",
        )
    if not (len(acts) == n == ep["obs_shape"][0]):
        extra = (
            " (one observation too many: the observation after the last step is not part "
            "of any (s_t, a_t, r_t))"
            if ep["obs_shape"][0] == n + 1
            else ""
        )
        return (
            "lengths",
            f"you returned {ep['obs_shape'][0]} observations, {len(acts)} actions "
            f"and {n} rewards; they must have the same length T{extra}.",
        )
    if n == 0:
        return ("empty", "the episode is empty: step until terminated or truncated.")
    episode = int(obs[0, 0])
    truth = replay(seed, p_term, limit, episode, acts)
    true_obs = np.asarray(truth["observations"])
    m = len(truth["rewards"])
    if obs[0, 1] != 0:
        if obs[0, 1] == 1:
            return (
                "next_observation",
                "your first observation is the one *after* the first "
                "step: record the observation s_t the action was chosen in, before "
                "`obs` is overwritten by env.step.",
            )
        return (
            "no_reset",
            "your episode does not start with the observation reset() returns: "
            "call `obs, info = env.reset()` at the start of every episode.",
        )
    if n > m:
        flag = truth["ended_by"]
        other = "truncated" if flag == "terminated" else "terminated"
        return (
            f"ignores_{flag}",
            f"the episode ended at step {m} with {flag}=True, but your "
            f"loop kept stepping: stop when `terminated or truncated` (you seem to stop "
            f"only on {other}).",
        )
    if n < m:
        return (
            "stops_early",
            f"you stopped after {n} steps, but the episode had not ended "
            "(neither terminated nor truncated was True).",
        )
    if not np.allclose(obs, true_obs):
        t = int(np.flatnonzero(~np.all(np.isclose(obs, true_obs), axis=1))[0])
        return (
            "observations",
            f"the observation at step {t} is not the one the environment "
            "returned there: record `obs` before stepping, then move on with "
            "`obs = next_obs`.",
        )
    for t in range(n):
        key = tuple(float(v) for v in obs[t])
        chosen = calls.get(key)
        if not chosen:
            return (
                "policy_not_called",
                f"the policy was never asked for an action in the "
                f"observation of step {t}: call `policy(obs, rng)` on the current "
                "observation at every step.",
            )
        if acts[t] not in chosen:
            return (
                "wrong_action",
                f"at step {t} you recorded action {acts[t]} but the policy "
                f"returned {chosen[0]}: step the environment with, and record, the action "
                "the policy sampled (not an argmax, not a new random one).",
            )
    if not np.allclose(rews, truth["rewards"]):
        t = int(np.flatnonzero(~np.isclose(rews, truth["rewards"]))[0])
        return (
            "rewards",
            f"the reward at step {t} is {rews[t]:g} but env.step returned "
            f"{truth['rewards'][t]:g} there: record the reward of each step as it "
            "comes (r_t belongs to (s_t, a_t)).",
        )
    return None


def judge_rollout(
    measurement: dict[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    n_episodes: int = 4,
    **unknown: Any,
) -> Report:
    """Replay every returned episode on the probe environment and name the first mistake."""
    check = "rollout"
    early = judge_precheck(measurement, check, "check_rollout", unknown, OPTIONS)
    if early is not None:
        return early
    early = count_mismatch(measurement.get("cases", []), len(CASES), check, "check_rollout")
    if early is not None:
        return early
    rows: list[Row] = []
    problem: tuple[str, str] | None = None
    for (label, seed, p_term, limit), case in zip(CASES, measurement["cases"], strict=True):
        log = case["log"]
        calls: dict[tuple[float, ...], list[int]] = {}
        for x, a in case["policy_calls"]:
            calls.setdefault(tuple(float(v) for v in x), []).append(int(a))
        lengths = [len(ep["rewards"]) for ep in case["episodes"]]
        rows.append(
            Row(
                label,
                {
                    "lengths": lengths,
                    "resets": log["resets"],
                    "steps after the end": log["steps_after_end"],
                    "seeded resets": log["seeded_resets"],
                },
            )
        )
        if problem is not None:
            continue
        if log["bad_actions"]:
            problem = (
                "bad_action",
                "env.step received something that is not a valid action: "
                "pass the int the policy returned.",
            )
        elif case["bad_policy_calls"]:
            problem = (
                "policy_call",
                "call the policy as `policy(obs, rng)` with the current "
                "observation (an array, not the `(obs, info)` pair that reset returns) "
                "and the generator you were given.",
            )
        elif log["seeded_resets"]:
            problem = (
                "seeded_reset",
                "you pass a seed to env.reset inside the loop, so every "
                "episode starts the same way: seed the environment once, outside, and "
                "call `env.reset()` without a seed here.",
            )
        elif log["steps_before_reset"] or any(ep["resets"] == 0 for ep in case["episodes"]):
            problem = ("no_reset", "call `obs, info = env.reset()` at the start of every episode.")
        elif any(ep["resets"] > 1 for ep in case["episodes"]):
            problem = (
                "extra_reset",
                "reset once per episode: you called env.reset more than "
                "once for one episode (the returned episode is not the one you reset).",
            )
        else:
            for ep in case["episodes"]:
                problem = _episode_problem(ep, seed, p_term, limit, calls)
                if problem is not None:
                    problem = (problem[0], f"[{label}] {problem[1]}")
                    break
            if problem is None and log["steps_after_end"]:
                problem = (
                    "steps_after_end",
                    "you stepped an environment after its episode "
                    "had ended: stop when `terminated or truncated`.",
                )
    notes = output_notes(measurement)
    if problem is None:
        total = sum(len(c["episodes"]) for c in measurement["cases"])
        return Report(
            passed=True,
            verdict="correct",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"Your loop returned the right (s_t, a_t, r_t) for all {total} "
                "episodes: it resets once, acts with the policy's sample for "
                "the current observation, and stops on terminated or truncated."
            ),
        )
    return Report(
        passed=False,
        verdict="wrong",
        check=check,
        rows=rows,
        notes=notes,
        diagnosis=problem[0],
        message=problem[1],
    )


CHECK = Check("rollout", measure_rollout, judge_rollout)


def check_rollout(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check a collection loop ``fn(env, policy, rng) -> (observations [T,S], actions [T],
    rewards [T])`` on small environments whose every step is known.

    It must reset once (unseeded) at the start, record the observation the action was taken
    in, record the sampled action, and stop on ``terminated or truncated`` (gymnasium 1.x).
    """
    return run_check(CHECK, fn, timeout=timeout, **options)
