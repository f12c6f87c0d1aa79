"""What a Hugging Face Space and a command line need from the repository."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import gradio
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must start with the Space's YAML front matter"
    return yaml.safe_load(text.split("---\n")[1])


def test_space_front_matter_matches_the_code():
    meta = front_matter()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (ROOT / meta["app_file"]).is_file() and meta["app_file"] == "app.py"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert f">={meta['python_version']}" in pyproject["project"]["requires-python"]
    gradio_pin = [d for d in pyproject["project"]["optional-dependencies"]["app"] if d.startswith("gradio")]
    assert gradio_pin == [f"gradio=={gradio.__version__.rsplit('.', 1)[0]}.*"]
    assert meta["suggested_hardware"] == "cpu-basic"  # the default app runs the embedded tiny models on a CPU
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert f"gradio=={meta['sdk_version']}" in requirements  # the version the Space's own gradio install takes
    constraints = (ROOT / "constraints.txt").read_text()
    assert f"gradio=={meta['sdk_version']}" in constraints.splitlines()


def test_packages_txt_installs_what_the_perturbations_read():
    """A Space installs packages.txt with apt: the WordNet and freedict data of the word and
    translation shifts, the same list the Makefile installs (Chromium only serves the tests)."""
    wanted = [line.strip() for line in (ROOT / "packages.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    makefile = (ROOT / "Makefile").read_text()
    apt = next(line for line in makefile.splitlines() if line.startswith("APT_PACKAGES"))
    assert sorted(wanted) == sorted(p for p in apt.split(":=")[1].split() if p != "chromium")


def test_app_help_lists_the_flags():
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in ("--host", "--port", "--share", "--baseline", "--vittle", "--vittle-l", "--device", "--max-upload-mb"):
        assert flag in result.stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["--reference-images", "2"], "vittle demo: error: reference_images=2 must be at least 3"),
    (["--concurrency", "0"], "vittle demo: error: concurrency=0 must be at least 1"),
    (["--port", "http"], "argument --port: port: expected int, got 'http'"),
    (["--max-upload-mb", "0"], "vittle demo: error: max_upload_mb=0 must be positive"),
])
def test_app_rejects_bad_flags(argv, message):
    result = subprocess.run([sys.executable, "app.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr


def test_missing_model_is_reported_in_the_status(tmp_path, free_port):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService
    from vittle.app.ui import build_demo

    service = DemoService(ServiceConfig(baseline=str(tmp_path / "nothing-here"), warm_umap=False)).start()
    assert service.wait_ready(60)
    assert service.status().startswith("Start-up failed: ") and "nothing-here" in service.status()
    demo = build_demo(service).queue()
    port = free_port
    demo.launch(prevent_thread_lock=True, quiet=True, server_port=port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        with pytest.raises(AppError, match="The models could not be loaded, so the app cannot answer: .*nothing-here"):
            client.predict(None, "What color?", "none", 3, "none", 3, "vittle-f", "pca", api_name="/run")
    finally:
        demo.close()


def test_ui_layer_imports_no_torch():
    code = "import sys; import vittle.app.ui; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_embedded_defaults_are_portable_and_a_missing_one_is_named(app_main, monkeypatch, capsys, caplog):
    """Defaults name the shipped models ("embedded:NAME"), so --help shows no local path; a
    missing embedded baseline is an error that says how to get it back, a missing optional
    Vittle (L) is left out with a warning."""
    from vittle.app.config import ASSETS, ServiceConfig

    help_text = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "embedded:tiny-baseline" in help_text and str(ROOT) not in help_text
    config = app_main.parse_args([])
    assert config.baseline == str(ASSETS / "tiny-baseline") and config.vittle_l == str(ASSETS / "tiny-vittle-l")
    assert config.lab == str(ASSETS.parent / "lab.json") and Path(config.lab).is_file()
    assert ServiceConfig(vittle_l="none").vittle_l is None
    real_is_dir = Path.is_dir
    monkeypatch.setattr("pathlib.Path.is_dir", lambda self: False if self.name == "tiny-vittle-l" else real_is_dir(self))
    with caplog.at_level("WARNING"):
        assert app_main.parse_args([]).vittle_l is None
    assert "the embedded model embedded:tiny-vittle-l is not in this installation" in caplog.text
    monkeypatch.setattr("pathlib.Path.is_dir", lambda self: False)
    with pytest.raises(SystemExit):
        app_main.parse_args([])
    err = capsys.readouterr().err
    assert "baseline: the embedded model embedded:tiny-baseline is not in this installation" in err and "reinstall" in err


def test_gradio_reload_mode_finds_the_module_level_demo(free_port):
    """`gradio app.py` runs app.py with its watcher, which needs a module-level `demo`."""
    import os
    import time
    import urllib.request

    gradio_cli = Path(sys.executable).with_name("gradio")
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    process = subprocess.Popen([str(gradio_cli), "app.py", "--", "--port", str(free_port), "--no-precompute"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{free_port}/", timeout=5).status
                break
            except OSError:
                time.sleep(1)
        assert status == 200, "the page was not served"
    finally:
        os.killpg(process.pid, 15)
        output = process.communicate(timeout=30)[0]
    assert "Watching demo: demo" in output, output[-2000:]


def test_perturbations_without_their_data_are_hidden_and_refused(service, tmp_path, monkeypatch):
    """A Space without packages.txt's data: synonym insertion (WordNet) and the translations
    (freedict, or a configured API/model) leave the menu, a note says why, and a request for
    one through the API is refused with the same reason."""
    import vittle.analysis.perturb.wordnet as wordnet
    from vittle.app.inputs import InputError
    from vittle.app.ui import _choices, hidden_note

    names = [name for _, name in _choices("text")]
    if "word_insert" not in names or "greek" not in names:
        pytest.skip("this machine lacks WordNet or freedict itself")
    assert hidden_note() == ""
    monkeypatch.setenv("VITTLE_NLTK_DATA", str(tmp_path / "nltk"))
    monkeypatch.setattr(wordnet, "DEBIAN_WORDNET", tmp_path / "no-wordnet")
    monkeypatch.setattr(wordnet.wordnet_unavailable, "__defaults__", (tmp_path / "no-wordnet",))
    monkeypatch.setenv("VITTLE_FREEDICT_DIR", str(tmp_path / "no-dictd"))
    for key in ("VITTLE_TRANSLATE_BASE_URL", "VITTLE_TRANSLATE_HF_MODEL", "VITTLE_TRANSLATOR"):
        monkeypatch.delenv(key, raising=False)
    names = [name for _, name in _choices("text")]
    assert "word_insert" not in names and not {"arabic", "greek", "hindi"} & set(names)
    assert {"char_typo", "word_swap", "word_delete"} <= set(names)
    assert len(_choices("visual")) == 10  # None + the nine visual shifts need no extra data
    note = hidden_note()
    assert "Synonym insertion (WordNet is not installed (apt-get install wordnet-base wordnet-sense-index))" in note
    assert "Translation to Arabic, Translation to Greek, Translation to Hindi (no translation backend" in note
    with pytest.raises(InputError, match="Synonym insertion is not available on this server: WordNet is not installed"):
        service.prepare(None, "what color is the shape?", "none", 3, "word_insert", 3)
    with pytest.raises(InputError, match="Translation to Greek is not available on this server: no translation backend"):
        service.prepare(None, "what color is the shape?", "none", 3, "greek", 3)


def test_the_ui_uses_api_visibility_not_the_legacy_api_name_false():
    source = (ROOT / "app" / "ui.py").read_text()
    assert "api_name=False" not in source and source.count('api_visibility="private"') >= 3


def test_the_own_folder_sweep_removes_old_files_and_emptied_folders_and_keeps_its_marker(tmp_path):
    import os
    import time

    from vittle.app.own_folder import MARKER, OwnFolder

    folder = OwnFolder(tmp_path, tmp_path.parent, None, None)
    old, new = tmp_path / "a" / "hash1" / "image.webp", tmp_path / "b" / "hash2" / "image.webp"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    (tmp_path / MARKER).write_text("1\n")
    (tmp_path / "empty" / "hash3").mkdir(parents=True)
    for path in (old, tmp_path / MARKER):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert folder.sweep(older_than_s=3600) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "empty").exists() and new.is_file()  # emptied folders went too
    assert (tmp_path / MARKER).is_file()  # old, but it is what marks the folder as held
    assert OwnFolder(tmp_path / "missing", tmp_path, None, None).sweep(1) == 0


def test_free_heap_memory_goes_back_to_the_system_where_glibc_runs():
    import platform

    from vittle.app.main import release_free_memory

    assert release_free_memory() is (platform.libc_ver()[0] == "glibc")


def test_abandoned_folders_of_killed_instances_go_and_held_or_unmarked_ones_stay(tmp_path):
    import fcntl

    from vittle.app.own_folder import MARKER, PREFIX, remove_abandoned

    abandoned, held, unmarked, foreign = (tmp_path / f"{PREFIX}dead", tmp_path / f"{PREFIX}alive", tmp_path / f"{PREFIX}nomark",
                                          tmp_path / "other-app")
    for folder in (abandoned, held, unmarked, foreign):
        folder.mkdir()
        (folder / "file.png").write_bytes(b"x")
    (abandoned / MARKER).write_text("123\n")
    (foreign / MARKER).write_text("123\n")  # a marker, but not in a folder the app names: never touched
    with (held / MARKER).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running instance holds it
        assert remove_abandoned(tmp_path) == 1
    assert not abandoned.exists() and (held / "file.png").is_file() and (unmarked / "file.png").is_file() and (foreign / "file.png").is_file()


def _paths_in(reply) -> list[str]:
    """The server-side paths of the files in a gradio_client reply made with download_files=False."""
    if isinstance(reply, dict):
        return [reply["path"]] if isinstance(reply.get("path"), str) else [p for v in reply.values() for p in _paths_in(v)]
    if isinstance(reply, (list, tuple)):
        return [p for item in reply for p in _paths_in(item)]
    return []


def test_the_app_touches_only_its_own_files_at_start_sweep_and_sigterm(tmp_path, free_port):
    """Gradio's folder is shared by every Gradio app on the host: another app's old and new files
    survive the app's start, its sweeps and its stop; the folder of an instance that was killed is
    removed at start, one a running instance holds is not. A Space or a container stops the app
    with SIGTERM: its own uploads and outputs go, as with Ctrl-C."""
    import fcntl
    import os
    import signal
    import time
    import urllib.request

    import easy_vqa
    from gradio_client import Client, handle_file

    from vittle.app.own_folder import MARKER, PREFIX

    cache = tmp_path / "gradio"
    foreign = [cache / "other-app" / "old.txt", cache / "other-app" / "new.txt", cache / "0f3a9c" / "image.webp", cache / "loose.bin"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not vittle's")
    for path in foreign[0::2]:
        os.utime(path, (time.time() - 7200, time.time() - 7200))  # two hours old: past any lifetime
    killed, running = cache / f"{PREFIX}killed", cache / f"{PREFIX}running"
    for folder in (killed, running):
        folder.mkdir()
        (folder / MARKER).write_text("1\n")
        (folder / "turn.json").write_text("{}")
    holder = (running / MARKER).open("a")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    env = dict(os.environ, GRADIO_TEMP_DIR=str(cache), GRADIO_ANALYTICS_ENABLED="False")
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(free_port), "--no-precompute", "--no-warm-umap",
                                "--file-lifetime-min", "0.2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{free_port}/", timeout=5).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        own = [p for p in cache.glob(f"{PREFIX}*") if p not in (killed, running)]
        assert len(own) == 1 and (own[0] / MARKER).is_file(), sorted(cache.iterdir())
        assert not killed.exists() and (running / "turn.json").is_file()
        # The files are not downloaded: a file the sweep removed between the reply and a download
        # would be refused, and the lifetime (12 s) is short on purpose. The reply names them.
        client = Client(f"http://127.0.0.1:{free_port}/", verbose=False, download_files=False)
        reply = client.predict(handle_file(easy_vqa.get_test_image_paths()[0]), "what color is the shape?", "frost", 3, "none", 3,
                               "vittle-f", "pca", api_name="/run")
        served = [Path(path) for path in _paths_in(reply)]
        assert [p for p in served if p.name == "image.webp"], reply  # the turn's output image
        assert all(p.is_relative_to(own[0]) for p in served), (served, own[0])  # ... in the app's own folder
        deadline = time.monotonic() + 60  # the lifetime is 12 s: the sweep runs every 12 s
        while any(p.exists() for p in served) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(p.exists() for p in served), "the sweep did not remove the app's own old files"
        assert all(p.is_file() for p in foreign), "the sweep removed another program's file"
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    finally:
        holder.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (0, 1, -signal.SIGINT, 130), output[-2000:]
    assert "Traceback" not in output.split("Keyboard")[0][-3000:] or "KeyboardInterrupt" in output
    assert not own[0].exists(), "the app's own folder outlived it"
    assert all(p.is_file() for p in foreign) and (running / "turn.json").is_file(), "the stop removed files that were not the app's"


HEAP_PROBE = r"""
import ctypes, sys, tempfile, threading

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "configured":
    from vittle.app.main import configure_heap
    assert configure_heap()
start = threading.Barrier(8)

def work():  # ctypes lets go of the GIL: eight threads in malloc at once
    start.wait()
    for _ in range(20000):
        libc.free(libc.malloc(4096))

threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile("r") as report:
    handle = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(report.read().count("<heap nr="))
"""


def test_the_heap_keeps_two_arenas_however_many_threads_allocate():
    """`configure_heap` (run by `configure_threads` before the server's threads start) caps glibc's
    arenas at 2, where eight threads allocating at once otherwise get about one each."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mallopt only")
    arenas = {mode: int(subprocess.run([sys.executable, "-c", HEAP_PROBE, mode], capture_output=True, text=True, check=True).stdout)
              for mode in ("configured", "default")}
    assert arenas["configured"] <= 2 < arenas["default"]
