"""A long job re-plans itself from its own measured rate (01, 02 and 07).

The run plan (``python -m helpers.plan``) prices 01, 02 and 07 from assumptions: figures from a
benchmark, a README target, a guess per protocol item. Real throughput depends on the runtime
(Colab's CPU count, the card, the Hub's bandwidth) and on the data. So each of these jobs measures
its own rate over its first minutes of work and prints the re-planned remaining hours, the compute
units they cost and the finish time — once after ``first_report_s`` and again every
``every_s`` — and :meth:`Replan.summary` returns the same figures for a report.

The rate is work done per wall-clock second since the first unit of work (start-up such as model
loading is left out: it does not scale with the remaining work).
"""
from __future__ import annotations

import datetime
import time
from typing import Callable

# Colab A100 compute units per hour: the figure of helpers.plan.costs.CU_PER_A100_HOUR (a test keeps them equal;
# the core cannot import the planner).
CU_PER_A100_HOUR = 13.08


class Replan:
    """Measured rate -> remaining hours, compute units and finish time of one job.

    ``total``: the work the job has to do, in ``unit`` (clips, audio seconds, items); ``done``: how much a
    resumed run had already done. ``cu_per_hour``: compute units per hour of the runtime (None: a CPU
    runtime, no GPU units). ``printer`` receives each report line (default ``print``).
    """

    def __init__(self, job: str, total: float, unit: str, *, done: float = 0.0, cu_per_hour: float | None = None,
                 first_report_s: float = 180.0, every_s: float = 1800.0, printer: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic):
        if not total >= 0:
            raise ValueError(f"total must be >= 0, got {total!r}")
        self.job, self.total, self.unit = job, float(total), unit
        self.done0 = self.done = float(done)
        self.cu_per_hour, self.first_report_s, self.every_s = cu_per_hour, first_report_s, every_s
        self.printer, self.clock = printer, clock
        self.t0: float | None = None
        self.next_report = first_report_s
        self.reports: list[str] = []

    def update(self, amount: float) -> None:
        """Record ``amount`` more work done; prints a re-plan when one is due."""
        now = self.clock()
        if self.t0 is None:  # the clock starts at the first unit of work: start-up is not the rate
            self.t0 = now
        self.done += float(amount)
        if now - self.t0 >= self.next_report:
            self.next_report += self.every_s
            line = self.line()
            self.reports.append(line)
            self.printer(line)

    def summary(self) -> dict:
        """``rate_per_hour`` (measured), ``elapsed_h``, ``remaining_h``, ``total_h`` (elapsed + remaining),
        ``compute_units`` (of the remaining hours; None on CPU) and ``finish_utc``; rates None before any work."""
        elapsed = 0.0 if self.t0 is None else self.clock() - self.t0
        measured = self.done - self.done0
        rate = measured / elapsed * 3600.0 if elapsed > 0 and measured > 0 else None
        remaining = max(0.0, self.total - self.done)
        rem_h = remaining / rate if rate else None
        finish = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=rem_h)) if rem_h is not None else None
        return {"job": self.job, "unit": self.unit, "done": self.done, "total": self.total,
                "rate_per_hour": rate, "elapsed_h": elapsed / 3600.0, "remaining_h": rem_h,
                "total_h": None if rem_h is None else elapsed / 3600.0 + rem_h,
                "compute_units": None if rem_h is None or self.cu_per_hour is None else rem_h * self.cu_per_hour,
                "finish_utc": None if finish is None else finish.strftime("%Y-%m-%d %H:%M UTC")}

    def line(self) -> str:
        """One human line: the measured rate and what it means for the rest of the job."""
        s = self.summary()
        if s["rate_per_hour"] is None:
            return f"{self.job}: no rate measured yet"
        cu = ("" if s["compute_units"] is None else f", ≈ {s['compute_units']:.1f} compute units")
        return (f"{self.job}: measured {s['rate_per_hour']:,.1f} {self.unit}/h over {s['elapsed_h'] * 60:.0f} min; "
                f"{s['done']:,.0f} of {s['total']:,.0f} {self.unit} done -> {s['remaining_h']:.2f} h more "
                f"(re-planned total {s['total_h']:.2f} h){cu}, finish ≈ {s['finish_utc']}")
