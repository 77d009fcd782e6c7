"""Bad input: a clear "error" report, never a crash, a hang, a traceback or stderr output,
and torch's global state is left as it was."""

import random
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import pgcheck
from pgcheck.diagnosis import estimators as E

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from course_tools import call_main  # noqa: E402


def raises(log_probs):
    raise ValueError("boom")


def non_scalar(log_probs, q_values):
    return -(q_values * log_probs)


def nan(log_probs):
    return (log_probs * float("nan")).sum()


def infinite(log_probs, mask):
    return (log_probs * mask).sum() / 0.0


def python_float(log_probs, q_values):
    return float(-(q_values * log_probs).sum())


def returns_none(log_probs):
    pass


def no_path(log_probs, q_values):
    return -(q_values * log_probs.detach()).sum(1).mean()


def under_no_grad(log_probs, q_values):
    with torch.no_grad():
        return -(q_values * log_probs).sum(1).mean()


def in_place(log_probs, q_values, gamma, mask):
    q_values *= 2
    return -(q_values * log_probs * mask).sum(1).mean()


def in_place_mask(log_probs, q_values, mask):
    mask[:, 0] = 0
    return -(q_values * log_probs * mask).sum(1).mean()


def forever(log_probs):
    while True:
        pass


def forever_catching(log_probs):
    while True:
        try:
            time.sleep(0.01)
        except Exception:  # noqa: BLE001 - a learner who swallows everything
            pass


def chatty(log_probs, q_values, mask):
    for i in range(100_000):
        print("step", i)
    return -(q_values * log_probs * mask).sum(1).mean()


def sets_dtype(log_probs, q_values, mask):
    torch.set_default_dtype(torch.float64)
    return -(q_values * log_probs * mask).sum(1).mean()


def sets_threads(log_probs, q_values, mask):
    torch.set_num_threads(3)
    return -(q_values * log_probs * mask).sum(1).mean()


def uses_rng(log_probs, q_values, mask):
    noise = torch.randn(1, dtype=torch.float64)
    return -(q_values * log_probs * mask).sum(1).mean() + 0 * noise.sum()


def uses_numpy_rng(log_probs, q_values, mask):
    return -(q_values * log_probs * mask).sum(1).mean() * float(np.random.rand() * 0 + 1)


def disables_grad(log_probs, q_values, mask):
    torch.set_grad_enabled(False)
    return -(q_values * log_probs * mask).sum(1).mean()


def exits(log_probs):
    sys.exit(3)


def stub(log_probs, q_values):
    # YOUR CODE HERE
    raise NotImplementedError()


def unknown_name(log_probz):
    return log_probz.sum()


def star_args(*tensors):
    return tensors[0].sum()


def integer_tensor(actions):
    return actions.sum()


CASES = {
    raises: ("exception", "ValueError: boom"),
    non_scalar: ("not_scalar", "shape"),
    nan: ("nan", "nan"),
    infinite: ("nan", "inf"),
    python_float: ("not_a_tensor", "Python number"),
    returns_none: ("not_a_tensor", "return"),
    no_path: ("no_path_to_theta", "no path to θ"),
    under_no_grad: ("no_path_to_theta", "no path to θ"),
    in_place: ("in_place", "q_values"),
    in_place_mask: ("in_place", "mask"),
    forever: ("timeout", "did not finish"),
    forever_catching: ("timeout", "did not finish"),
    chatty: ("output", "printed"),
    sets_dtype: ("global_state", "default dtype"),
    sets_threads: ("global_state", "threads"),
    uses_rng: ("global_state", "random"),
    uses_numpy_rng: ("global_state", "random"),
    disables_grad: ("no_path_to_theta", "no_grad"),
    exits: ("exception", "SystemExit"),
    stub: ("not_implemented", "not written yet"),
    unknown_name: ("vocabulary", "log_probz"),
    star_args: ("vocabulary", "*args"),
    integer_tensor: ("not_a_tensor", "float"),
}


def state():
    return (
        torch.get_default_dtype(),
        torch.is_grad_enabled(),
        torch.get_num_threads(),
        torch.random.get_rng_state().clone(),
        np.random.get_state()[1].copy(),
        random.getstate(),
    )


def same_state(a, b):
    return (
        a[0] == b[0]
        and a[1] == b[1]
        and a[2] == b[2]
        and torch.equal(a[3], b[3])
        and np.array_equal(a[4], b[4])
        and a[5] == b[5]
    )


@pytest.mark.parametrize("fn", list(CASES), ids=lambda f: f.__name__)
def test_bad_losses_get_a_clear_error(fn, capfd):
    before = state()
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pgcheck must not emit warnings either
        report = pgcheck.check_pseudo_loss(fn, timeout=1.0)
    elapsed = time.monotonic() - start
    kind, words = CASES[fn]
    assert report.verdict == "error" and not report.passed, report
    assert report.diagnosis == kind, report
    assert words.lower() in report.message.lower(), report.message
    assert "Traceback" not in report.message
    # the CPU budget (1 s) holds; code that sleeps is stopped at the wall limit 2·1 + 5 s
    assert elapsed < 2 * 1.0 + 5 + 3
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    assert same_state(before, state())


def test_warnings_and_stderr_from_a_correct_loss_are_swallowed(capfd):
    def noisy(log_probs, q_values, gamma, mask):
        warnings.warn("careful", stacklevel=1)
        print("debug", file=sys.stderr)
        print("hello")
        return E.reward_to_go(log_probs, q_values, gamma, mask)

    report = pgcheck.check_pseudo_loss(noisy)
    assert report.passed
    assert any("hello" in n for n in report.notes)
    assert capfd.readouterr() == ("", "")


def test_pgcheck_restores_the_state_it_touches():
    torch.set_num_threads(2)
    with torch.no_grad():
        before = state()
        pgcheck.check_pseudo_loss(E.reward_to_go)
        assert same_state(before, state())


def test_a_learner_subclass_of_float_does_not_fool_the_check():
    class Liar(float):
        def __eq__(self, other):
            return True

    def liar(log_probs):
        return Liar(0.0)

    assert pgcheck.check_pseudo_loss(liar).verdict == "error"


def test_timeout_is_a_total_budget():
    def slow(log_probs, q_values, gamma, mask):
        time.sleep(0.5)
        return E.reward_to_go(log_probs, q_values, gamma, mask)

    start = time.monotonic()
    report = pgcheck.check_pseudo_loss(slow, timeout=0.5)
    # sleeping uses no CPU time: the wall limit (2·0.5 + 5 s) stops it
    assert report.diagnosis == "timeout" and time.monotonic() - start < 2 * 0.5 + 5 + 3


def test_the_budget_is_cpu_time_of_the_learner_calls():
    def burns(log_probs, q_values, gamma, mask):
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        return E.reward_to_go(log_probs, q_values, gamma, mask)

    report = pgcheck.check_pseudo_loss(burns, timeout=0.3)
    assert report.diagnosis == "timeout" and "CPU" in report.message, report


def test_works_from_a_thread():
    """Outside the main thread there is no SIGALRM: the trace-based time limit is used."""
    import threading

    out = {}
    t = threading.Thread(
        target=lambda: out.update(r=pgcheck.check_pseudo_loss(forever, timeout=0.5))
    )
    t.start()
    t.join(10)
    assert not t.is_alive() and out["r"].diagnosis == "timeout"


# ----------------------------------------------------------------------------- CLI
def run_cli(tmp_path, source, target, *extra, process=False):
    """``python -m pgcheck FILE:TARGET EXTRA...``: in a new process, or (the same ``main``,
    without the interpreter's start-up) in this one; its exit status and outputs."""
    path = tmp_path / "mine.py"
    path.write_text(source)
    argv = [f"{path}:{target}", *extra]
    if process:
        return subprocess.run(
            [sys.executable, "-m", "pgcheck", *argv], capture_output=True, text=True, timeout=120
        )
    from pgcheck.cli import main

    return call_main(main, argv)


SOURCE = """
import torch
def good(log_probs, q_values, gamma, mask):
    d = gamma ** torch.arange(mask.shape[1], dtype=torch.float64)
    return -(d * q_values * log_probs * mask).sum(1).mean()
def no_gamma_t(log_probs, q_values, mask):
    return -(q_values * log_probs * mask).sum(1).mean()
def broken(log_probs):
    return 1 / 0
"""


def test_cli_exit_codes(tmp_path):
    # the real entry point: a passing and an erroring check, as exit statuses of a process
    ok = run_cli(tmp_path, SOURCE, "good", process=True)
    assert ok.returncode == 0 and "PASSED" in ok.stdout and ok.stderr == ""
    crashed = run_cli(tmp_path, SOURCE, "broken", process=True)
    assert crashed.returncode == 2 and "ZeroDivisionError" in crashed.stdout
    # every other outcome through the same main() in this process
    ok = run_cli(tmp_path, SOURCE, "good")
    assert ok.returncode == 0 and "PASSED" in ok.stdout and ok.stderr == ""
    bad = run_cli(tmp_path, SOURCE, "no_gamma_t")
    assert bad.returncode == 1 and "missing_gamma_t" in bad.stdout
    accepted = run_cli(tmp_path, SOURCE, "no_gamma_t", "--option", "accept_missing_gamma_t=true")
    assert accepted.returncode == 0
    err = run_cli(tmp_path, SOURCE, "broken")
    assert err.returncode == 2 and "ZeroDivisionError" in err.stdout
    missing = run_cli(tmp_path, SOURCE, "nope")
    assert missing.returncode == 2 and "nope" in missing.stdout
    syntax = run_cli(tmp_path, "def f(:\n", "f")
    assert syntax.returncode == 2 and "SyntaxError" in syntax.stdout
    as_json = run_cli(tmp_path, SOURCE, "good", "--json")
    assert '"verdict": "unbiased"' in as_json.stdout


# ----------------------------------------------------------------------------- issue 10 escapes
def hard_exit(log_probs):
    import os

    os._exit(3)


def keyboard_interrupt(log_probs):
    raise KeyboardInterrupt


def forks(log_probs, q_values, gamma, mask):
    import os

    os.fork()
    return E.reward_to_go(log_probs, q_values, gamma, mask)


class _Evil(torch.Tensor):
    def __bool__(self):
        raise SystemExit("gotcha")


def evil_subclass(log_probs, q_values, gamma, mask):
    return E.reward_to_go(log_probs, q_values, gamma, mask).as_subclass(_Evil)


class _Eviler(torch.Tensor):
    def __bool__(self):
        raise SystemExit("gotcha")

    def item(self):
        raise SystemExit("gotcha")


def eviler_subclass(log_probs, q_values, gamma, mask):
    return E.reward_to_go(log_probs, q_values, gamma, mask).as_subclass(_Eviler)


def ignores_alarm(log_probs):
    import signal

    for sig in (signal.SIGALRM, signal.SIGPROF):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        pass


def catches_alarm(log_probs):
    while True:
        try:
            while True:
                pass
        except BaseException:  # noqa: BLE001 - swallows pgcheck's time limit
            pass


def deep_recursion(log_probs):
    sys.setrecursionlimit(10**6)

    def down(n):
        return down(n + 1) + 1

    return down(0)


def writes_fd2(log_probs, q_values, gamma, mask):
    import os

    os.write(2, b"to the terminal\n")
    os.write(1, b"to stdout\n")
    return E.reward_to_go(log_probs, q_values, gamma, mask)


def sets_same_dtype(log_probs, q_values, mask):
    torch.set_default_dtype(torch.get_default_dtype())
    return -(q_values * log_probs * mask).sum(1).mean()


def kwargs_loss(**inputs):
    return inputs["log_probs"].sum()


ESCAPES = {
    hard_exit: ("exception", "os._exit"),
    keyboard_interrupt: ("exception", "KeyboardInterrupt"),
    eviler_subclass: ("exception", "SystemExit"),
    ignores_alarm: ("timeout", "limit"),
    catches_alarm: ("timeout", "limit"),
    deep_recursion: ("recursion", "recursed without end"),
    sets_same_dtype: ("global_state", "default dtype"),
    kwargs_loss: ("vocabulary", "**inputs"),
}


@pytest.mark.parametrize("fn", list(ESCAPES), ids=lambda f: f.__name__)
def test_escapes_are_errors_within_the_limit(fn, capfd):
    start = time.monotonic()
    report = pgcheck.check_pseudo_loss(fn, timeout=1.0)
    elapsed = time.monotonic() - start
    kind, words = ESCAPES[fn]
    assert report.verdict == "error" and not report.passed, report
    if kind is not None:
        assert report.diagnosis == kind, report
    assert words in report.message, report.message
    assert elapsed < 2 * 1.0 + 5 + 3  # the wall limit of a 1 s budget, plus set-up
    assert capfd.readouterr() == ("", "")


def test_a_tensor_subclass_whose_bool_raises_is_never_asked(capfd):
    """pgcheck reads the returned value only inside the guarded call, as plain numbers."""
    report = pgcheck.check_pseudo_loss(evil_subclass)
    assert report.passed, report
    assert capfd.readouterr() == ("", "")


def test_a_forking_loss_gives_one_report(capfd):
    report = pgcheck.check_pseudo_loss(forks)
    assert report.passed, report  # the fork's copy ends silently; the check goes on
    assert capfd.readouterr() == ("", "")


def test_writes_to_fd_1_and_2_do_not_reach_the_terminal(capfd):
    report = pgcheck.check_pseudo_loss(writes_fd2)
    assert report.passed, report
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": "eight"}, "batch_size='eight'"),
        ({"banana": 1}, "banana"),
        ({"timeout": float("nan")}, "timeout=nan"),
        ({"timeout": -1}, "timeout=-1"),
        ({"accept_missing_gamma_t": "yes"}, "True or False"),
        ({"problem": []}, "non-empty list"),
    ],
)
def test_invalid_options_are_usage_errors(options, words):
    report = pgcheck.REGISTRY["pseudo_loss"](E.reward_to_go, **options)
    assert report.verdict == "error" and words in report.message, report
    assert report.diagnosis in ("usage", "problem")


def test_cli_rejects_a_nan_timeout(tmp_path):
    out = run_cli(tmp_path, SOURCE, "good", "--timeout", "nan")
    assert out.returncode == 2 and "timeout" in out.stdout and out.stderr == ""
