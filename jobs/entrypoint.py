"""The Ray job that `xsweep submit` starts: `xsweep run SPEC --address auto` on the cluster's head.

    python jobs/entrypoint.py SPEC [--set a.b=value ...]

Run by Ray in the job's working_dir (the uploaded project), with the cluster's environment.
Where the spec leaves a setting to the machine it runs on, the cluster's environment fills it:

    tracking.uri          unset     -> MLFLOW_TRACKING_URI
    storage.path          relative  -> XSWEEP_STORAGE_PATH (a relative path would land in the
                                       job's temporary working_dir, lost with it)
    storage.endpoint_url  unset     -> XSWEEP_S3_ENDPOINT_URL (MinIO), for s3:// paths

An explicit --set always wins. The same file runs under KubeRay (jobs/rayjob.yaml).
"""

from __future__ import annotations

import argparse
import os
import sys

def env_overrides(spec, given: list[str]) -> list[str]:
    """--set items for what the spec leaves to the cluster; never for a field already --set."""
    already = {item.partition("=")[0].strip() for item in given}
    extra = []

    def fill(field: str, variable: str, wanted: bool) -> None:
        value = os.environ.get(variable)
        if wanted and value and field not in already:
            extra.append(f"{field}={value}")
            print(f"entrypoint: {field} from ${variable}", flush=True)

    fill("tracking.uri", "MLFLOW_TRACKING_URI", spec.tracking.uri is None)
    path = spec.storage.path
    fill("storage.path", "XSWEEP_STORAGE_PATH", not path.startswith("s3://") and not os.path.isabs(path))
    final = next((e.partition("=")[2] for e in extra if e.startswith("storage.path=")), path)
    fill("storage.endpoint_url", "XSWEEP_S3_ENDPOINT_URL",
         final.startswith("s3://") and spec.storage.endpoint_url is None)
    return extra


def main(argv: list[str] | None = None) -> int:
    # A job always joins an existing cluster, whose nodes are not on 127.0.0.1: the CLI's default
    # (loopback only, for the embedded Ray) must not apply here. Set before Ray is imported.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    parser = argparse.ArgumentParser(prog="jobs/entrypoint.py", description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        import xsweep.cli
        from xsweep.spec import SpecError, load_spec
    except ImportError as exc:
        print(f"entrypoint: cannot import xsweep's dependencies here ({exc}); the cluster's image must have "
              f"the project's pinned dependencies installed (docker/Dockerfile)", file=sys.stderr)
        return 2
    try:
        spec = load_spec(args.spec, overrides=args.set)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    sets = [*args.set, *env_overrides(spec, args.set)]
    print(f"entrypoint: xsweep from {os.path.dirname(xsweep.cli.__file__)}, python {sys.executable}", flush=True)
    command = ["run", args.spec, "--address", "auto"]
    for item in sets:
        command += ["--set", item]
    return xsweep.cli.main(command)


if __name__ == "__main__":
    sys.exit(main())
