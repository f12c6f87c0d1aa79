"""The package's metadata agrees with the code: every third-party import is declared in the
extra of the code that imports it, the tested pins sit inside the declared ranges, and a
command whose extra is missing says which one to install."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
FIRST_PARTY = {"vittle", "analysis", "app", "benchmarks", "tests"}

# Which extra a source file's imports come with. First match wins; the rest of vittle/ is core.
EXTRA_OF_FILE = [
    ("vittle/toy/", "tiny"),
    ("vittle/", None),
    ("analysis/evaluate/lmms.py", "lmms"),
    ("analysis/", "analysis"),
    ("app/", "app"),
    ("app.py", "app"),
]
# Imported only where a feature asks for it, with a message naming the extra.
OPTIONAL = {"peft": "train", "bitsandbytes": "quant", "deepspeed": "deepspeed", "lmms_eval": "lmms", "spaces": None}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_of(extra: str | None) -> set[str]:
    """Distribution names that `pip install vittle[extra]` brings (core included), following
    the extras' references to vittle[...]."""
    names = {_normalize(Requirement(r).name) for r in PROJECT["dependencies"]}
    todo, seen = [extra] if extra else [], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for line in PROJECT["optional-dependencies"][current]:
            req = Requirement(line)
            if req.name == "vittle":
                todo.extend(req.extras)
            else:
                names.add(_normalize(req.name))
    return names


def third_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY}


def source_files() -> list[Path]:
    files = [ROOT / "app.py"]
    for package in ("vittle", "analysis", "app"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def test_every_import_is_declared_in_the_extra_of_its_code():
    distributions = packages_distributions()
    missing = []
    for path in source_files():
        relative = path.relative_to(ROOT).as_posix()
        extra = next(e for prefix, e in EXTRA_OF_FILE if relative.startswith(prefix))
        declared = requirements_of(extra)
        for module in sorted(third_party_imports(path)):
            if module in OPTIONAL:
                assert OPTIONAL[module] is None or OPTIONAL[module] in PROJECT["optional-dependencies"], module
                continue
            dists = distributions.get(module)
            assert dists, f"{relative} imports {module}, which no installed distribution provides"
            if not {_normalize(d) for d in dists} & declared:
                missing.append(f"{relative}: {module} ({dists[0]}) not in vittle[{extra or ''}]")
    assert not missing, "\n".join(missing)


def test_the_extras_nest_as_documented():
    assert requirements_of(None) >= {"torch", "transformers", "accelerate", "safetensors", "huggingface-hub", "pyyaml"}
    assert "gradio" not in requirements_of(None) and "plotly" not in requirements_of(None)
    assert requirements_of("app") >= requirements_of("analysis") >= requirements_of("tiny")
    assert "peft" in requirements_of("train") and "deepspeed" not in requirements_of("all")
    assert requirements_of("all") >= requirements_of("app") | requirements_of("eval") | requirements_of("train")


def test_python_and_torch_are_ranges_and_the_tested_pins_fall_inside_them():
    specifier = Requirement(f"python{PROJECT['requires-python']}").specifier
    assert all(specifier.contains(v) for v in ("3.11", "3.12", "3.13")) and not specifier.contains("3.10")
    declared = {Requirement(r).name: Requirement(r) for r in PROJECT["dependencies"]}
    for extra in PROJECT["optional-dependencies"].values():
        declared.update({Requirement(r).name: Requirement(r) for r in extra if not r.startswith("vittle")})
    assert not str(declared["torch"].specifier).startswith("=="), "torch must be a range: an exact pin replaces CUDA builds"
    pins = [Requirement(line) for line in (ROOT / "constraints.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert {p.name for p in pins} >= {"torch", "transformers", "gradio"}
    for pin in pins:
        version = Version(str(pin.specifier).removeprefix("=="))
        assert declared[pin.name].specifier.contains(version), f"constraints.txt {pin} is outside pyproject's {declared[pin.name]}"
    from importlib.metadata import version as installed

    assert Version(installed("torch")).base_version == str(next(p for p in pins if p.name == "torch").specifier).removeprefix("==")
    assert int(re.search(r"setuptools>=(\d+)", PYPROJECT["build-system"]["requires"][0]).group(1)) >= 77  # SPDX license string


def test_make_venv_installs_everything_at_the_tested_versions():
    makefile = (ROOT / "Makefile").read_text()
    install = next(line for line in makefile.splitlines() if "pip install" in line and "-e" in line)
    assert "-c constraints.txt" in install and '".[all,test]"' in install


def test_readme_cites_the_paper_and_documents_the_extras():
    readme = (ROOT / "README.md").read_text()
    assert "@inproceedings{oh2025vittle" in readme and "2505.13946" in readme
    for extra in ("app", "analysis", "eval", "train", "tiny"):
        assert f"vittle[{extra}]" in readme, extra


@pytest.mark.parametrize(("command", "blocked", "extra"), [
    (["demo", "--port", "1"], "gradio", "app"),
    (["perturb", "--image", "{image}", "--spec", "frost:1", "--out", "{out}"], "imagecorruptions", "analysis"),
])
def test_a_command_without_its_extra_names_the_extra(command, blocked, extra, tmp_path):
    """A module set to None in sys.modules fails to import, as an uninstalled one does."""
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "x.png")
    command = [part.format(image=tmp_path / "x.png", out=tmp_path / "out") for part in command]
    code = f"import sys; sys.modules[{blocked!r}] = None; from vittle.cli import main; sys.exit(main({command!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"needs {blocked!r}, which comes with the {extra!r} extra: pip install 'vittle[{extra}]'" in result.stderr, result.stderr


def test_vittle_demo_is_the_app():
    result = subprocess.run([sys.executable, "-m", "vittle.cli", "demo", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: vittle demo") and "--baseline" in result.stdout


def test_every_package_folder_is_listed_for_setuptools():
    """pyproject.toml lists the packages (no discovery): a folder with an __init__.py left out
    would be missing from the wheel."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    mapped = {"vittle": "vittle", **{folder: package for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}}
    found = {".".join([mapped[folder], *init.parent.relative_to(ROOT / folder).parts])
             for folder in mapped for init in (ROOT / folder).rglob("__init__.py")}
    assert "vittle.toy" in found and not found - listed, sorted(found - listed)
