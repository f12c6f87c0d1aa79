"""Shipping as users install it: a Hugging Face Space built the way its builder builds it, and
the wheel installed into a fresh environment and run from a folder outside the repository that
has its own `analysis/` and `app/` packages.

Both run in a fresh virtual environment without vittle whose third-party packages come from
this test run's environment (a .pth line naming its site-packages; `.pth` files there, such
as an editable install's, are not read), so they check what the repository and the wheel
carry, not what this machine happens to have installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(path: Path) -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line]
    return {r.name.lower().replace("_", "-"): r for r in requirements}


def app_requirements() -> set[str]:
    """Third-party distributions of vittle[app] (pyproject.toml), following vittle[...] references."""
    project = PYPROJECT["project"]
    names = {Requirement(r).name for r in project["dependencies"]}
    todo, seen = ["app"], set()
    while todo:
        extra = todo.pop()
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            requirement = Requirement(line)
            if requirement.name == "vittle":
                todo += [e for e in requirement.extras if e not in seen]
            else:
                names.add(requirement.name)
    return {n.lower().replace("_", "-") for n in names}


def test_space_requirements_are_vittle_app_at_the_tested_versions():
    """requirements.txt stands alone (no -c, -e, '.', file paths): exactly vittle[app]'s
    packages, each pinned inside pyproject.toml's range, and agreeing with constraints.txt."""
    text = (ROOT / "requirements.txt").read_text()
    assert not [line for line in text.splitlines() if line.strip().startswith(("-", ".", "/")) or "file:" in line]
    required = pins(ROOT / "requirements.txt")
    assert set(required) == app_requirements()
    declared = {}
    project = PYPROJECT["project"]
    for line in [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]:
        requirement = Requirement(line)
        if requirement.name != "vittle":
            declared[requirement.name.lower().replace("_", "-")] = requirement
    for name, requirement in required.items():
        assert str(requirement.specifier).startswith("=="), f"{name} must be pinned: {requirement}"
        version = Version(str(requirement.specifier)[2:])
        assert declared[name].specifier.contains(version, prereleases=True), f"{requirement} is outside pyproject's {declared[name]}"
    for name, constraint in pins(ROOT / "constraints.txt").items():
        assert name in required and required[name].specifier == constraint.specifier, \
            f"constraints.txt has {constraint}, requirements.txt {required.get(name)}: the two must agree"


def _bare_python(folder: Path) -> Path:
    """A fresh virtual environment without vittle that sees this environment's third-party packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "third_party.pth").write_text("\n".join(sorted(ours)) + "\n")
    where = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('vittle'))"],
                           capture_output=True, text=True, cwd=folder, check=True).stdout.strip()
    assert where == "None", f"the fresh environment must not see vittle: {where}"
    return python


def _serve(command: list[str], cwd: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status == 200:
                return process
        except OSError:
            time.sleep(0.5)
    _stop(process)
    raise AssertionError(f"not served: {process.communicate(timeout=30)[0][-3000:]}")


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.communicate(timeout=30)[0] if process.stdout and not process.stdout.closed else ""


def _ask(port: int) -> tuple[list[str], str]:
    """One turn through the API (four answers) and the Robustness tab's table."""
    import easy_vqa
    from gradio_client import Client, handle_file

    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    result = client.predict(handle_file(easy_vqa.get_test_image_paths()[0]), "what color is the shape?", "frost", 3, "none", 3, "vittle-f",
                            "pca", api_name="/run")
    table = client.predict("vittle-f", api_name="/robustness")[0]
    return list(result[3:7]), table


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VITTLE_", "PYTHON"))}
    env.update(HOME=str(home), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               VITTLE_APP_EXAMPLES=str(home / "examples"))
    return env


@pytest.mark.slow
def test_a_space_builds_from_requirements_alone_and_app_py_answers(tmp_path, free_port):
    """The builder: requirements.txt alone in an empty folder resolves (pip's dry run against the
    package index), then app.py runs from a copy of the repository with no install of vittle."""
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(ROOT / "requirements.txt", build / "requirements.txt")
    resolved = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                               "--report", str(build / "report.json"), "-r", "requirements.txt"],
                              cwd=build, capture_output=True, text=True, timeout=600)
    unreachable = "NewConnectionError" in resolved.stderr or "No matching distribution" in resolved.stderr
    if resolved.returncode and unreachable and not os.environ.get("CI"):  # CI reaches the index: there it must pass
        pytest.skip(f"the package index cannot be reached: {resolved.stderr[-300:]}")
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    chosen = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
              for item in json.loads((build / "report.json").read_text())["install"]}
    for name, requirement in pins(ROOT / "requirements.txt").items():
        assert Version(chosen[name]).base_version == str(requirement.specifier)[2:], (name, chosen[name])
    # the repository copied as the builder copies it (tracked files), run without installing it
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    space = tmp_path / "space"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (space / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, space / name)
    python = _bare_python(tmp_path / "env")
    env = _clean_env(tmp_path / "home") | {"GRADIO_SERVER_PORT": str(free_port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    process = _serve([str(python), "app.py", "--no-precompute", "--no-warm-umap"], space, free_port, env)
    try:
        answers, table = _ask(free_port)
    finally:
        log = _stop(process)
    assert all(isinstance(a, str) and a.strip() for a in answers), answers
    assert "Gates, clean questions only" in table and "The first robustness lab" in table, table  # staged.json and lab.json read
    assert str(ROOT) not in log, "the Space must run the copied code"


@pytest.mark.slow
def test_the_wheel_serves_the_demo_outside_the_repository(tmp_path, free_port):
    """`pip install vittle[app]` then `vittle demo`: the wheel carries the embedded models and the
    lab's summary; installed as vittle.analysis and vittle.app, it is not shadowed by a project's
    own `analysis` and `app` packages in the folder it runs from."""
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(dist),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("vittle-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "vittle/app/components.pyi" in names  # Gradio's stub is in the RECORD: an uninstall removes it
    assert not [n for n in names if n.split("/")[0] in ("analysis", "app", "assets")]  # nothing at the top level but vittle
    python = _bare_python(tmp_path / "env")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                                "--quiet", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    project = tmp_path / "my-project"  # a user's project with packages named like ours
    for name in ("analysis", "app"):
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text("MINE = True\n")
    env = _clean_env(tmp_path / "home")
    vittle = python.parent / "vittle"
    version = subprocess.run([str(vittle), "--version"], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"vittle {PYPROJECT['project']['version']}", version
    check = ("import analysis, app, vittle, vittle.analysis.perturb as p; "
             "assert analysis.MINE and app.MINE; print(p.__file__); print(p.apply('char_typo:2', text='What color is it?', seed=0)[1])")
    result = subprocess.run([str(python), "-c", check], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    location, typo = result.stdout.splitlines()
    assert location.startswith(str(tmp_path / "env")) and typo != "What color is it?"
    listing = subprocess.run([str(python), "-m", "vittle.cli", "perturb", "list"], cwd=project, env=env, capture_output=True,
                             text=True, timeout=120)
    assert listing.returncode == 0 and "frost" in listing.stdout, listing.stderr
    help_text = subprocess.run([str(vittle), "demo", "--help"], cwd=project, env=env, capture_output=True, text=True, timeout=120).stdout
    assert "embedded:tiny-baseline" in help_text and "site-packages" not in help_text
    process = _serve([str(vittle), "demo", "--port", str(free_port), "--no-precompute", "--no-warm-umap"], project, free_port, env)
    try:
        answers, table = _ask(free_port)
    finally:
        _stop(process)
    assert all(isinstance(a, str) and a.strip() for a in answers), answers
    assert "The first robustness lab" in table and "not shown" not in table, table  # lab.json shipped and read
    assert "Gates, clean questions only" in table and "no staged.json" not in table, table  # staged.json too


def test_the_sdist_holds_every_file_of_the_repository(tmp_path):
    """So that its tests run: pytest from an unpacked sdist finds the tests, app.py, the assets
    and the docs the tests read."""
    import tarfile

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist tests itself)")
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))")
    built = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    name = built.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as archive:
        inside = {member.split("/", 1)[1] for member in archive.getnames() if "/" in member}
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())
    tracked = {f for f in tracked if (ROOT / f).is_file()}
    missing = sorted(tracked - inside)
    assert not missing, f"the sdist lacks {missing[:20]}"
