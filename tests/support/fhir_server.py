"""A real FHIR R4 server (sekmet-fhir) for integration tests, run in its own virtualenv on 127.0.0.1.

ensure_sekmet() installs it once into the test cache; FhirServer starts one throwaway instance and loads bundles.
The install, settings and loading are cds_service.tools.demo_fhir's, which `spasm-cds demo-fhir` uses too.
"""

# What sekmet-fhir 0.1.1 answered when tried here (a bare patient id works in every patient= search):
# - Patient/<id>: the resource; an unknown id gives 404 with an OperationOutcome.
# - MedicationRequest?patient=<id>&status=active,on-hold: active and on-hold only (comma is OR); stopped is left out.
# - MedicationRequest?patient=<id>&_include=MedicationRequest:medication: the requests (search.mode "match") plus the
#   Medication named by medicationReference (search.mode "include"); total counts matches only. Combines with status=.
# - MedicationStatement?patient=<id> and Condition?patient=<id>: that patient's resources only.
# - Observation?patient=<id>&code=<sys>|<a>,<sys>|<b>&_sort=-date&_count=2: the newest two across both codes, with
#   total and absolute self/first/next/last links. Paging is by _offset; GET on next returns the following page (with a
#   previous link) and the last page has no next. `|` and `,` work raw or percent-encoded; a code without system works.
# - Default page size 20; _count=1000 returned all 25 of 25; _count=0 returns total with no entries.
# - An unknown search parameter is ignored, and the Bundle gains an entry with search.mode "outcome" holding an
#   OperationOutcome warning, so readers must skip that entry.
# - POST <Type>/_search with a form body gives the same result as GET.
# - A transaction answers 200 with a transaction-response whose entry[i].response.location is absolute and versioned,
#   e.g. http://127.0.0.1:P/fhir/Patient/<uuid>/_history/1; urn:uuid references are rewritten to Type/<id>.
#   With validation inbound "warn" malformed resources are stored; an unknown resourceType rolls back the whole
#   transaction (404 OperationOutcome).

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from cds_service.tools import demo_fhir
from tests.support.loopback import LoopbackProcess, free_port, http_request

__all__ = ["FhirServer", "ensure_sekmet", "free_port", "http_request"]


def ensure_sekmet(cache_dir: Path | None = None) -> Path:
    """Return the `sekmet` executable in its own cached virtualenv (the test cache), installing it on first use."""
    cache = Path(cache_dir or os.environ.get("SPASM_CDS_TEST_CACHE") or Path.home() / ".cache" / "spasm-cds-test")
    return demo_fhir.ensure_sekmet(cache)


class FhirServer(LoopbackProcess):
    """One sekmet-fhir instance with an empty database, for the duration of a `with` block."""

    def __init__(self, sekmet: Path | None = None) -> None:
        self._sekmet = sekmet
        self.port = 0
        self.base_url = ""

    def __enter__(self) -> FhirServer:
        exe = self._sekmet or ensure_sekmet()
        self._workdir = Path(tempfile.mkdtemp(prefix="spasm-cds-fhir-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        settings = demo_fhir.write_settings(self._workdir, self.port, self.base_url)
        self._start("sekmet", demo_fhir.serve_command(exe, settings, self.port), self._workdir,
                    demo_fhir.sekmet_environment(), f"{self.base_url}/metadata")
        return self

    def load_transaction(self, bundle: dict) -> dict[str, str]:
        """POST a transaction Bundle; return each entry's fullUrl mapped to its new `Type/id`.

        Raises RuntimeError with the response body on a non-2xx answer.
        """
        return demo_fhir.post_transaction(self.base_url, bundle)

    def get_json(self, path_and_query: str) -> dict:
        """GET `{base_url}/{path_and_query}` and return the JSON body; raise on a non-200 answer."""
        url = f"{self.base_url}/{path_and_query}"
        status, body = http_request("GET", url, headers={"Accept": "application/fhir+json"})
        if status != 200:
            raise RuntimeError(f"GET {path_and_query} answered HTTP {status}: {body.decode(errors='replace')[:3000]}")
        return json.loads(body)

    @staticmethod
    def patient_id(ids: dict[str, str]) -> str:
        """Return the bare id of the one Patient in a load_transaction() result."""
        (patient,) = [ref for ref in ids.values() if ref.startswith("Patient/")]
        return patient.split("/", 1)[1]
