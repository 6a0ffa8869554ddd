"""The Dagster UI, seen through a real browser, on an account imported through the real pipeline.

A small simulated account is imported by `wahaflow sync`'s code path into a Dagster instance kept in
Postgres (deploy/dagster.yaml, on a database of its own); then `dagster-webserver -w workspace.yaml`
serves that instance and headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
Selenium through /usr/bin/chromedriver: nothing is downloaded) opens the asset graph and the
partitions of `messages`. Screenshots go to test-output/ui/.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from wahaflow.defs.partitions import chat_chunks

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHUNK_ASSETS = ("chats", "messages", "sessions", "contacts", "rejects")
# Chromium on a closed network: no background connections (they are refused, many at a time).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1600,1300",
)
LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"

pytestmark = pytest.mark.slow


def require_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"Chromium not installed ({', '.join(missing)} missing): apt-get install chromium chromium-driver"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


@contextmanager
def webserver(log: Path) -> Iterator[str]:
    """`dagster-webserver -w workspace.yaml` on a free port, with this process's environment
    (DAGSTER_HOME and the wahaflow settings); yields its base URL once the code location is loaded."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("dagster-webserver")),
        "-w",
        str(REPO_ROOT / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def location_loaded() -> bool:
            if process.poll() is not None:
                output = log.read_text(errors="replace")
                raise AssertionError(f"dagster-webserver exited with {process.returncode}:\n{output}")
            try:
                reply = httpx.post(f"{url}/graphql", json={"query": LOCATION_QUERY}, timeout=5)
                entries = reply.json()["data"]["workspaceOrError"]["locationEntries"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                return False
            return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

        wait_for(location_loaded, 60, "dagster-webserver to load the code location", log)
        yield url
    finally:
        # The webserver and the code server it spawned share the session started above.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def chromium(profile_dir: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def graph_nodes(driver) -> dict[str, str]:
    """The asset graph's nodes as rendered: each node's text by asset name."""
    nodes: dict[str, str] = {}
    for element in driver.find_elements(By.CSS_SELECTOR, "[class*='AssetNode_assetNodeContainer']"):
        text = element.text.strip()
        if text:
            nodes[text.split()[0]] = text
    return nodes


def graph_problems(nodes: dict[str, str], partitions: int) -> list[str]:
    """What the graph does not (yet) show of a complete import of `partitions` chunks."""
    problems = [f"no node for {name}" for name in CHUNK_ASSETS if name not in nodes]
    problems += [f"unexpected node {name}" for name in nodes if name not in CHUNK_ASSETS]
    wanted = {"chats": ["Materialized"]}
    for name in CHUNK_ASSETS[1:]:
        wanted[name] = [f"{partitions} partitions", "100% filled"]
    for name in ("messages", "sessions"):  # their blocking checks ran and passed
        wanted[name].append("2 / 2 Passed")
    for name, texts in wanted.items():
        text = nodes.get(name, "")
        problems += [f"{name} does not show {t!r}" for t in texts if name in nodes and t not in text]
    return problems


def wait_for_text(driver, texts: list[str], timeout: float, what: str) -> str:
    """Wait until every one of `texts` is in the rendered page; the page text."""
    seen = ""

    def shown() -> bool:
        nonlocal seen
        seen = page_text(driver)
        return all(t in seen for t in texts)

    try:
        wait_for(shown, timeout, what)
    except AssertionError:
        missing = [t for t in texts if t not in seen]
        raise AssertionError(f"{what}: {missing} not shown; the page shows:\n{seen[:3000]}") from None
    return seen


def test_ui_shows_asset_graph_and_materialized_partitions(
    sync_env_factory, deployed_dagster_home: Path, tmp_path: Path
) -> None:
    require_chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # Import through the real pipeline, into the instance the webserver will show.
    env = sync_env_factory(chats=30, messages=240, chunk_size=10)
    instance = dg.DagsterInstance.from_config(str(deployed_dagster_home))
    try:
        report = dataclasses.replace(env, instance=instance).sync()
        assert report.ok, report.errors
        keys = instance.get_dynamic_partitions(chat_chunks.name)
    finally:
        instance.dispose()
    assert keys and keys[0] == "default-00000"
    assert sorted(report.chunks_run) == sorted(keys)

    with webserver(tmp_path / "webserver.log") as url, chromium(tmp_path / "chromium-profile") as driver:
        # The global asset graph: one node per asset, each showing its materialized partitions.
        driver.get(f"{url}/asset-groups")
        nodes: dict[str, str] = {}

        def graph_complete() -> bool:
            nodes.update(graph_nodes(driver))
            return not graph_problems(nodes, len(keys))

        try:
            wait_for(graph_complete, 30, "the asset graph")
        except AssertionError:
            driver.save_screenshot(str(SCREENSHOTS / "asset-graph.png"))
            raise AssertionError(f"the asset graph: {graph_problems(nodes, len(keys))}; {nodes}") from None
        time.sleep(1.0)  # the graph settles its layout before the picture
        driver.save_screenshot(str(SCREENSHOTS / "asset-graph.png"))

        # The partitions of `messages`: every chunk materialized, none failed; then one chunk's details.
        driver.get(f"{url}/assets/messages?view=partitions")
        text = wait_for_text(
            driver, [*keys, f"Materialized ({len(keys)})", "Failed (0)"], 30, "the partitions of messages"
        )
        assert "Missing (0)" in text, text
        driver.find_element(By.XPATH, f"//*[normalize-space(text())='{keys[0]}']").click()
        wait_for_text(
            driver,
            ["Latest materialization", "chunk_import_job", "messages_fetched"],
            30,
            f"partition {keys[0]}",
        )
        driver.save_screenshot(str(SCREENSHOTS / "messages-partitions.png"))
