"""`vittle push` and train.push_to_hub against a local stand-in of the Hub: a real HTTP server
on 127.0.0.1 that speaks the endpoints huggingface_hub's create_repo and upload_folder use
(create, preupload, commit), so the real client runs unchanged; never the real Hub."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from vittle.checkpoint import CheckpointError
from vittle.hub import IGNORED, check_folder, push, write_card


class HubStandIn:
    """Stores each commit's files under root/<org>/<name>/; answers every file as a "regular"
    upload (inlined in the commit) so no LFS or Xet storage is needed."""

    def __init__(self, root: Path, refuse: int | None = None):
        self.root, self.refuse, self.requests, self.commits = root, refuse, [], 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                stand_in.requests.append(("GET", self.path))
                self._reply(404, {"error": "not found"})

            def do_POST(self):
                body = self._body()
                stand_in.requests.append(("POST", self.path))
                if stand_in.refuse:
                    return self._reply(stand_in.refuse, {"error": "Invalid credentials"})
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts == ["api", "validate-yaml"]:  # the client checks a README's metadata first
                    return self._reply(200, {"errors": [], "warnings": []})
                if parts[:2] == ["api", "repos"] and parts[2] == "create":
                    request = json.loads(body)
                    repo = f"{request.get('organization') or 'user'}/{request['name']}" if "/" not in request["name"] else request["name"]
                    (stand_in.root / repo).mkdir(parents=True, exist_ok=True)
                    return self._reply(200, {"url": f"{stand_in.url}/{repo}", "name": repo})
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                       for f in files], "commitOid": "0" * 40})
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "commit":
                    repo = "/".join(parts[2:4])
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            target = stand_in.root / repo / item["value"]["path"]
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_bytes(base64.b64decode(item["value"]["content"]))
                        elif item["key"] != "header":
                            return self._reply(400, {"error": f"unsupported operation {item['key']}"})
                    stand_in.commits += 1
                    return self._reply(200, {"commitUrl": f"{stand_in.url}/{repo}/commit/{stand_in.commits:040x}",
                                             "commitOid": f"{stand_in.commits:040x}"})
                return self._reply(404, {"error": f"no route {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def trained(shapes_data, tmp_path_factory):
    """A tiny Vittle run's output folder, with a checkpoint and the trainer's state inside."""
    from vittle.settings import load_recipe
    from vittle.trainer import train

    out = tmp_path_factory.mktemp("run") / "model"
    train(load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={out}", "train.max_steps=4",
                                      "train.save_steps=2", "model.init=tiny"]))
    return out


def _copy(folder: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(folder, to)
    return to


def _front_matter(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_push_uploads_a_loadable_model_with_its_card_and_without_the_trainer_state(trained, tmp_path, monkeypatch):
    from vittle.inference import Assistant

    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    folder = _copy(trained, tmp_path / "model")
    (folder / "metrics.json").write_text(json.dumps({"clean": {"accuracy": 0.87}, "note": "text is skipped"}))
    with HubStandIn(tmp_path / "hub") as hub:
        url = push(folder, "org/tiny-vittle", endpoint=hub.url, token="hf_test", base_model="org/base",
                   datasets=["liuhaotian/LLaVA-Instruct-150K"])
    assert url.startswith(f"{hub.url}/org/tiny-vittle/commit/")
    uploaded = tmp_path / "hub" / "org" / "tiny-vittle"
    names = sorted(p.relative_to(uploaded).as_posix() for p in uploaded.rglob("*") if p.is_file())
    assert "model.safetensors" in names and "config.json" in names and "README.md" in names and "vittle_recipe.yaml" in names
    assert not [n for n in names if n.startswith("checkpoint-") or n.endswith((".pt", ".pth", ".bin")) or n == "trainer_state.json"]
    meta, body = _front_matter(uploaded / "README.md")
    # a bottleneck model: the Hub must not offer plain transformers, which drops the bottleneck
    assert meta["pipeline_tag"] == "image-text-to-text" and meta["library_name"] == "vittle" and meta["license"] == "mit"
    assert {"vittle", "llava", "arxiv:2505.13946"} <= set(meta["tags"]) and meta["base_model"] == "org/base"
    assert meta["datasets"] == ["liuhaotian/LLaVA-Instruct-150K"]
    assert "drops the bottleneck" in body and 'Assistant.load("org/tiny-vittle")' in body
    assert "[arXiv:2505.13946](https://arxiv.org/abs/2505.13946)" in body
    assert "| clean.accuracy | 0.87 |" in body and "| kl_weight | 0.1 |" in body
    # the uploaded files load and answer as the original does
    original = Assistant.load(trained, device="cpu")
    copy = Assistant.load(uploaded, device="cpu")
    assert copy.has_bottleneck
    import random

    from vittle.toy.shapes import COLOURS, draw_shape

    image = draw_shape("circle", COLOURS["red"], 32, random.Random(0))
    assert copy.answer(image, "What colour is the shape?") == original.answer(image, "What colour is the shape?")


def test_an_existing_card_keeps_its_text_under_the_metadata(trained, tmp_path):
    folder = _copy(trained, tmp_path / "model")
    (folder / "README.md").write_text("---\ntags: [easy-vqa]\n---\n# tiny-vittle-f\n\nMeasured numbers here.\n")
    write_card(folder, "org/x")
    meta, body = _front_matter(folder / "README.md")
    assert set(meta["tags"]) >= {"easy-vqa", "vittle", "llava"}
    assert body.lstrip().startswith("# tiny-vittle-f\n\nMeasured numbers here.") and "drops the bottleneck" in body
    write_card(folder, "org/x")  # idempotent: one front matter, one loading section
    text = (folder / "README.md").read_text()
    assert text.count("\n---\n") == 1 and text.count("## Loading") == 1


def test_library_name_says_how_the_model_loads_as_trained(trained, tmp_path):
    """transformers only for a model plain transformers loads whole; the embedded tiny models
    (a vision tower only vittle registers) say so and carry their measured results."""
    from vittle.hub import card_metadata, find_results

    plain = json.loads((trained / "config.json").read_text())
    plain.pop("vittle", None)  # the bottleneck settings (vittle.model.CONFIG_KEY)
    assert card_metadata(plain, {})["library_name"] == "transformers"
    embedded = Path(__file__).resolve().parents[2] / "assets" / "models" / "tiny-baseline"
    folder = _copy(embedded, tmp_path / "tiny-baseline")
    (folder / "README.md").unlink()
    write_card(folder, "org/tiny-baseline")
    meta, body = _front_matter(folder / "README.md")
    assert meta["library_name"] == "vittle" and "baseline" in meta["tags"]
    assert "Plain transformers cannot load this model: its vision tower is registered by vittle (`vittle_efficientnet_lite`)" in body
    index = meta["model-index"][0]
    assert index["name"] == "tiny-baseline" and index["results"][0]["dataset"]["type"] == "easy-vqa"
    clean = find_results(folder)["metrics.json"]["clean.all"]
    assert index["results"][0]["metrics"][0] == {"type": "accuracy", "value": round(clean, 2), "name": "clean accuracy, all questions"}


def test_folders_that_cannot_be_loaded_are_refused_before_any_upload(trained, tmp_path):
    no_processor = _copy(trained, tmp_path / "a")
    (no_processor / "processor_config.json").unlink()
    with pytest.raises(CheckpointError, match="has no processor"):
        check_folder(no_processor)
    pickled = _copy(trained, tmp_path / "b")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"holds pickle weights \(pytorch_model.bin\)"):
        check_folder(pickled)
    with pytest.raises(ValueError, match="repo_id='tiny' must look like ORG/NAME"):
        push(trained, "tiny", endpoint="http://127.0.0.1:9")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_hub_errors_are_reported_with_the_repository(trained, tmp_path):
    free_port = _free_port()
    folder = _copy(trained, tmp_path / "model")
    with HubStandIn(tmp_path / "hub", refuse=401) as hub:
        with pytest.raises(CheckpointError, match="the Hub refused the upload to org/x"):
            push(folder, "org/x", endpoint=hub.url, token="bad")
    with pytest.raises(CheckpointError, match=f"cannot reach the Hub at http://127.0.0.1:{free_port} to upload org/x"):
        push(folder, "org/x", endpoint=f"http://127.0.0.1:{free_port}", token="t")


def test_train_push_to_hub_uploads_the_final_model(shapes_data, tmp_path, monkeypatch):
    from vittle.settings import load_recipe
    from vittle.trainer import train

    with HubStandIn(tmp_path / "hub") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        import huggingface_hub.constants as constants

        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        train(load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={tmp_path / 'out'}", "train.max_steps=2",
                                          "train.push_to_hub=org/pushed"]))
    assert (tmp_path / "hub" / "org" / "pushed" / "model.safetensors").is_file()
    assert (tmp_path / "hub" / "org" / "pushed" / "README.md").is_file()


@pytest.mark.parametrize(("override", "message"), [
    ("train.push_to_hub=nope", r"train.push_to_hub='nope' must look like ORG/NAME"),
    ("train.extra.push_to_hub=true", r"train.extra.push_to_hub: Trainer's own upload .* set train.push_to_hub=ORG/NAME instead"),
])
def test_push_settings_are_checked(shapes_data, tmp_path, override, message):
    from vittle.settings import load_recipe
    from vittle.training_args import training_arguments

    with pytest.raises(ValueError, match=message):
        training_arguments(load_recipe("tiny-shapes", [f"data.path={shapes_data}", override]))


def test_ignored_patterns_cover_the_trainer_state():
    import fnmatch

    for name in ("optimizer.pt", "rng_state_0.pth", "scheduler.pt", "training_args.bin", "checkpoint-500/model.safetensors"):
        assert any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED), name


def test_the_card_names_the_model_s_own_family_and_class(tmp_path):
    """A Qwen2.5-VL model's card names its family and transformers class (not LLaVA's), in the
    text, the plain-transformers warning and the tags."""
    from vittle.hub import card_metadata, card_text

    config = {"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"],
              "vittle": {"layer": 21, "alpha_max": 0.5, "prior": "fixed"}}
    meta = card_metadata(config, {})
    text = card_text(tmp_path, "org/qwen-vittle", config, meta)
    assert "qwen2_5_vl" in meta["tags"] and "llava" not in meta["tags"]
    assert "Qwen2.5-VL-architecture multimodal LLM (`Qwen2_5_VLForConditionalGeneration`)" in text
    assert "`Qwen2_5_VLForConditionalGeneration.from_pretrained`" in text and "Llava" not in text
