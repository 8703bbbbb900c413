"""The try-it page's data and request building: synthetic demo Bundles (listed in demos.yaml) with their dates
shifted to look current, and a Bundle (a demo or one pasted in) -> the CDS Hooks request an EHR would send,
built with bundles.py as `spasm-cds evaluate` builds it. Clinical content stays in the data files."""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..bundles import (
    InputError,
    add_draft,
    chart_of,
    request_from_chart,
    rewrite_references,
    service_for_hook,
)
from ..knowledge.model import Knowledge, Service
from ..vocabulary import ORDER_HOOKS

DEMO_DIR = Path(__file__).resolve().parent
# Patient ids on the page carry this prefix, so that a snooze set there can never hold back a real patient's cards
PATIENT_PREFIX = "try-it-"
NEWEST_DAYS_AGO = 2
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?)?", re.ASCII)
_RXNORM = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class Order:
    """A drug the page offers to order on the order hooks: an RxNorm code, a name, or both."""

    id: str
    rxnorm: str | None = None
    text: str | None = None

    @property
    def label(self) -> str:
        """How the page names it."""
        return self.text or f"RxNorm {self.rxnorm}"


@dataclass(frozen=True)
class Demo:
    """One synthetic patient: its Bundle file, what it shows, the hook (and order) to try, the cards it gives."""

    id: str
    file: str
    label: str
    shows: str
    hook: str
    order: str | None
    cards: tuple[str, ...]


@dataclass(frozen=True)
class Demos:
    """Every demo patient and orderable drug, in demos.yaml order."""

    patients: tuple[Demo, ...]
    orders: tuple[Order, ...]

    def patient(self, demo_id: str) -> Demo | None:
        """The demo patient with this id, or None."""
        return next((d for d in self.patients if d.id == demo_id), None)

    def order(self, order_id: str) -> Order | None:
        """The orderable drug with this id, or None."""
        return next((o for o in self.orders if o.id == order_id), None)


@cache
def load_demos(folder: Path = DEMO_DIR) -> Demos:
    """demos.yaml, read once; ValueError if an entry names a missing file or order."""
    doc = yaml.safe_load((folder / "demos.yaml").read_text(encoding="utf-8"))
    orders = tuple(Order(id=o["id"], rxnorm=o.get("rxnorm"), text=o.get("text")) for o in doc["orders"])
    patients = tuple(Demo(id=p["id"], file=p["file"], label=p["label"], shows=p["shows"], hook=p["hook"],
                          order=p.get("order"), cards=tuple(p.get("cards") or ())) for p in doc["patients"])
    for demo in patients:
        if not (folder / demo.file).is_file():
            raise ValueError(f"{folder / 'demos.yaml'}: {demo.id}: no file {demo.file}")
        if demo.order is not None and demo.order not in {o.id for o in orders}:
            raise ValueError(f"{folder / 'demos.yaml'}: {demo.id}: no order {demo.order!r}")
    return Demos(patients, orders)


def demo_bundle(demo: Demo, today: date, folder: Path = DEMO_DIR) -> dict[str, Any]:
    """The demo's Bundle with every date shifted so that its newest falls NEWEST_DAYS_AGO days before today."""
    return shift_dates(json.loads((folder / demo.file).read_text(encoding="utf-8")),
                       today - timedelta(days=NEWEST_DAYS_AGO))


def shift_dates(document: Any, newest: date) -> Any:
    """A copy of the document with every full date and date-time string (YYYY-MM-DD...) moved by the same number
    of days, so that the latest of them falls on `newest` (intervals, ages and the order of events stay)."""
    found = [date.fromisoformat(m.group(1)) for m in map(_DATE.fullmatch, _strings(document)) if m]
    if not found:
        return copy.deepcopy(document)
    return _shifted(document, newest - max(found))


def order_from_rxnorm(code: str) -> Order:
    """A drug to order given only its RxNorm code; InputError unless the code is digits."""
    code = code.strip()
    if not _RXNORM.fullmatch(code):
        raise InputError("an RxNorm code is digits only")
    return Order(id="rxnorm", rxnorm=code)


def hook_request(bundle: Any, knowledge: Knowledge, hook: str, order: Order | None,
                 hook_instance: str) -> tuple[Service, dict[str, Any]]:
    """The service on the hook and the prefetch-mode request for the Bundle's patient (patient id prefixed with
    PATIENT_PREFIX), with the order as a draft on the order hooks. InputError when the Bundle or the choice will
    not do."""
    service = service_for_hook(knowledge, hook)
    if service.hook in ORDER_HOOKS and order is None:
        raise InputError(f"the {service.hook} hook needs a drug to order")
    chart = chart_of(_namespaced(bundle))
    body = request_from_chart(chart, service, hook_instance)
    if service.hook in ORDER_HOOKS and order is not None:
        body = add_draft(body, knowledge, order.rxnorm, order.text)
    return service, body


def _namespaced(bundle: Any) -> Any:
    """The Bundle with each Patient's id (and the references to it) given PATIENT_PREFIX unless it has it."""
    if not isinstance(bundle, dict) or not isinstance(bundle.get("entry"), list):
        return bundle
    renamed: dict[str, str] = {}
    entries = []
    for entry in bundle["entry"]:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient" \
                and isinstance(resource.get("id"), str) and not resource["id"].startswith(PATIENT_PREFIX):
            new_id = PATIENT_PREFIX + resource["id"]
            renamed[f"Patient/{resource['id']}"] = f"Patient/{new_id}"
            entry = {**entry, "resource": {**resource, "id": new_id}}
        entries.append(entry)
    return rewrite_references({**bundle, "entry": entries}, renamed)


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _shifted(value: Any, delta: timedelta) -> Any:
    if isinstance(value, dict):
        return {k: _shifted(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, delta) for v in value]
    if isinstance(value, str):
        match = _DATE.fullmatch(value)
        if match:
            return (date.fromisoformat(match.group(1)) + delta).isoformat() + (match.group(2) or "")
    return value

