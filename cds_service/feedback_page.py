"""The feedback report as one self-contained HTML page: tables, and two charts drawn as inline SVG (no script, no
stylesheet or font from elsewhere), every text escaped by Jinja's autoescape. Served at /admin/feedback and written
by `spasm-cds feedback report --format html`."""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, select_autoescape

from .feedback_formats import as_json
from .feedback_report import Report

_TEMPLATES = Path(__file__).resolve().parent / "templates"
LABEL_CHARS = 56  # a rule's label beside its bar is cut to this (the whole id is its tooltip and in the table)
BAR_RULES = 25  # the most rules the bar chart draws (the review list first)
SEGMENTS = (("accepted", "Accepted", "#2e7d32"), ("overridden_other", "Overridden, other reason", "#ef6c00"),
            ("snoozed", "Snoozed", "#6a1b9a"), ("not_relevant", "Not relevant", "#546e7a"),
            ("no_feedback", "No feedback", "#d7dde1"))
SERIES = (("issued", "Issued", "#1565c0"), ("accepted", "Accepted", "#2e7d32"),
          ("overridden", "Overridden", "#ef6c00"))


@cache
def _template() -> Template:
    """The page's template, compiled once per process."""
    environment = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(default=True))
    return environment.get_template("feedback_report.html")


def render_page(report: Report, generated_at: str) -> str:
    """The HTML page of the report."""
    data = as_json(report)
    return _template().render(
        report=data, explanation=report.explanation, generated_at=generated_at, bars=_bars(data["rules"]),
        segments=SEGMENTS, lines=_lines(data["periods"]), series=SERIES)


def _bars(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked horizontal bars, one per rule, as long as its cards issued."""
    shown = rules[:BAR_RULES]
    longest = max((r["issued"] for r in shown), default=0) or 1
    left, width, row = 400, 560, 26
    bars = []
    for i, rule in enumerate(shown):
        parts = {"accepted": rule["accepted"], "overridden_other": rule["overridden"] - rule["snoozed"]
                 - rule["not_relevant"], "snoozed": rule["snoozed"], "not_relevant": rule["not_relevant"],
                 "no_feedback": max(0, rule["issued"] - rule["with_feedback"])}
        x, rects = float(left), []
        for key, label, colour in SEGMENTS:
            w = width * parts[key] / longest
            if parts[key]:
                rects.append({"x": round(x, 1), "w": round(w, 1), "colour": colour, "key": key,
                              "title": f"{label}: {parts[key]}"})
            x += w
        label = f"{rule['rule']} v{rule['version']}"
        bars.append({"y": 10 + i * row, "label": label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…",
                     "full_label": label, "rule": rule["rule"],
                     "rects": rects, "end": round(x, 1), "issued": rule["issued"], "parts": parts})
    return {"rows": bars, "height": 30 + len(bars) * row, "left": left, "width": left + width + 70}


def _lines(periods: list[dict[str, Any]]) -> dict[str, Any]:
    """A line per series over the periods, with a point and its count at each period."""
    left, top, width, height = 50, 15, 780, 200
    top_value = max((p[key] for p in periods for key, _, _ in SERIES), default=0) or 1
    step = width / max(1, len(periods) - 1)
    xs = [left + (i * step if len(periods) > 1 else width / 2) for i in range(len(periods))]

    def y(value: int) -> float:
        return round(top + height - height * value / top_value, 1)

    series: list[dict[str, Any]] = []
    for key, label, colour in SERIES:
        points = [{"x": round(x, 1), "y": y(p[key]), "value": p[key], "period": p["period"]}
                  for x, p in zip(xs, periods, strict=True)]
        series.append({"key": key, "label": label, "colour": colour, "points": points,
                       "path": " ".join(f"{p['x']},{p['y']}" for p in points)})
    ticks = [{"x": round(x, 1), "label": p["period"]} for x, p in zip(xs, periods, strict=True)]
    return {"series": series, "ticks": ticks, "top": top, "bottom": top + height, "left": left,
            "right": left + width, "max": top_value, "width": left + width + 40, "height": top + height + 60}
