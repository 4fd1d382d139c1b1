"""Shared wiring for the benchmarks (not a benchmark itself).

Everything here is wired the way `lorafiles.cli.open_context` wires the CLI: a real
PostgreSQL (the embedded server under a throwaway LORAFILES_HOME, or a throwaway database
on the server of $DATABASE_URL), migrations applied, `Settings` with a temp local storage
root, `TrainingFileService` with the production state machine running in moto
(`LocalStateMachine`, default retry settings) and `use_service` so the real handlers use it.
"""
from __future__ import annotations

import contextlib
import os
import resource
import shutil
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import psycopg
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = (REPO_ROOT / ".." / "shared" / "fixtures").resolve()
OWNER = "00000000-0000-4000-8000-00000000a11c"  # the CLI's local user
MB = 1_000_000


# ------------------------------------------------------------------ throwaway environment
@contextlib.contextmanager
def throwaway_home(prefix: str = "lorafiles-bench-", keep: bool = False) -> Iterator[Path]:
    """A temp LORAFILES_HOME (embedded PostgreSQL data + local storage), removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    old = os.environ.get("LORAFILES_HOME")
    os.environ["LORAFILES_HOME"] = str(home)
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("LORAFILES_HOME", None)
        else:
            os.environ["LORAFILES_HOME"] = old
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)


@contextlib.contextmanager
def throwaway_database(home: Path) -> Iterator[str]:
    """URL of an empty database used by this run only, migrations applied.

    With $DATABASE_URL: a fresh `lorafiles_bench_<hex>` database on that server, dropped at
    the end. Without: the embedded PostgreSQL with PGDATA under `home` (stopped at the end).
    """
    from lorafiles.db.connect import embedded_server, url_with_database
    from lorafiles.db.migrate import apply_migrations

    external = os.environ.get("DATABASE_URL")
    if external:
        name = f"lorafiles_bench_{uuid.uuid4().hex[:12]}"
        with _admin(external) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            url = url_with_database(external, name)
            apply_migrations(url)
            yield url
        finally:
            with _admin(external) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return
    from lorafiles.db.connect import ensure_database

    with embedded_server(home / "pgdata", cleanup_mode="stop") as server_url:
        url = ensure_database(server_url, "lorafiles")
        apply_migrations(url)
        yield url


@contextlib.contextmanager
def wired_service(url: str, home: Path, *, pipeline: bool = True, **settings_kw: Any) -> Iterator[tuple[Any, Any]]:
    """(service, machine) wired like the CLI; the handlers of this process use this service."""
    from lorafiles.config import Settings
    from lorafiles.db.connect import Database
    from lorafiles.runtime import use_service
    from lorafiles.service import TrainingFileService

    settings = Settings(home=home, storage="local", storage_root=home / "storage", **settings_kw)
    db = Database(url, reuse=True)
    with contextlib.ExitStack() as stack:
        machine = None
        if pipeline:
            from lorafiles.pipeline.local import LocalStateMachine

            machine = stack.enter_context(LocalStateMachine())  # default retry settings
        service = TrainingFileService(db, settings.store(), settings, machine)
        use_service(service)
        try:
            yield service, machine
        finally:
            use_service(None)
            db.close()


# ------------------------------------------------------------------ measuring
class HandlerTimer:
    """Wall time of every in-process Lambda invocation, per function (wraps the machine's dispatch)."""

    def __init__(self, machine: Any) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        # process CPU (user, sys) consumed during each call: exact for a call that runs alone
        # (generate-jsonl), shared with whatever overlaps otherwise (the Map's concurrent batches)
        self.cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._lock = threading.Lock()
        inner = machine._dispatch

        def timed(function_name: str, body: Any, response_headers: dict) -> bytes:
            name = function_name.rsplit(":", 1)[-1].removeprefix("lorafiles-local-")
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            try:
                return inner(function_name, body, response_headers)
            finally:
                t1 = time.perf_counter()
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                with self._lock:
                    self.calls[name].append(t1 - t0)
                    self.spans[name].append((t0, t1))
                    self.cpu[name].append((r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime))

        machine._dispatch = timed

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.spans.clear()
            self.cpu.clear()

    def summary(self) -> list[tuple[str, int, float, float]]:
        """(function, invocations, summed handler seconds, wall seconds from first start to last end)."""
        out = []
        for name, spans in self.spans.items():
            out.append((name, len(spans), sum(self.calls[name]), max(e for _, e in spans) - min(s for s, _ in spans)))
        order = ["validate-selection", "create-file", "append-batch", "generate-jsonl", "compensate-job"]
        return sorted(out, key=lambda r: order.index(r[0]) if r[0] in order else 99)


def state_durations(machine: Any, execution_arn: str) -> list[tuple[str, float]]:
    """Top-level state durations from moto's execution history (StateEntered -> StateExited)."""
    events = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = machine.client.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    entered: dict[str, Any] = {}
    result: list[tuple[str, float]] = []
    depth = 0
    for ev in events:
        kind = ev["type"]
        if kind.startswith("Map") and kind.endswith("IterationStarted"):
            depth += 1
        elif kind.startswith("Map") and kind.endswith(("IterationSucceeded", "IterationFailed", "IterationAborted")):
            depth -= 1
        if depth:
            continue
        if kind.endswith("StateEntered"):
            entered[ev["stateEnteredEventDetails"]["name"]] = ev["timestamp"]
        elif kind.endswith("StateExited"):
            name = ev["stateExitedEventDetails"]["name"]
            if name in entered:
                result.append((name, (ev["timestamp"] - entered.pop(name)).total_seconds()))
    return result


class RssSampler:
    """Samples this process's VmRSS from /proc/self/status every `interval` seconds in a thread."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.baseline = self.peak = current_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.samples: list[tuple[float, int]] = []  # (perf_counter, rss bytes)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = current_rss()
            self.samples.append((time.perf_counter(), rss))
            if rss > self.peak:
                self.peak = rss
            self._stop.wait(self.interval)

    def peak_between(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else 0

    def __enter__(self) -> "RssSampler":
        self.baseline = self.peak = current_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())


def current_rss() -> int:
    """Resident set size of this process in bytes (VmRSS)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def vm_hwm() -> int:
    """Peak resident set size of this process so far in bytes (VmHWM, kernel-tracked)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_vm_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mb(n: float) -> str:
    return f"{n / MB:,.1f} MB"


def table(rows: list[list[Any]], header: list[str], align: str | None = None) -> str:
    """Plain-text table; `align` has one letter per column, l or r (default: first left, rest right)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align or "l" + "r" * (len(header) - 1)
    fmt = lambda r: "  ".join((c.ljust(w) if a == "l" else c.rjust(w))  # noqa: E731
                              for c, w, a in zip(r, widths, align)).rstrip()
    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


def run_job(machine: Any, start: Any, timeout: float = 7200) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """Start a job with `start()` (returns the job row) and wait for its execution to finish.

    Returns (job row, elapsed seconds, execution description). The elapsed time ends at the
    execution's stopDate as recorded by moto's interpreter (millisecond precision), so the
    polling interval (50 ms, LocalStateMachine's default) neither adds to it nor competes much
    for the GIL (each describe_execution costs ~1 ms of CPU in moto).
    """
    t0 = time.time()
    job = start()
    desc = machine.wait(job["execution_arn"], timeout=timeout)
    stop = desc.get("stopDate")
    elapsed = stop.timestamp() - t0 if stop is not None else time.time() - t0
    return job, elapsed, desc


# ------------------------------------------------------------------ simulated latency
class LatencyStore:
    """An ObjectStore wrapper that sleeps `latency` seconds before every request (GET, PUT, HEAD,
    DELETE, LIST): a model of S3's per-request round trip over a local store. Counts requests."""

    def __init__(self, inner: Any, latency: float = 0.020) -> None:
        self.inner, self.latency = inner, latency
        self.requests: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def _wait(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] += 1
        time.sleep(self.latency)

    def get(self, bucket: str, key: str) -> bytes:
        self._wait("get")
        return self.inner.get(bucket, key)

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        self._wait("put")
        return self.inner.put(bucket, key, data, content_type)

    def put_file(self, bucket: str, key: str, path: Any, content_type: str | None = None) -> None:
        self._wait("put")
        return self.inner.put_file(bucket, key, path, content_type)

    @contextlib.contextmanager
    def open_stream(self, bucket: str, key: str):  # noqa: ANN201
        self._wait("get")
        with self.inner.open_stream(bucket, key) as s:
            yield s

    def exists(self, bucket: str, key: str) -> bool:
        self._wait("head")
        return self.inner.exists(bucket, key)

    def delete(self, bucket: str, key: str) -> None:
        self._wait("delete")
        return self.inner.delete(bucket, key)

    def list(self, bucket: str, prefix: str) -> list[str]:
        self._wait("list")
        return self.inner.list(bucket, prefix)

    def __getattr__(self, name: str) -> Any:  # signed_url, sweep_temp, flush...
        return getattr(self.inner, name)
