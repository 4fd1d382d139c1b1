"""Issue 9 item 9 over HTTP: one name per owner on the NFKC case-folded key, hostile names
refused, and download headers that carry no CR/LF or bidi characters in either form."""
from __future__ import annotations

import unicodedata
from urllib.parse import unquote

import pytest

from apikit import OWNER_A, Api, http_request

from lorafiles.domain.rules import name_key

BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

from test_isolation_and_errors import make_file


def _blocked(reply, code: str) -> dict:
    assert reply.status == 422, reply.body
    assert reply.error["code"] == "selection_blocked", reply.error
    [problem] = [p for p in reply.error["details"] if p["code"] == code]
    assert problem["field"] == "name"
    return problem


@pytest.mark.parametrize("taken,again", [
    ("Straße", "STRASSE"),
    ("ΣΑΣ", "σας"),
    (unicodedata.normalize("NFC", "Élan Ῥόδος"), unicodedata.normalize("NFD", "élan ῥόδος")),
    ("Elena v1", "ＥＬＥＮＡ\u200b v1"),
])
def test_a_name_the_owner_already_has_is_taken_on_its_key(api: Api, taken: str, again: str) -> None:
    alice = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 2)
    make_file(api, alice, ids[:1], name=taken)
    for route, body in (("/training-files", {"name": again, "conversation_ids": ids[1:]}),
                        ("/selections/validate", {"name": again, "conversation_ids": ids[1:]})):
        reply = alice.post(route, body)
        if route == "/selections/validate":
            assert reply.status == 200 and not reply.json()["ok"]
            assert [p["code"] for p in reply.json()["problems"]] == ["name_taken"]
        else:
            _blocked(reply, "name_taken")
    assert api.sql("select count(*) as n from lora_training_files")[0]["n"] == 1


def test_two_spellings_of_one_name_at_once_give_one_file(api: Api) -> None:
    alice = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 2)
    a = alice.post("/training-files", {"name": "Große Datei", "conversation_ids": ids[:1]})
    b = alice.post("/training-files", {"name": "GROSSE DATEI", "conversation_ids": ids[1:]})
    outcomes = []
    for reply in (a, b):
        if reply.status == 202:
            outcomes.append(api.wait_job(alice, reply.json()["job_id"]))
        else:
            _blocked(reply, "name_taken")
    assert sum(job["status"] == "succeeded" for job in outcomes) == 1
    failed = [job for job in outcomes if job["status"] == "failed"]
    assert all(job["error"]["code"] in ("name_taken", "selection_blocked") for job in failed)
    rows = api.sql("select name from lora_training_files")
    assert len(rows) == 1 and name_key(rows[0]["name"]) == "grosse datei"


@pytest.mark.parametrize("name", ["Q3\r\nSet-Cookie: a=b", "tab\tname", "evil\u202egnp.json", "iso\u2066x\u2069",
                                  "\u200b\u200b", "\u2800", "\u00ad\u034f"])
def test_hostile_names_are_refused(api: Api, name: str) -> None:
    alice = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 1)
    problem = _blocked(alice.post("/training-files", {"name": name, "conversation_ids": ids}), "invalid_name")
    assert problem["message"]
    assert api.sql("select count(*) as n from lora_training_jobs")[0]["n"] == 0


def test_download_headers_of_an_old_hostile_name_are_clean(api: Api) -> None:
    """A file named before the rule existed (written straight into the database)."""
    alice = api.client(OWNER_A)
    job = make_file(api, alice, api.seed(OWNER_A, 1), name="placeholder")
    hostile = "Préstamos\r\nSet-Cookie: a=b \u202egnp\u2066.exe\u2069"
    api.sql("update lora_training_files set name = %s where id = %s", (hostile, job["file_id"]))
    for fmt in ("json", "jsonl"):
        link = alice.get(f"/training-files/{job['file_id']}/download", query={"format": fmt}).json()
        reply = http_request(link["url"])
        assert reply.status == 200
        header = reply.headers["content-disposition"]
        plain = header.partition('filename="')[2].partition('"')[0]
        star = unquote(header.partition("filename*=UTF-8''")[2])
        assert star, header
        for text in (link["filename"], header, plain, star):
            assert not any(c in text for c in "\r\n") and not any(c in BIDI_CONTROLS for c in text), repr(text)
        assert "set-cookie" not in reply.headers
        assert star == link["filename"] and star.startswith("Préstamos") and star.endswith(f".{fmt}")
