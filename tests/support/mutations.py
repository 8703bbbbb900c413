"""A seeded mutation fuzzer for request bodies: from valid bodies (the try-it demo hook calls and feedback on their
cards) it makes mutants, each one to three mutations of the parsed document (type swaps, deletions, nulls, numbers
as strings and strings as numbers, huge and deep values, unicode edge cases, NULs, line breaks, edge dates, unknown
fields) or of its bytes (truncation, a flipped byte, a duplicate key). Case i of seed s is the same on every run
and on its own: its random numbers come from Random(f"{s}:{i}")."""
from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Base = tuple[str, str, Any]  # (name, URL path, a valid JSON document)

SCALARS: list[Any] = [None, True, False, 0, -1, 1, 1.5, -0.0, 1e308, -1e-320, 2**63 - 1, -(2**63), 2**64, "", "x",
                      "0", "3.1", "null", "true", "[]", "{}"]
CONTAINERS: list[Any] = [[], {}, [None], [[]], {"": None}, {"resourceType": "Bundle"}, [{"resource": None}]]
UNICODE = ["\u0000", "\ufeff", "\u202e", "\u200b", "\u00a0", "\u2028", "\u2029", "e\u0301", "\U0010ffff", "\uffff",
           "\ufffd", "\u0661\u0662\u0663", "\uff11\uff12", "\U0001f4a9", "\n", "\r\n", "\t", "\x7f", "\x1b[31m",
           "'\"<>&", "%00", "../../", "{{context.patientId}}", "{lab.value}", "${jndi:x}", "\\", "\ud800",
           "\udfff", "Ω" * 64]
DATES = ["0001-01-01", "9999-12-31", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:60-23:59",
         "2016-12-31T23:59:60Z", "2026-02-30", "2026-01-01T24:00:00Z", "2026-01-01T00:00:00+99:99", "20260101",
         "-001-01-01", "2026-01-01T00:00:00.1234567890123Z", "2026", "2026-13", "1969-12-31T23:59:59.999Z",
         "2026-01-01T00:00:00Z\n", "2026-01-01t00:00:00z"]
DEPTHS = [2, 10, 100, 250, 500, 900, 990, 1000, 1010, 1020, 1023, 1024, 1025, 1100, 5000]


@dataclass(frozen=True)
class Mutant:
    """One case: its name (the base, then each mutation and where), where it is posted, and the bytes sent."""

    name: str
    path: str
    body: bytes


def mutants(bases: list[Base], count: int, seed: int) -> Iterator[Mutant]:
    """count mutants of the bases, in turn, reproducible from seed."""
    for i in range(count):
        rng = random.Random(f"{seed}:{i}")
        base_name, path, doc = bases[i % len(bases)]
        doc = json.loads(json.dumps(doc))
        notes: list[str] = []
        raw_ops: list[Callable[[random.Random, bytes], tuple[bytes, str]]] = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            if rng.random() < 0.12:
                raw_ops.append(rng.choice(RAW_OPS))
                continue
            op = rng.choice(DOC_OPS)
            doc, note = _apply(rng, doc, op)
            notes.append(note)
        body = _dump(doc)
        for raw_op in raw_ops:
            body, note = raw_op(rng, body)
            notes.append(note)
        yield Mutant(f"{i}:{base_name}: {'; '.join(notes)}", path, body)


@dataclass(frozen=True)
class _Deep:
    """A nested value too deep for json.dumps (which recurses): written into the body as text."""

    text: str


def _dump(doc: Any) -> bytes:
    """The document as JSON (ASCII: lone surrogates as \\ud800 escapes), deep values written in as text."""
    deep: list[str] = []

    def mark(value: Any) -> str:
        if not isinstance(value, _Deep):
            raise TypeError(type(value).__name__)
        deep.append(value.text)
        return f"@@deep-{len(deep) - 1}@@"

    body = json.dumps(doc, default=mark)
    for i, text in enumerate(deep):
        body = body.replace(f'"@@deep-{i}@@"', text, 1)
    return body.encode()


def _small(value: Any) -> Any:
    """value if it is a scalar or a short string, else 0."""
    if value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) < 40):
        return value
    return 0


def _locations(doc: Any) -> list[tuple[Any, Any, str]]:
    """Every (container, key, path) in the document, the root first (container None)."""
    out: list[tuple[Any, Any, str]] = [(None, None, "")]
    stack = [(doc, "")]
    while stack:
        node, where = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            path = f"{where}/{key}"
            out.append((node, key, path))
            stack.append((value, path))
    return out


def _apply(rng: random.Random, doc: Any, op: Callable[[random.Random, Any], Any]) -> tuple[Any, str]:
    """op applied at a random location (the root only for some ops); deletion removes instead."""
    locations = _locations(doc)
    container, key, path = rng.choice(locations[1:] or locations)
    if op is _delete:
        if container is None:
            return None, "delete@root"
        del container[key]
        return doc, f"delete@{path}"
    if op is _extra_field:
        dicts = [(c, k, p) for c, k, p in locations if isinstance(c[k] if c is not None else doc, dict)]
        container, key, path = rng.choice(dicts) if dicts else (None, None, "")
        target = container[key] if container is not None else doc
        if not isinstance(target, dict):
            return doc, "extra-field@none"
        name = rng.choice(["x", "resourceType", "id", "extension", "__proto__", "", "\u0000", "hook", "prefetch"])
        target[name] = _random_value(rng)
        return doc, f"extra-field@{path}/{name!r}"
    old = container[key] if container is not None else doc
    new, label = op(rng, old)
    if container is None:
        return new, f"{label}@root"
    container[key] = new
    return doc, f"{label}@{path}"


def _delete(rng: random.Random, value: Any) -> Any:  # marker: handled in _apply
    raise AssertionError


def _extra_field(rng: random.Random, value: Any) -> Any:  # marker: handled in _apply
    raise AssertionError


def _random_value(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(SCALARS + CONTAINERS + UNICODE + DATES))  # a copy: later mutations change it


def _type_swap(rng: random.Random, value: Any) -> tuple[Any, str]:
    choices = [v for v in SCALARS + CONTAINERS if type(v) is not type(value)]
    return copy.deepcopy(rng.choice(choices)), "type-swap"


def _null(rng: random.Random, value: Any) -> tuple[Any, str]:
    return None, "null"


def _empty(rng: random.Random, value: Any) -> tuple[Any, str]:
    empties: dict[type, Any] = {str: "", list: [], dict: {}}
    return empties.get(type(value), ""), "empty"


def _number_string(rng: random.Random, value: Any) -> tuple[Any, str]:
    if isinstance(value, bool) or value is None:
        return str(value).lower(), "as-string"
    if isinstance(value, (int, float)):
        return rng.choice([str(value), f" {value}", f"{value}e0", "NaN", "Infinity"]), "number-as-string"
    if isinstance(value, str):
        try:
            return float(value) if "." in value else int(value), "string-as-number"
        except ValueError:
            return rng.choice([0, 3.1, -1, 2**63, 1e308]), "string-as-number"
    return rng.choice(["1", "3.1"]), "as-string"


def _huge(rng: random.Random, value: Any) -> tuple[Any, str]:
    size = rng.choice([1_000, 50_000, 300_000, 600_000])
    kind = rng.choice(["string", "unicode", "list", "object", "number"])
    if kind == "string":
        return "x" * size, f"huge-string-{size}"
    if kind == "unicode":
        return rng.choice(UNICODE[:16]) * (size // 4), f"huge-unicode-{size // 4}"
    if kind == "list":
        return [_small(value)] * min(size // 20, 20_000), "huge-list"
    if kind == "object":
        return {f"k{i}": i for i in range(size // 100)}, "huge-object"
    return int("9" * rng.choice([19, 20, 400])), "huge-number"


def _deep(rng: random.Random, value: Any) -> tuple[Any, str]:
    depth = rng.choice(DEPTHS)
    shapes = [rng.random() < 0.5 for _ in range(depth)]  # True: an array, False: an object
    text = "".join("[" if array else '{"a":' for array in shapes) + json.dumps(_small(value)) \
        + "".join("]" if array else "}" for array in reversed(shapes))
    return _Deep(text), f"deep-{depth}"


def _unicode(rng: random.Random, value: Any) -> tuple[Any, str]:
    edge = rng.choice(UNICODE)
    if isinstance(value, str) and value:
        at = rng.randrange(len(value) + 1)
        return value[:at] + edge + value[at:], f"unicode-{edge.encode('unicode_escape').decode()[:12]}-inside"
    return edge, f"unicode-{edge.encode('unicode_escape').decode()[:12]}"


def _nul(rng: random.Random, value: Any) -> tuple[Any, str]:
    text = value if isinstance(value, str) else "x"
    at = rng.randrange(len(text) + 1)
    return text[:at] + "\u0000" + text[at:], "nul"


def _line_break(rng: random.Random, value: Any) -> tuple[Any, str]:
    text = value if isinstance(value, str) else "x"
    return text + rng.choice(["\n", "\r\n", "\r"]), "trailing-line-break"


def _date_edge(rng: random.Random, value: Any) -> tuple[Any, str]:
    return rng.choice(DATES), "date-edge"


DOC_OPS = [_type_swap, _type_swap, _delete, _delete, _null, _null, _empty, _number_string, _number_string, _huge,
           _deep, _deep, _unicode, _unicode, _nul, _nul, _line_break, _date_edge, _date_edge, _extra_field]


def _truncate(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    cut = rng.randrange(len(body)) if body else 0
    return body[:cut], f"truncate-at-{cut}"


def _flip_byte(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    if not body:
        return b"\xff", "flip-byte-0"
    at = rng.randrange(len(body))
    return body[:at] + bytes([rng.randrange(256)]) + body[at + 1:], f"flip-byte-{at}"


def _duplicate_key(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    keys = [k for k in (b'"hook": ', b'"hookInstance": ', b'"patientId": ', b'"card": ', b'"outcome": ',
                        b'"resourceType": ', b'"context": ') if k in body]
    if not keys:
        return body, "duplicate-key-none"
    key = rng.choice(keys)
    return body.replace(key, key + json.dumps(_random_value(rng)).encode() + b", " + key, 1), \
        f"duplicate-{key.decode().strip(': ')}"


RAW_OPS = [_truncate, _flip_byte, _duplicate_key]
