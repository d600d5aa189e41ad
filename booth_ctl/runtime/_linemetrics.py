"""The Modbus lines' load on the metrics endpoint: what the line's rate adaptation decided.

Each line (a TCP connection, an RS-485 port) measures its exchanges over a window
(``drivers.LineRate``): how busy it was, the divider its non-safety reads run at, and whether its
safety reads fell behind even so (an overload episode, logged once as an error). An engineer
sizing a line, or watching one that a unit too many has filled, reads them here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from drivers import LineRate


def line_metrics(rates: Mapping[str, LineRate]) -> Iterator[Metric]:
    busy = GaugeMetricFamily(
        "booth_line_busy_ratio", "Fraction of the last window the line was held", labels=["line"]
    )
    exchange = GaugeMetricFamily(
        "booth_line_exchange_seconds",
        "Mean time one exchange held the line over the last window",
        labels=["line"],
    )
    divider = GaugeMetricFamily(
        "booth_line_read_divider",
        "Non-safety reads run at 1/this of their configured rate (1: not slowed)",
        labels=["line"],
    )
    overloaded = GaugeMetricFamily(
        "booth_line_overloaded",
        "1 while the line cannot keep its safety reads at the rate their stale limits need",
        labels=["line"],
    )
    episodes = CounterMetricFamily(
        "booth_line_overloads", "Overload episodes of the line since start", labels=["line"]
    )
    for line, rate in sorted(rates.items()):
        busy.add_metric([line], rate.busy)
        exchange.add_metric([line], rate.exchange_s_mean)
        divider.add_metric([line], float(rate.divider))
        overloaded.add_metric([line], 1.0 if rate.overload is not None else 0.0)
        episodes.add_metric([line], float(rate.overloads))
    yield from (busy, exchange, divider, overloaded, episodes)
