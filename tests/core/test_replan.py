"""helpers.replan: a long job's measured rate becomes re-planned hours, compute units and a finish time."""
import pytest

from helpers import replan
from helpers.plan import costs


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_replan_from_measured_rate_after_the_first_minutes():
    clock, lines = Clock(), []
    rp = replan.Replan("02 tokenize", 100.0, "audio-h", cu_per_hour=10.0, first_report_s=180, every_s=600,
                       printer=lines.append, clock=clock)
    rp.update(0.0)  # the first unit of work starts the clock (start-up is not the rate)
    clock.t += 120
    rp.update(2.0)
    assert lines == []  # not before first_report_s
    clock.t += 60
    rp.update(1.0)  # 3 audio-h in 180 s: 60 audio-h per hour
    assert len(lines) == 1 and "60.0 audio-h/h" in lines[0]
    s = rp.summary()
    assert s["rate_per_hour"] == pytest.approx(60.0)
    assert s["remaining_h"] == pytest.approx(97.0 / 60.0)
    assert s["compute_units"] == pytest.approx(97.0 / 60.0 * 10.0)
    assert s["total_h"] == pytest.approx(180 / 3600 + 97.0 / 60.0) and s["finish_utc"].endswith("UTC")
    clock.t += 600
    rp.update(10.0)
    assert len(lines) == 2  # again every every_s


def test_a_resumed_job_measures_only_its_own_work_and_cpu_has_no_units():
    clock = Clock()
    rp = replan.Replan("01 x", 10.0, "kept audio-h", done=4.0, printer=lambda s: None, clock=clock)
    assert rp.summary()["rate_per_hour"] is None and "no rate" in rp.line()
    rp.update(0.0)
    clock.t += 3600
    rp.update(2.0)
    s = rp.summary()
    assert s["rate_per_hour"] == pytest.approx(2.0) and s["remaining_h"] == pytest.approx(2.0)
    assert s["compute_units"] is None


def test_the_core_cu_rate_is_the_planner_s():
    assert replan.CU_PER_A100_HOUR == costs.CU_PER_A100_HOUR
