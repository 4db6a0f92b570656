"""Atomic, checksummed checkpoints, and the network one holds rebuilt from its trial's config.

A trial can be killed at any moment (ASHA stops it, a node goes away), so a checkpoint is
written under a temporary name, fsynced and renamed: the real name only ever holds a complete
file. A sha256 sidecar catches files damaged afterwards (truncated copies, full disks), and
loading uses weights_only=True so a checkpoint cannot run code.
"""

import hashlib
import os
import tempfile

import torch

from xsweep.training.models import arch_of, rebuild_args

# Read in 1 MiB pieces: checkpoints of the full model are ~90 MB, no need to hold them twice.
HASH_CHUNK_BYTES = 1 << 20


class CorruptCheckpoint(Exception):
    """The checkpoint is missing its checksum, or does not match it."""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


class _HashingFile:
    """A file opened for writing that hashes every byte written through it: the checksum of a
    checkpoint then costs no second read of a file that may be 90 MB."""

    def __init__(self, f):
        self.f = f
        self.sha256 = hashlib.sha256()

    def write(self, data):
        self.sha256.update(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def _atomic_write(path, write):
    """Call write(file) on a temp file beside `path`, fsync it, then rename it onto `path`;
    returns what write returned."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # including KeyboardInterrupt: never leave the temp file behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    # fsync the folder too, so the rename itself survives a power cut (not possible on Windows).
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return result


def save_checkpoint(state, path):
    """torch.save `state` to `path` atomically, then its sha256 to `path + ".sha256"`; returns the hex."""
    path = os.fspath(path)

    def save_and_hash(f):
        hashing = _HashingFile(f)
        torch.save(state, hashing)
        return hashing.sha256.hexdigest()

    # Hashed as written, so the window in which the new file sits beside the old sidecar (a kill
    # there leaves a mismatch that load_checkpoint refuses) is only the sidecar's own write.
    digest = _atomic_write(path, save_and_hash)
    # sha256sum's format, so `sha256sum -c` can check it by hand.
    line = f"{digest}  {os.path.basename(path)}\n".encode()
    _atomic_write(path + ".sha256", lambda f: f.write(line))
    return digest


def load_checkpoint(path):
    """The state saved by save_checkpoint, on CPU, after checking it against its sha256 sidecar."""
    path = os.fspath(path)
    sidecar = path + ".sha256"
    if not os.path.isfile(path):
        raise CorruptCheckpoint(f"checkpoint {path} does not exist")
    if not os.path.isfile(sidecar):
        raise CorruptCheckpoint(f"checkpoint {path} has no {sidecar}: it was not written completely by save_checkpoint")
    with open(sidecar) as f:
        expected = f.read().split(maxsplit=1)[0] if os.path.getsize(sidecar) else ""
    actual = sha256_file(path)
    if actual != expected:
        raise CorruptCheckpoint(
            f"checkpoint {path} is damaged: its sha256 is {actual}, but {sidecar} says {expected or '(empty)'}"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(path, *, config: dict):
    """(trial `config`'s network with the weights of the checkpoint at `path`, on the CPU; the
    checkpoint's whole state). Raises CorruptCheckpoint as load_checkpoint does."""
    state = load_checkpoint(path)
    model = arch_of(config).build(**rebuild_args(config))
    model.load_state_dict(state["model"])
    return model, state
