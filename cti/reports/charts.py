"""The reports screen's charts as SVG, made on the server.

Why SVG from Python and no chart library: the screen works without JavaScript and without
the internet (the VDI machines have none), a screen reader reads each chart's ``<title>``
and ``<desc>`` (``role="img"``), the numbers are in a table under every chart anyway, and
the test reads the same markup the user sees. Colour is never the only signal: the two
lines differ in dash and marker, the callback bars in pattern, and every bar and cell
carries its number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

from cti.reports.service import Category, Hour, Week

TARGET = 0.9
# Contrast of at least 3:1 against white for the graphics (WCAG 1.4.11).
INK = "#1d2327"
BLUE = "#00476b"
ORANGE = "#9a4a00"
GREEN = "#007a33"
RED = "#b32d2e"
GRID = "#8c8f94"

Texts = Callable[..., str]


def _svg(ident: str, title: str, desc: str, width: int, height: int, body: list[str]) -> Markup:
    return Markup(
        f'<svg id="{ident}" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-labelledby="{ident}-title {ident}-desc" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(desc)}</desc>' + "".join(body) + "</svg>"
    )


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 13) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'fill="{INK}">{escape(text)}</text>'
    )


def norm_chart(weeks: Sequence[Week], t: Texts) -> Markup:
    """Composite norm (solid line, circles) and service level (dashed, squares) per week,
    against the dashed 90 % line."""
    width, height, left, right, top, bottom = 760, 300, 56, 20, 20, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(weeks), 1)

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    body = []
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="#dcdcde"/>'
        )
        body.append(_text(left - 6, y(tick) + 4, f"{tick * 100:.0f} %", "end", 12))
    body.append(
        f'<line class="target" x1="{left}" x2="{width - right}" y1="{y(TARGET):.1f}" '
        f'y2="{y(TARGET):.1f}" stroke="{RED}" stroke-width="2" stroke-dasharray="8 4"/>'
    )
    body.append(_text(width - right, y(TARGET) - 6, t("norm line"), "end", 12))
    for i, week in enumerate(weeks):
        body.append(_text(x(i), height - bottom + 18, week.label, size=12))
    series = (
        ("norm", [w.norm for w in weeks], BLUE, "", "circle"),
        ("service_level", [w.service_level for w in weeks], ORANGE, "6 4", "square"),
    )
    for name, values, colour, dash, marker in series:
        points = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            body.append(
                f'<polyline class="{name}" points="{path}" fill="none" stroke="{colour}" '
                f'stroke-width="3" stroke-dasharray="{dash}"/>'
            )
        for px, py in points:
            if marker == "circle":
                body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{colour}"/>')
            else:
                body.append(
                    f'<rect x="{px - 5:.1f}" y="{py - 5:.1f}" width="10" height="10" '
                    f'fill="{colour}"/>'
                )
    # The legend, under the axis: a sample of each line's dash and marker.
    legend_y = height - 8
    body.append(
        f'<line x1="{left}" x2="{left + 28}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
        f'stroke="{BLUE}" stroke-width="3"/><circle cx="{left + 14}" cy="{legend_y - 4}" r="4" '
        f'fill="{BLUE}"/>'
    )
    body.append(_text(left + 34, legend_y, t("composite norm"), "start", 12))
    body.append(
        f'<line x1="{left + 260}" x2="{left + 288}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
        f'stroke="{ORANGE}" stroke-width="3" stroke-dasharray="6 4"/><rect x="{left + 270}" '
        f'y="{legend_y - 8}" width="8" height="8" fill="{ORANGE}"/>'
    )
    body.append(_text(left + 294, legend_y, t("service level short"), "start", 12))
    desc = "; ".join(
        t("norm week desc", week=w.label, norm=_percent(w.norm), level=_percent(w.service_level))
        for w in weeks
    )
    return _svg("chart-norm", t("chart norm"), desc, width, height, body)


def heat_map(hours: Sequence[Sequence[Hour]], measure: str, t: Texts) -> Markup:
    """One measure (offered, answered or abandoned) per weekday and hour: the darker, the
    more; every cell with calls shows its number."""
    used = [h for h in range(24) if any(day[h].offered for day in hours)]
    first, last = (min(used), max(used)) if used else (8, 17)
    first, last = min(first, 8), max(last, 17)
    columns = list(range(first, last + 1))
    cell_w, cell_h, left, top = 36, 30, 44, 24
    width, height = left + cell_w * len(columns) + 4, top + cell_h * 7 + 4
    peak = max((getattr(day[h], measure) for day in hours for h in columns), default=0) or 1
    days = t("weekdays").split()
    body = []
    for j, hour in enumerate(columns):
        body.append(_text(left + cell_w * (j + 0.5), top - 8, f"{hour:02d}", size=12))
    total = 0
    for i, day in enumerate(hours):
        body.append(_text(left - 6, top + cell_h * (i + 0.5) + 4, days[i], "end", 12))
        for j, hour in enumerate(columns):
            value = getattr(day[hour], measure)
            total += value
            share = value / peak
            # From white to the brand blue; the number's colour flips for contrast.
            shade = tuple(round(255 - (255 - c) * share) for c in (0, 71, 107))
            fill = "#{:02x}{:02x}{:02x}".format(*shade)
            x, y = left + cell_w * j, top + cell_h * i
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{fill}" stroke="#dcdcde"/>'
            )
            if value:
                colour = "#ffffff" if share > 0.45 else INK
                body.append(
                    f'<text x="{x + cell_w / 2 - 1:.1f}" y="{y + cell_h / 2 + 4:.1f}" '
                    f'text-anchor="middle" font-size="12" fill="{colour}">{value}</text>'
                )
    desc = t("heat desc", total=total, peak=peak if total else 0)
    return _svg(f"chart-hours-{measure}", t(f"chart hours {measure}"), desc, width, height, body)


def callbacks_chart(weeks: Sequence[Week], t: Texts) -> Markup:
    """Per week one stacked bar: within the deadline (solid green), closed late (red,
    hatched), open past the deadline (red outline, dotted)."""
    width, height, left, bottom, top = 760, 280, 56, 60, 16
    plot_h = height - top - bottom
    step = (width - left - 20) / max(len(weeks), 1)
    peak = max((w.within + w.late + w.overdue for w in weeks), default=0) or 1
    body = [
        "<defs>"
        f'<pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="8" height="8" fill="#f8d7da"/>'
        f'<line x1="0" y1="0" x2="0" y2="8" stroke="{RED}" stroke-width="4"/></pattern>'
        f'<pattern id="dots" width="8" height="8" patternUnits="userSpaceOnUse">'
        f'<rect width="8" height="8" fill="#ffffff"/><circle cx="4" cy="4" r="2" fill="{RED}"/>'
        "</pattern></defs>"
    ]
    parts = (("within", GREEN, ""), ("late", "url(#hatch)", RED), ("overdue", "url(#dots)", RED))
    for i, week in enumerate(weeks):
        x = left + step * i + step * 0.2
        bar_w = step * 0.6
        y = top + plot_h
        for name, fill, stroke in parts:
            value = getattr(week, name)
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            edge = f' stroke="{stroke}" stroke-width="2"' if stroke else ""
            body.append(
                f'<rect class="{name}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{fill}"{edge}/>'
            )
        body.append(_text(x + bar_w / 2, top + plot_h + 16, week.label, size=12))
        totals = f"{week.within} / {week.late} / {week.overdue}"
        body.append(_text(x + bar_w / 2, top + plot_h + 32, totals, size=12))
    body.append(
        f'<line x1="{left}" x2="{width - 20}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{GRID}"/>'
    )
    legend_y = height - 8
    for k, (name, fill, stroke) in enumerate(parts):
        lx = left + k * 230
        edge = f' stroke="{stroke}" stroke-width="2"' if stroke else ""
        body.append(
            f'<rect x="{lx}" y="{legend_y - 11}" width="14" height="14" fill="{fill}"{edge}/>'
        )
        body.append(_text(lx + 20, legend_y, t(f"callbacks {name}"), "start", 12))
    desc = "; ".join(
        t("callbacks week desc", week=w.label, within=w.within, late=w.late, overdue=w.overdue)
        for w in weeks
    )
    return _svg("chart-callbacks", t("chart callbacks"), desc, width, height, body)


def pareto_chart(categories: Sequence[Category], t: Texts) -> Markup:
    """Question categories, most asked first, with the cumulative share as a line."""
    shown = list(categories[:12])
    width, height, left, right, top, bottom = 760, 300, 160, 56, 16, 86
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(shown), 1)
    peak = max((c.count for c in shown), default=0) or 1
    body = []
    points = []
    for i, category in enumerate(shown):
        h = plot_h * category.count / peak
        x = left + step * i + step * 0.15
        body.append(
            f'<rect class="category" x="{x:.1f}" y="{top + plot_h - h:.1f}" '
            f'width="{step * 0.7:.1f}" height="{h:.1f}" fill="{BLUE}"/>'
        )
        body.append(_text(x + step * 0.35, top + plot_h - h - 4, str(category.count), size=12))
        label_x, label_y = x + step * 0.35, top + plot_h + 12
        body.append(
            f'<text x="{label_x:.1f}" y="{label_y:.1f}" font-size="12" fill="{INK}" '
            f'text-anchor="end" transform="rotate(-35 {label_x:.1f} {label_y:.1f})">'
            f"{escape(category.name[:22])}</text>"
        )
        points.append((x + step * 0.35, top + plot_h * (1 - category.cumulative)))
    if points:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        body.append(
            f'<polyline class="cumulative" points="{path}" fill="none" stroke="{ORANGE}" '
            f'stroke-width="2" stroke-dasharray="6 4"/>'
        )
        for (px, py), category in zip(points, shown, strict=True):
            body.append(
                f'<rect x="{px - 4:.1f}" y="{py - 4:.1f}" width="8" height="8" fill="{ORANGE}"/>'
            )
            body.append(_text(px + 6, py - 6, _percent(category.cumulative), "start", 11))
    body.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{GRID}"/>'
    )
    desc = "; ".join(
        t("category desc", name=c.name, count=c.count, cumulative=_percent(c.cumulative))
        for c in shown
    ) or t("no categories")
    return _svg("chart-categories", t("chart categories"), desc, width, height, body)
