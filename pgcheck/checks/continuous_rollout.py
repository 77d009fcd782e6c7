"""Check a collection loop for continuous actions: clip for the environment, store the sample.

``check_continuous_rollout(fn)`` (registered as ``"continuous_rollout"``) calls
``fn(env, policy, n_episodes, rng)`` on small probe environments with a Box action space
[-1, 1] and expects a dict of padded tensors ``observations [B,T,d]``, ``actions [B,T,k]``,
``rewards [B,T]``, ``mask [B,T]``. ``policy.act(obs, rng)`` returns a sampled action that is
often outside the action space. The probe world is a deterministic function of (case,
episode, step, action), so the judge replays every returned episode without running learner
code. Recognised mistakes:

* the clipped action stored (log π must be evaluated at the *sampled* action);
* the action given to the environment unclipped (the probe applies what it is given);
* the episode not stopped on ``terminated or truncated``, or a wrong mask / padding;
* observations recorded after the step (off by one), or an action the policy did not return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    Budget,
    Check,
    failed,
    learner_call,
    measure_precheck,
    output_notes,
    run_check,
    to_array,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row

OPTIONS = ["timeout"]
KEYS = ("observations", "actions", "rewards", "mask")
N_EPISODES = 4
#: steps past the time limit after which the probe ends an episode itself
EXTRA_STEPS = 3
DX = 0.5  # x_{t+1} = x_t + DX · (the action the environment was given)
#: (name, case seed, probability of terminating at each step, time limit)
CASES = (
    ("terminations and truncations", 11, 0.3, 5),
    ("time limit only", 22, 0.0, 3),
)


# --------------------------------------------------------------------------- the probe world
def start(seed: int, episode: int) -> float:
    """x_0 of an episode (0-based count of resets)."""
    return float(np.random.default_rng([seed, episode, 5]).uniform(-1, 1))


def terminates(seed: int, episode: int, t: int, p: float) -> bool:
    """Whether step t of that episode ends in a terminal state (independent of the action)."""
    return bool(np.random.default_rng([seed, episode, t, 9]).random() < p)


def probe_action(obs: np.ndarray) -> np.ndarray:
    """The probe policy's 'sample': deterministic, |a| > 1 at about half the steps."""
    return np.array([2.2 * np.sin(3.0 * obs[2] + 1.3 * obs[1] + 0.4 * obs[0] + 0.5)])


def reward(x: float, a: float, t: int) -> float:
    """Distinct for every (x, a, t)."""
    return 10.0 * x + a + 0.125 * t


class ProbePolicy:
    """``act(obs, rng)`` returns :func:`probe_action` (the rng is accepted and not used)."""

    def act(self, obs: Any, rng: Any = None) -> np.ndarray:
        return probe_action(np.asarray(obs, dtype=np.float64))


class ProbeEnv:
    """A gymnasium-1.x-style environment with a Box(-1, 1) action; it applies the action it
    is given as it is (out of range included) and counts the out-of-range ones."""

    def __init__(self, seed: int, p_term: float, limit: int) -> None:
        import gymnasium as gym

        self.seed, self.p_term, self.limit = seed, p_term, limit
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float64)
        self.episode, self.t, self.x = -1, 0, 0.0
        self.out_of_range = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        self.episode = 0 if seed is not None else self.episode + 1
        self.t, self.x = 0, start(self.seed, self.episode)
        return np.array([self.episode, 0.0, self.x]), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if abs(a) > 1.0 + 1e-12:
            self.out_of_range += 1
        r = reward(self.x, a, self.t)
        terminated = terminates(self.seed, self.episode, self.t, self.p_term)
        self.t += 1
        self.x = self.x + DX * a
        truncated = self.t >= self.limit
        # a loop that ignores `truncated` still stops (and the mistake is named, not timed out)
        terminated = terminated or self.t >= self.limit + EXTRA_STEPS
        return np.array([self.episode, float(self.t), self.x]), r, terminated, truncated, {}


# --------------------------------------------------------------------------- measure
def measure(
    fn: Callable[..., Any], *, timeout: float = DEFAULT_TIMEOUT, **unknown: Any
) -> dict[str, Any]:
    """Run the learner's loop on each probe case; plain numbers only, never raises."""
    early = measure_precheck("check_continuous_rollout", unknown, OPTIONS)
    if early is not None:
        return early
    budget = Budget(timeout)
    cases = []
    for _name, seed, p, limit in CASES:
        env = ProbeEnv(seed, p, limit)
        rng = np.random.default_rng(seed)
        value, err = learner_call(
            fn,
            {"env": env, "policy": ProbePolicy(), "n_episodes": N_EPISODES, "rng": rng},
            budget,
            "your collection function",
        )
        if err:
            return err
        if not isinstance(value, dict) or any(k not in value for k in KEYS):
            return failed(
                ErrorKind.OUTPUT,
                "your collection function must return a dict with the keys "
                + ", ".join(f"'{k}'" for k in KEYS),
            )
        case: dict[str, Any] = {"out_of_range": env.out_of_range}
        for key in KEYS:
            try:
                arr = to_array(value[key])
            except (TypeError, ValueError, RuntimeError) as exc:
                return failed(ErrorKind.OUTPUT, f"'{key}' could not be read: {exc}")
            case[key] = arr.tolist()
            case[key + "_dtype"] = str(getattr(value[key], "dtype", type(value[key]).__name__))
        cases.append(case)
    return {"cases": cases, "output": budget.output}


# --------------------------------------------------------------------------- judge
MESSAGES: dict[str, str] = {
    "shape": "Return observations [B,T,d], actions [B,T,k], rewards and mask [B,T], one row "
    "per episode, padded to the longest episode.",
    "dtype": "Return float64 torch tensors (torch.float64), as the pseudo-loss expects.",
    "stores_clipped_action": "You store the clipped action. Give the environment "
    "np.clip(a, low, high), but store the sampled a: log π is the density of the sample, and "
    "the score at the clipped action is biased.",
    "env_not_clipped": "The environment received actions outside its action space: clip the "
    "action you give env.step to [env.action_space.low, env.action_space.high].",
    "wrong_action": "A stored action is not the one policy.act returned for that step's "
    "observation (act once per step, on the current observation, and store that sample).",
    "observation_off_by_one": "The observation stored with a_t must be the one a_t was taken "
    "in (s_t), not the one env.step returned (s_{t+1}).",
    "episode_end": "An episode ends when terminated or truncated (gymnasium 1.x); stop there and "
    "reset for the next episode.",
    "mask": "mask must be 1.0 on the real steps of each episode and 0.0 on the padding.",
    "padding": "Rewards (and anything you pad) must be 0 after an episode ended.",
    "rewards": "The reward stored with step t must be the one env.step returned for a_t.",
}


def _expected(seed: int, p: float, limit: int, episode: int) -> list[tuple[Any, ...]]:
    """(obs, sampled a, clipped a, reward) for each step of one correct episode."""
    steps, x, t = [], start(seed, episode), 0
    while True:
        obs = np.array([episode, float(t), x])
        a = float(probe_action(obs)[0])
        c = float(np.clip(a, -1.0, 1.0))
        steps.append((obs, a, c, reward(x, c, t)))
        done = terminates(seed, episode, t, p)
        t += 1
        x = x + DX * c
        if done or t >= limit:
            return steps


def _diagnose(case: dict[str, Any], seed: int, p: float, limit: int) -> str | None:
    """The first mistake found in one case, or None."""
    try:
        obs = np.array(case["observations"], dtype=np.float64)
        act = np.array(case["actions"], dtype=np.float64)
        rew = np.array(case["rewards"], dtype=np.float64)
        mask = np.array(case["mask"], dtype=np.float64)
    except (TypeError, ValueError):
        return "shape"
    if obs.ndim != 3 or act.ndim != 3 or rew.ndim != 2 or mask.shape != rew.shape:
        return "shape"
    if obs.shape[:2] != rew.shape or act.shape[:2] != rew.shape or len(rew) != N_EPISODES:
        return "shape"
    if any("float64" not in case[k + "_dtype"] for k in KEYS):
        return "dtype"
    if case["out_of_range"]:
        return "env_not_clipped"
    for i in range(N_EPISODES):
        steps = _expected(seed, p, limit, i)
        n = len(steps)
        if int(round(mask[i].sum())) != n or not np.all(mask[i, :n] == 1):
            return "episode_end" if int(round(mask[i].sum())) != n else "mask"
        if rew.shape[1] < n or np.any(mask[i, n:] != 0):
            return "mask"
        if np.any(rew[i, n:] != 0):
            return "padding"
        for t, (o, a, c, r) in enumerate(steps):
            if not np.allclose(obs[i, t], o, atol=1e-9):
                nxt = np.array([i, t + 1.0, o[2] + DX * c])
                return "observation_off_by_one" if np.allclose(obs[i, t], nxt) else "episode_end"
            if not np.isclose(act[i, t, 0], a, atol=1e-9):
                clipped = abs(a) > 1 and np.isclose(act[i, t, 0], c, atol=1e-9)
                return "stores_clipped_action" if clipped else "wrong_action"
            if not np.isclose(rew[i, t], r, atol=1e-9):
                return "rewards"
    return None


def judge(
    measurement: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT, **unknown: Any
) -> Report:
    """Replay every returned episode in the probe world and name the first mistake."""
    check = "continuous_rollout"
    if "error" in measurement:
        err = measurement["error"]
        return Report.error(err["message"], check=check, diagnosis=err["kind"])
    if unknown:
        return Report.error(
            f"check_continuous_rollout got unknown options {sorted(unknown)}", check=check
        )
    cases = measurement.get("cases")
    if not isinstance(cases, list) or len(cases) != len(CASES):
        return Report.error("the measurement does not fit the check", check=check)
    rows, notes = [], output_notes(measurement)
    for (name, seed, p, limit), case in zip(CASES, cases, strict=True):
        code = _diagnose(case, seed, p, limit)
        rows.append(Row(name, {"result": code or "correct"}))
        if code is not None:
            return Report(
                passed=False,
                verdict="wrong",
                message=f"On the probe environment '{name}': {MESSAGES[code]}",
                diagnosis=code,
                check=check,
                rows=rows,
                notes=notes,
            )
    return Report(
        passed=True,
        verdict="correct",
        message=(
            f"Your loop clips the action for the environment, stores the sampled action, and "
            f"pads and masks {N_EPISODES * len(CASES)} episodes correctly."
        ),
        check=check,
        rows=rows,
        notes=notes,
    )


CHECK = Check("continuous_rollout", measure, judge)


def check_continuous_rollout(
    fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any
) -> Report:
    """Check ``fn(env, policy, n_episodes, rng) -> {"observations" [B,T,d], "actions" [B,T,k],
    "rewards" [B,T], "mask" [B,T]}`` for continuous actions: ``env.step`` gets
    ``clip(a, low, high)``, the stored action is the sampled ``a = policy.act(obs, rng)``, and
    episodes end on ``terminated or truncated`` (padded with mask 0 and reward 0)."""
    return run_check(CHECK, fn, timeout=timeout, **options)
