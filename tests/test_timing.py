"""interpretable.timing with fake functions: call order, warm-up, medians (not speeds)."""

from __future__ import annotations

import time

import pytest

from interpretable import timing


def test_round_robin_order_with_rotation_and_warmup():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    out = timing.measure_interleaved(fns, repeats=4, warmup=2)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up, untimed
    assert calls[6:] == list("abc" "bca" "cab" "abc")     # each round starts one later
    assert list(out) == ["a", "b", "c"]
    assert all(t.repeats == 4 and len(t.samples) == 4 for t in out.values())


def test_without_rotation_the_order_is_fixed():
    calls = []
    timing.measure_interleaved({k: (lambda k=k: calls.append(k)) for k in "ab"}, repeats=3,
                               warmup=0, rotate=False)
    assert calls == list("ababab")


def test_median_min_max_of_known_sleeps():
    # the third call of "varying" is slow: the median ignores it, the max does not
    count = {"n": 0}

    def varying():
        count["n"] += 1
        time.sleep(0.05 if count["n"] == 3 else 0.002)

    out = timing.measure_interleaved({"short": lambda: time.sleep(0.002),
                                      "long": lambda: time.sleep(0.02), "varying": varying},
                                     repeats=5, warmup=0)
    assert out["long"].median > 5 * out["short"].median  # 10x asleep; leave room for noise
    v = out["varying"]
    assert v.max >= 0.05 and v.median < 0.04 and v.min <= v.median <= v.max
    assert v.samples[2] == v.max
    assert out["long"].as_dict()["name"] == "long"


def test_measure_one_function_and_bad_arguments():
    t = timing.measure("sleep", lambda: time.sleep(0.001), repeats=3, warmup=0, device="cpu")
    assert t.name == "sleep" and t.repeats == 3 and t.min >= 0.001
    with pytest.raises(ValueError, match="repeats"):
        timing.measure_interleaved({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        timing.measure_interleaved({"a": lambda: None}, warmup=-1)
    with pytest.raises(ValueError, match="fns"):
        timing.measure_interleaved({})
    with pytest.raises(TypeError, match="fns\\['a'\\]"):
        timing.measure_interleaved({"a": 3})


def test_benchmarks_timer_delegates():
    # importable from the repository root, where `python -m pytest` runs
    from benchmarks.common import Timing, measure_interleaved

    calls = []
    out = measure_interleaved({k: (lambda k=k: calls.append(k)) for k in "ab"}, repeats=2,
                              warmup=0)
    assert calls == list("abba") and isinstance(out["a"], Timing)
    assert Timing is timing.Timing and Timing(**out["a"].as_dict()) == out["a"]


def test_cpu_time_is_recorded_beside_wall_time():
    def spin():  # busy for ~20 ms of CPU
        t0 = time.process_time()
        while time.process_time() - t0 < 0.02:
            pass

    out = timing.measure_interleaved({"sleep": lambda: time.sleep(0.02), "spin": spin},
                                     repeats=5, warmup=0)
    assert len(out["spin"].cpu_samples) == 5 and out["spin"].cpu_median >= 0.02
    # asleep: about no CPU (the median, as idle OpenMP workers may spin for a moment)
    assert out["sleep"].median >= 0.02
    assert out["sleep"].cpu_median < 0.5 * out["spin"].cpu_median


def test_flop_counter_and_matmul_peak():
    import torch

    from interpretable.timing import count_flops, matmul_gflops

    lin = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16)
    assert count_flops(lambda: lin(x)) == 2 * 4 * 16 * 8  # one multiply-add = 2 FLOPs
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    assert count_flops(lambda: conv(torch.randn(2, 3, 6, 6))) == 2 * 2 * 5 * 6 * 6 * 3 * 9
    peak = matmul_gflops(n=128, repeats=3)
    assert peak["best"] >= peak["median"] > 0 and peak["n"] == 128
