"""The MLflow UI, as a user opens it from the link the sweep's summary prints: the sweep's runs, not
MLflow's GenAI pages; the parent run, and its trials' child runs under it, by their names; the spec
file in the Source column (headless Debian Chromium driven by Selenium)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import SPECS, run_xsweep

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

EXPERIMENT = "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# MLflow's UI is a React app that loads its runs after the page: generous on a busy 2-core box.
UI_WAIT_S = 90
RUN_NAME_CELL = "[col-id='attributes.`Run Name`']"


@pytest.fixture(scope="module")
def sweep(mlflow_server, tmp_path_factory):
    """A small real sweep (2 trials, 1 epoch) tracked to the session's MLflow server."""
    workdir = tmp_path_factory.mktemp("browser-sweep")
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", f"tracking.uri={mlflow_server.uri}",
                      "--set", f"tracking.experiment={EXPERIMENT}", "--set", "search.num_samples=2",
                      "--set", "train.epochs=1", cwd=workdir, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`xsweep.kind` = 'sweep'")
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 2
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    link = re.search(r"^MLflow: .*\((http://\S+)\)$", proc.stdout, re.MULTILINE)
    assert link, proc.stdout
    return link.group(1), parent, children


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1600,1000", f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _run_names(driver) -> list[str]:
    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, f"{RUN_NAME_CELL} a")]


def _column(driver, row_id: str, header: str) -> str:
    """The text of a run's cell in the column headed `header`."""
    heading = driver.find_element(By.XPATH, f"//div[@role='columnheader'][.//*[text()='{header}']]")
    return driver.find_element(
        By.CSS_SELECTOR, f"div[role=row][row-id='{row_id}'] [col-id='{heading.get_attribute('col-id')}']").text


def test_the_ui_shows_the_sweep_and_its_trials(sweep, mlflow_server, browser, tmp_path):
    link, parent, children = sweep
    assert link.startswith(mlflow_server.uri)
    browser.get(link)
    wait = WebDriverWait(browser, UI_WAIT_S)
    wait.until(lambda d: parent.info.run_name in _run_names(d))
    assert "/runs" in browser.current_url and "genai" not in browser.current_url, browser.current_url
    assert _column(browser, parent.info.run_id, "Source") == "smoke.yaml"

    # Child runs are nested under their parent, collapsed: expand the parent's row.
    expand = browser.find_element(
        By.CSS_SELECTOR, f"div[role=row][row-id='{parent.info.run_id}'] {RUN_NAME_CELL} button")
    expand.click()
    wanted = {c.info.run_name for c in children}
    try:
        wait.until(lambda d: wanted <= set(_run_names(d)))
    finally:
        shot = Path(tmp_path, "mlflow-ui.png")
        browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    names = _run_names(browser)
    assert names[0] == parent.info.run_name  # the sweep first, its trials below it
    assert wanted <= set(names[1:]), names
    assert {_column(browser, c.info.run_id, "Source") for c in children} == {"smoke.yaml"}
