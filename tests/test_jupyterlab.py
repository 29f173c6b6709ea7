"""JupyterLab for real: a headless chromium opens a notebook in JupyterLab, runs it in the kit's kernel and
the outputs render in the page.

The server runs on a free local port with token auth, in its own temporary root folder (with its own
settings, workspaces and runtime folders), and loads nothing from the internet. The browser is Debian's
``chromium`` with ``chromium-driver`` (``.ci/run`` installs them with apt-get), driven by Selenium without
Selenium Manager (no driver download). The test skips, naming what is missing, only when no chromium or
chromedriver is installed. It is one test run once (about 20-40 s), marked ``browser``, with a hard timeout
of 120 s; the server's and the browser's process groups are killed whatever happens.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from analysis import paths, theory

HARD_TIMEOUT_S = 120
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "apt-get install -y chromium chromium-driver (what .ci/run does when apt-get is available)"

CHROMIUM = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
CHROMEDRIVER = shutil.which("chromedriver")
_MISSING = [what for what, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not found]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(bool(_MISSING), reason=f"no headless browser: {' and '.join(_MISSING)} not on PATH; "
                                              f"install with `{INSTALL_HINT}`"),
]

CELLS = [
    "import sys\nimport analysis\nfrom analysis import theory\nprint('kernel prefix:', sys.prefix)",
    "p_wait = theory.erlang_c(8.0, 1.0, 10)  # 8 requests/s, 1 request/s per server, 10 servers\n"
    "print(f'erlang_c={p_wait:.6f}')",
    "import pandas as pd\n"
    "pd.DataFrame({'servers': [9, 10, 12], 'p_wait': [round(theory.erlang_c(8.0, 1.0, c), 4) "
    "for c in (9, 10, 12)]})",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local server only
        return json.loads(response.read().decode("utf-8"))


def _kill_group(process: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    """SIGTERM the process's group (it leads its own session), SIGKILL what is left after ``grace_s``."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


class HardTimeout(Exception):
    """The test ran past HARD_TIMEOUT_S (not an OSError: urllib3 would turn a TimeoutError into its own)."""


@contextlib.contextmanager
def _hard_timeout(seconds: int):
    """Raise HardTimeout in the test after ``seconds`` (SIGALRM interrupts a blocking wait)."""
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover - e.g. a thread runner
        yield
        return

    def expire(signum, frame):
        raise HardTimeout(f"JupyterLab browser test exceeded its hard timeout of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _start_lab(root: Path, port: int, token: str, log) -> subprocess.Popen:
    from jupyter_core.paths import jupyter_data_dir

    env = dict(os.environ)
    # kernels registered per user (`ipykernel install --user`, the conda route) stay visible ...
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (os.environ.get("JUPYTER_PATH"), jupyter_data_dir()) if p)
    for key, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTER_DATA_DIR", "data"), ("IPYTHONDIR", "ipython")):
        env[key] = str(root.parent / sub)  # ... but no user-level settings are read or written
    env.pop(paths.OUTPUT_ENV_VAR, None)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={root.parent / 'workspaces'}",
               f"--LabApp.user_settings_dir={root.parent / 'settings'}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:  # CI and this machine run as root
        command.append("--allow-root")
    return subprocess.Popen(command, cwd=str(root), env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_ready(server: subprocess.Popen, base: str, token: str, deadline: float, log_path: Path) -> dict:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"JupyterLab exited with status {server.returncode}: "
                                 f"{log_path.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError, ValueError):
            return _get_json(f"{base}/api/kernelspecs?token={token}", timeout=2.0)
        time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer on {base} in time: {log_path.read_text(errors='replace')[-2000:]}")


def _browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", f"--user-data-dir={profile}", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER, popen_kw={"start_new_session": True})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver, service


def kernel_idle(driver) -> bool:
    """The notebook's kernel status indicator says idle."""
    return bool(driver.execute_script(
        "const s = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');"
        "return s && s.getAttribute('data-status') === 'idle';"))


def test_jupyterlab_runs_a_notebook_in_the_kit_kernel_in_headless_chromium(tmp_path, capsys):
    pytest.importorskip("selenium", reason="selenium is not installed (it is pinned in requirements.lock: "
                                           "run `make setup`)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny kit notebook")] + [nbformat.v4.new_code_cell(c)
                                                                          for c in CELLS]
    nb.metadata["kernelspec"] = {"name": paths.KERNEL_NAME, "display_name": "Python (cloud-scalability-kit)",
                                 "language": "python"}
    nbformat.write(nb, str(root / "tiny.ipynb"))
    expected_p_wait = f"erlang_c={theory.erlang_c(8.0, 1.0, 10):.6f}"
    expected_rows = [f"{round(theory.erlang_c(8.0, 1.0, c), 4)}" for c in (9, 10, 12)]

    port, token = _free_port(), os.urandom(16).hex()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "jupyterlab.log"
    server = driver = service = None
    with open(log_path, "wb") as log, _hard_timeout(HARD_TIMEOUT_S):
        try:
            server = _start_lab(root, port, token, log)
            specs = _wait_ready(server, base, token, started + 60, log_path)
            phases = {"server": time.monotonic() - started}
            assert paths.KERNEL_NAME in specs.get("kernelspecs", {}), (
                f"kernel {paths.KERNEL_NAME!r} is not registered with this Jupyter (found "
                f"{sorted(specs.get('kernelspecs', {}))}); run `make setup`")

            driver, service = _browser(tmp_path / "chromium-profile")
            driver.get(f"{base}/lab/tree/tiny.ipynb?token={token}")
            wait = WebDriverWait(driver, 60, poll_frequency=0.25)
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell")))
            # the kernel named in the notebook's metadata starts (no kernel dialog) and goes idle
            wait.until(lambda d: "cloud-scalability-kit" in d.find_element(
                By.CSS_SELECTOR, ".jp-NotebookPanel .jp-KernelName").text)
            wait.until(kernel_idle)
            phases["page and kernel"] = time.monotonic() - started - sum(phases.values())

            # Run > Run All Cells, through JupyterLab's own menu
            menu = next(m for m in driver.find_elements(By.CSS_SELECTOR, "#jp-menu-panel .lm-MenuBar-item")
                        if m.text.strip() == "Run")
            menu.click()
            wait.until(ec.element_to_be_clickable((By.XPATH, (
                "//li[contains(@class, 'lm-Menu-item')][.//div[contains(@class, 'lm-Menu-itemLabel') "
                "and normalize-space() = 'Run All Cells']]")))).click()

            def outputs_text(d):
                return "\n".join(e.text for e in d.find_elements(
                    By.CSS_SELECTOR, ".jp-NotebookPanel .jp-OutputArea-output"))

            wait.until(lambda d: expected_p_wait in outputs_text(d) and d.find_elements(
                By.CSS_SELECTOR, ".jp-NotebookPanel .jp-OutputArea-output table.dataframe"))
            wait.until(kernel_idle)
            phases["run"] = time.monotonic() - started - sum(phases.values())
            text = outputs_text(driver)
            assert f"kernel prefix: {sys.prefix}" in text, text  # the kit's .venv runs the kernel
            table = driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output table.dataframe").text
            for value in expected_rows:
                assert value in table, (value, table)
            prompts = [e.text for e in driver.find_elements(By.CSS_SELECTOR,
                                                            ".jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt")]
            assert prompts == ["[1]:", "[2]:", "[3]:"], prompts
            assert not driver.find_elements(
                By.CSS_SELECTOR, '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'), \
                outputs_text(driver)
            sessions = _get_json(f"{base}/api/sessions?token={token}")
            assert [s["kernel"]["name"] for s in sessions] == [paths.KERNEL_NAME], sessions
        except BaseException:
            if driver is not None:  # what the page looked like, for the failure report
                with contextlib.suppress(Exception):
                    driver.save_screenshot(str(tmp_path / "failure.png"))
                    print(f"screenshot of the page: {tmp_path / 'failure.png'}; server log: {log_path}")
            raise
        finally:
            if driver is not None:
                quitter = threading.Thread(target=driver.quit, daemon=True)
                quitter.start()
                quitter.join(timeout=15)
            if service is not None:
                _kill_group(service.process, grace_s=5)
            _kill_group(server)
    assert server.poll() is not None
    seconds = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[browser] JupyterLab + headless {Path(CHROMIUM).name} ran tiny.ipynb in the "
              f"{paths.KERNEL_NAME} kernel: outputs rendered, {seconds:.1f} s ("
              + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()) + ")")
