"""The shape of cds_service/: flask stays at the HTTP edge, clinical facts stay in data, every module says what it
is."""
from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

from cds_service.knowledge.rxnorm_table import read_rows
from tests.conftest import REPO

PACKAGE = REPO / "cds_service"
MODULES = sorted(PACKAGE.rglob("*.py"))
IDS = [p.relative_to(PACKAGE).as_posix() for p in MODULES]
FLASK_ALLOWED = {"__init__.py", "errors.py"}
WEB_PACKAGES = {"flask", "werkzeug"}
INGREDIENTS = sorted({name for row in read_rows(REPO / "mappings" / "rxnorm" / "product-ingredient.tsv")
                      for name in row.ingredients})
BELOW_EDGE = [p for p in MODULES if p.relative_to(PACKAGE).parts[0] != "api"
              and p.relative_to(PACKAGE).as_posix() not in FLASK_ALLOWED]
DRUG_NAME = re.compile(r"\b(" + "|".join(re.escape(n) for n in INGREDIENTS) + r")\b", re.IGNORECASE)
LOINC_LIKE = re.compile(r"\b\d{3,6}-\d\b")
ICD10_LITERAL = re.compile(r"^[A-Z]\d{2}(\.[0-9A-Z]{1,4})?$")
ICD10_IN_TEXT = re.compile(r"\b[A-Z]\d{2}\.[0-9A-Z]{1,4}\b")


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def strings_and_comments(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal (docstrings included), every f-string part and every comment."""
    out: list[tuple[int, str]] = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type == tokenize.STRING:
            try:
                value = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):  # an f-string before Python 3.12: scan its source text
                value = tok.string
            out.append((tok.start[0], value if isinstance(value, str) else repr(value)))
        elif tok.type == tokenize.COMMENT or tok.type == getattr(tokenize, "FSTRING_MIDDLE", None):
            out.append((tok.start[0], tok.string))
    return out


def clinical_facts_in(path: Path) -> list[str]:
    """Drug names and code-like strings in the module's string literals and comments."""
    found = []
    for line, text in strings_and_comments(path):
        found += [f"line {line}: drug name {m.group(0)!r}" for m in DRUG_NAME.finditer(text)]
        found += [f"line {line}: LOINC-like code {m.group(0)!r}" for m in LOINC_LIKE.finditer(text)]
        if ICD10_LITERAL.match(text.strip()) or ICD10_IN_TEXT.search(text):
            found.append(f"line {line}: ICD-10-like code in {text.strip()[:60]!r}")
    return found


@pytest.mark.parametrize("path", BELOW_EDGE, ids=[p.relative_to(PACKAGE).as_posix() for p in BELOW_EDGE])
def test_nothing_below_the_http_edge_imports_flask(path: Path):
    assert imported_packages(path) & WEB_PACKAGES == set()


def test_the_http_edge_is_where_flask_is_imported():
    assert "flask" in imported_packages(PACKAGE / "api" / "services.py")


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_module_names_no_drug_and_no_code(path: Path):
    assert clinical_facts_in(path) == [], "clinical facts belong in cards/ or mappings/"


def test_scan_finds_drug_names_and_codes_in_comments_strings_and_f_strings(tmp_path):
    module = tmp_path / "sample.py"
    module.write_text(f'''"""Docstring naming {INGREDIENTS[0].upper()}."""
# a comment with code 00000-0
x = "U99"
y = f"{{x}} and U99.9"
z = "2026-11-23 is a date, v1.2 a version"
''', encoding="utf-8")
    assert [f.split(":")[0] for f in clinical_facts_in(module)] == ["line 1", "line 2", "line 3", "line 4"]


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_module_opens_with_a_docstring(path: Path):
    assert (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip()


def test_no_grab_bag_modules():
    grab_bags = [p.relative_to(REPO).as_posix() for p in MODULES
                 if p.stem in ("utils", "helpers", "common") or p.parent.name in ("utils", "helpers", "common")]
    assert grab_bags == []


# --- import direction (issue 16) --------------------------------------------------------------------------------

def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULE_OF = {module_name(p): p for p in MODULES}


def _resolved(module: str, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".") if MODULE_OF[module].name == "__init__.py" else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def project_imports(module: str) -> set[str]:
    """The project modules a module imports anywhere in its body (function-level imports included), leaving out
    imports under `if TYPE_CHECKING:` (they never run)."""
    tree = ast.parse(MODULE_OF[module].read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            target = _resolved(module, node) or ""
            found.update(f"{target}.{a.name}" if f"{target}.{a.name}" in MODULE_OF else target for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in MODULE_OF and m != module}


def import_cycles() -> list[list[str]]:
    """Every set of modules that import each other round in a circle (Tarjan's strongly connected components)."""
    graph = {m: project_imports(m) for m in MODULE_OF}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_round_in_a_circle():
    assert import_cycles() == []


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    real = project_imports
    monkeypatch.setattr(sys.modules[__name__], "project_imports",
                        lambda m: real(m) | ({"cds_service.pipeline"} if m == "cds_service.settings" else set()))
    assert any("cds_service.settings" in c and "cds_service.pipeline" in c for c in import_cycles())


# the bottom layer: the shapes knowledge takes, the closed vocabularies, the schemas, settings and errors
LOWER = ("cds_service.knowledge.model", "cds_service.knowledge.templates", "cds_service.knowledge.identity",
         "cds_service.knowledge.rxnorm_table", "cds_service.terminology", "cds_service.settings", "cds_service.errors",
         "cds_service.vocabulary", "cds_service.schemas")
UPPER = ("cds_service.gather", "cds_service.evaluate", "cds_service.render", "cds_service.screen",
         "cds_service.pipeline", "cds_service.api", "cds_service.state", "cds_service.app_state", "cds_service.cli",
         "cds_service.knowledge.loader", "cds_service.knowledge.lint", "cds_service.knowledge.docs")
# what runs per call; the knowledge readers (loader, linter) run at start and in the CLI, above the criterion registry
REQUEST_PATH = ("cds_service.api", "cds_service.hook_request", "cds_service.feedback_request", "cds_service.auth",
                "cds_service.pipeline", "cds_service.screen", "cds_service.render", "cds_service.evaluate",
                "cds_service.gather", "cds_service.memory", "cds_service.state")
READERS = ("cds_service.knowledge.loader", "cds_service.knowledge.lint")


@pytest.mark.parametrize("module", sorted(m for m in MODULE_OF if m.startswith(LOWER)))
def test_knowledge_settings_and_errors_never_import_the_request_path(module):
    """The knowledge model, vocabularies, schemas, settings and errors are the bottom layer: the request path and
    the knowledge readers import them, never the other way round."""
    assert sorted(m for m in project_imports(module) if m.startswith(UPPER)) == []


def under(module: str, packages: tuple[str, ...]) -> bool:
    """Whether the module is one of the packages or modules, or inside one."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def reached_from(module: str) -> set[str]:
    """Every project module the module imports, directly or through others."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        for m in project_imports(pending.pop()) - seen:
            seen.add(m)
            pending.append(m)
    return seen


@pytest.mark.parametrize("module", sorted(m for m in MODULE_OF if under(m, REQUEST_PATH)))
def test_the_request_path_never_reaches_the_loader_or_the_linter(module):
    """Schema validators live with the schemas (cds_service.schemas), the criterion registry in evaluate/: nothing a
    call runs needs the code that reads and checks the knowledge files."""
    assert sorted(m for m in reached_from(module) if under(m, READERS)) == []


def test_reached_from_follows_imports_through_other_modules():
    assert "cds_service.knowledge.lint" in reached_from("cds_service.cli")  # cli -> loader -> lint
    assert "cds_service.vocabulary" in reached_from("cds_service.evaluate.engine")  # engine -> criteria -> vocabulary


# what a serving process runs: the app factory and everything a call goes through
SERVING = ("cds_service", "cds_service.app_state", "cds_service.gunicorn_conf", *REQUEST_PATH)


@pytest.mark.parametrize("module", sorted(m for m in MODULE_OF if m in SERVING or under(m, REQUEST_PATH)))
def test_the_service_never_reaches_the_build_time_tools(module):
    """cds_service.tools (the RxNorm table build, the demo FHIR server and its installer, the settings table of the
    README) is for the command line and developers: nothing a serving process imports leads there."""
    assert sorted(m for m in reached_from(module) if under(m, ("cds_service.tools",))) == []


# --- the population report stays off the serving path (issue 15) -------------------------------------------------

ANALYTICS = {"pyarrow", "dask", "distributed", "matplotlib"}  # the `analytics` extra: not in the service's image


def third_party_imports(module: str) -> set[str]:
    """The top-level names of the absolute imports anywhere in a module."""
    tree = ast.parse(MODULE_OF[module].read_text(encoding="utf-8"))
    found = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return found | {n.module.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}


def served_modules() -> set[str]:
    """Every project module the service can load: the app factory, the HTTP edge and gunicorn's settings, and all
    they import, directly or not."""
    todo = ["cds_service", "cds_service.gunicorn_conf", *(m for m in MODULE_OF if m.startswith("cds_service.api"))]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += project_imports(module)
    return seen


def test_the_serving_path_never_loads_the_population_report_or_its_libraries():
    served = served_modules()
    assert "cds_service.pipeline" in served and "cds_service.api.services" in served  # the walk does find the path
    assert sorted(m for m in served if m.startswith(("cds_service.population", "cds_service.evaluate_command"))) == []
    assert sorted((m, sorted(third_party_imports(m) & ANALYTICS)) for m in served
                  if third_party_imports(m) & ANALYTICS) == []


def test_only_the_population_package_imports_the_analytics_libraries():
    importers = {m for m in MODULE_OF if third_party_imports(m) & ANALYTICS}
    assert importers and all(m.startswith("cds_service.population.") for m in importers)
