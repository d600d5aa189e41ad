"""The booth's atmosphere and the O2 analyzer's cell. Pure: stepped by ``dt``, no I/O, no clock.

The booth is one well-mixed volume. Every gas stream into it (N2 purge, N2 maintain, air through
leaks or the open door) displaces the same volume of booth gas out through the exhaust, so the O2
concentration relaxes exponentially toward the flow-weighted mean of the streams, with the time
constant volume / total flow.
"""

from __future__ import annotations

import math
import random

from ._thermal import lag

LN10 = math.log(10.0)


class Atmosphere:
    def __init__(self, volume_l: float, start_o2_ppm: float) -> None:
        self.volume_l = volume_l
        self.o2_ppm = start_o2_ppm

    def step(self, dt_s: float, streams: list[tuple[float, float]]) -> None:
        """``streams``: (flow L/min, O2 ppm of that stream) entering the booth."""
        total_lpm = sum(q for q, _ in streams)
        if total_lpm <= 0:
            return
        target_ppm = sum(q * c for q, c in streams) / total_lpm
        tau_s = self.volume_l / total_lpm * 60.0
        self.o2_ppm = lag(self.o2_ppm, target_ppm, dt_s, tau_s)


class AnalyzerCell:
    """A zirconia analyzer: first-order cell response, a value reported every period.

    ``report_seq`` counts reports; whoever serves the serial line sends one line per report.
    An auto-zero holds the reported value and reports status CAL for ``cal_s``. Each report
    carries a little measurement noise (standard deviation ``noise_ppm`` or ``noise_pct`` of the
    value, whichever is larger), from a seeded generator so that runs repeat: a real cell never
    reports the very same value for minutes, and a reading that does is a frozen analyzer.
    """

    def __init__(
        self,
        start_o2_ppm: float,
        t90_ms: float,
        period_ms: float,
        cal_s: float,
        *,
        noise_ppm: float = 0.0,
        noise_pct: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.noise_ppm = noise_ppm
        self.noise_pct = noise_pct
        self._rng = random.Random(seed)
        self.cell_ppm = start_o2_ppm
        self.tau_s = t90_ms / 1000.0 / LN10
        self.period_ms = period_ms
        self.cal_s = cal_s
        self.reported_ppm = start_o2_ppm
        self.status = "OK"
        self.report_seq = 0
        self._since_report_s = 0.0
        self._cal_left_s = 0.0

    def start_zero(self) -> None:
        self._cal_left_s = self.cal_s

    def step(self, dt_s: float, booth_o2_ppm: float) -> None:
        self.cell_ppm = lag(self.cell_ppm, booth_o2_ppm, dt_s, self.tau_s)
        self._cal_left_s = max(0.0, self._cal_left_s - dt_s)
        self._since_report_s += dt_s
        period_s = self.period_ms / 1000.0
        if self._since_report_s >= period_s:
            # Keep the phase: a late step does not shift every later report.
            self._since_report_s = min(self._since_report_s - period_s, period_s)
            self.status = "CAL" if self._cal_left_s > 0 else "OK"
            if self.status == "OK":
                sigma = max(self.noise_ppm, self.cell_ppm * self.noise_pct / 100.0)
                noise = self._rng.gauss(0.0, sigma) if sigma > 0 else 0.0
                self.reported_ppm = max(0.0, self.cell_ppm + noise)
            self.report_seq += 1
