"""The unit registry: entry points of installed packages, and @register_unit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skyledger.ledger import ConfigError
from skyledger.units import T2Unit, T2View, available_units, load_unit, register_unit

PACKAGE_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "skyledger-science-demo"
version = "0.3.0"

[project.entry-points."skyledger.units"]
T2PeakCounter = "science_demo.units:T2PeakCounter"
"""

PACKAGE_UNIT = '''
from typing import Any, ClassVar, Mapping
from skyledger.units import T2Unit, T2View, UnitConfig


class T2PeakCounter(T2Unit):
    """Counts detections brighter than a threshold."""

    version = "0.3"
    binds: ClassVar = "lightcurve"

    class Config(UnitConfig):
        brighter_than: float = 19.0

    def process(self, view: T2View) -> Mapping[str, Any]:
        mags = [d.body["mag"] for d in view.lightcurve.detections if d.body.get("mag")]
        return {"bright": sum(1 for m in mags if m < self.config.brighter_than)}
'''


def install(tmp_path_factory: pytest.TempPathFactory, package: str) -> Path:
    """Build and install a science group's package with pip into a folder (built with
    this environment's setuptools: no isolated build environment to make each time)."""
    src = tmp_path_factory.mktemp("pkg")
    pyproject = PACKAGE_PYPROJECT.replace("science_demo", package)
    pyproject = pyproject.replace("science-demo", package.replace("_", "-"))
    (src / "pyproject.toml").write_text(pyproject)
    (src / package).mkdir()
    (src / package / "__init__.py").write_text("")
    (src / package / "units.py").write_text(PACKAGE_UNIT)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(tmp_path_factory, "science_demo")


def run_python(code: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": ":".join([*map(str, paths), str(root)]), "PATH": ""}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root
    )


def test_a_unit_from_an_installed_package_is_found_by_name(installed_package: Path) -> None:
    code = textwrap.dedent(
        """
        from skyledger.units import available_units, load_unit
        from skyledger.runners.job import parse_job
        cls = load_unit("T2PeakCounter")
        print(cls.__module__, cls.version, cls.name)
        print("T2PeakCounter" in available_units())
        job = parse_job('''
        channels: [{name: ALL}]
        t2: [{unit: T2PeakCounter, config: {brighter_than: 18.5}}]
        ''')
        print(job.t2[0].unit)
        """
    )
    out = run_python(code, installed_package)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [
        "science_demo.units 0.3 T2PeakCounter",
        "True",
        "T2PeakCounter",
    ]


def test_a_name_two_packages_claim_is_refused_naming_both(
    installed_package: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rival = install(tmp_path_factory, "science_rival")
    code = "from skyledger.units import load_unit; load_unit('T2PeakCounter')"
    out = run_python(code, installed_package, rival)
    assert out.returncode != 0
    assert "ConfigError: unit name 'T2PeakCounter' is installed twice" in out.stderr
    assert "science_demo.units:T2PeakCounter (from skyledger-science-demo)" in out.stderr
    assert "science_rival.units:T2PeakCounter (from skyledger-science-rival)" in out.stderr


def test_the_built_in_units_are_entry_points() -> None:
    names = available_units()
    assert names["ZtfShaper"] == "skyledger.units.shapers.ztf:ZtfShaper"
    assert load_unit("FileSource").__name__ == "FileSource"


def test_an_unknown_unit_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown unit 'T2Nothing'; known units: .*ZtfShaper"):
        load_unit("T2Nothing")


def test_a_taken_name_is_refused() -> None:
    @register_unit
    class T2Once(T2Unit):
        def process(self, view: T2View) -> dict[str, int]:
            return {}

    class T2Twice(T2Unit):
        name = "T2Once"

        def process(self, view: T2View) -> dict[str, int]:
            return {}

    with pytest.raises(ConfigError, match="unit name 'T2Once' is taken"):
        register_unit(T2Twice)
    assert load_unit("T2Once") is T2Once


def test_a_bad_configuration_names_the_unit_and_field() -> None:
    cls = load_unit("FileSource")
    with pytest.raises(
        ConfigError, match=r"unit 'FileSource': paths: Input should be a valid list"
    ):
        cls({"paths": 3})
