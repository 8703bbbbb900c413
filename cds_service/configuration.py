"""Site configuration the Da Vinci CRD way: each service advertises options in discovery (cards/services.yaml
configuration_options); a request's extension chooses among them; the site's defaults come from settings.

choose() turns a request's extension into Choices: which indicators and rule groups are hidden, and the most cards."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import InvalidRequest
from .knowledge.model import ConfigOption, Knowledge, Service

log = logging.getLogger(__name__)

REQUEST_KEYS = ("org.spasm-cds.configuration", "davinci-crd.configuration")  # ours first, then CRD's own name
_SETTING = "SPASM_CDS_CONFIGURATION_DEFAULTS"


@dataclass(frozen=True)
class Choices:
    """What one call may show: indicators and rule groups turned off, and the most cards (None: no limit)."""

    hidden_indicators: frozenset[str] = frozenset()
    hidden_groups: frozenset[str] = frozenset()
    max_cards: int | None = None

    def hides(self, indicator: str, group: str) -> bool:
        """True if a finding of this indicator and rule group is turned off."""
        return indicator in self.hidden_indicators or group in self.hidden_groups


def site_defaults(knowledge: Knowledge, text: str) -> Mapping[str, bool | int]:
    """Parse `code=value,code=value` against the option catalogue, once per text and knowledge (the result is kept
    on the knowledge, read-only). Raises ValueError naming the setting."""
    known = knowledge.parsed_site_defaults.get(text)
    if known is None:
        known = knowledge.parsed_site_defaults[text] = MappingProxyType(_parse_site_defaults(knowledge, text))
    return known


def _parse_site_defaults(knowledge: Knowledge, text: str) -> dict[str, bool | int]:
    defaults: dict[str, bool | int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        code, _, raw = (s.strip() for s in part.partition("="))
        option = knowledge.configuration_options.get(code)
        if option is None:
            raise ValueError(f"{_SETTING}: {code!r} is not one of the configuration options "
                             f"{sorted(knowledge.configuration_options)}")
        value = _parse_setting(option, raw)
        if value is None:
            raise ValueError(f"{_SETTING}: {code}={raw!r} is not a valid {option.type}"
                             + (f" from {option.minimum} to {option.maximum}" if option.type == "integer" else ""))
        defaults[code] = value
    return defaults


def choose(service: Service, defaults: Mapping[str, bool | int], extension: Mapping[str, Any]) -> Choices:
    """The choices for one call: the request's, else the site's, else the option's own default.

    Codes this service does not offer are ignored (and logged); a value of the wrong type is InvalidRequest."""
    requested: object = next((extension[k] for k in REQUEST_KEYS if k in extension), {})
    if not isinstance(requested, dict):
        raise InvalidRequest(f"extension/{REQUEST_KEYS[0]}: must be an object of option codes and values")
    offered = {o.code: o for o in service.configuration}
    ignored = sorted(code for code in requested if code not in offered)
    if ignored:
        log.info("service %s: configuration option(s) not offered, ignored: %s", service.id, ",".join(ignored))
    indicators, groups, max_cards = set(), set(), None
    for option in service.configuration:
        value = requested.get(option.code, defaults.get(option.code, option.default))
        if not _valid(option, value):
            raise InvalidRequest(f"extension/{REQUEST_KEYS[0]}/{option.code}: must be "
                                 + ("true or false" if option.type == "boolean"
                                    else f"an integer from {option.minimum} to {option.maximum}"))
        if option.type == "boolean" and value is False:
            if option.indicator:
                indicators.add(option.indicator)
            if option.rule_group:
                groups.add(option.rule_group)
        elif option.limits == "max-cards":
            max_cards = value
    return Choices(frozenset(indicators), frozenset(groups), max_cards)


def _valid(option: ConfigOption, value: Any) -> bool:
    if option.type == "boolean":
        return isinstance(value, bool)
    return (isinstance(value, int) and not isinstance(value, bool)
            and (option.minimum is None or option.minimum <= value)
            and (option.maximum is None or value <= option.maximum))


def _parse_setting(option: ConfigOption, raw: str) -> bool | int | None:
    if option.type == "boolean":
        return {"true": True, "false": False}.get(raw.lower())
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if _valid(option, value) else None
