"""Issue 9 item 9 (database side): file names are unique per owner on their NFKC-normalised,
case-folded key, enforced by the unique index on the generated `name_key` column, whose
function agrees with lorafiles.domain.rules.name_key; migration 20261202000200 renames
existing names that collide under the new key and back-fills job requests."""
from __future__ import annotations

import random
import unicodedata
import uuid
from pathlib import Path

import psycopg
import pytest

from lorafiles.db.connect import connect
from lorafiles.db.migrate import apply_migrations
from lorafiles.domain.idempotency import canonical_request
from lorafiles.domain.rules import is_default_ignorable, name_key
from lorafiles.usecases.jobs import stored_request

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "20261202000200_request_fingerprint_and_name_key.sql"
OWNER, OTHER = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
SAME = [("Straße", "STRASSE"), ("Straße", "strasse"), ("ΣΑΣ", "σας"), ("Σας", "ΣΑΣ"),
        (unicodedata.normalize("NFC", "Élan Ῥόδος"), unicodedata.normalize("NFD", "élan ῥόδος")),
        ("ﬁle", "FILE"), ("Ｅｌｅｎａ", "elena"), ("Elena\u200b v1", "elena v1"), ("Elena  v1", "elena v1"),
        ("İstanbul", "i̇stanbul"), ("Ⅻ", "xii")]


def _assigned() -> list[str]:
    return [chr(cp) for cp in range(1, 0x110000)
            if not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) != "Cn"]


def _interesting(c: str) -> bool:
    return (unicodedata.normalize("NFKC", c) != c or unicodedata.normalize("NFD", c) != c or c.casefold() != c
            or c.isspace() or is_default_ignorable(c))


def test_the_database_key_is_the_domain_rule(db):
    chars = _assigned()
    special = [c for c in chars if _interesting(c)]
    others = random.Random(9).sample([c for c in chars if not _interesting(c)], 3000)
    samples = special + others + ["".join(special[i:i + 40]) for i in range(0, len(special), 40)]
    samples += [a for pair in SAME for a in pair] + [" x ", "a\u3000\u3000b", "\u00a0y\u2003", "Ǆ", "ǅ"]
    with db.connection() as conn:
        rows = conn.execute("select x, public.lorafiles_name_key(x) as k from unnest(%s::text[]) x",
                            (samples,)).fetchall()
    wrong = [(x, r, name_key(x)) for x, r in ((row["x"], row["k"]) for row in rows) if r != name_key(x)]
    assert len(rows) == len(samples) and not wrong[:20], f"{len(wrong)} disagreements: {wrong[:20]}"


@pytest.mark.parametrize("first,second", SAME)
def test_one_name_per_owner_on_the_key(db, first, second):
    assert name_key(first) == name_key(second)
    with db.connection() as conn:
        conn.execute("insert into lora_training_files (owner_id, name, target_model) values (%s, %s, 'm')",
                     (OWNER, first))
        conn.execute("insert into lora_training_files (owner_id, name, target_model) values (%s, %s, 'm')",
                     (OTHER, second))  # another owner's namesake is fine
    with pytest.raises(psycopg.errors.UniqueViolation), db.connection() as conn:
        conn.execute("insert into lora_training_files (owner_id, name, target_model) values (%s, %s, 'm')",
                     (OWNER, second))


def test_different_names_stay_different(db):
    names = ["Strasse", "Strase", "σα", "Elena v1", "Elena v2", "Ⅻ1", "e\u0301", "ė"]
    assert len({name_key(n) for n in names}) == len(names)
    with db.connection() as conn:
        for n in names:
            conn.execute("insert into lora_training_files (owner_id, name, target_model) values (%s, %s, 'm')",
                         (OWNER, n))


def _legacy_db(empty_db_url: str) -> str:
    apply_migrations(empty_db_url, upto="20260101000300")
    return empty_db_url


def test_migration_renames_existing_collisions_and_backfills_job_requests(empty_db_url):
    url = _legacy_db(empty_db_url)
    file_ids = {}
    with connect(url) as conn:
        for i, (owner, name) in enumerate([(OWNER, "Straße"), (OWNER, "STRASSE"), (OWNER, "strasse (2)"),
                                           (OWNER, "STRASSE".lower().title() + "\u200b"), (OTHER, "strasse"),
                                           (OWNER, "ΣΑΣ"), (OWNER, "σας"), (OWNER, "σ" + "x" * 254),
                                           (OWNER, "ς" + "x" * 254)]):
            file_ids[(owner, name)] = conn.execute(
                "insert into lora_training_files (owner_id, name, target_model, created_at) "
                "values (%s, %s, 'm', now() + make_interval(secs => %s)) returning id", (owner, name, i)
            ).fetchone()["id"]
        legacy = [
            ("create", None, "Straße", "d", ["c1", "c2"]),
            ("add", file_ids[(OWNER, "Straße")], None, None, ["c3"]),
            ("regenerate", file_ids[(OWNER, "Straße")], None, None, ["c1", "c2", "c3"]),
        ]
        for n, (kind, file_id, name, description, ids) in enumerate(legacy):
            conn.execute("""insert into lora_training_jobs (owner_id, file_id, kind, status, file_name, description,
                                                            requested_ids, idempotency_key)
                            values (%s, %s, %s, 'succeeded', %s, %s, %s, %s)""",
                         (OWNER, file_id, kind, name, description, ids, f"k{n}"))
        conn.commit()

    apply_migrations(url)
    with connect(url) as conn:
        names = {r["id"]: r["name"] for r in conn.execute("select id, name from lora_training_files")}
        jobs = conn.execute("select * from lora_training_jobs order by idempotency_key").fetchall()
        # re-runnable as a whole (the runner applies it once; the Supabase CLI or a person may not)
        conn.execute(MIGRATION.read_text())
        conn.execute(MIGRATION.read_text())
        again = {r["id"]: r["name"] for r in conn.execute("select id, name from lora_training_files")}
    assert again == names
    renamed = {key: names[fid] for key, fid in file_ids.items()}
    assert renamed[(OWNER, "Straße")] == "Straße"              # the oldest keeps its name
    assert renamed[(OWNER, "STRASSE")] == "STRASSE (3)"        # "strasse (2)" was taken
    assert renamed[(OWNER, "strasse (2)")] == "strasse (2)"
    assert renamed[(OWNER, "Strasse\u200b")] == "Strasse\u200b (4)"
    assert renamed[(OTHER, "strasse")] == "strasse"            # other owner: untouched
    assert renamed[(OWNER, "ΣΑΣ")] == "ΣΑΣ" and renamed[(OWNER, "σας")] == "σας (2)"
    assert renamed[(OWNER, "σ" + "x" * 254)] == "σ" + "x" * 254
    assert renamed[(OWNER, "ς" + "x" * 254)] == "ς" + "x" * 250 + " (2)"  # still at most 255 characters
    assert len({(o, name_key(n)) for (o, _), n in renamed.items()}) == len(renamed)

    assert [j["request_fingerprint"] for j in jobs] == [None, None, None]
    for job in jobs:
        assert job["request"] == stored_request(job)
    assert jobs[0]["request"] == canonical_request(kind="create", name="Straße", description="d",
                                                   conversation_ids=["c1", "c2"])
    assert jobs[1]["request"] == canonical_request(kind="add", file_id=str(file_ids[(OWNER, "Straße")]),
                                                   conversation_ids=["c3"])


def test_name_uniqueness_holds_for_names_written_by_anyone(db):
    """The key is computed by the database (generated column): a writer that knows nothing of
    the rule cannot get around it."""
    with db.connection() as conn:
        row = conn.execute("insert into lora_training_files (owner_id, name, target_model) values (%s, %s, 'm') "
                           "returning name_key", (str(uuid.uuid4()), "Große Ｄatei")).fetchone()
    assert row["name_key"] == name_key("Große Ｄatei") == "grosse datei"
