"""The OpenAI-compatible endpoint, driven over real HTTP on 127.0.0.1 by the project's own client, by the
official ``openai`` package, and by malformed requests."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from workbench.chem import Molecule
from workbench.serve import MODEL_ID, create_server

KEY = "test-key-123"


@pytest.fixture(scope="module")
def server():
    srv = create_server(port=0, api_key=KEY, max_n=4)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _post(server, body: bytes, headers: dict | None = None, path: str = "/v1/chat/completions"):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request(
        "POST",
        path,
        body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **(headers or {})},
    )
    response = conn.getresponse()
    payload = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, payload


def test_binds_localhost_by_default(server):
    assert server.server_address[0] == "127.0.0.1"


def test_official_openai_client(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url, api_key=KEY, timeout=120, max_retries=0)
    assert [m.id for m in client.models.list().data] == [MODEL_ID]
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": '{"properties": {"mw": [200, 350]}, "require": ["C(=O)N"]}'}],
        n=2,
        seed=1,
    )
    assert len(reply.choices) == 2
    for choice in reply.choices:
        text = choice.message.content
        smiles = text.split("<smiles>")[1].split("</smiles>")[0]
        assert Molecule(smiles).smiles  # constrained decoding: always a valid molecule


def test_openai_reasoner_through_the_proposer(server, monkeypatch):
    from reasoning.backends.openai import OpenAIReasoner
    from reasoning.proposer import Proposer
    from workbench.chem import DesignSpec

    monkeypatch.setenv("WB_TEST_KEY", KEY)
    reasoner = OpenAIReasoner(server.url, model=MODEL_ID, api_key_env="WB_TEST_KEY", timeout_s=120)
    assert KEY not in repr(reasoner)
    result = Proposer(reasoner, rounds=1).propose(DesignSpec(properties={"heavy_atoms": [8, 30]}), n=2, seed=0)
    assert result and all(p.molecule is not None for p in result)


def test_malformed_requests_get_400_with_a_message(server):
    cases = [
        b"{not json",
        b"[]",
        json.dumps({"messages": []}).encode(),
        json.dumps({"messages": [{"role": "system", "content": "hi"}]}).encode(),
        json.dumps({"messages": [{"role": "user", "content": "make me something nice"}]}).encode(),
        json.dumps({"messages": [{"role": "user", "content": '{"properties": {"mw": [400, 100]}}'}]}).encode(),
        json.dumps({"messages": [{"role": "user", "content": '{"require": ["C"]}'}], "n": 0}).encode(),
        json.dumps({"messages": [{"role": "user", "content": '{"require": ["C"]}'}], "temperature": "hot"}).encode(),
    ]
    for body in cases:
        status, payload = _post(server, body)
        assert status == 400, (body, payload)
        assert payload["error"]["message"]
    assert _post(server, b"{}", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert _post(server, b"x" * (70 * 1024))[0] == 413
    assert _post(server, b"{}", path="/v1/embeddings")[0] == 404
    # the server is still up and answering
    ok = {"messages": [{"role": "user", "content": '{"require": ["c1ccccc1"]}'}], "n": 99}
    status, payload = _post(server, json.dumps(ok).encode())
    assert status == 200 and len(payload["choices"]) == server.max_n  # n is capped, not refused


def _answers(server, content: str, seed: int) -> list[Molecule]:
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": content}], "n": 4, "seed": seed}
    status, payload = _post(server, json.dumps(body).encode())
    assert status == 200
    texts = [choice["message"]["content"] for choice in payload["choices"]]
    return [Molecule(text.split("<smiles>")[1].split("</smiles>")[0]) for text in texts]


@pytest.mark.parametrize(
    ("content", "max_atoms"),
    [
        (json.dumps({"properties": {"heavy_atoms": [10, 16]}, "scaffold": "c1ccncc1"}), 16),  # a YAML/JSON spec
        ("<spec> heavy_atoms 8 to 12 ; scaffold c1ccncc1 </spec>", 12),  # the model's own spec text
    ],
)
def test_a_spec_bounds_the_decoding(server, content, max_atoms):
    for mol in _answers(server, content, seed=3):
        assert mol.graph.GetNumHeavyAtoms() <= max_atoms
        assert mol.graph.HasSubstructMatch(Molecule("c1ccncc1").graph)


def test_unreadable_spec_text_is_a_400_naming_the_item(server):
    content = "<spec> mw heavy ; require C(=O)N </spec>"
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": content}]}
    status, payload = _post(server, json.dumps(body).encode())
    assert status == 400
    assert "mw heavy" in payload["error"]["message"]
