"""Compiled code shared by a sweep's trials (`train.compile`): one cache folder per node, seeded
from the sweep's storage.

- Every trial process of a node compiles into one folder, `node_cache_folder()` (torch's
  TORCHINDUCTOR_CACHE_DIR, set by defaults.apply_process_defaults unless the user set it): inductor's
  compiled graphs, AOTAutograd's and Triton's kernels. Entries are keyed by what was compiled (the
  graph, its shapes, torch's version, the device), so a later trial of the same shapes loads its code
  from there and a trial of other shapes compiles its own.
- A node whose folder lacks them (another node of the cluster, a resumed sweep on a fresh machine)
  takes them from the sweep's storage: once a trial has compiled, torch's portable cache artifacts
  (`torch.compiler.save_cache_artifacts`) are kept in `<sweep>/compile-cache/<key>.bin`, and a trial
  loads those of its key before it compiles (`load_cache_artifacts`).

Imports torch and pyarrow inside the functions: the driver builds a `SharedCompileCache` for its
trials, and every xsweep command sets the node's folder (defaults.py), where either import costs time.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs

FOLDER = "compile-cache"  # in a sweep's folder of the storage
# The keys this process has loaded from storage already: once is enough.
_seeded: set[str] = set()


def node_cache_folder() -> str:
    """The node's compile cache, per user as torch's own default is (a shared /tmp is not writable by all)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user with no name
        user = str(os.getuid())
    return os.path.join(tempfile.gettempdir(), f"xsweep-compile-cache-{user}")


def compile_key(*, model_args: dict, image_size: int, batch_size: int, amp: bool, channels_last: bool,
                device_name: str) -> str:
    """What decides the compiled training step: the model, the batch's shape and layout, the
    precision, the device and torch's version."""
    import torch

    what = dict(model=model_args, image_size=image_size, batch_size=batch_size, amp=amp,
                channels_last=channels_last, device=device_name, torch=torch.__version__)
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SharedCompileCache:
    """Where a sweep keeps its trials' compiled code in its storage; pickled to every trial."""

    filesystem: pyarrow.fs.FileSystem
    folder: str  # a path of `filesystem`

    def _path(self, key: str) -> str:
        return f"{self.folder}/{key}.bin"

    def seed(self, key: str) -> bool:
        """Load the kept artifacts of `key` into this node's caches, if there are any; whether it did."""
        import torch

        if key in _seeded:
            return False
        _seeded.add(key)
        try:
            with self.filesystem.open_input_stream(self._path(key)) as f:
                blob = f.read()
        except (FileNotFoundError, OSError):
            return False
        try:
            torch.compiler.load_cache_artifacts(blob)
        except Exception as exc:  # noqa: BLE001 - a bad or foreign blob costs a cold compile, not the trial
            print(f"xsweep: the sweep's compiled code for this trial's shapes could not be loaded ({exc}); "
                  "compiling it anew", file=sys.stderr, flush=True)
            return False
        return True

    def keep(self, key: str) -> bool:
        """Keep what this process compiled under `key`, unless the storage has it already; whether it did.
        Two trials of one shape that finish compiling together both write it: the same content."""
        import pyarrow.fs
        import torch

        path = self._path(key)
        if self.filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
            return False
        saved = torch.compiler.save_cache_artifacts()
        if saved is None:
            return False
        self.filesystem.create_dir(self.folder, recursive=True)
        partial = f"{path}.{os.getpid()}.partial"  # a reader never sees a half-written file
        with self.filesystem.open_output_stream(partial) as f:
            f.write(saved[0])
        self.filesystem.move(partial, path)
        _seeded.add(key)
        return True
