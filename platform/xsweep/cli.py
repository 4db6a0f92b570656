"""`xsweep`: validate, run, resume and inspect sweeps.

Errors a user can cause print one line naming the field (or flag) and the fix, and exit with 2;
tracebacks are reserved for bugs of ours.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from urllib.parse import urlsplit

from xsweep.errors import UserError

EXIT_USAGE = 2
# Nothing leaves this machine unless the user asks: MLflow's telemetry and Ray's usage statistics
# are off by default (setting a variable yourself overrides this). On a machine without internet,
# MLflow's attempts to reach its telemetry server also cost seconds of every sweep's start-up.
OFFLINE_DEFAULTS = {"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}


def cmd_validate(args) -> int:
    from xsweep.spec import SpecError, load_spec

    failed = False
    for path in args.specs:
        try:
            spec = load_spec(path, overrides=args.set)
        except SpecError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        print(f"{path}: ok ({spec.total_trials()} trials, experiment '{spec.experiment}')")
    return EXIT_USAGE if failed else 0


def _preflight(spec) -> None:
    """What can be checked before anything starts: the data must be there."""
    from xsweep.training.sources import dataset_shape

    dataset_shape(spec.base_trial_config()["data"])


def _loopback_if_embedded(address: str | None) -> None:
    """Without --address Ray runs embedded, on loopback only. Ray reads this variable once, when
    it is imported (below, lazily); left to its default, it would turn 127.0.0.1 into the host's
    address. A driver joining a cluster keeps Ray's default: its nodes must reach it."""
    if address is None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def _recordable_overrides(path: str, overrides: list[str], spec) -> list[str]:
    """The overrides a sweep should run with and record (MLflow, xsweep.json, so resume too):
    - a relative data.root made absolute: trials run in folders of their own (Tune's);
    - a tracking URI's password moved to MLFLOW_TRACKING_USERNAME/PASSWORD, the URI kept bare."""
    from xsweep.spec import SpecError
    from xsweep.tracking.store import credentials_to_env

    fixed = list(overrides)
    root = spec.data.root
    if root and not os.path.isabs(os.path.expanduser(root)):
        fixed.append(f"data.root={json.dumps(os.path.abspath(os.path.expanduser(root)))}")
    password = urlsplit(spec.tracking.uri).password if spec.tracking.uri else None
    if password is not None:
        if password in spec.text:
            raise SpecError([f"{path}: tracking.uri: holds a password, which would be recorded with the spec "
                             f"(remove it; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead)"])
        fixed = [o for o in fixed if o.partition("=")[0].strip() != "tracking.uri"]
        fixed.append(f"tracking.uri={json.dumps(credentials_to_env(spec.tracking.uri))}")
    return fixed


def cmd_run(args) -> int:
    from xsweep.spec import load_spec

    _loopback_if_embedded(args.address)

    spec = load_spec(args.spec, overrides=args.set)
    overrides = _recordable_overrides(args.spec, args.set, spec)
    if overrides != args.set:
        spec = load_spec(args.spec, overrides=overrides)
    from xsweep.sweep import run as sweep

    _preflight(spec)
    outcome = sweep.run_sweep(spec, overrides=overrides, address=args.address, workdir=os.getcwd())
    return outcome.exit_code


def cmd_resume(args) -> int:
    _loopback_if_embedded(args.address)
    from xsweep.sweep import run as sweep

    outcome = sweep.resume_sweep(args.sweep, address=args.address, workdir=os.getcwd(),
                                 endpoint_url=args.endpoint_url)
    return outcome.exit_code


def cmd_status(args) -> int:
    from xsweep.sweep import run as sweep
    from xsweep.sweep.status import print_status

    storage, name = sweep.locate_sweep(args.sweep, workdir=os.getcwd(), endpoint_url=args.endpoint_url)
    print_status(storage, name)
    return 0


def cmd_reproduce(args) -> int:
    from xsweep.reproduce import reproduce

    return reproduce(experiment=args.experiment, run_id=args.run, from_checkpoint=args.from_checkpoint,
                     tracking_uri=args.tracking_uri, tolerance=args.tolerance, workdir=os.getcwd())


# resume and status of an s3:// sweep on MinIO: its xsweep.json (with storage.endpoint_url) is
# only readable once the endpoint is known.
ENDPOINT_HELP = "the S3-compatible server of an s3:// sweep folder (default: $XSWEEP_S3_ENDPOINT_URL)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xsweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check sweep specs without running them")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--set", action="append", default=[], metavar="a.b=value", help="override a spec field")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a sweep (embedded Ray on this machine unless --address)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--set", action="append", default=[], metavar="a.b=value", help="override a spec field")
    p.add_argument("--address", default=None, help="an existing Ray cluster (e.g. auto or 10.0.0.1:6379)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="finish an interrupted sweep; finished trials are not run again")
    p.add_argument("sweep", metavar="NAME_OR_PATH", help="a sweep folder, or a spec name (its latest sweep)")
    p.add_argument("--address", default=None)
    p.add_argument("--endpoint-url", default=None, metavar="URL", help=ENDPOINT_HELP)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="a table of a sweep's trials")
    p.add_argument("sweep", metavar="NAME_OR_PATH")
    p.add_argument("--endpoint-url", default=None, metavar="URL", help=ENDPOINT_HELP)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("reproduce", help="re-run a tracked trial (or evaluate its checkpoint) and compare with MLflow")
    p.add_argument("--experiment", required=True, help="the MLflow experiment of the sweep")
    p.add_argument("--run", default=None, metavar="RUN_ID", help="a trial's run id (default: the latest sweep's best)")
    p.add_argument("--from-checkpoint", action="store_true", help="evaluate the best checkpoint instead of re-training")
    p.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else ./mlflow.db")
    p.add_argument("--tolerance", type=float, default=0.5, metavar="PP",
                   help="allowed difference of the final metric: percentage points for accuracies (default 0.5)")
    p.set_defaults(func=cmd_reproduce)
    # Commands with modules of their own register themselves (their heavy imports stay lazy).
    from xsweep.report import add_commands as add_report_commands
    from xsweep.cluster.submit import add_commands as add_submit_commands

    add_submit_commands(sub)
    add_report_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"{exc.prefix}{exc}", file=sys.stderr)
        return EXIT_USAGE


def console_main() -> None:
    """The `xsweep` command."""
    code = main()
    # The interpreter's last garbage collection walks every object torch, Ray and MLflow made:
    # seconds spent at exit on a process that is ending anyway. It skips frozen objects.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console_main()
