"""The Modbus lines' load on the metrics endpoint: what the line's rate adaptation decided.

Each line (a TCP connection, an RS-485 port) measures its exchanges over a window
(``drivers.LineRate``): how busy it was, the divider its non-safety reads run at, and whether its
safety reads fell behind even so (an overload episode, logged once as an error). An engineer
sizing a line, or watching one that a unit too many has filled, reads them here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from drivers import LineRate

#: Each family: name, help text, whether it is a counter, and its value of one line.
FAMILIES: tuple[tuple[str, str, bool, Callable[[LineRate], float]], ...] = (
    (
        "booth_line_busy_ratio",
        "Fraction of the last window the line was held",
        False,
        lambda r: r.busy,
    ),
    (
        "booth_line_exchange_seconds",
        "Mean time one exchange held the line over the last window",
        False,
        lambda r: r.exchange_s_mean,
    ),
    (
        "booth_line_read_divider",
        "Non-safety reads run at 1/this of their configured rate (1: not slowed)",
        False,
        lambda r: float(r.divider),
    ),
    (
        "booth_line_overloaded",
        "1 while the line cannot keep its safety reads at the rate their stale limits need",
        False,
        lambda r: 1.0 if r.overload is not None else 0.0,
    ),
    (
        "booth_line_overloads",
        "Overload episodes of the line since start",
        True,
        lambda r: float(r.overloads),
    ),
)


def line_metrics(rates: Mapping[str, LineRate]) -> Iterator[Metric]:
    for name, text, counter, value in FAMILIES:
        family = (CounterMetricFamily if counter else GaugeMetricFamily)(
            name, text, labels=["line"]
        )
        for line, rate in sorted(rates.items()):
            family.add_metric([line], value(rate))
        yield family
