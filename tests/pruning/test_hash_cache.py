"""Provenance at disk speed: source hashes remembered between runs, shards copied in parallel, same bytes."""

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from moeprune.formats.hashing import sha256_file
from pruning.hash_cache import CACHE_DIR_ENV, FileIdentity, SourceHashCache, default_cache_dir
from pruning.writer import write_pruned
from testkit.tiny_models import build_tiny_model

PROVENANCE = {"method": "manual", "ratio": 0.5, "allocation": "uniform", "seed": 0}
KEPT = {0: [1, 2, 6, 7], 1: [0, 3, 4, 5]}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return build_tiny_model("qwen3_moe", tmp_path_factory.mktemp("cache-src") / "src", max_shard_size="300KB")


def shards(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors"))


def manifest(out: Path) -> dict:
    return json.loads((out / "pruning.json").read_text())


def test_a_second_prune_takes_source_hashes_from_the_cache_not_from_the_bytes(sharded, tmp_path):
    cache = SourceHashCache(tmp_path / "cache")
    first = write_pruned(sharded, tmp_path / "first", KEPT, PROVENANCE, hash_cache=cache)
    assert manifest(first)["source"]["files"] == {p.name: sha256_file(p) for p in shards(sharded)}
    # Forge every remembered hash: if the second run read the sha256 from the bytes, it would not show.
    forged = {}
    for path in shards(sharded):
        forged[path.name] = hashlib.sha256(path.name.encode()).hexdigest()
        cache.store(FileIdentity.of(path), forged[path.name])
    second = write_pruned(sharded, tmp_path / "second", KEPT, PROVENANCE, hash_cache=cache)
    assert manifest(second)["source"]["files"] == forged
    # Reading only the kept ranges writes the same bytes, and their hashes are still the written files'.
    for path in shards(first):
        assert (second / path.name).read_bytes() == path.read_bytes()
    assert manifest(second)["files"] == manifest(first)["files"]


def test_a_rewritten_source_file_is_hashed_again_even_with_its_old_mtime(sharded, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for path in sharded.iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    cache = SourceHashCache(tmp_path / "cache")
    write_pruned(source, tmp_path / "first", KEPT, PROVENANCE, hash_cache=cache)
    shard = shards(source)[0]
    before = shard.stat()
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # same size, different content (the last byte of the last tensor)
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime back
    second = write_pruned(source, tmp_path / "second", KEPT, PROVENANCE, hash_cache=cache)
    assert manifest(second)["source"]["files"][shard.name] == hashlib.sha256(bytes(data)).hexdigest()
    assert cache.lookup(FileIdentity.of(shard)) == hashlib.sha256(bytes(data)).hexdigest()


def test_parallel_shard_copies_write_the_same_checkpoint_as_one_at_a_time(sharded, tmp_path):
    one = write_pruned(sharded, tmp_path / "one", KEPT, PROVENANCE, hash_cache=SourceHashCache(None), workers=1)
    many = write_pruned(sharded, tmp_path / "many", KEPT, PROVENANCE, hash_cache=SourceHashCache(None), workers=4)
    assert len(shards(one)) > 2
    assert {p.name: p.read_bytes() for p in one.iterdir()} == {p.name: p.read_bytes() for p in many.iterdir()}


def test_an_unwritable_cache_is_a_warning_not_a_failed_prune(sharded, tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    with caplog.at_level(logging.WARNING, logger="pruning.hash_cache"):
        out = write_pruned(sharded, tmp_path / "out", KEPT, PROVENANCE, hash_cache=SourceHashCache(blocker))
    assert manifest(out)["source"]["files"] == {p.name: sha256_file(p) for p in shards(sharded)}
    assert "not written" in caplog.text


def test_cache_location_follows_the_environment(monkeypatch, tmp_path, sharded):
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "moeprune"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "mine"))
    write_pruned(sharded, tmp_path / "out", KEPT, PROVENANCE)  # the default cache comes from the environment
    assert (tmp_path / "mine" / "source-sha256.sqlite").is_file() and not (tmp_path / "xdg").exists()
    monkeypatch.setenv(CACHE_DIR_ENV, "off")
    assert default_cache_dir() is None
    assert SourceHashCache.from_env().lookup(FileIdentity.of(shards(sharded)[0])) is None


def test_without_kernel_copies_the_buffers_are_written_and_the_bytes_are_the_same(sharded, tmp_path, monkeypatch):
    """Where copy_file_range cannot copy (another filesystem on an old kernel), the read bytes are written."""
    import errno

    import pruning.shard_copy

    calls = []

    def cannot_copy(*args):
        calls.append(args)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    kernel = write_pruned(sharded, tmp_path / "kernel", KEPT, PROVENANCE, hash_cache=SourceHashCache(None))
    monkeypatch.setattr(pruning.shard_copy.os, "copy_file_range", cannot_copy)
    written = write_pruned(sharded, tmp_path / "written", KEPT, PROVENANCE, hash_cache=SourceHashCache(None))
    assert calls  # the fallback was taken
    assert {p.name: p.read_bytes() for p in kernel.iterdir()} == {p.name: p.read_bytes() for p in written.iterdir()}
    assert manifest(written)["files"] == {
        p.name: sha256_file(p) for p in sorted(written.iterdir()) if p.name != "pruning.json"
    }
