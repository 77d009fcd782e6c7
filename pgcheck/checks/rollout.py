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
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    Budget,
    Check,
    Measurement,
    Rule,
    count_mismatch,
    decide,
    failed,
    first_answer,
    instance_seed,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    run_check,
    to_array,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row

NAME = "rollout"
OPTIONS = ["timeout", "n_episodes", "seed"]
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


def rollout_cases(seed: int | None = None) -> tuple[tuple[str, int, float, int], ...]:
    """The probe cases: :data:`CASES` for ``seed=None``; else the same cases with fresh case
    seeds (:func:`instance_seed`), each kept only if the first four episodes end the same ways
    (terminated / truncated) as with the fixed seed, so every kind of end still occurs."""
    if seed is None:
        return CASES
    out = []
    for label, case_seed, p_term, limit in CASES:
        kinds = _end_kinds(case_seed, p_term, limit)
        for retry in range(1_000):
            fresh = instance_seed(1_000 * case_seed + retry, seed)
            if _end_kinds(fresh, p_term, limit) == kinds:
                break
        out.append((label, fresh, p_term, limit))
    return tuple(out)


def _end_kinds(seed: int, p_term: float, limit: int, episodes: int = 4) -> set[str]:
    """How the first ``episodes`` episodes of a case end (termination ignores the actions)."""
    kinds = set()
    for episode in range(episodes):
        early = any(terminates(seed, episode, t, p_term) for t in range(limit))
        kinds.add("terminated" if early else "truncated")
    return kinds


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
    fn: Callable[..., Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    n_episodes: int = 4,
    seed: int | None = None,
    **unknown: Any,
) -> RolloutMeasurement:
    """Call ``fn(env, policy, rng)`` ``n_episodes`` times per probe case; plain numbers only."""
    early = measure_precheck("check_rollout", unknown, OPTIONS, seed=seed)
    if early is not None:
        return early
    budget = Budget(timeout)
    name = "your collection loop"
    cases: list[RolloutCase] = []
    for label, case_seed, p_term, limit in rollout_cases(seed):
        env = ProbeEnv(case_seed, p_term, limit)
        policy = ProbePolicy()
        rng = np.random.default_rng(case_seed)
        episodes: list[Episode] = []
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


def _explain_error(err: Any) -> Any:
    msg = err["error"]["message"]
    if "not enough values to unpack (expected 5, got" in msg or "too many values to unpack" in msg:
        msg += (
            " — gymnasium 1.x: `obs, info = env.reset()` and "
            "`obs, reward, terminated, truncated, info = env.step(action)`."
        )
    return failed(err["error"]["kind"], msg)


# --------------------------------------------------------------------------- messages
#: Each diagnosis of the collection loop once: its code, what the loop does, and its message
#: (a template filled in with the step and the numbers where the mistake shows).
MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "bad_action",
        "env.step(x) with x not in {0, …, A−1}",
        "env.step received something that is not a valid action: pass the int the policy returned.",
    ),
    Mistake(
        "policy_call",
        "policy(x, g) with x not an observation or g not a Generator",
        "call the policy as `policy(obs, rng)` with the current observation (an array, not "
        "the `(obs, info)` pair that reset returns) and the generator you were given.",
    ),
    Mistake(
        "seeded_reset",
        "env.reset(seed=…) inside the loop",
        "you pass a seed to env.reset inside the loop, so every episode starts the same way: "
        "seed the environment once, outside, and call `env.reset()` without a seed here.",
    ),
    Mistake(
        "no_reset",
        "no env.reset() at the start of an episode",
        "call `obs, info = env.reset()` at the start of every episode.",
    ),
    Mistake(
        "extra_reset",
        "env.reset() more than once per episode",
        "reset once per episode: you called env.reset more than once for one episode (the "
        "returned episode is not the one you reset).",
    ),
    Mistake(
        "shape",
        "observations not [T, 3]",
        "observations have shape {shape}; expected [T, 3] (one row per step, the observation "
        "s_t the action was chosen in).",
    ),
    Mistake(
        "lengths",
        "len(observations), len(actions), len(rewards) differ",
        "you returned {n_obs} observations, {n_act} actions and {n} rewards; they must have "
        "the same length T{extra}",
    ),
    Mistake("empty", "T = 0", "the episode is empty: step until terminated or truncated."),
    Mistake(
        "next_observation",
        "(s_{t+1}, a_t, r_t) recorded",
        "your first observation is the one *after* the first step: record the observation s_t "
        "the action was chosen in, before `obs` is overwritten by env.step.",
    ),
    Mistake(
        "ignores_terminated",
        "stops on truncated only",
        "the episode ended at step {m} with {flag}=True, but your loop kept stepping: stop "
        "when `terminated or truncated` (you seem to stop only on {other}).",
    ),
    Mistake(
        "ignores_truncated",
        "stops on terminated only",
        "the episode ended at step {m} with {flag}=True, but your loop kept stepping: stop "
        "when `terminated or truncated` (you seem to stop only on {other}).",
    ),
    Mistake(
        "stops_early",
        "stops before terminated or truncated",
        "you stopped after {n} steps, but the episode had not ended (neither terminated nor "
        "truncated was True).",
    ),
    Mistake(
        "observations",
        "an observation other than the environment's s_t",
        "the observation at step {t} is not the one the environment returned there: record "
        "`obs` before stepping, then move on with `obs = next_obs`.",
    ),
    Mistake(
        "policy_not_called",
        "no policy(s_t, rng) call for some step",
        "the policy was never asked for an action in the observation of step {t}: call "
        "`policy(obs, rng)` on the current observation at every step.",
    ),
    Mistake(
        "wrong_action",
        "a_t other than the policy's sample",
        "at step {t} you recorded action {yours} but the policy returned {chosen}: step the "
        "environment with, and record, the action the policy sampled (not an argmax, not a new "
        "random one).",
    ),
    Mistake(
        "rewards",
        "r_t other than env.step's reward for (s_t, a_t)",
        "the reward at step {t} is {yours:g} but env.step returned {exact:g} there: record the "
        "reward of each step as it comes (r_t belongs to (s_t, a_t)).",
    ),
    Mistake(
        "steps_after_end",
        "env.step after terminated or truncated",
        "you stepped an environment after its episode had ended: stop when `terminated or "
        "truncated`.",
    ),
)
#: code → message (template) of every diagnosis of this check.
MESSAGES: dict[str, str] = {m.code: m.message for m in MISTAKES}
#: no_reset, as seen in a returned episode (its first observation is not reset()'s).
NO_RESET_EPISODE = (
    "your episode does not start with the observation reset() returns: call "
    "`obs, info = env.reset()` at the start of every episode."
)
EXTRA_OBSERVATION = (
    " (one observation too many: the observation after the last step is not part of any "
    "(s_t, a_t, r_t))"
)
IN_CASE = "[{label}] {message}"
CORRECT = (
    "Your loop returned the right (s_t, a_t, r_t) for all {total} episodes: it resets once, "
    "acts with the policy's sample for the current observation, and stops on terminated or "
    "truncated."
)


class Episode(TypedDict):
    """One returned episode, flattened, with the shapes, and the number of resets during it."""

    observations: list[Any]
    obs_shape: list[int]
    actions: list[float]
    act_shape: list[int]
    rewards: list[float]
    rew_shape: list[int]
    resets: int


class RolloutCase(TypedDict):
    """One probe case: the episodes, the environment's log and the policy's calls."""

    label: str
    episodes: list[Episode]
    log: dict[str, int]
    policy_calls: list[list[Any]]
    bad_policy_calls: int


class RolloutMeasurement(Measurement, total=False):
    """What :func:`measure_rollout` returns: one entry per probe case of :data:`CASES`."""

    check: str
    cases: list[RolloutCase]
    n_episodes: int


#: A diagnosis: (code, message).
Problem = tuple[str, str]


def _problem(code: str, **values: Any) -> Problem:
    return code, MESSAGES[code].format(**values)


# --------------------------------------------------------------------------- judge
def _episode_problem(
    ep: Episode,
    seed: int,
    p_term: float,
    limit: int,
    calls: dict[tuple[float, ...], list[int]],
) -> Problem | None:
    """(diagnosis, message) for the first thing wrong with one returned episode, or None."""
    obs = np.asarray(ep["observations"], dtype=np.float64)
    acts = [int(round(a)) for a in ep["actions"]]
    rews = ep["rewards"]
    n = len(rews)
    if len(ep["obs_shape"]) != 2 or ep["obs_shape"][1] != 3:
        return _problem("shape", shape=ep["obs_shape"])
    if not (len(acts) == n == ep["obs_shape"][0]):
        extra = EXTRA_OBSERVATION if ep["obs_shape"][0] == n + 1 else ""
        return _problem(
            "lengths", n_obs=ep["obs_shape"][0], n_act=len(acts), n=n, extra=extra + "."
        )
    if n == 0:
        return _problem("empty")
    episode = int(obs[0, 0])
    truth = replay(seed, p_term, limit, episode, acts)
    true_obs = np.asarray(truth["observations"])
    m = len(truth["rewards"])
    if obs[0, 1] != 0:
        if obs[0, 1] == 1:
            return _problem("next_observation")
        return ("no_reset", NO_RESET_EPISODE)
    if n > m:
        flag = truth["ended_by"]
        other = "truncated" if flag == "terminated" else "terminated"
        return _problem(f"ignores_{flag}", m=m, flag=flag, other=other)
    if n < m:
        return _problem("stops_early", n=n)
    if not np.allclose(obs, true_obs):
        t = int(np.flatnonzero(~np.all(np.isclose(obs, true_obs), axis=1))[0])
        return _problem("observations", t=t)
    for t in range(n):
        key = tuple(float(v) for v in obs[t])
        chosen = calls.get(key)
        if not chosen:
            return _problem("policy_not_called", t=t)
        if acts[t] not in chosen:
            return _problem("wrong_action", t=t, yours=acts[t], chosen=chosen[0])
    if not np.allclose(rews, truth["rewards"]):
        t = int(np.flatnonzero(~np.isclose(rews, truth["rewards"]))[0])
        return _problem("rewards", t=t, yours=rews[t], exact=truth["rewards"][t])
    return None


@dataclass
class CaseEvidence:
    """One probe case as the case rules see it: its parameters, the environment's log, the
    policy's calls (observation → actions it returned) and the returned episodes."""

    label: str
    seed: int
    p_term: float
    limit: int
    log: dict[str, int]
    bad_policy_calls: int
    episodes: list[Episode]
    calls: dict[tuple[float, ...], list[int]]


def bad_action(case: CaseEvidence) -> Problem | None:
    """env.step received something that is not a valid action."""
    return _problem("bad_action") if case.log["bad_actions"] else None


def bad_policy_call(case: CaseEvidence) -> Problem | None:
    """The policy was called with something other than (observation, Generator)."""
    return _problem("policy_call") if case.bad_policy_calls else None


def seeded_reset(case: CaseEvidence) -> Problem | None:
    """env.reset was given a seed inside the loop."""
    return _problem("seeded_reset") if case.log["seeded_resets"] else None


def no_reset(case: CaseEvidence) -> Problem | None:
    """An episode began without env.reset (or the environment was stepped before any reset)."""
    if case.log["steps_before_reset"] or any(ep["resets"] == 0 for ep in case.episodes):
        return _problem("no_reset")
    return None


def extra_reset(case: CaseEvidence) -> Problem | None:
    """env.reset was called more than once for one episode."""
    return _problem("extra_reset") if any(ep["resets"] > 1 for ep in case.episodes) else None


def episode_mistake(case: CaseEvidence) -> Problem | None:
    """The first returned episode that differs from its replay (see :func:`_episode_problem`)."""
    for ep in case.episodes:
        problem = _episode_problem(ep, case.seed, case.p_term, case.limit, case.calls)
        if problem is not None:
            return (problem[0], IN_CASE.format(label=case.label, message=problem[1]))
    return None


def steps_after_end(case: CaseEvidence) -> Problem | None:
    """The environment was stepped after its episode had ended."""
    return _problem("steps_after_end") if case.log["steps_after_end"] else None


#: The rules for one probe case, in the order they are tried (None: nothing wrong).
CASE_RULES: tuple[Callable[[CaseEvidence], Problem | None], ...] = (
    bad_action,
    bad_policy_call,
    seeded_reset,
    no_reset,
    extra_reset,
    episode_mistake,
    steps_after_end,
)


@dataclass
class Evidence:
    """What the rules of :func:`judge_rollout` decide on: the table, and the first problem of
    the first case that has one."""

    rows: list[Row]
    notes: list[str]
    problem: Problem | None
    total: int


def gather_evidence(measurement: RolloutMeasurement, seed: int | None = None) -> Evidence:
    """A row per probe case, and the first answer of :data:`CASE_RULES` over the cases."""
    rows: list[Row] = []
    problem: Problem | None = None
    cases = rollout_cases(seed)
    for (label, case_seed, p_term, limit), case in zip(cases, measurement["cases"], strict=True):
        log = case["log"]
        calls: dict[tuple[float, ...], list[int]] = {}
        for x, a in case["policy_calls"]:
            calls.setdefault(tuple(float(v) for v in x), []).append(int(a))
        lengths: list[float] = [len(ep["rewards"]) for ep in case["episodes"]]
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
        if problem is None:
            evidence = CaseEvidence(
                label,
                case_seed,
                p_term,
                limit,
                log,
                case["bad_policy_calls"],
                case["episodes"],
                calls,
            )
            problem = first_answer(CASE_RULES, evidence)
    total = sum(len(c["episodes"]) for c in measurement["cases"])
    return Evidence(rows, output_notes(measurement), problem, total)


def correct(ev: Evidence) -> Report | None:
    """No case has a problem."""
    if ev.problem is not None:
        return None
    return Report(
        passed=True,
        verdict="correct",
        check=NAME,
        rows=ev.rows,
        notes=ev.notes,
        message=CORRECT.format(total=ev.total),
    )


def named_problem(ev: Evidence) -> Report:
    """The first problem found, named."""
    assert ev.problem is not None
    return Report(
        passed=False,
        verdict="wrong",
        check=NAME,
        rows=ev.rows,
        notes=ev.notes,
        diagnosis=ev.problem[0],
        message=ev.problem[1],
    )


#: The rules in the order they are tried; the last always answers.
RULES: tuple[Rule[Evidence], ...] = (correct, named_problem)


def judge_rollout(
    measurement: RolloutMeasurement,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    n_episodes: int = 4,
    seed: int | None = None,
    **unknown: Any,
) -> Report:
    """Replay every returned episode on the probe environment and name the first mistake.

    Prechecks (options, a recorded error, the number of cases), then the :class:`Evidence`
    (the first answer of :data:`CASE_RULES` over the cases), then :data:`RULES`.
    """
    early = judge_precheck(measurement, NAME, "check_rollout", unknown, OPTIONS, seed=seed)
    if early is not None:
        return early
    early = count_mismatch(measurement.get("cases", []), len(CASES), NAME, "check_rollout")
    if early is not None:
        return early
    return decide(RULES, gather_evidence(measurement, seed))


CHECK = Check(NAME, measure_rollout, judge_rollout, fresh_instances=True)


def check_rollout(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check a collection loop ``fn(env, policy, rng) -> (observations [T,S], actions [T],
    rewards [T])`` on small environments whose every step is known.

    It must reset once (unseeded) at the start, record the observation the action was taken
    in, record the sampled action, and stop on ``terminated or truncated`` (gymnasium 1.x).
    """
    return run_check(CHECK, fn, timeout=timeout, **options)
