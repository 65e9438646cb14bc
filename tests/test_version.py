"""The version is written once (pyproject.toml) and read from the installed metadata everywhere."""

import tomllib
from pathlib import Path

from app.config.settings import Settings
from app.config.variants import parse_config
from app.main import create_app
from moeprune.version import package_version


def test_one_version_string_for_the_package_the_manifest_and_the_gateway():
    declared = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert package_version() == declared
    app = create_app(Settings(), parse_config({"variants": {"r": {"url": "http://127.0.0.1:9"}}}))
    assert app.version == declared
