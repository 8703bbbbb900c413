"""The figures (rows.figures) -> one self-contained HTML file an informaticist would rather look at than read.

Plots are matplotlib (Agg) SVG inlined in the page, text kept as text; no script, no stylesheet or font from
elsewhere. Every string from the data is escaped. Beside each plot a table holds the same counts."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

_STYLE = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #d5d9e0}
.settings{background:#fff6db;border:1px solid #e7cf7a;padding:.6rem 1rem;border-radius:6px;display:grid;
grid-template-columns:max-content 1fr;gap:.2rem 1.5rem}.settings dt{font-weight:600}.settings dd{margin:0}
.row{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}.plot{flex:1 1 26rem}.plot svg{max-width:100%;
height:auto}table{border-collapse:collapse;font-size:.92rem}td,th{border-bottom:1px solid #e3e6eb;padding:.25rem
.6rem;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}.note{color:#5a6272;font-size:.9rem}
.big{display:flex;gap:1rem;flex-wrap:wrap}.big div{border:1px solid #d5d9e0;border-radius:6px;padding:.5rem 1rem}
.big b{display:block;font-size:1.5rem}"""
_COLOURS = {"info": "#3f7bd9", "warning": "#e0a200", "critical": "#c8312b"}
_BAR = "#4c6a92"


def report_html(figures: Mapping[str, Any], title: str) -> str:
    """The whole page."""
    settings = figures["settings"]
    per = figures["cards_per_patient"]
    histogram = {int(k): v for k, v in figures["cards_per_patient_histogram"].items()}
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             "<p class='note'>Each patient is evaluated in process as the service would answer the hook. Patients "
             "are shown by a hashed key, not an id, unless the report was made with --show-ids.</p>",
             "<dl class='settings' id='settings'>",
             *(f"<dt>{escape(label)}</dt><dd data-setting='{escape(key)}'>{escape(_shown(settings.get(key)))}</dd>"
               for key, label in (("hooks", "hooks"), ("today", "evaluated on"),
                                  ("assume_cramps", "what-if: assume cramps"),
                                  ("draft_order", "what-if: draft order (RxNorm)"), ("input", "input"),
                                  ("engine", "run on"))),
             "</dl>",
             "<div class='big' id='summary'>",
             *(f"<div><b id='{key}'>{escape(str(value))}</b>{escape(label)}</div>" for key, label, value in (
                 ("patients", "patients", figures["patients"]),
                 ("patients-with-cards", "patients with any card", figures["patients_with_cards"]),
                 ("cards", "cards", figures["cards"]),
                 ("median", "cards per patient, median", per["median"]),
                 ("p90", "cards per patient, 90th percentile", per["p90"]),
                 ("max", "cards per patient, max", per["max"]),
                 ("failed", "patients that could not be evaluated", len(figures["failed_files"])))),
             "</div>"]
    parts += _section("cards-per-patient", "Cards per patient", "cards on one patient", "patients",
                      {str(k): v for k, v in sorted(histogram.items())}, vertical=True)
    parts += _section("cards-by-indicator", "Cards by indicator", "indicator", "cards", figures["cards_by_indicator"],
                      colours=_COLOURS)
    parts += _section("findings-by-rule", "Findings by rule", "rule", "cards naming it", figures["findings_by_rule"],
                      note="A grouped card counts once for each rule on it.")
    parts += _section("missing-data", "Missing data: the kinds named by checks-incomplete cards", "data kind",
                      "patients", figures["missing_data_kinds"])
    codes = figures["unrecognised_rxnorm_codes"]
    parts += _section("unrecognised-codes", f"Unrecognised RxNorm codes (top {_top(codes)})",
                      "code", "medications carrying it", _first(codes),
                      note=f"{len(codes)} distinct codes; "
                           f"{figures['medications_by_name_only']} medications recognised by name only.")
    units = {f"{u['lab']} in {u['unit']!r}": u["patients"] for u in figures["unread_lab_units"]}
    parts += _section("unconvertible-units", f"Lab units that could not be converted (top {_top(units)})",
                      "lab and unit as sent", "patients", _first(units),
                      note="Such a result counts as present with an unknown value.")
    if figures.get("by_hook"):
        parts.append("<h2 id='by-hook'>By hook</h2><table><tr><th>hook</th><th>patients</th>"
                     "<th>with any card</th><th>cards</th></tr>")
        for hook, own in figures["by_hook"].items():
            parts.append(f"<tr><td>{escape(hook)}</td><td class='n'>{own['patients']}</td>"
                         f"<td class='n'>{own['patients_with_cards']}</td><td class='n'>{own['cards']}</td></tr>")
        parts.append("</table>")
    read = figures["input"]
    if read.get("resources_without_patient") or read.get("files_skipped"):
        parts.append("<h2 id='input'>Input</h2><p class='note'>")
        if read.get("resources_without_patient"):
            parts.append("Resources naming no patient, left out: " + escape(", ".join(
                f"{k} {v}" for k, v in read["resources_without_patient"].items())) + ". ")
        if read.get("files_skipped"):
            parts.append(f"{len(read['files_skipped'])} files of resource types the rules do not read were skipped.")
        parts.append("</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _section(anchor: str, heading: str, key_label: str, count_label: str, counts: Mapping[str, int],
             note: str = "", vertical: bool = False, colours: Mapping[str, str] | None = None) -> list[str]:
    out = [f"<h2 id='{anchor}'>{escape(heading)}</h2>"]
    if note:
        out.append(f"<p class='note'>{escape(note)}</p>")
    if not counts or not any(counts.values()):
        out.append(f"<p class='note' data-empty='{anchor}'>None.</p>")
        return out
    out.append("<div class='row'>")
    out.append(f"<div class='plot'>{_bars(heading, key_label, count_label, counts, vertical, colours)}</div>")
    out.append(f"<table data-counts='{anchor}'><tr><th>{escape(key_label)}</th><th>{escape(count_label)}</th></tr>")
    out += [f"<tr><td>{escape(str(k))}</td><td class='n'>{v}</td></tr>" for k, v in counts.items()]
    out.append("</table></div>")
    return out


def _bars(title: str, key_label: str, count_label: str, counts: Mapping[str, int], vertical: bool,
          colours: Mapping[str, str] | None) -> str:
    """One bar chart as an inline <svg> element."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    keys, values = list(counts), list(counts.values())
    height = 3.2 if vertical else max(1.6, 0.34 * len(keys) + 0.9)
    figure = Figure(figsize=(6.4, height), layout="constrained")
    axes = figure.add_subplot()
    colour: Sequence[str] = [(colours or {}).get(k, _BAR) for k in keys]
    if vertical:
        axes.bar(keys, values, color=colour)
        axes.set_xlabel(key_label)
        axes.set_ylabel(count_label)
    else:
        axes.barh(keys[::-1], values[::-1], color=colour[::-1])
        axes.set_xlabel(count_label)
    axes.set_title(title, fontsize=11, loc="left")
    axes.spines[["top", "right"]].set_visible(False)
    svg = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "spasm-cds"}):
        figure.savefig(svg, format="svg")
    text = svg.getvalue()
    return text[text.index("<svg"):]


def _first(counts: Mapping[str, int], n: int = 15) -> dict[str, int]:
    return dict(list(counts.items())[:n])


def _top(counts: Mapping[str, int], n: int = 15) -> int:
    return min(n, len(counts))


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)
