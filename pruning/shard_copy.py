"""One output shard from its source shard: read once, slice, write, and hash both sides as the bytes pass.

The main thread only reads, into a ring of fixed-size buffers. Each chunk read goes to the source
sha256 on its own thread, and its kept pieces go, in order, to a second thread that feeds the output
sha256 from those same bytes and puts them into the output: the output is never read back, the source
never hashed in a second pass (hashlib releases the GIL, so the three overlap on separate cores).
The kept pieces land by the kernel's `copy_file_range` from the very source offsets just read: a
user-space write costs about 3x the CPU of that copy here, more than the hashing. The file's identity
(size, mtime, ctime, inode) is checked after the copy, so the bytes hashed are the bytes copied; where
the filesystem cannot copy (another filesystem on an old kernel, no copy_file_range), the buffer is
written instead. When the source's hash is already known (`SourceHashCache`, same file unchanged),
only the kept byte ranges are read and the source is not hashed at all. Memory: `_BUFFERS` chunks
per shard.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.hashing import sha256_file
from pruning.hash_cache import FileIdentity, SourceHashCache
from pruning.shard_plan import ShardPlan, merge_ranges

CHUNK = 16 * 1024 * 1024
# Buffers in flight per shard: one being read while the hash and write threads finish the others.
_BUFFERS = 3


def copy_shard(plan: ShardPlan, dest: Path, cache: SourceHashCache) -> tuple[str, str]:
    """Write plan's tensors from plan.source into dest; return the sha256 of the source file and of dest."""
    identity = FileIdentity.of(plan.source.path)
    if identity.size != plan.source.size:
        raise _changed(plan)
    known = cache.lookup(identity)
    ranges = [r for tensor in plan.tensors for r in tensor.ranges]
    source_digest = hashlib.sha256() if known is None else None
    buffers = [bytearray(CHUNK) for _ in range(_BUFFERS)]
    pending: list[list[Future]] = [[] for _ in range(_BUFFERS)]
    with (
        ThreadPoolExecutor(1, "sha256-source") as hasher,
        ThreadPoolExecutor(1, "write-sha256") as sink,
        open(plan.source.path, "rb", buffering=0) as src,
        open(dest, "wb", buffering=0) as dst,
    ):
        out = _Output(plan, src.fileno(), dst)
        out.write(_header(plan))
        # Hash unknown: read every byte (the hash needs them all); known: only the kept ranges.
        regions = [(0, plan.source.size)] if known is None else merge_ranges(ranges)
        position, index = 0, 0
        for turn, (lo, hi) in enumerate(_chunks(regions)):
            slot = turn % _BUFFERS
            for job in pending[slot]:  # both threads are done with this buffer before it is refilled
                job.result()
            pending[slot] = []
            if position != lo:
                src.seek(lo)
            chunk = memoryview(buffers[slot])[: hi - lo]
            if _read_fully(src, chunk) != hi - lo:
                raise _changed(plan)
            position = hi
            if source_digest is not None:
                pending[slot].append(hasher.submit(source_digest.update, chunk))
            while index < len(ranges) and ranges[index][0] < hi:
                start, end = ranges[index]
                a, b = max(start, lo), min(end, hi)
                if a < b:
                    pending[slot].append(sink.submit(out.piece, a, chunk[a - lo : b - lo]))
                if end > hi:
                    break
                index += 1
        for jobs in pending:
            for job in jobs:
                job.result()
        if index != len(ranges) or (known is None and src.read(1)):
            raise _changed(plan)
        os.fsync(dst.fileno())
    if FileIdentity.of(plan.source.path) != identity:
        raise _changed(plan)
    if known is None:
        known = source_digest.hexdigest()
        cache.store(identity, known)
    return known, out.digest.hexdigest()


class _Output:
    """The output shard, fed in order: sha256 from the bytes read, the bytes by a kernel copy or a write."""

    _CANNOT_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM}

    def __init__(self, plan: ShardPlan, src_fd: int, dst):
        self.plan, self.src_fd, self.dst = plan, src_fd, dst
        self.digest = hashlib.sha256()
        self.kernel_copy = hasattr(os, "copy_file_range")

    def write(self, data) -> None:
        _write_all(self.dst, data)
        self.digest.update(data)

    def piece(self, offset: int, data: memoryview) -> None:
        """`data` are the source's bytes at `offset`, just read; append the same bytes to the output."""
        self.digest.update(data)
        done = 0
        while self.kernel_copy and done < len(data):
            try:
                n = os.copy_file_range(self.src_fd, self.dst.fileno(), len(data) - done, offset + done)
            except OSError as exc:
                if exc.errno not in self._CANNOT_COPY:
                    raise
                self.kernel_copy = False
                break
            if n == 0:
                raise _changed(self.plan)  # the file ended early
            done += n
        if done < len(data):
            _write_all(self.dst, data[done:])


def source_sha256(path: Path, cache: SourceHashCache) -> str:
    """sha256 of a source file nothing is copied from (still part of the provenance), cached likewise."""
    identity = FileIdentity.of(path)
    known = cache.lookup(identity)
    if known is None:
        known = sha256_file(path)
        if FileIdentity.of(path) != identity:
            raise UserError(f"{path} changed while it was being read; run again")
        cache.store(identity, known)
    return known


def _header(plan: ShardPlan) -> bytes:
    header, offset = {}, 0
    if plan.source.metadata is not None:
        header["__metadata__"] = plan.source.metadata
    for tensor in plan.tensors:
        header[tensor.name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded


def _chunks(regions) -> Iterator[tuple[int, int]]:
    for start, end in regions:
        for lo in range(start, end, CHUNK):
            yield lo, min(lo + CHUNK, end)


def _read_fully(handle, view: memoryview) -> int:
    """readinto until the view is full or the file ends (raw reads may return short)."""
    done = 0
    while done < len(view):
        n = handle.readinto(view[done:])
        if not n:
            break
        done += n
    return done


def _write_all(handle, data) -> None:
    view = memoryview(data)
    while view:
        view = view[handle.write(view) :]


def _changed(plan: ShardPlan) -> UserError:
    return UserError(f"{plan.source.path} changed while it was being read; run again")
