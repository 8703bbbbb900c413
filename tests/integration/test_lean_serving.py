"""What serving imports (issue 16): the modules a process holds are memory in the master and in every worker forked
from it, so what only `spasm-cds lint` or a migration needs stays out of the serving path."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from cds_service.knowledge.lint import suggestion_problems
from tests.conftest import REPO

# create_app, then the work-up demo (a card whose suggestions propose ServiceRequests) over HTTP on loopback; prints
# the suggested resource types and which of the heavy packages the process has imported by then
SERVE_ONE_CALL = """
import json, sys, threading, urllib.request, uuid
from datetime import date
from werkzeug.serving import make_server
from cds_service import create_app
from cds_service.demo import demo_bundle, hook_request, load_demos
from cds_service.settings import Settings

app = create_app(Settings.from_env())
knowledge = app.extensions["spasm_cds"].knowledge
demo = next(d for d in load_demos().patients if d.id == "work-up")
service, body = hook_request(demo_bundle(demo, date.today()), knowledge, "patient-view", None, str(uuid.uuid4()))
server = make_server("127.0.0.1", 0, app, threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
request = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/cds-services/{service.id}",
                                 json.dumps(body).encode(), {"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as answer:
    cards = json.load(answer)["cards"]
server.shutdown()
print(json.dumps({
    "resources": sorted({a["resource"]["resourceType"] for c in cards for s in c.get("suggestions", ())
                         for a in s["actions"] if "resource" in a}),
    "imported": sorted({m for m in ("fhir", "pydantic", "alembic", "mako") if m in sys.modules}),
}))
"""


def test_a_call_that_proposes_orders_is_answered_without_the_fhir_models_or_alembic(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SPASM_CDS_DATA_DIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", "from cds_service.state import open_database; from cds_service.settings "
                    "import Settings; open_database(Settings.from_env().effective_database_url)"],
                   check=True, cwd=REPO, env=env, capture_output=True)  # a restart: the database is migrated
    out = subprocess.run([sys.executable, "-c", SERVE_ONE_CALL], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.splitlines()[-1])
    assert result == {"resources": ["ServiceRequest"], "imported": []}


def test_every_service_request_the_knowledge_can_propose_is_valid_fhir_r4(knowledge):
    labs = [c for c in knowledge.concepts.values() if c.lab is not None and c.lab.order_loinc is not None]
    assert labs  # the check below has something to check
    assert suggestion_problems(knowledge.concepts, knowledge.systems["loinc"][0]) == []


def test_a_service_request_the_fhir_model_refuses_is_named_by_file_and_field(knowledge):
    lab = next(c for c in knowledge.concepts.values() if c.lab is not None and c.lab.order_loinc is not None)
    broken = dataclasses.replace(lab, lab=dataclasses.replace(lab.lab, order_loinc=" 2947-0"))
    problems = suggestion_problems({lab.id: broken}, knowledge.systems["loinc"][0])
    assert len(problems) == 1
    assert problems[0].startswith(f"mappings/labs/{lab.id}.yaml: lab.order: the ServiceRequest it proposes is not "
                                  "valid FHIR R4: ('code', 'coding', 0, 'code')")
