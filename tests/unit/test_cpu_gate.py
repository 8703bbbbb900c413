"""The CPU gate (cds_service/cpu_gate.py): one hook call of a worker computes at a time, a call waiting on FHIR lets
the others in, a failed call gives its turn back, and the gate is off with one thread or SPASM_CDS_CPU_GATE=off."""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import date

import pytest

from cds_service import create_app
from cds_service.cpu_gate import CpuGate
from cds_service.demo import demo_bundle, hook_request, load_demos
from cds_service.settings import Settings
from tests.conftest import REPO

WAIT_S = 5.0


def in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_second_call_waits_for_the_first_to_leave():
    gate, inside, order = CpuGate(enabled=True), threading.Event(), []
    gate.enter()

    def second():
        gate.enter()
        order.append("second in")
        inside.set()
        gate.leave()

    thread = in_thread(second)
    assert not inside.wait(0.3)  # still the first call's turn
    order.append("first out")
    gate.leave()
    assert inside.wait(WAIT_S)
    thread.join(WAIT_S)
    assert order == ["first out", "second in"]


def test_a_call_that_waits_lets_another_compute_and_takes_its_turn_back():
    gate, second_done = CpuGate(enabled=True), threading.Event()
    gate.enter()

    def second():
        gate.enter()
        second_done.set()
        time.sleep(0.2)  # the first call may not resume until this one leaves
        gate.leave()

    with gate.released():
        thread = in_thread(second)
        assert second_done.wait(WAIT_S)
    assert gate.holding()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    gate.leave()
    assert not gate.holding()


def test_entering_twice_and_leaving_unheld_are_harmless():
    gate = CpuGate(enabled=True)
    gate.leave()  # nothing held: no error
    gate.enter()
    gate.enter()  # already this thread's turn: no deadlock
    gate.leave()
    other = []
    in_thread(lambda: (gate.enter(), other.append(1), gate.leave())).join(WAIT_S)
    assert other == [1]


def test_a_disabled_gate_never_waits():
    gate = CpuGate(enabled=False)
    gate.enter()
    done = []
    in_thread(lambda: (gate.enter(), done.append(1), gate.leave())).join(WAIT_S)
    assert done == [1] and not gate.holding()
    with gate.released():
        pass


@pytest.mark.parametrize(("threads", "setting", "enabled"), [(4, "on", True), (4, "off", False), (1, "on", False)])
def test_the_app_gates_hook_calls_only_with_threads_and_the_setting_on(knowledge, tmp_path, threads, setting,
                                                                         enabled):
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, threads=threads, cpu_gate=setting), knowledge)
    assert app.extensions["spasm_cds"].cpu_gate.enabled is enabled


def test_a_hook_call_waits_for_the_turn_and_a_failed_call_gives_it_back(knowledge, tmp_path):
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, threads=4, deduplicate="off"), knowledge)
    gate = app.extensions["spasm_cds"].cpu_gate
    demo = load_demos().patients[0]
    call = hook_request(demo_bundle(demo, date.today()), knowledge, "patient-view", None, str(uuid.uuid4()))[1]
    url = "/cds-services/spasm-cramps-patient-view"
    answers: list[int] = []

    def post(payload: bytes) -> None:
        answers.append(app.test_client().post(url, data=payload, content_type="application/json").status_code)

    gate.enter()  # this thread computes: a hook call must wait
    thread = in_thread(lambda: post(json.dumps(call).encode()))
    thread.join(0.5)
    assert thread.is_alive() and answers == []
    gate.leave()
    thread.join(WAIT_S)
    assert answers == [200]
    # calls that fail (bad JSON 400, an unknown service 404) give the turn back: the next call in another thread
    # is answered
    for payload in (b"{not json", b"[]"):
        in_thread(lambda p=payload: post(p)).join(WAIT_S)
    in_thread(lambda: answers.append(app.test_client().post(
        "/cds-services/no-such-service", json=call).status_code)).join(WAIT_S)
    thread = in_thread(lambda: post(json.dumps(call).encode()))
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert answers == [200, 400, 400, 404, 200]
