"""The shipped demo model (issue 22): its files are the ones recorded, and the demo uses them without training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from demo import build, shipped
from demo.model_config import DemoModelConfig
from demo.numerics import weights_sha256
from moeprune.errors import UserError


def _no_training(*args, **kwargs):
    raise AssertionError("the demo trained a model although the repository ships one for this recipe")


def test_the_shipped_files_are_the_recorded_ones():
    record = shipped.load_record()
    assert record is not None, "demo/model/shipped.json is missing"
    assert set(record["files"]) == set(shipped.FILES)
    shipped.verify(shipped.SHIPPED_DIR, record)  # every file's sha256
    assert weights_sha256(shipped.SHIPPED_DIR) == record["weights_sha256"]
    assert record["trained_on"]["cpu"] and record["trained_on"]["date"]


def test_the_shipped_model_answers_the_default_recipe():
    from demo.corpus import build_corpus

    cfg = DemoModelConfig()
    assert build.shipped_for(build_corpus(cfg.corpus_seed), cfg) is not None, (
        "the recipe changed: retrain and refresh demo/model (python -m demo.shipped, see demo/shipped.py)"
    )


def test_the_demo_uses_the_shipped_model_without_training(tmp_path, monkeypatch):
    monkeypatch.setattr("demo.train_child.train_in_child", _no_training)
    record = shipped.load_record()
    model_dir, built = build.build_model(DemoModelConfig(), tmp_path, use_shipped=True)
    assert built["source"] == "shipped" and not built["cached"]
    assert built["weights_sha256"] == record["weights_sha256"] == weights_sha256(model_dir)
    assert model_dir.name == shipped.model_dir_name(record)
    assert (model_dir / build.DONE_MARKER).exists()
    assert not list(model_dir.parent.glob("*.building-*"))
    again_dir, again = build.build_model(DemoModelConfig(), tmp_path, use_shipped=True)
    assert again_dir == model_dir and again["cached"] and again["source"] == "shipped"


def test_a_reduced_recipe_is_trained_not_taken_from_the_shipped_files(tmp_path, monkeypatch):
    monkeypatch.setattr("demo.train_child.train_in_child", _no_training)
    with pytest.raises(AssertionError, match="trained a model"):
        build.build_model(DemoModelConfig(max_steps=3), tmp_path, use_shipped=True)


def test_a_damaged_shipped_file_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr("demo.train_child.train_in_child", _no_training)
    damaged = tmp_path / "model"
    shutil.copytree(shipped.SHIPPED_DIR, damaged)
    (damaged / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
    with pytest.raises(UserError, match=r"model.safetensors has sha256 .*--retrain"):
        build.build_model(DemoModelConfig(), tmp_path / "cache", use_shipped=True, shipped_dir=damaged)
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())


def test_the_retrain_comparison_is_said_plainly_and_never_fails():
    record = shipped.load_record()
    assert "EQUAL" in shipped.comparison(record["weights_sha256"], record, same_recipe=True)
    other = shipped.comparison("0" * 64, record, same_recipe=True)
    assert "DIFFER" in other and "goes on" in other and record["trained_on"]["cpu"] in other
    assert "nothing shipped to compare" in shipped.comparison("0" * 64, record, same_recipe=False)
    assert "no shipped model" in shipped.comparison("0" * 64, None, same_recipe=True)


def test_the_demo_says_where_its_model_came_from_in_words_the_first_run_bench_finds():
    import importlib.util

    from demo.command import compare_with_shipped, model_origin

    spec = importlib.util.spec_from_file_location("first_run", Path(__file__).parents[2] / "bench" / "first_run.py")
    first_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(first_run)
    pattern = dict(first_run.STEPS)["get the demo model"]
    shipped_line = f"demo: model demo-shipped-x {model_origin({'source': 'shipped', 'cached': False})} (loss ...)"
    trained_line = f"demo: model demo-x {model_origin({'source': 'trained', 'cached': False, 'train_seconds': 9})}"
    assert pattern.search(shipped_line) and pattern.search(trained_line)
    assert "reused from cache" in model_origin({"source": "shipped", "cached": True})
    record = shipped.load_record()
    assert "EQUAL" in compare_with_shipped(DemoModelConfig(), {"weights_sha256": record["weights_sha256"]})
    assert "nothing shipped" in compare_with_shipped(DemoModelConfig(max_steps=3), {"weights_sha256": "0" * 64})
