"""The training-files page in a real browser: Debian's headless Chromium driven by Selenium through
/usr/bin/chromedriver, against the local server (the `api` fixture: 127.0.0.1, random port, the
embedded PostgreSQL, moto Step Functions). It goes through the page, never the API:

filter by a batch → select 12 (one ineligible) and see its reason → deselect it, create (a double
click) → watch the progress reach the end → download the JSONL and compare it byte for byte with
`lorafiles download` → add 5 more (v2) → v1 still downloads unchanged. Plus CORS as the browser
enforces it, and screenshots of every view at 1280 and 390 px, written to $LORAFILES_SCREENSHOTS
(default: a pytest temporary directory), which the test prints.

Skipped, with the reason, when chromium, chromedriver or the selenium package are missing
(.ci/run installs `chromium chromium-driver` with apt, and selenium comes with the test extra).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from apikit import OWNER_A, Api

CHROMIUM = Path(os.environ.get("LORAFILES_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LORAFILES_CHROMEDRIVER", "/usr/bin/chromedriver"))
BATCH_A = "5b0d1c3e-0000-4000-8000-0000000000a1"
BATCH_B = "5b0d1c3e-0000-4000-8000-0000000000b2"
FILE_NAME = "Browser test file"
WIDTHS = (1280, 390)

if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
    pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install chromium chromium-driver (.ci/run does)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="the selenium package (test extra) is not installed")
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


class Browser:
    """A headless Chromium on the page, with waits, clicks the way a user makes them, screenshots."""

    def __init__(self, base_url: str, shots: Path, downloads: Path) -> None:
        self.base_url, self.shots, self.downloads = base_url, shots, downloads
        self.profile = Path(tempfile.mkdtemp(prefix="lorafiles-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--window-size=1280,900"):
            options.add_argument(flag)
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.width = 1280
        self.shot_names: list[str] = []
        self.console_expected: list[str] = ["status of 4"]  # 4xx answers the page shows (e.g. 422)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # ------------------------------------------------------------------ waiting and finding
    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 90) -> Any:
        def check(_driver: Any) -> Any:
            try:
                return predicate()
            except (StaleElementReferenceException, WebDriverException):
                return None  # the page re-rendered under us: look again
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(check, message=f"waiting for {what}")

    def el(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def els(self, css: str) -> list[Any]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def by_id(self, element_id: str) -> Any:
        return self.driver.find_element(By.ID, element_id)

    def text(self, css: str) -> str:
        return self.el(css).text

    def click(self, element: Any) -> None:
        """Scroll it to the middle of the screen (clear of sticky bars), then click it."""
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def pick(self, conversation_id: str) -> None:
        """Tick (or untick) a conversation's check box; the rows re-render after each change."""
        for _ in range(10):
            try:
                self.click(self.by_id(f"pick-{conversation_id}"))
                return
            except StaleElementReferenceException:
                time.sleep(0.05)
        raise AssertionError(f"could not click the check box of {conversation_id}")

    def click_id(self, element_id: str) -> None:
        self.wait(lambda: self.by_id(element_id).is_enabled() and self.by_id(element_id), f"#{element_id} enabled")
        self.click(self.by_id(element_id))

    def go(self, hash_route: str) -> None:
        self.driver.get(f"{self.base_url}/{hash_route}")
        self.wait(lambda: self.driver.execute_script("return document.body.dataset.ready === 'true'"), "page ready")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    # ------------------------------------------------------------------ screens
    def resize(self, width: int, height: int = 900) -> None:
        self.width = width
        self.driver.set_window_size(width, height)
        self.wait(lambda: self.js("return window.innerWidth") <= width, f"window {width} wide")

    def no_horizontal_overflow(self) -> None:
        scroll, inner = self.js("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert scroll <= inner, f"the page is {scroll}px wide in a {inner}px viewport at {self.width}px"

    def unlabelled(self) -> list[str]:
        """Controls a screen reader could not name (every one needs a label or an aria-label)."""
        return self.js("""
            const bad = [];
            for (const el of document.querySelectorAll("input, select, textarea")) {
              if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
                bad.push(el.id || el.outerHTML.slice(0, 80));
            }
            for (const el of document.querySelectorAll("button, a[href], [role=region]")) {
              if (!el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby") && !el.textContent.trim())
                bad.push(el.id || el.outerHTML.slice(0, 80));
            }
            return bad;""")

    def shot(self, view: str) -> Path:
        """A full-page screenshot of the current view at the current width (checked first: nothing
        wider than the window, every control labelled)."""
        self.no_horizontal_overflow()
        assert not self.unlabelled(), self.unlabelled()
        width = self.width
        height = min(12000, self.js("return document.documentElement.scrollHeight") + 40)
        self.driver.set_window_size(width, max(900, height))
        time.sleep(0.3)  # the charts redraw for the new size
        path = self.shots / f"{view}-{width}.png"
        self.driver.save_screenshot(str(path))
        self.shot_names.append(path.name)
        self.driver.set_window_size(width, 900)
        return path

    def download(self, element_id: str) -> bytes:
        """Click a download button; the bytes of the file the browser saved (each in its own folder)."""
        folder = self.downloads / uuid.uuid4().hex
        folder.mkdir()
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
        self.click_id(element_id)

        def saved() -> Path | None:
            files = [p for p in folder.iterdir() if not p.name.endswith(".crdownload")]
            return files[0] if files and not any(folder.glob("*.crdownload")) else None

        return self.wait(saved, f"the download of #{element_id}", timeout=60).read_bytes()


@pytest.fixture
def browser(api: Api, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]):
    shots = Path(os.environ.get("LORAFILES_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():
        print(f"\nscreenshots of the page: {shots}", flush=True)
    b = Browser(api.base_url, shots, tmp_path_factory.mktemp("downloads"))
    try:
        yield b
    finally:
        severe = [e for e in b.driver.get_log("browser") if e["level"] == "SEVERE"]
        b.quit()
        with capsys.disabled():
            print(f"screenshots written to {shots}: {', '.join(b.shot_names)}", flush=True)
        # anything on the console but what the test expects is a bug of the page
        unexpected = [e for e in severe if not any(x in e["message"] for x in b.console_expected)]
        assert not unexpected, unexpected


def cli_download(api: Api, db_url: str, file_id: str, version: int, out: Path) -> bytes:
    """`lorafiles download` against the same database and storage as the server."""
    env = {**os.environ, "DATABASE_URL": db_url, "LORAFILES_HOME": str(api.tmp / "cli-home"),
           "LORAFILES_STORAGE": "local", "LORAFILES_STORAGE_ROOT": str(api.service.settings.local_storage_root)}
    cli = Path(sys.executable).with_name("lorafiles")
    done = subprocess.run([str(cli), "download", file_id, "--format", "jsonl", "--version", str(version), "--out",
                           str(out), "--owner", OWNER_A], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def progress_of(b: Browser) -> tuple[int, int, str]:
    bar = b.by_id("job-progress")
    return int(bar.get_attribute("data-done") or 0), int(bar.get_attribute("data-total") or 0), \
        b.by_id("job").get_attribute("data-status") or ""


def watch_job(b: Browser, gate: Any, held_total: int) -> list[tuple[int, int, str]]:
    """Progress while the gate holds the last batch, then after it lets go: until the end."""
    seen: list[tuple[int, int, str]] = []
    b.wait(lambda: progress_of(b)[1] == held_total and progress_of(b)[0] >= 1, "batches done while one is held")
    seen.append(progress_of(b))
    b.shot("job-progress")
    assert seen[-1][2] in ("queued", "running") and seen[-1][0] < held_total, seen
    gate.set()
    b.wait(lambda: b.els("#job-done"), "the job's result")
    seen.append(progress_of(b))
    assert seen[-1] == (held_total, held_total, "succeeded"), seen
    bar = b.by_id("job-progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == str(held_total)
    return seen


def test_the_page_end_to_end_in_headless_chromium(api: Api, db_url: str, gate: Any, browser: Browser,
                                                   tmp_path: Path) -> None:
    b = browser
    a_ids = api.seed(OWNER_A, count=17, batch_id=BATCH_A)
    api.seed(OWNER_A, count=4, batch_id=BATCH_B)
    ineligible, first, more = a_ids[0], a_ids[1:12], a_ids[12:17]
    api.sql("update conversations set enrichment_status = 'enrichment_in_progress' where conversation_id = %s", (ineligible,))
    api.server.dev_token = api.token(OWNER_A)  # what `lorafiles serve` offers the page in local mode

    # ---------------------------------------------------------------- sign in with the local dev token
    b.go("#/conversations")
    b.wait(lambda: b.by_id("use-dev-token").is_displayed(), "the dev token offer")
    b.click_id("use-dev-token")
    b.wait(lambda: "21 conversations match" in b.text("#conv-summary"), "all 21 conversations")

    # ---------------------------------------------------------------- filter by a batch (server side)
    batch = b.by_id("filter-batch_id")
    batch.send_keys(BATCH_A)
    b.click_id("apply-filters")
    b.wait(lambda: "17 conversations match" in b.text("#conv-summary"), "the batch filter")
    rows = b.els("#conv-rows tr")
    assert {r.get_attribute("data-conversation-id") for r in rows} == set(a_ids)
    assert {r.find_element(By.CSS_SELECTOR, "[data-label=Batch] code").get_attribute("title") for r in rows} == {BATCH_A}
    why = b.by_id(f"why-{ineligible}").text
    assert why.startswith("No:") and "enrichment_in_progress" in why  # the row says it cannot be selected, and why

    # ---------------------------------------------------------------- select 12, one ineligible: its reason
    for cid in [ineligible, *first]:
        b.pick(cid)
    b.wait(lambda: b.text("#selection-count").startswith("12 of 80 selected"), "the counter at 12")
    b.by_id("file-name").send_keys(FILE_NAME)
    reason = b.wait(lambda: b.el(f'#blocking-reasons li[data-conversation-id="{ineligible}"]'), "the blocking reason")
    assert reason.get_attribute("data-code") == "not_eligible" and "enrichment_status is 'enrichment_in_progress'" in reason.text
    assert len(b.els("#blocking-reasons li")) == 1
    assert "Blocked: not_eligible" in b.by_id(f"why-{ineligible}").text
    assert not b.by_id("submit-job").is_enabled()
    b.by_id("file-name").send_keys(Keys.ENTER)  # nothing is submitted while a reason stands
    time.sleep(1)
    assert api.sql("select count(*) as n from lora_training_jobs")[0]["n"] == 0
    b.shot("conversations-blocked")

    # ---------------------------------------------------------------- deselect it, create (double click)
    b.pick(ineligible)
    b.wait(lambda: "Ready: 11 conversations can go into a new training file" in b.text("#validation"), "ready")
    assert b.text("#selection-count").startswith("11 of 80 selected")
    gate.batches = {5}  # 11 conversations in batches of 2: hold the last of 6, to see the bar move
    submit = b.wait(lambda: b.by_id("submit-job").is_enabled() and b.by_id("submit-job"), "the create button")
    b.js("arguments[0].scrollIntoView({block: 'center'})", submit)
    ActionChains(b.driver).double_click(submit).perform()
    b.wait(lambda: b.by_id("job").is_displayed(), "the job panel")
    seen = watch_job(b, gate, held_total=6)
    jobs = api.sql("select id, kind, file_id from lora_training_jobs")
    assert len(jobs) == 1 and jobs[0]["kind"] == "create", jobs  # a double click started one job
    file_id = str(jobs[0]["file_id"])
    assert f"Published version 1 of {FILE_NAME}" in b.text("#job-done")
    b.wait(lambda: b.text("#selection-count").startswith("0 of 80"), "the selection cleared")
    b.shot("conversations-created")

    # ---------------------------------------------------------------- the file; download JSONL v1
    b.click(b.by_id("job-file-link"))
    b.wait(lambda: b.els('#versions-table tr[data-version="1"]'), "the versions table")
    b.wait(lambda: b.els("#token-histogram svg"), "the token histogram")
    v1_browser = b.download("download-v1-jsonl")
    v1_cli = cli_download(api, db_url, file_id, 1, tmp_path / "v1.jsonl")
    assert v1_browser == v1_cli and v1_browser.count(b"\n") >= 11
    check_pictures(b, members=11)
    b.shot("file-detail")
    b.click(b.el('a[href="#/files"]'))
    b.wait(lambda: b.els(f'#files-table tr[data-file-id="{file_id}"]'), "the files list")
    b.shot("files")

    # ---------------------------------------------------------------- at 390 px: add 5 more → v2
    b.resize(390)
    b.click_id("nav-conversations")
    b.wait(lambda: "17 conversations match" in b.text("#conv-summary"), "the batch filter kept")
    assert Select(b.by_id("target")).first_selected_option.get_attribute("value") == file_id  # the new file
    for cid in more:  # with the keyboard this time: focus the box, press space; the focus stays on it
        box = b.by_id(f"pick-{cid}")
        b.js("arguments[0].scrollIntoView({block: 'center'})", box)
        box.send_keys(Keys.SPACE)
        b.wait(lambda: b.js("return document.activeElement.id") == f"pick-{cid}" and b.by_id(f"pick-{cid}").is_selected(),
               "the ticked box, still focused after the rows re-rendered")
    b.wait(lambda: "Ready: 5 conversations can go into" in b.text("#validation"), "ready to add 5")
    assert b.text("#submit-job") == f"Add to “{FILE_NAME}”"
    b.shot("conversations")
    gate.clear()
    gate.batches = {2}  # 5 conversations: batches 0..2, hold the last
    b.click_id("submit-job")
    seen += watch_job(b, gate, held_total=3)
    assert "Published version 2" in b.text("#job-done")
    assert api.sql("select count(*) as n from lora_training_jobs where kind = 'add'")[0]["n"] == 1

    # ---------------------------------------------------------------- v2, and v1 unchanged
    b.click(b.by_id("job-file-link"))
    b.wait(lambda: b.els('#versions-table tr[data-version="2"]'), "version 2")
    b.wait(lambda: b.els("#token-histogram svg"), "the token histogram of v2")
    assert "(current)" in b.el('#versions-table tr[data-version="2"]').text
    assert b.download("download-v1-jsonl") == v1_cli  # byte for byte what it was
    v2 = b.download("download-v2-jsonl")
    assert v2 == cli_download(api, db_url, file_id, 2, tmp_path / "v2.jsonl") and v2 != v1_cli
    check_pictures(b, members=16)
    b.shot("file-detail")
    b.click(b.el('a[href="#/files"]'))
    b.wait(lambda: b.els(f'#files-table tr[data-file-id="{file_id}"]'), "the files list")
    b.shot("files")

    # ---------------------------------------------------------------- every view at both widths
    b.resize(1280)
    b.go("#/conversations")
    b.wait(lambda: "conversations match" in b.text("#conv-summary"), "conversations")
    b.shot("conversations")
    views = ("conversations", "job-progress", "files", "file-detail")
    assert set(b.shot_names) == {f"{v}-{w}.png" for v in views for w in WIDTHS} | {
        "conversations-blocked-1280.png", "conversations-created-1280.png"}


def check_pictures(b: Browser, members: int) -> None:
    """The report is pictures: the histogram against max_length, exclusions, coverage."""
    hist = b.el("#token-histogram svg")
    assert int(hist.get_attribute("data-examples")) >= 1 and hist.get_attribute("data-max-length") == "2048"
    assert b.els("#token-histogram svg line.limit") and b.els("#token-histogram svg rect.bar")
    assert b.els("#exclusions-chart svg rect")
    heat = b.els("#coverage-heatmap svg[data-topic='*'] rect.cell")
    counts = [t.get_attribute("textContent") for t in b.els("#coverage-heatmap svg[data-topic='*'] text.cell-text")]
    assert heat and sum(int(n) for n in counts if n.isdigit()) == members
    assert b.els("#exports-table tbody tr")
    # every format has its download button
    formats = {e.get_attribute("data-format") for e in b.els('#versions-table tr[data-version="1"] button.download')}
    assert formats == {"json", "jsonl", "openai", "trl", "axolotl", "axolotl_config", "sharegpt", "dataset_info",
                       "report", "manifest"}


def test_cors_as_the_browser_enforces_it(api: Api, browser: Browser) -> None:
    """The page's origin may call the API cross-origin; another origin's page may not (preflight refused)."""
    b = browser
    b.console_expected += ["CORS policy", "net::ERR_FAILED"]  # the refusal below
    token = api.token(OWNER_A)
    port = api.base_url.rsplit(":", 1)[1]
    script = """
        const [url, token, done] = arguments;
        fetch(url, {headers: {Authorization: 'Bearer ' + token}})
          .then((r) => done('status ' + r.status), (e) => done('refused ' + e.name));
    """
    # documents of the server without the page's CSP (connect-src 'self' would stop the fetch first)
    b.driver.get(f"{api.base_url}/openapi.json")  # origin http://127.0.0.1:<port>: the allowed one
    allowed = b.driver.execute_async_script(script, f"http://localhost:{port}/training-files", token)
    assert allowed == "status 200"  # cross-origin (another host name), preflighted, allowed
    b.driver.get(f"http://localhost:{port}/openapi.json")  # the same server under another origin: not allowed
    refused = b.driver.execute_async_script(script, f"http://127.0.0.1:{port}/training-files", token)
    assert refused == "refused TypeError"


def test_the_selection_stops_at_80(api: Api, browser: Browser) -> None:
    b = browser
    api.seed(OWNER_A, count=83)
    api.server.dev_token = api.token(OWNER_A)
    b.go("#/conversations")
    b.click_id("use-dev-token")
    b.wait(lambda: "83 conversations match" in b.text("#conv-summary"), "83 conversations")
    Select(b.by_id("limit")).select_by_value("100")
    b.click_id("apply-filters")
    b.wait(lambda: len(b.els("#conv-rows tr")) == 83, "one page of 83")
    b.click(b.by_id("select-page"))  # every eligible conversation of the page: as many as allowed
    b.wait(lambda: b.text("#selection-count").startswith("80 of 80 selected (the limit"), "the counter at the limit")
    boxes = "return [...document.querySelectorAll('input.pick-box')].map((e) => [e.checked, e.disabled])"
    free = [disabled for checked, disabled in b.js(boxes) if not checked]
    assert free == [True, True, True]  # the other three cannot be ticked
    b.js("document.querySelector('input.pick-box:not(:checked)').click()")  # not even by a script's click
    assert b.text("#selection-count").startswith("80 of 80")
    b.by_id("file-name").send_keys("Eighty")
    b.wait(lambda: "Ready: 80 conversations" in b.text("#validation"), "80 validated")
    b.pick(b.js("return document.querySelector('input.pick-box:checked').dataset.conversationId"))  # one out
    b.wait(lambda: b.text("#selection-count").startswith("79 of 80"), "79")
    assert not any(disabled for _, disabled in b.js(boxes))  # the others can be ticked again


def test_a_failed_job_shows_its_reasons_per_conversation(api: Api, browser: Browser) -> None:
    """The selection passes validation, then one enriched file is gone from storage: the job fails,
    the page shows the error and the reason of that conversation, and the file does not exist."""
    from lorafiles.usecases.common import INPUT_BUCKET

    b = browser
    ids = api.seed(OWNER_A, count=3)
    path = api.sql("select enriched_file_path from conversations where conversation_id = %s", (ids[1],))[0]
    api.service.store.delete(INPUT_BUCKET, path["enriched_file_path"])
    api.server.dev_token = api.token(OWNER_A)
    b.go("#/conversations")
    b.click_id("use-dev-token")
    b.wait(lambda: "3 conversations match" in b.text("#conv-summary"), "3 conversations")
    b.click(b.by_id("select-page"))
    b.by_id("file-name").send_keys("Doomed")
    b.wait(lambda: "Ready: 3 conversations" in b.text("#validation"), "validated")
    b.click_id("submit-job")
    failed = b.wait(lambda: b.el("#job-failed"), "the failed job")
    assert b.by_id("job").get_attribute("data-status") == "failed"
    assert "conversations_invalid" in failed.text and ids[1] in failed.text
    assert "left as it was" in failed.text
    assert api.sql("select count(*) as n from lora_training_files")[0]["n"] == 0
    assert b.text("#selection-count").startswith("3 of 80")  # kept, to fix and retry
