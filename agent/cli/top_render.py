"""How `podbw top` looks: a plain text table (pipes, scripts, `--once`) and a rich table.

Rates are shown in bits per second, the unit of the annotations people write (`20M` is
20.0 Mbit/s); the metrics themselves stay in bytes.
"""

from __future__ import annotations

from typing import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.cli.top_rows import DIRECTIONS, DirectionRow, PodRow

HEADER = ("POD", "DIR", "STATE", "LIMIT", "NOW", "PEAK", "UTIL", "DROPS")
BAR_WIDTH = 10
_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_STATE_STYLES = {
    "applied": "green",
    "unlimited": "dim",
    "invalid": "bold red",
    "foreign": "yellow",
    "error": "bold red",
}


def format_rate(bytes_per_s: float | None) -> str:
    """Bytes/s as decimal bits/s: 2_500_000 -> "20.0 Mbit/s"; None -> "-"."""
    if bytes_per_s is None:
        return "-"
    bits = bytes_per_s * 8
    for factor, prefix in _PREFIXES:
        if bits >= factor:
            return f"{bits / factor:.1f} {prefix}bit/s"
    return f"{bits:.0f} bit/s"


def format_drops(drops: int | None) -> str:
    return "-" if drops is None else str(drops)


def plain_bar(utilization: float | None, width: int = BAR_WIDTH) -> str:
    """`[#####.....]  50%`; over 100 % the bar is full and the number tells by how much."""
    if utilization is None:
        return "-"
    filled = _filled(utilization, width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {utilization * 100:3.0f}%"


def _filled(utilization: float, width: int) -> int:
    return max(0, min(width, round(utilization * width)))


def _cells(row: PodRow, direction: str, d: DirectionRow) -> tuple[str, ...]:
    return (
        row.key,
        direction,
        d.state or "-",
        format_rate(d.limit_bytes_per_s),
        format_rate(d.throughput_bytes_per_s),
        format_rate(d.peak_bytes_per_s),
        plain_bar(d.utilization),
        format_drops(d.qdisc_drops),
    )


def render_plain(rows: Sequence[PodRow], title: str = "") -> str:
    """One line per pod and direction, the pod named on each so `grep` finds both."""
    lines: list[tuple[str, ...]] = [HEADER]
    for row in rows:
        for direction in DIRECTIONS:
            lines.append(_cells(row, direction, row.direction(direction)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = [title] if title else []
    for line in lines:
        text.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    if not rows:
        text.append("(no pods)")
    return "\n".join(text) + "\n"


def _rich_bar(utilization: float | None) -> Text:
    if utilization is None:
        return Text("-", style="dim")
    filled = _filled(utilization, BAR_WIDTH)
    style = "red" if utilization >= 0.9 else "yellow" if utilization >= 0.6 else "green"
    bar = Text("█" * filled, style=style)
    bar.append("░" * (BAR_WIDTH - filled), style="dim")
    bar.append(f" {utilization * 100:3.0f}%")
    return bar


def render_rich(rows: Sequence[PodRow], title: str = "", footer: Sequence[str] = ()) -> RenderableType:
    """The live view: a table (pod named once per pair of rows) and optional event lines."""
    table = Table(title=title or None, title_justify="left", expand=False, header_style="bold")
    for name in HEADER:
        justify = "right" if name in ("LIMIT", "NOW", "PEAK", "DROPS") else "left"
        table.add_column(name, justify=justify, no_wrap=True)
    for row in rows:
        for i, direction in enumerate(DIRECTIONS):
            d = row.direction(direction)
            state = d.state or "-"
            table.add_row(
                Text(row.key, style="bold") if i == 0 else "",
                direction,
                Text(state, style=_STATE_STYLES.get(state, "")),
                format_rate(d.limit_bytes_per_s),
                format_rate(d.throughput_bytes_per_s),
                format_rate(d.peak_bytes_per_s),
                _rich_bar(d.utilization),
                format_drops(d.qdisc_drops),
                end_section=i == len(DIRECTIONS) - 1,
            )
    if not rows:
        table.add_row(Text("(no pods)", style="dim"), *[""] * (len(HEADER) - 1))
    if not footer:
        return table
    # One row per event: wrapped kubectl rows would push the newest events off a small terminal.
    return Group(table, *(Text(line, no_wrap=True, overflow="ellipsis") for line in footer))
