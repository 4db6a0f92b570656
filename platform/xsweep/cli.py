"""`xsweep`: validate, run, resume, extend and inspect sweeps.

Errors a user can cause print one line naming the field (or flag) and the fix, and exit with 2;
tracebacks are reserved for bugs of ours.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from xsweep.defaults import apply_process_defaults
from xsweep.errors import UserError
from xsweep.text import counted

EXIT_USAGE = 2


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
        trials = counted(spec.total_trials(), "trial")
        if spec.ablation is not None:  # where the trials go
            a = spec.ablation
            confirming = f"{a.min_seeds} to {a.max_seeds} confirming, sequential" if a.sequential else \
                f"{a.confirm_seeds} confirming"
            trials = ("up to " if a.sequential else "") + trials + \
                f": {spec.variant_count()} variants x ({a.budget} tuning + {confirming})"
        print(f"{path}: ok ({trials}, experiment '{spec.experiment}')")
    return EXIT_USAGE if failed else 0


def cmd_run(args) -> int:
    from xsweep.spec import load_spec
    from xsweep.sweep.run import run_sweep

    spec = load_spec(args.spec, overrides=args.set)
    return _ended(run_sweep(spec, address=args.address, workdir=os.getcwd(), verbose=args.verbose))


def cmd_resume(args) -> int:
    from xsweep.sweep.run import resume_sweep

    return _ended(resume_sweep(args.sweep, address=args.address, workdir=os.getcwd(),
                               endpoint_url=args.endpoint_url, verbose=args.verbose))


def cmd_extend(args) -> int:
    from xsweep.sweep.extend import extend_sweep

    return _ended(extend_sweep(args.sweep, overrides=args.set, address=args.address, workdir=os.getcwd(),
                               endpoint_url=args.endpoint_url, verbose=args.verbose))


def _ended(outcome) -> int:
    """A sweep's exit code; where its output's reader went away and so stopped it (sweep/reader.py),
    the summary went nowhere: say on standard error how to go on."""
    from xsweep.sweep.reader import reader_gone

    if reader_gone() and outcome.interrupted:
        print(f"xsweep: the sweep stopped, as on Ctrl-C, since its output was closed; "
              f"xsweep resume {outcome.sweep_path}", file=sys.stderr)
    return outcome.exit_code


def cmd_status(args) -> int:
    from xsweep.sweep.run import locate_sweep
    from xsweep.sweep.status import print_status

    storage, name = locate_sweep(args.sweep, workdir=os.getcwd(), endpoint_url=args.endpoint_url)
    print_status(storage, name)
    return 0


def cmd_reproduce(args) -> int:
    from xsweep.reproduce import reproduce

    return reproduce(experiment=args.experiment, run_id=args.run, pick=args.pick, from_checkpoint=args.from_checkpoint,
                     tracking_uri=args.tracking_uri, tolerance=args.tolerance, workdir=os.getcwd(),
                     workers=args.workers)


def cmd_report(args) -> int:
    from xsweep.report.make import make_report

    folder = make_report(experiment=args.experiment, sweep=args.sweep, out=args.out,
                         tracking_uri=args.tracking_uri, log_artifacts=not args.no_log,
                         importance=args.importance)
    print(f"report: {folder / 'report.html'}")
    print(f"        {folder / 'report.md'}")
    if not args.no_log:
        print("logged to the sweep's parent run under report/")
    return 0


def cmd_ui(args) -> int:
    """The MLflow UI of the store every command uses (tracking/store.py's rule), on loopback."""
    from xsweep.tracking.store import open_store, resolve_uri, uri_and_source
    from xsweep.tracking.ui import print_links, serve
    from xsweep.tracking.uri import redact

    uri = resolve_uri(args.tracking_uri, workdir=os.getcwd(), given_as="--tracking-uri")
    _, source = uri_and_source(args.tracking_uri, workdir=os.getcwd(), given_as="--tracking-uri")
    if uri.startswith(("http://", "https://")):
        print(f"the tracking store is the MLflow server at {redact(uri)}: open it in a browser")
        print_links(uri, base=redact(uri))
        return 0
    # An existing store only (`mlflow ui` would serve a new, empty one for a mistyped path), its tables
    # made under the store's creation lock: `mlflow ui` would race a starting sweep.
    open_store(uri, flag=source)
    return serve(uri, port=args.port)


TRACKING_URI_HELP = "the MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)"
# resume and status of an s3:// sweep on MinIO: its xsweep.json (with storage.endpoint_url) is
# only readable once the endpoint is known.
ENDPOINT_HELP = "the S3-compatible server of an s3:// sweep folder (default: $XSWEEP_S3_ENDPOINT_URL)"
# run and resume: Ray's and Tune's output goes to the sweep's log file, and with this flag to the screen too.
VERBOSE_HELP = "show Ray's and Tune's output live (always in the sweep's log), a line per event instead of the table"


def build_parser() -> argparse.ArgumentParser:
    import xsweep

    parser = argparse.ArgumentParser(prog="xsweep", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xsweep {xsweep.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check sweep specs without running them")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--set", action="append", default=[], metavar="a.b=value", help="override a spec field")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a sweep (embedded Ray on this machine unless --address)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--set", action="append", default=[], metavar="a.b=value", help="override a spec field")
    p.add_argument("--address", default=None, help="an existing Ray cluster (e.g. auto or 10.0.0.1:6379)")
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="finish an interrupted sweep; finished trials are not run again")
    p.add_argument("sweep", metavar="NAME_OR_PATH", help="a sweep folder, or a spec name (its latest sweep)")
    p.add_argument("--address", default=None)
    p.add_argument("--endpoint-url", default=None, metavar="URL", help=ENDPOINT_HELP)
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("extend", help="continue a finished or interrupted sweep as a new version (more trials, "
                                      "another space); nothing that ended is trained again")
    p.add_argument("sweep", metavar="NAME_OR_PATH", help="a sweep folder, or a spec name (its latest sweep)")
    p.add_argument("--set", action="append", default=[], metavar="a.b=value",
                   help="change the spec, e.g. search.num_samples=16 (the sweep's configurations in all)")
    p.add_argument("--address", default=None)
    p.add_argument("--endpoint-url", default=None, metavar="URL", help=ENDPOINT_HELP)
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("status", help="a table of a sweep's trials")
    p.add_argument("sweep", metavar="NAME_OR_PATH")
    p.add_argument("--endpoint-url", default=None, metavar="URL", help=ENDPOINT_HELP)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("reproduce", help="re-run a tracked trial (or evaluate its checkpoint) and compare with MLflow")
    p.add_argument("--experiment", required=True, help="the MLflow experiment of the sweep")
    p.add_argument("--run", default=None, metavar="RUN_ID", help="a trial's run id (default: the latest sweep's best)")
    p.add_argument("--pick", type=int, default=None, metavar="N",
                   help="a multi-objective sweep's N-th trial of its Pareto front (1: best on the first objective)")
    p.add_argument("--from-checkpoint", action="store_true", help="evaluate the best checkpoint instead of re-training")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_URI_HELP)
    p.add_argument("--tolerance", type=float, default=0.5, metavar="PP",
                   help="allowed difference of the final metric: percentage points for accuracies (default 0.5)")
    p.add_argument("--workers", type=int, default=None, metavar="K",
                   help="re-train a data-parallel trial on K local processes (default: as many as it had)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("report", help="the ablation report of a sweep (curves, statistics, importance, best trial)")
    p.add_argument("experiment", metavar="EXPERIMENT", help="the MLflow experiment of the sweep (the spec's name)")
    p.add_argument("--sweep", default=None, metavar="RUN_ID", help="the sweep's parent run id (default: the latest)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: ./reports/<experiment>-<sweep run id, short>)")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_URI_HELP)
    p.add_argument("--no-log", action="store_true", help="do not log the report to the sweep's parent run")
    p.add_argument("--importance", choices=["ped-anova", "fanova"], default="ped-anova",
                   help="hyperparameter importance by Optuna's PED-ANOVA (its default, fast at thousands of "
                        "trials) or fANOVA")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ui", help="the MLflow UI of the tracking store, on http://127.0.0.1:PORT")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_URI_HELP)
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)

    # The cluster's commands (submit.py imports nothing heavy before it runs).
    from xsweep.cluster import submit

    address_help = "the head's dashboard / Jobs API, e.g. http://127.0.0.1:8265 (default: RAY_API_SERVER_ADDRESS)"
    p = sub.add_parser("submit", help="run a sweep on a Ray cluster as a Ray job (see jobs/)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--address", default=None, help=address_help)
    p.add_argument("--set", action="append", default=[], metavar="a.b=value", help="override a spec field")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    p.set_defaults(func=submit.cmd_submit)

    p = sub.add_parser("jobs", help="list the jobs of a Ray cluster")
    p.add_argument("--address", default=None, help=address_help)
    p.set_defaults(func=submit.cmd_jobs)

    p = sub.add_parser("stop", help="stop a running job")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--address", default=None, help=address_help)
    p.set_defaults(func=submit.cmd_stop)
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_process_defaults()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        return _user_error(exc)
    except Exception as exc:
        # A tracking server that refuses the credentials answers any command's first MLflow call
        # with a 401 or 403: one line naming the variables to set, not MLflow's traceback.
        from xsweep.tracking.store import auth_problem

        problem = auth_problem(exc)
        if problem is None:
            raise
        return _user_error(problem)


def _user_error(exc: UserError) -> int:
    print(f"{exc.prefix}{exc}", file=sys.stderr)
    return EXIT_USAGE


def console_main() -> None:
    """The `xsweep` command."""
    from xsweep.sweep.reader import ReadOutput

    sys.stdout = ReadOutput(sys.stdout)  # `xsweep ... | head`: no BrokenPipeError (sweep/reader.py)
    code = main()
    # The interpreter's last garbage collection walks every object torch, Ray and MLflow made:
    # seconds spent at exit on a process that is ending anyway. It skips frozen objects.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console_main()
