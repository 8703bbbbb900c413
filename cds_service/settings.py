"""Service settings: a frozen dataclass read from SPASM_CDS_* environment variables, with embedded defaults."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "SPASM_CDS_"
LOCAL_FHIR_ALLOWED_URLS = "http://127.0.0.1:*,http://localhost:*,http://[::1]:*"
_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent
MIN_ADMIN_TOKEN_CHARS = 16


def _default_knowledge_dir() -> Path:
    """The cards/ and mappings/ beside the package in a checkout, else the working directory."""
    if (_CHECKOUT_ROOT / "cards").is_dir():
        return _CHECKOUT_ROOT
    return Path.cwd()


# the settings that are switches or choices, and the values each accepts (after trimming and lower-casing)
_CHOICES: dict[str, tuple[str, ...]] = {
    "auth": ("on", "off"), "deduplicate": ("on", "off"), "store_patient_ids": ("on", "off"),
    "cpu_gate": ("on", "off"), "try_it": ("", "on", "off"), "proxy": ("none", "nginx"),
    "smart_launcher": ("", "on", "off")}

@dataclass(frozen=True)
class Settings:
    """Everything a deployment can tune; each field maps to SPASM_CDS_<FIELD NAME IN UPPER CASE>."""

    knowledge_dir: Path = field(default_factory=_default_knowledge_dir, metadata={
        "help": "Folder holding cards/ and mappings/ (default: the bundled knowledge)."})
    data_dir: Path = field(default_factory=lambda: Path("var"), metadata={
        "help": "Folder for local state, such as the default SQLite database."})
    database_url: str = field(default="", metadata={
        "help": "SQLAlchemy URL; empty means SQLite at <data_dir>/spasm-cds.sqlite3."})
    public_url: str = field(default="", metadata={
        "help": "This service's base URL as EHRs reach it, e.g. `https://cds.example.org`: a JWT's `aud` must be "
                "this plus the path called, and card links use it. Required with `SPASM_CDS_AUTH=on` (the service "
                "refuses to start without it); empty with authentication off: links are taken from each request."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address `spasm-cds serve` binds."})
    port: int = field(default=8080, metadata={"help": "Port `spasm-cds serve` binds."})
    workers: int = field(default=2, metadata={"help": "gunicorn worker processes."})
    threads: int = field(default=4, metadata={
        "help": "Request threads per worker. Keep it above `fhir_max_calls`: the threads left over answer calls that "
                "need no FHIR while others wait on a slow FHIR server. Threads of one worker contend for Python's "
                "GIL when all compute at once; `cpu_gate` makes them take turns."})
    cpu_gate: str = field(default="on", metadata={
        "help": "`on`: the hook calls of one worker do their CPU work one at a time and overlap only their waits "
                "on FHIR and the database, which keeps the CPU per call of several threads at that of one "
                "(docs/performance.md, 'CPU gate'). `off`: threads compute at once and contend for the GIL. "
                "Has no effect with one thread."})
    proxy: str = field(default="none", metadata={
        "help": "`nginx`: `spasm-cds serve` runs Debian's nginx in front of gunicorn (gunicorn then listens on a "
                "private unix socket), so that clients sending slowly cannot tie up the workers; the Docker image "
                "sets it. `none`: gunicorn listens itself (local trials, or behind your own buffering proxy)."})
    proxy_client_timeout_s: float = field(default=10.0, metadata={
        "help": "With the nginx proxy: how long a client may take to send a request's head, and its body, and to "
                "read the answer, before the connection is closed."})
    proxy_max_connections: int = field(default=1024, metadata={
        "help": "With the nginx proxy: the most client connections it holds at once."})
    fhir_connect_timeout_s: float = field(default=2.0, metadata={
        "help": "Connect timeout for each call to the EHR's FHIR server."})
    fhir_read_timeout_s: float = field(default=4.0, metadata={
        "help": "Read timeout for each call to the EHR's FHIR server."})
    deadline_s: float = field(default=4.0, metadata={
        "help": "Time budget of one hook call's FHIR fetches; what is not back by then is treated as unknown "
                "(CDS Hooks clients such as Da Vinci CRD expect an answer within 5 s)."})
    fhir_max_pages: int = field(default=5, metadata={
        "help": "Most pages followed through Bundle `next` links for one prefetch key."})
    fhir_max_parallel: int = field(default=8, metadata={
        "help": "Most FHIR queries in flight at once for one hook call (each call has threads of its own for "
                "them, so one call's stalled fetches never delay another's)."})
    fhir_max_calls: int = field(default=3, metadata={
        "help": "Most hook calls of one worker fetching from FHIR at once; a call past it waits for a slot for a "
                "quarter of `deadline_s`, then treats the data it would fetch as unknown (412 if it is required), "
                "so calls waiting on a slow FHIR server cannot hold every request thread. Keep it below `threads`."})
    fhir_max_answer_bytes: int = field(default=8_388_608, metadata={
        "help": "Largest FHIR answer (one page) read; the read stops past it and that data is unknown."})
    fhir_max_call_bytes: int = field(default=16_777_216, metadata={
        "help": "Most bytes read from FHIR for one hook call, all queries and pages together; past it the data "
                "still being read is unknown."})
    max_body_bytes: int = field(default=1_048_576, metadata={
        "help": "Largest request body accepted; larger bodies get 413."})
    log_level: str = field(default="INFO", metadata={"help": "Python log level."})
    auth: str = field(default="off", metadata={
        "help": "`on`: every /cds-services call must carry a JWT from a trusted issuer; `off` (local trials only) "
                "trusts any caller and logs a warning at start."})
    trusted_issuers: str = field(default="", metadata={
        "help": "YAML or JSON file naming each trusted JWT issuer with its JWKS file or its allowed `jku` URLs."})
    jwt_leeway_s: int = field(default=30, metadata={
        "help": "Clock skew allowed when checking a JWT's exp, iat and nbf."})
    jwt_max_lifetime_s: int = field(default=3600, metadata={
        "help": "A JWT whose exp is further ahead than this is refused (it bounds how long a jti is remembered)."})
    jwks_cache_ttl_s: float = field(default=300.0, metadata={
        "help": "How long a fetched or read JWKS is used before it is fetched again."})
    jwks_min_refetch_s: float = field(default=10.0, metadata={
        "help": "Shortest time between two fetches of one JWKS for an unknown `kid`."})
    jwks_timeout_s: float = field(default=3.0, metadata={
        "help": "Connect and read timeout for fetching a JWKS from an allowed `jku`."})
    cors_origins: str = field(default="*", metadata={
        "help": "Browser origins allowed by CORS, comma-separated; `*` allows any (production: list the EHR's)."})
    fhir_allowed_urls: str = field(default="", metadata={
        "help": "Base URLs a request's fhirServer must lie under, comma-separated; `host:*` allows any port but "
                "this service's own on loopback, `none` allows no server. Other servers are never contacted. Empty: "
                "loopback (`http://127.0.0.1:*,http://localhost:*,http://[::1]:*`) while SPASM_CDS_AUTH is off "
                "(local trials, the Sandbox walkthrough), `none` when it is on."})
    max_prefetch_resources: int = field(default=5000, metadata={
        "help": "Most resources a request's prefetch may hold; more gets 413."})
    hook_lock_wait_s: float = field(default=0.2, metadata={
        "help": "Longest a hook call waits for SQLite's write lock when it records the JWT id and the cards issued; "
                "past it the JWT id is kept in process and the cards are not recorded (logged and counted), so a "
                "writer holding the lock cannot stall hook calls. Feedback still waits up to 10 s (it must be kept)."})
    jti_memory_max: int = field(default=100_000, metadata={
        "help": "Most JWT ids one worker remembers in process while the database cannot take them (an outage, or "
                "the write lock busy); they are written to the database when it is back. When full, calls get 503 "
                "with Retry-After until the database is back or the ids expire."})
    database_timeout_s: float = field(default=3.0, metadata={
        "help": "PostgreSQL connect and statement timeout, so a slow or unreachable database cannot hold up a hook "
                "call (SQLite waits up to 10 s for a write lock)."})
    patient_key_secret: str = field(default="", metadata={
        "help": "Secret of the HMAC that turns patient ids into the keys stored with issued cards and snoozes; "
                "empty: a random secret created in the database on first start (replicas sharing a database share "
                "it). Changing it forgets every snooze and de-duplication."})
    store_patient_ids: str = field(default="off", metadata={
        "help": "`on`: also store each issued card's raw patient id (for audits that need it); `off`: only the "
                "keyed hash is stored."})
    deduplicate: str = field(default="on", metadata={
        "help": "`on`: a card already shown is not repeated within its window (`repeat_windows` in "
                "cards/services.yaml), and order-sign does not repeat order-select's cards; `off`: every call "
                "shows every card (snoozes and 'not relevant' still apply)."})
    card_retention_days: int = field(default=90, metadata={
        "help": "Issued-card records (which link feedback to rules and patients) and lapsed suppressions are "
                "deleted after this many days; feedback itself is kept."})
    configuration_defaults: str = field(default="", metadata={
        "help": "Site defaults for the configuration options advertised in discovery, e.g. "
                "`info-cards=false,max-cards=5`; a request's own choices win."})
    try_it: str = field(default="", metadata={
        "help": "`on`: serve the try-it page at / (synthetic demo patients or a pasted Bundle, cards shown as an EHR "
                "shows them, feedback stored like an EHR's); `off`: / and /try-it answer 404; empty: on unless "
                "SPASM_CDS_AUTH=on. The page runs hook calls and takes feedback without a JWT, so keep it off in "
                "production (the Docker image sets `off`)."})
    smart_launcher: str = field(default="", metadata={
        "help": "`on`: serve the development SMART launcher under /smart-launcher (docs/smart-app.md): it registers "
                "launches, authorizes without a login and fronts `smart_fhir_url` with access tokens, so the "
                "timeline app offered from cards runs against an open FHIR server; `off`: it answers 404; empty: on "
                "while the try-it page is. Development only: in a hospital the EHR launches the app."})
    smart_fhir_url: str = field(default="http://localhost:8090/fhir", metadata={
        "help": "The open FHIR server the development SMART launcher fronts (the default is `spasm-cds "
                "demo-fhir`'s); only a loopback URL is accepted, the service refuses to start otherwise."})
    smart_client_id: str = field(default="spasm-cds-timeline", metadata={
        "help": "The OAuth client id of the timeline app (register the app under it with the EHR)."})

    admin_token: str = field(default="", metadata={
        "help": "Bearer token of the feedback report page at /admin/feedback (`Authorization: Bearer <token>`); "
                "empty: the page is off (404). At least 16 characters; use a long random value (e.g. "
                "`openssl rand -hex 32`). The page shows rules and counts, never patient data."})

    def __post_init__(self) -> None:
        """Every switch is checked once, here, and kept in one spelling (trimmed, lower case): a bad value is one
        ValueError line naming the variable, at start, never a surprise on some later call."""
        for name, allowed in _CHOICES.items():
            raw = getattr(self, name)
            value = raw.strip().lower() if isinstance(raw, str) else raw
            if value not in allowed:
                wanted = " or ".join(repr(a) for a in allowed if a) + (" (or empty)" if "" in allowed else "")
                raise ValueError(f"{PREFIX}{name.upper()}: {raw!r} is not {wanted}")
            object.__setattr__(self, name, value)
        if self.admin_token and len(self.admin_token) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(f"{PREFIX}ADMIN_TOKEN: at least {MIN_ADMIN_TOKEN_CHARS} characters, or empty (page off)")

    @property
    def auth_on(self) -> bool:
        return self.auth == "on"

    @property
    def deduplicate_on(self) -> bool:
        return self.deduplicate == "on"

    @property
    def store_patient_ids_on(self) -> bool:
        return self.store_patient_ids == "on"

    @property
    def cpu_gate_on(self) -> bool:
        """The CPU gate applies: switched on and more than one thread per worker."""
        return self.cpu_gate == "on" and self.threads > 1

    @property
    def try_it_on(self) -> bool:
        """Whether the try-it page is served: as set, else unless authentication is on."""
        return self.try_it == "on" if self.try_it else not self.auth_on

    @property
    def smart_launcher_on(self) -> bool:
        """Whether the development SMART launcher is served: as set, else while the try-it page is."""
        return self.smart_launcher == "on" if self.smart_launcher else self.try_it_on

    @property
    def effective_fhir_allowed_urls(self) -> str:
        """The FHIR allow-list as set, else loopback for local trials (auth off) and nothing with auth on."""
        if self.fhir_allowed_urls.strip():
            return self.fhir_allowed_urls
        return "none" if self.auth_on else LOCAL_FHIR_ALLOWED_URLS

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the SQLite file under data_dir."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'spasm-cds.sqlite3').resolve()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from SPASM_CDS_* variables; explicit overrides win. Raises ValueError on a bad value."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}  # field name -> value of that field's type (_coerce checks it)
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _coerce(f: dataclasses.Field, raw: str) -> object:
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ValueError(f"{PREFIX}{f.name.upper()}: {raw!r} is not a valid {kind}") from exc
