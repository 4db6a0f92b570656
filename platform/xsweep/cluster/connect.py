"""Connecting to Ray: an embedded one-machine Ray on loopback, or an existing cluster.

Checks what would otherwise make a sweep wait forever or lose results, before any trial starts:
a trial asking for more GPUs or CPUs than any node has, and a local results folder on a
multi-node cluster (trials on other nodes could not write to it).
"""

from __future__ import annotations

import logging
import socket
import sys

from xsweep.errors import ClusterError

LOOPBACK = "127.0.0.1"
REACH_TIMEOUT_S = 5


def connect(address: str | None, *, spec, storage) -> str:
    """Start or join Ray; returns the address to record (no credentials in it)."""
    import ray

    if ray.is_initialized():
        recorded = address or "embedded"
    elif address is None:
        # The embedded node generates its own token and listens on loopback only (its notice about
        # that is quietened by xsweep.defaults).
        # address="local": always a fresh node of our own. Left as None, Ray would join whatever
        # cluster RAY_ADDRESS or /tmp/ray/ray_current_cluster names, which may not be on loopback.
        ray.init(
            address="local",
            _node_ip_address=LOOPBACK,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
        _check_loopback_only()
        recorded = f"embedded ({LOOPBACK})"
    else:
        check_address_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"--address: cannot connect to Ray at {address}: {first[:160]} "
                               f"(check the address and that the cluster is up)") from None
        recorded = address
    check_resources(spec, storage=storage)
    return recorded


def check_address_reachable(address: str | None) -> None:
    """Fail in seconds on an address nothing listens at: ray.init would retry it for many minutes."""
    if address is None:
        return
    target = address.partition("://")[2] or address
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"--address: cannot reach Ray at {address}: {reason.lower()} "
                           f"(check the address and that the cluster is up)") from None


def _check_loopback_only() -> None:
    """The embedded node must never listen beyond this machine. Ray turns 127.0.0.1 into the
    host's address when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER was not "0" at its import; refuse then."""
    import ray

    addresses = {n.get("NodeManagerAddress") for n in ray.nodes()}
    if addresses != {LOOPBACK}:
        ray.shutdown()
        raise ClusterError(
            f"the embedded Ray came up on {', '.join(sorted(map(str, addresses)))} instead of {LOOPBACK} "
            f"(set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before ray is imported)"
        )


def check_resources(spec, *, storage) -> None:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    workers = spec.resources.workers_per_trial
    for kind, field in (("GPU", "gpus_per_trial"), ("CPU", "cpus_per_trial")):
        # More nodes help a data-parallel trial, and GPU nodes a cluster short of GPUs; a 1-worker
        # trial's CPUs must all be on one node.
        fix = "lower it" if kind == "CPU" and workers == 1 else f"lower it, or add {kind} nodes to the cluster"
        want = getattr(spec.resources, field)
        largest = max((n["Resources"].get(kind, 0) for n in nodes), default=0)
        everywhere = sum(n["Resources"].get(kind, 0) for n in nodes)
        if workers == 1 and want > largest:
            raise ClusterError(f"resources.{field}: {want:g} per trial but the largest node has {largest:g} "
                               f"{kind}s ({fix})")
        if workers > 1 and (want / workers > largest or want > everywhere):
            raise ClusterError(
                f"resources.{field}: {want:g} per trial, {want / workers:g} for each of its {workers} workers, "
                f"but the largest node has {largest:g} {kind}s and the cluster {everywhere:g} "
                f"({fix})")
    if len(nodes) > 1 and storage.is_local:
        print(
            f"warning: storage.path: {storage.root} is a local folder but the cluster has {len(nodes)} "
            f"nodes; trials elsewhere can only restore from it if every node mounts it at that path "
            f"(use s3://... or a shared NFS path)",
            file=sys.stderr,
        )


def is_single_node() -> bool:
    import ray

    return len([n for n in ray.nodes() if n.get("Alive")]) <= 1
