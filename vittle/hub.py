"""Publishing a trained model on the Hugging Face Hub: `vittle push MODEL REPO_ID`.

The folder is checked first (weights as safetensors, the processor, the chat template), a
model card with the Hub's YAML metadata is written into it (README.md; a card already there,
such as the lab's, keeps its text and gets the metadata on top), and the folder is uploaded
without the trainer's state (optimizer, RNG, scheduler files, older checkpoints).
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES  # type: ignore[attr-defined]  # the built-in types (public, not re-exported)

from vittle.checkpoint import CheckpointError, weight_files
from vittle.family_table import FAMILIES
from vittle.model import CONFIG_KEY

logger = logging.getLogger(__name__)

CARD = "README.md"
IGNORED = ["checkpoint-*", "checkpoint-*/**", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "training_args.bin",
           "trainer_state.json", "*.tmp", ".cache/**"]
"""Not uploaded: the trainer's state (pickles among them) and intermediate checkpoints."""
ARXIV = "2505.13946"
TAGS = ["vittle", "multimodal", "information-bottleneck", f"arxiv:{ARXIV}"]
"""The Hub links a model to a paper through an `arxiv:ID` tag; the model's `model_type` ("llava",
"qwen2_5_vl", ...) is added per model."""
PLAIN_LOAD_WARNING = (
    "Do not load it with plain transformers (`{cls}.from_pretrained`): that drops the bottleneck "
    "(its load report lists the `vittle_bottleneck.*` weights as UNEXPECTED, and the layer-{layer} states then pass "
    "unchanged instead of as (1 - alpha) * h + alpha * mu with alpha = {alpha}), so the answers differ from the "
    "trained model's. vittle (`pip install vittle`) attaches the bottleneck from `config.json`; this card's "
    "`library_name` is therefore `vittle`, not `transformers`."
)
CUSTOM_PARTS_WARNING = (
    "Plain transformers cannot load this model: its {parts} {verb} registered by vittle (`{types}`), so "
    "`from_pretrained` fails with \"Unrecognized model type\". Load it with vittle (`pip install 'vittle[tiny]'`)."
)
GENERATED = ("<!-- vittle push: generated from config.json and the results files; refreshed on each push -->",
             "<!-- end of the generated part -->")
RESULT_FILES = ("metrics.json", "results.json", "eval_results.json", "lab.json")


def check_folder(folder: str | Path) -> dict[str, Any]:
    """The folder's config, after checking that it holds what loading it needs; raises
    CheckpointError naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} has no config.json: not a saved model")
    weight_files(folder)  # safetensors present (pickles refused), or a CheckpointError that says what is there
    if not any((folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")):
        raise CheckpointError(f"{folder} has no processor (processor_config.json): save it with processor.save_pretrained "
                              "next to the model, or upload a folder written by `vittle train`")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise CheckpointError(f"{folder} has no tokenizer files")
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as err:
        raise CheckpointError(f"{folder}/config.json is not valid JSON ({err})") from err


def _recipe(folder: Path) -> dict[str, Any]:
    file = folder / "vittle_recipe.yaml"
    if not file.is_file():
        return {}
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return {}


def _looks_like_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "/", "~")) and not Path(value).exists()


def find_results(folder: Path) -> dict[str, dict[str, float]]:
    """Numbers from evaluation files saved beside the model (file name -> flattened key -> value)."""
    found: dict[str, dict[str, float]] = {}
    for name in RESULT_FILES:
        file = folder / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except ValueError:
            logger.warning("%s is not valid JSON; left out of the model card", file)
            continue
        flat: dict[str, float] = {}

        def walk(value: Any, prefix: str) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(item, f"{prefix}.{key}" if prefix else str(key))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[prefix] = value

        walk(data, "")
        if flat:
            found[name] = flat
    return found


def custom_parts(config: dict[str, Any]) -> dict[str, str]:
    """Sub-models of `config` whose model_type plain transformers does not know ({"vision_config":
    "vittle_efficientnet_lite"} for the tiny easy-vqa models); empty for a standard LLaVA."""
    found = {}
    for key in ("vision_config", "text_config"):
        kind = (config.get(key) or {}).get("model_type")
        if kind and kind not in CONFIG_MAPPING_NAMES:
            found[key] = kind
    return found


def plain_transformers_loads_all(config: dict[str, Any]) -> bool:
    """True when `from_pretrained` of plain transformers gives the model as trained: no
    bottleneck, no part that only vittle registers."""
    return not config.get(CONFIG_KEY) and not custom_parts(config)


def model_index(name: str, results: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The Hub's `model-index` from the lab's metrics.json (clean easy-vqa accuracies); empty
    when the folder has no such file."""
    metrics = results.get("metrics.json", {})
    wanted = [("clean.all", "accuracy", "clean accuracy, all questions"),
              ("clean.grounded", "accuracy", "clean accuracy, colour and shape questions"),
              ("clean.yes_no_f1", "f1", "yes/no F1, POPE-style")]
    rows = [{"type": kind, "value": round(float(metrics[key]), 2), "name": label} for key, kind, label in wanted if key in metrics]
    if not rows:
        return []
    count = int(metrics.get("test_questions", 0))
    return [{"name": name, "results": [{
        "task": {"type": "visual-question-answering", "name": "Visual Question Answering"},
        "dataset": {"type": "easy-vqa", "name": f"easy-vqa test split ({count} questions)" if count else "easy-vqa test split",
                    "split": "test"},
        "metrics": rows,
    }]}]


def _model_class(config: dict[str, Any]) -> str:
    """The transformers class of a saved model (its config.json's `architectures`)."""
    return (config.get("architectures") or ["LlavaForConditionalGeneration"])[0]


def _family_name(config: dict[str, Any]) -> str:
    """"LLaVA", "Qwen2.5-VL", ...: the family's name in vittle's adapter, or the model type."""
    model_type = config.get("model_type", "llava")
    return "LLaVA" if model_type == "llava" else FAMILIES[model_type].name if model_type in FAMILIES else str(model_type)


def card_metadata(config: dict[str, Any], recipe: dict[str, Any], base_model: str | None = None,
                  datasets: list[str] | None = None, license: str = "mit", name: str = "",
                  results: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The Hub's YAML metadata for a vittle model. `library_name` says how it loads as trained:
    `transformers` only when plain transformers gives the whole model, else `vittle` (the Hub
    then offers no loader that would drop the bottleneck)."""
    init = str(recipe.get("model", {}).get("init", "") or "")
    base = base_model or (init if _looks_like_hub_id(init) else None)
    library = "transformers" if plain_transformers_loads_all(config) else "vittle"
    meta: dict[str, Any] = {"library_name": library, "pipeline_tag": "image-text-to-text", "license": license,
                            "tags": TAGS + [str(config.get("model_type", "llava"))] + ([] if config.get(CONFIG_KEY) else ["baseline"])}
    if base:
        meta["base_model"] = base
    if datasets:
        meta["datasets"] = list(datasets)
    index = model_index(name or "vittle-model", results or {})
    if index:
        meta["model-index"] = index
    return meta


def card_text(folder: Path, repo_id: str, config: dict[str, Any], metadata: dict[str, Any]) -> str:
    """The model card: the existing card's text (if any) under fresh metadata, or a new one."""
    existing = (folder / CARD).read_text(encoding="utf-8") if (folder / CARD).is_file() else ""
    if existing.startswith("---\n") and "\n---\n" in existing[4:]:
        head, body = existing[4:].split("\n---\n", 1)
        old = yaml.safe_load(head) or {}
        metadata = {**old, **metadata, "tags": sorted(set(old.get("tags", [])) | set(metadata["tags"]))}
        existing = body.lstrip("\n")
    if GENERATED[0] in existing:  # refreshed: drop what an earlier push generated
        before, _, rest = existing.partition(GENERATED[0])
        existing = (before.rstrip("\n") + "\n\n" + rest.partition(GENERATED[1])[2].lstrip("\n")).strip("\n")
    settings = config.get(CONFIG_KEY)
    lines = []
    if not existing:
        family = _family_name(config)
        kind = "a Vittle model" if settings else f"a plain {family} model (no bottleneck), trained with vittle"
        lines += [f"# {repo_id.split('/')[-1]}", "",
                  f"{kind.capitalize()}: a {family}-architecture multimodal LLM (`{_model_class(config)}`) "
                  "trained with Visual Instruction Bottleneck Tuning's recipe (Oh et al., NeurIPS 2025, "
                  f"[arXiv:{ARXIV}](https://arxiv.org/abs/{ARXIV})).", ""]
    if settings and not existing:
        lines += ["## The bottleneck", "", "| setting | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in settings.items()]
        lines += [""]
    lines += ["", GENERATED[0]] if existing else [GENERATED[0]]
    custom = custom_parts(config)
    if not plain_transformers_loads_all(config):
        lines += ["## Loading", "", "```python", "from vittle import Assistant", "",
                  f'assistant = Assistant.load("{repo_id}")',
                  'print(assistant.answer("image.png", "What is in the picture?"))', "```", ""]
        if settings:
            layer = settings.get("layer")
            lines += [PLAIN_LOAD_WARNING.format(cls=_model_class(config), layer=layer if layer is not None else "l",
                                                alpha=settings.get("alpha_max")), ""]
        if custom:
            lines += [CUSTOM_PARTS_WARNING.format(parts=" and ".join(k.replace("_config", " tower" if k.startswith("vision") else " model")
                                                                    for k in custom),
                                                  verb="is" if len(custom) == 1 else "are",
                                                  types="`, `".join(custom.values())), ""]
    results = find_results(folder)
    if results:
        lines += ["## Results saved with the model", ""]
        for name, values in results.items():
            lines += [f"`{name}`:", "", "| metric | value |", "|---|---|"]
            lines += [f"| {key} | {value:.4g} |" for key, value in list(values.items())[:40]]
            lines += [""]
    lines += [GENERATED[1]]
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    body = "\n".join(lines)
    return f"---\n{front}---\n\n" + (existing.rstrip("\n") + "\n\n" + body if existing else body).rstrip("\n") + "\n"


def write_card(folder: str | Path, repo_id: str, base_model: str | None = None, datasets: list[str] | None = None,
               license: str = "mit") -> Path:
    """Write (or refresh) the model card README.md in `folder`; returns its path."""
    folder = Path(folder)
    config = check_folder(folder)
    metadata = card_metadata(config, _recipe(folder), base_model, datasets, license, name=repo_id.split("/")[-1],
                             results=find_results(folder))
    path = folder / CARD
    path.write_text(card_text(folder, repo_id, config, metadata), encoding="utf-8")
    return path


def add_metadata(folder: str | Path, name: str | None = None) -> Path:
    """Put the Hub's metadata on top of the card already in `folder` (README.md), its text kept
    as it is: for cards written elsewhere, such as the lab's exported models."""
    folder = Path(folder)
    config = check_folder(folder)
    path = folder / CARD
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    old: dict[str, Any] = {}
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        head, text = text[4:].split("\n---\n", 1)
        old = yaml.safe_load(head) or {}
    metadata = card_metadata(config, _recipe(folder), name=name or folder.name, results=find_results(folder))
    metadata = {**old, **metadata, "tags": sorted(set(old.get("tags", [])) | set(metadata["tags"]))}
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    path.write_text(f"---\n{front}---\n\n{text.lstrip()}", encoding="utf-8")
    return path


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's connection errors: huggingface_hub 1.x talks through httpx, 2.x through httpx2."""
    errors = []
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def push(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None, endpoint: str | None = None,
         base_model: str | None = None, datasets: list[str] | None = None, license: str = "mit",
         commit_message: str = "Upload a vittle model") -> str:
    """Check `folder`, write its model card and upload it to `repo_id` (created if needed).
    Returns the commit's URL. `endpoint` defaults to HF_ENDPOINT or the public Hub."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"repo_id={repo_id!r} must look like ORG/NAME (or USER/NAME)")
    write_card(folder, repo_id, base_model, datasets, license)
    api = HfApi(endpoint=endpoint, token=token)
    network_errors: tuple[type[Exception], ...] = (OSError, *_transport_errors())
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", ignore_patterns=IGNORED,
                                   commit_message=commit_message)
    except HfHubHTTPError as err:
        raise CheckpointError(f"the Hub refused the upload to {repo_id}: {err}") from err
    except network_errors as err:  # connection refused, DNS, timeouts
        raise CheckpointError(f"cannot reach the Hub at {api.endpoint} to upload {repo_id}: {err}") from err
    url = getattr(commit, "commit_url", None) or str(commit)
    logger.info("uploaded %s to %s (%s)", folder, repo_id, url)
    return url
