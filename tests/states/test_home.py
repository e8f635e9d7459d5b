"""Where a state belongs (issue 15): the tenant and cloud it records, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from lib.tokens import jwt

from provisioner.errors import StateError
from provisioner.signin.claims import tenant_of_token
from provisioner.states.home import check_home, claim_home, cloud_of, settle_home
from provisioner.states.local import LocalStateStore
from provisioner.states.records import State

A = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"


def test_tenant_comes_from_the_tid_claim_and_only_from_a_guid() -> None:
    assert tenant_of_token(jwt({"tid": A.upper()})) == A
    for token in ("opaque", jwt({"tid": "not-a-guid"}), jwt({"oid": A}), "a.!!!.c", "a." * 5):
        assert tenant_of_token(token) is None


def test_clouds_by_host() -> None:
    assert cloud_of("https://graph.microsoft.com/v1.0") == "global"
    assert cloud_of("https://dod-graph.microsoft.us/v1.0") == "dod"
    assert cloud_of("http://127.0.0.1:9999/v1.0") == cloud_of("http://localhost:1/v1.0") == "local"
    assert cloud_of("https://graph.example.net/v1.0") == "graph.example.net"


def test_a_state_records_its_home_once_and_keeps_it(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "s.json")
    state = store.read()
    assert settle_home(
        state, store.location, graph_url="https://graph.microsoft.com/v1.0", tenant=A
    )
    store.write(state)
    again = LocalStateStore(tmp_path / "s.json").read()
    assert (again.tenant_id, again.cloud) == (A, "global")
    assert not claim_home(again, graph_url="https://graph.microsoft.us/v1.0", tenant=B)
    assert (again.tenant_id, again.cloud) == (A, "global")


def test_another_tenant_or_cloud_is_refused_naming_both() -> None:
    state = State(tenant_id=A, cloud="global")
    with pytest.raises(StateError) as err:
        check_home(state, "s.json", tenant=B)
    assert A in str(err.value) and B in str(err.value)
    assert "provision state unbind" in str(err.value)
    with pytest.raises(StateError, match=r"global cloud.*usgov cloud"):
        check_home(state, "s.json", graph_url="https://graph.microsoft.us/v1.0")
    check_home(state, "s.json", tenant=None, graph_url="https://graph.microsoft.com/beta")
    check_home(State(), "s.json", tenant=B, graph_url="http://127.0.0.1:1/v1.0")
