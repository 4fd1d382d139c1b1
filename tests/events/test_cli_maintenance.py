"""`lorafiles regenerate FILE_ID | --stale` and `lorafiles reap`: the real console script on the
test database, running the regeneration through the same state machine as create/add."""
from __future__ import annotations

import json
from pathlib import Path

from eventkit import run_cli

from lorafiles.config import LOCAL_OWNER, Settings
from lorafiles.db.connect import Database
from lorafiles.domain.samples import write_sample_dir
from lorafiles.maintenance import Maintenance
from lorafiles.service import INPUT_BUCKET, TrainingFileService


def test_regenerate_and_reap_commands(db_url: str, tmp_path: Path):
    home = tmp_path / "home"

    def cli(*args: str) -> tuple[int, object, str]:
        code, out, err = run_cli([*args, "--json"], home=home, database_url=db_url)
        assert "Traceback" not in err, err
        return code, (json.loads(out) if out.strip() else None), err

    write_sample_dir(tmp_path / "in", 3, seed=55)
    assert cli("import", str(tmp_path / "in"))[0] == 0
    code, created, _ = cli("create", "Regenerated", "--all-imported")
    assert code == 0 and created["version"] == 1
    file_id = created["id"]

    # the enrichment service rewrites one enriched file; the event marks the file stale
    db = Database(db_url)
    settings = Settings(home=home, storage="local")
    service = TrainingFileService(db, settings.store(), settings)
    cid = service.reading.show_file(LOCAL_OWNER, file_id)["members"][1]["conversation_id"]
    key = f"{LOCAL_OWNER}/{cid}/enriched.json"
    doc = json.loads(service.store.get(INPUT_BUCKET, key))
    pair = next(p for p in doc["training_pairs"] if isinstance(p.get("target_response"), str))
    pair["target_response"] += " CLI-REGENERATED"
    service.store.put(INPUT_BUCKET, key, json.dumps(doc, indent=2).encode())
    assert Maintenance(service).enrichment_completed(cid)["stale_files"] == [file_id]

    code, outcomes, _ = cli("regenerate", "--stale")
    assert code == 0
    assert outcomes == [{"file_id": file_id, "outcome": "started", "reason": None, "job_id": outcomes[0]["job_id"],
                         "status": "succeeded", "version": 2}]
    v2 = service.reading.artifact(LOCAL_OWNER, file_id, "json")
    assert b"CLI-REGENERATED" in service.store.get(v2["bucket"], v2["key"])
    assert cli("regenerate", "--stale")[1] == []  # nothing stale any more

    # an explicit rebuild of one file (every member re-rendered)
    code, rebuilt, _ = cli("regenerate", file_id, "--all-members")
    assert code == 0 and rebuilt["version"] == 3 and rebuilt["conversations"] == 3
    code, _, err = cli("regenerate")
    assert code == 1 and "FILE_ID or --stale" in err

    # a job left behind (its execution never started): reap frees the file
    with db.connection() as conn:
        conn.execute("""insert into lora_training_jobs (owner_id, file_id, kind, requested_ids, idempotency_key)
                        values (%s, %s, 'regenerate', %s, 'left-behind')""", (LOCAL_OWNER, file_id, [cid]))
    assert cli("reap")[1] == []  # younger than the default timeout
    code, reaped, _ = cli("reap", "--older-than", "0")
    assert code == 0 and len(reaped) == 1 and reaped[0]["file_id"] == file_id
    assert cli("regenerate", file_id)[1]["version"] == 4
    db.close()
