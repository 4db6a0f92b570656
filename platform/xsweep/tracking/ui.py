"""MLflow's UI as xsweep opens it: `xsweep ui` serves a local store and says where to look once it
answers, and every link xsweep prints opens an experiment on its runs.

MLflow 3's UI opens an experiment on its GenAI pages (traces, token usage) unless the browser has
chosen "Model training" (its switch at the top left, kept in the browser) or the link says
`workflowType=machine_learning`; the experiment's `mlflow.experimentKind` tag does not change that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from xsweep.tracking.uri import redact

RUNS_VIEW = "workflowType=machine_learning"
LISTED_EXPERIMENTS = 5  # the newest, linked by `xsweep ui`; the UI's Experiments page lists them all
POLL_S = 0.2


def runs_url(base: str, experiment_id: str) -> str:
    """The page of an experiment's runs on the MLflow UI (or server) at `base`."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{RUNS_VIEW}"


def serve(uri: str, *, port: int) -> int:
    """Run `mlflow ui` for the local store `uri` on 127.0.0.1:port until Ctrl-C. Says at once that it
    is starting (MLflow takes seconds to a minute), and gives the links once the UI answers."""
    base = f"http://127.0.0.1:{port}"
    print(f"starting the MLflow UI of {redact(uri)} on {base} ...", flush=True)
    log = Path(tempfile.mkdtemp(prefix="xsweep-ui-")) / "mlflow-ui.log"
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    with log.open("w") as out:
        # In the terminal's process group: Ctrl-C reaches MLflow's server too.
        server = subprocess.Popen([mlflow, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        while not _answers(f"{base}/health"):
            if server.poll() is not None:
                last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
                print(f"error: the MLflow UI stopped before it answered: {last[-1] if last else 'no output'}"
                      f" (its log: {log})", file=sys.stderr)
                return 1
            time.sleep(POLL_S)
        print(f"MLflow UI: {base}  (Ctrl-C stops it; its log: {log})")
        print_links(uri, base=base)
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait()
        return 0


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def print_links(uri: str, *, base: str) -> None:
    """A line per experiment, newest first: its runs on the UI at `base`."""
    for name, experiment_id in _newest_experiments(uri):
        print(f"  {name}: {runs_url(base, experiment_id)}")
    sys.stdout.flush()


def _answers(url: str) -> bool:
    try:
        with _LOOPBACK.open(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _newest_experiments(uri: str) -> list[tuple[str, str]]:
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri=uri).search_experiments(order_by=["last_update_time DESC"],
                                                              max_results=LISTED_EXPERIMENTS + 1)
    return [(e.name, e.experiment_id) for e in found if e.name != "Default"][:LISTED_EXPERIMENTS]
