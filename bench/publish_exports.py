"""Benchmark: publishing a 5,000-member file with and without the trainer exports.

    .venv/bin/python bench/publish_exports.py [--size 5000] [--base REV]

"Without" is the last commit before the exports existed (`--base`, default 97339ac: the same
code with only the v4 training.json + training.jsonl), checked out into a temporary git
worktree with its own venv-free run (it uses this venv; the code it runs is the worktree's).
"With" is this tree. Both run `bench/add_scaling.py --sizes N --repeat 1` (seed a file of N
members through the service's own steps, then one measured add of 80 through the production
state machine, then one more add traced with tracemalloc) one after the other in this run, and
this prints their figures side by side: the add's generate (the publish of N+80 members), its
CPU, peak RSS, tracemalloc peak and bytes written, plus the seeding's staging time (where the
exports are rendered, once per member). Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(tree: Path, size: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "shared"), "LORAFILES_ASL": str(tree / "infra" / "state-machine.asl.json"),
           "LORAFILES_FUNCTIONS_DIR": str(tree / "functions")}
    proc = subprocess.run([sys.executable, str(tree / "bench" / "add_scaling.py"), "--sizes", str(size), "--repeat", "1",
                           "--keep"], env=env, capture_output=True, text=True, cwd=tree)
    sys.stdout.write(proc.stdout[-4000:])
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"add_scaling failed in {tree}")
    home = Path(re.findall(r"kept (\S+)", proc.stdout)[-1])
    measured = json.loads((home / "measure-0.json").read_text())
    seeded = json.loads((home / "seed-0.json").read_text())
    subprocess.run(["rm", "-rf", str(home)], check=False)
    return {**measured, **{k: v for k, v in seeded.items() if k.startswith("seed_")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--base", default="97339ac", help="the commit without exports")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorafiles-bench-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base], check=True,
                       capture_output=True)
        try:
            print(f"== without exports ({args.base})", flush=True)
            without = run(base, args.size)
            print("\n== with exports (this tree)", flush=True)
            with_ = run(ROOT, args.size)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    mb = lambda b: f"{(b or 0) / 1e6:,.1f} MB"  # noqa: E731
    rows = [("members published", f"{without['conversations_after']:,}", f"{with_['conversations_after']:,}"),
            ("publish (generate) wall", f"{without['generate_s']:.2f} s", f"{with_['generate_s']:.2f} s"),
            ("publish CPU user/kernel", f"{without['generate_user_s']:.2f}/{without['generate_sys_s']:.2f} s",
             f"{with_['generate_user_s']:.2f}/{with_['generate_sys_s']:.2f} s"),
            ("bytes written by the publish", mb(without.get("written_all", without["written"])), mb(with_.get("written_all"))),
            ("peak RSS in generate (process)", mb(without["rss_peak_generate"]), mb(with_["rss_peak_generate"])),
            ("tracemalloc peak of generate", mb(without.get("tracemalloc_generate_peak")),
             mb(with_.get("tracemalloc_generate_peak"))),
            ("add of 80 (whole execution)", f"{without['elapsed_s']:.2f} s", f"{with_['elapsed_s']:.2f} s"),
            (f"seeding: stage {args.size:,} members", f"{without['seed_stage_s']:.1f} s", f"{with_['seed_stage_s']:.1f} s")]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':<{width}}  {'without exports':>16}  {'with exports':>16}  ratio")
    for label, a, b in rows:
        try:
            ratio = f"x{float(b.split()[0].replace(',', '').split('/')[0]) / float(a.split()[0].replace(',', '').split('/')[0]):.2f}"
        except (ValueError, ZeroDivisionError):
            ratio = ""
        print(f"{label:<{width}}  {a:>16}  {b:>16}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
