"""Typed, validated configuration: the bottleneck, the model, the data and the training run.

Every option lives in exactly one dataclass field with its default and a docstring-style
comment. Validation happens at construction, so a bad recipe fails before any model loads.
The command line and YAML recipes are generated from these classes (see `vittle.settings`).

Long file: every recipe setting, with its default, its docstring and its check, sits in this
one module, so that a YAML key has exactly one place to be looked up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from vittle.plugins import AUGMENTERS, DATASETS, names

PRIORS = ("fixed", "learnable")
SCHEDULES = ("cosine", "sigmoid", "constant")
SCALES = ("none", "rms")
TEXT_KL_SCOPES = ("prompt", "all")
KINDS = ("ib", "noise")
STAGES = ("pretrain", "align", "instruct", "baseline")
ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2")
QUANTIZE = ("", "4bit", "8bit")


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(allowed)}")


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} must be a number")
    if not math.isfinite(value):  # NaN compares False with every bound, so say it first
        raise ValueError(f"{name}={value!r} must be a finite number")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}={value!r} is out of range; allowed: {bound}")


def default_layer(depth: int) -> int:
    """The default bottleneck layer: the paper's 24 of 32 (3 * depth // 4, so about a fifth of
    the layers follow), but never fewer than two layers after it where the depth allows."""
    return max(0, min(3 * depth // 4, depth - 3))


@dataclass(frozen=True)
class BottleneckConfig:
    """Where the bottleneck sits and how it is trained (docs/method.md)."""

    layer: int | None = None
    """0-based index of the decoder layer after which the bottleneck sits. None: the paper's
    fraction, 3 * depth // 4 (24 of 32 for LLaVA-1.5 7B), moved down so that at least two
    layers follow it (after layer 1 of 4, 3 of 6). The last layer is refused: nothing would
    read the image tokens' bottleneck states."""
    kind: str = "ib"
    """"ib": the paper's information bottleneck (posterior MLPs, KL to the prior). "noise": a
    control with no MLP and no KL: the sample is drawn from N(0, I) whatever h is, so
    (1 - alpha) * h + alpha * eps flows on in training and (1 - alpha) * h at inference. It
    separates what the bottleneck learns from plain noise injection."""
    prior: str = "fixed"
    """"fixed": N(0, I) (Vittle (F)); "learnable": one mean and log-variance vector per
    modality, initialized at zero (Vittle (L))."""
    kl_weight: float = 0.1
    """Weight of the mean elementwise KL of each modality (beta = kl_weight / d)."""
    alpha_max: float = 0.5
    """Final interpolation weight between the hidden state and its sample; used at inference."""
    schedule: str = "cosine"
    """How alpha grows from 0 to alpha_max over training: "cosine" (the paper), "sigmoid"
    (alpha_max * sigmoid(10 * (progress - 0.5)), the authors' code) or "constant"."""
    logvar_clamp: float = 2.3025
    """Posterior log-variances are clamped to [-logvar_clamp, logvar_clamp] (variance 0.1..10)."""
    text_kl_scope: str = "prompt"
    """Text tokens whose KL counts: "prompt" (non-answer tokens, the authors' code) or "all"."""
    scale: str = "none"
    """"none": the paper's bottleneck on h itself. "rms" (a variant, not in the paper): the
    posterior and its prior live on h / rms(h), each token's root-mean-square, and the sample
    is scaled back, z = rms(h) * (mu + sigma * eps); the objective is unchanged, but the
    prior's unit variance now matches the hidden state's scale whatever the layer's norm."""

    init_std: float | None = None
    """Standard deviation of the posterior MLPs' initial weights (biases start at 0). None: the
    language model's own `initializer_range` (0.02 for Llama), as when the authors build the
    MLPs inside their model. At d = 4096 that gives each layer a gain of about 1.3; at a small
    width it starts the posterior mean near 0 (docs/method.md)."""

    def __post_init__(self) -> None:
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)):
            raise ValueError(f"layer={self.layer!r} must be an integer or None (the default placement)")
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"layer={self.layer} must be >= 0 (a 0-based decoder layer index)")
        _check_choice("prior", self.prior, PRIORS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("text_kl_scope", self.text_kl_scope, TEXT_KL_SCOPES)
        _check_choice("scale", self.scale, SCALES)
        _check_choice("kind", self.kind, KINDS)
        if self.kind == "noise" and self.prior != "fixed":
            raise ValueError(f"kind='noise' draws from the fixed N(0, I); prior={self.prior!r} has nothing to learn there: use prior='fixed'")
        _check_range("kl_weight", self.kl_weight, 0.0)
        _check_range("alpha_max", self.alpha_max, 0.0, 1.0)
        _check_range("logvar_clamp", self.logvar_clamp, 0.0)
        if self.init_std is not None:
            _check_range("init_std", self.init_std, 0.0)
            if self.init_std == 0:
                raise ValueError("init_std=0 would start both MLPs at exactly 0; use a positive value or null")
        if self.logvar_clamp == 0:
            raise ValueError("logvar_clamp=0 would fix the variance at 1; use a positive value")

    def resolve_layer(self, depth: int, allow_last: bool = False) -> int:
        """The layer index for a decoder with `depth` layers. Raises if it does not exist, or
        if it is the last layer (unless `allow_last`, for loading checkpoints made that way)."""
        layer = default_layer(depth) if self.layer is None else self.layer
        if not 0 <= layer < depth:
            raise ValueError(f"layer={layer} is beyond the model's depth: it has {depth} decoder layers (0..{depth - 1})")
        if layer == depth - 1 and not allow_last:
            allowed = f"choose 0..{depth - 2} (default for this depth: {default_layer(depth)})" if depth > 1 else "a one-layer model has no such place"
            raise ValueError(
                f"layer={layer} is the last of the model's {depth} decoder layers: after it nothing reads the image "
                f"tokens' bottleneck states, so their posterior gets no gradient from the answer loss and collapses to "
                f"the prior by construction; {allowed}"
            )
        return layer

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BottleneckConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown bottleneck config keys {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass
class ModelConfig:
    """Which model to start from."""

    init: str = "tiny"
    """"tiny" (a tiny LLaVA built from configs, offline), "tiny-efficientnet" (the frozen
    pretrained EfficientNet-Lite0 tower + a small Llama, offline), "compose" (join `vision_tower` and
    `language_model` with a new projector: the start of stage 1), a name another package
    registers (`vittle.model_inits` entry points, vittle.plugins) or a folder / hub id of a
    LlavaForConditionalGeneration checkpoint with its processor."""
    vision_tower: str = ""
    """With init "compose": a CLIP checkpoint, e.g. openai/clip-vit-large-patch14-336."""
    language_model: str = ""
    """With init "compose": a causal LM checkpoint, e.g. lmsys/vicuna-7b-v1.5."""
    seed: int = 0
    """Seed of the tiny model's initial weights (ignored for checkpoints)."""
    hidden_size: int = 0
    """Width of a built model's Llama (0: the builder's default; ignored for checkpoints)."""
    num_layers: int = 0
    """Depth of a built model's Llama (0: the builder's default; ignored for checkpoints)."""
    visual_grid: int = 0
    """"tiny-efficientnet" only: average-pool the 7x7 feature grid to N x N visual tokens
    (0: the full 7x7 grid, 49 tokens)."""
    tie_embeddings: bool = False
    """"tiny-efficientnet" only: tie the Llama's input and output embeddings."""
    dtype: str = "auto"
    """Weights dtype when loading a checkpoint: "auto", "float32", "bfloat16" or "float16"."""
    attn_implementation: str = "auto"
    """Attention kernel: "auto" (transformers' default, sdpa where it can), "eager", "sdpa" or
    "flash_attention_2" (needs the flash-attn package and a CUDA GPU)."""
    residual_rms: float = 0.0
    """Before training, rescale the language model's residual stream so that the state at the
    bottleneck layer has this per-dimension RMS on the first training samples, without changing
    the logits (vittle.scale; Llama-style, untied embeddings). 0: leave the scale as it is. The
    posterior's noise has unit variance, so the bottleneck constrains anything only at an RMS
    of order 1, the scale of a pretrained LLM."""

    def __post_init__(self) -> None:
        _check_choice("model.dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        _check_choice("model.attn_implementation", self.attn_implementation, ATTENTION)
        if not self.init:
            raise ValueError("model.init must be 'tiny', 'tiny-efficientnet', 'compose' or a checkpoint folder / hub id")
        _check_range("model.hidden_size", self.hidden_size, 0)
        _check_range("model.num_layers", self.num_layers, 0)
        _check_range("model.visual_grid", self.visual_grid, 0, 7)
        _check_range("model.residual_rms", self.residual_rms, 0.0)
        if self.init == "compose" and not (self.vision_tower and self.language_model):
            raise ValueError("model.init='compose' needs model.vision_tower and model.language_model")


@dataclass
class DataConfig:
    """Training data in the LLaVA conversation JSON format."""

    path: str = ""
    """The JSON file: a list of {id, image, conversations}."""
    image_folder: str = ""
    """Folder the samples' "image" paths are relative to (default: the JSON's folder)."""
    max_length: int = 2048
    """Samples longer than this many tokens are truncated (answers at the end are cut)."""
    cache_images: bool = False
    """Keep each processed image in memory after its first use: for small datasets with many
    questions per image (easy-vqa: 4,000 images, 10 questions each). Off for LLaVA-665K."""
    system_prompt: str | None = None
    """The prompt before the first USER turn: null keeps vicuna-v1's (LLaVA-1.5), "" drops
    it. A non-default value is stored in the model's config and used at inference."""
    synthetic: str = ""
    """Make `path` if it does not exist: "shapes" generates a small coloured-shapes set;
    "easyvqa" / "easyvqa-balanced" / "easyvqa-test" convert the easy-vqa package (balanced:
    yes/no answers equally frequent per question type, see vittle.toy.easyvqa); "easyvqa-captions"
    writes one caption per train image ("a blue circle", vittle.toy.captions); "wordnet" packs
    WordNet's glosses into plain-text samples (vittle.corpus; Debian's wordnet-base); or a
    name another package registers (`vittle.datasets` entry points, vittle.plugins)."""
    synthetic_samples: int = 512
    """How many images the synthetic generator makes."""
    instruction_loss: bool = False
    """Also supervise the instruction's own tokens, the chat template's roles, separators and
    image tokens left out (L2T / LIT, "Learning to Instruct for Visual Instruction Tuning",
    Zhou et al. 2025); off: the answers alone, as LLaVA."""
    augment: str = ""
    """Training-time augmentation: comma-separated visual shifts of `vittle perturb` (a name
    alone draws its severity from 1..5 each time, "gaussian_noise:3" fixes it), one of them
    applied to a sample's image with probability `augment_prob` each time the sample is read;
    "" trains on the images as stored."""
    augment_prob: float = 0.5
    augmenter: str = "shifts"
    """Who applies `augment`: "shifts" (the project's perturbations, vittle.analysis.perturb) or a
    name another package registers (`vittle.augmenters` entry points, vittle.plugins)."""

    def __post_init__(self) -> None:
        if self.synthetic:
            _check_choice("data.synthetic", self.synthetic, names(DATASETS))
        _check_range("data.augment_prob", self.augment_prob, 0.0, 1.0)
        if self.augment:
            _check_choice("data.augmenter", self.augmenter, names(AUGMENTERS))
        _check_range("data.max_length", self.max_length, 8)
        _check_range("data.synthetic_samples", self.synthetic_samples, 1)


@dataclass
class TrainConfig:
    """The training run. Fields map onto transformers.TrainingArguments; `extra` passes any
    other TrainingArguments field through unchanged."""

    stage: str = "instruct"
    """"pretrain" (the language model alone on plain text: stage 0 of the small-scale protocol),
    "align" (projector only), "instruct" (projector + LLM + bottleneck, vision frozen) or
    "baseline" (instruct without a bottleneck)."""
    output_dir: str = "runs/vittle"
    max_steps: int = -1
    """Optimizer steps; -1 trains for `epochs`."""
    epochs: float = 1.0
    batch_size: int = 8
    """Per-device batch size."""
    grad_accum: int = 1
    lr: float = 2e-5
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    bf16: bool = False
    gradient_checkpointing: bool = False
    deepspeed: str = ""
    """Path to a DeepSpeed JSON config (needs the `train` extra)."""
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    seed: int = 0
    report_to: str = "none"
    num_workers: int = 0
    resume: bool = False
    """Resume from the newest checkpoint in output_dir."""
    push_to_hub: str = ""
    """A Hub repository (ORG/NAME) to upload the final model to, with its model card, once
    training ends (as `vittle push`; HF_TOKEN or a saved login). Checkpoints stay local."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("train.stage", self.stage, STAGES)
        _check_range("train.lr", self.lr, 0.0)
        _check_range("train.batch_size", self.batch_size, 1)
        _check_range("train.grad_accum", self.grad_accum, 1)
        _check_range("train.warmup_ratio", self.warmup_ratio, 0.0, 0.999)  # transformers reads >= 1 as a step count
        _check_range("train.weight_decay", self.weight_decay, 0.0)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"train.max_steps={self.max_steps} must be positive, or -1 to train for train.epochs")
        _check_range("train.epochs", self.epochs, 0.0)
        if self.max_steps == -1 and self.epochs == 0:
            raise ValueError("train.epochs=0 with train.max_steps=-1 would train nothing; set a positive train.epochs or train.max_steps")
        if not isinstance(self.extra, dict):
            raise ValueError(f"train.extra must be a mapping, got {type(self.extra).__name__}")
        if self.push_to_hub and (self.push_to_hub.count("/") != 1 or not all(self.push_to_hub.split("/"))):
            raise ValueError(f"train.push_to_hub={self.push_to_hub!r} must look like ORG/NAME (or USER/NAME)")


@dataclass
class LoraConfig:
    """LoRA / QLoRA (peft, the `train` extra): the language model's linear layers get low-rank
    adapters, while the projector and the bottleneck MLPs are trained in full; the adapters are
    merged into the weights at the end, so the saved model loads like any other."""

    r: int = 0
    """Adapter rank; 0 turns LoRA off (full fine-tuning). LLaVA-1.5's LoRA recipe: 128."""
    alpha: float = 0.0
    """LoRA scaling numerator (scale = alpha / r); 0 takes 2 * r, as LLaVA-1.5's recipe."""
    dropout: float = 0.05
    target_modules: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    """Comma-separated names of the language model's linear layers that get adapters (the
    vision tower and the projector never do)."""
    quantize: str = ""
    """"4bit" or "8bit": QLoRA, the frozen language model loaded through bitsandbytes (CUDA
    and the `quant` extra); "" keeps the weights as they are."""

    def __post_init__(self) -> None:
        _check_range("lora.r", self.r, 0)
        if isinstance(self.r, float):
            raise ValueError(f"lora.r={self.r!r} must be an integer")
        _check_range("lora.alpha", self.alpha, 0.0)
        _check_range("lora.dropout", self.dropout, 0.0, 0.999)
        _check_choice("lora.quantize", self.quantize, QUANTIZE)
        if self.quantize and not self.r:
            raise ValueError(f"lora.quantize={self.quantize!r} is QLoRA and needs adapters: set lora.r (e.g. 64)")
        if not [m for m in self.modules if m]:
            raise ValueError("lora.target_modules is empty; name the linear layers, e.g. q_proj,v_proj")

    @property
    def enabled(self) -> bool:
        return self.r > 0

    @property
    def modules(self) -> list[str]:
        return [m.strip() for m in self.target_modules.split(",") if m.strip()]

    @property
    def scale_numerator(self) -> float:
        return self.alpha or 2.0 * self.r


@dataclass
class ReconstructionConfig:
    """ROSS's reconstruction objective in its regression form (vittle.reconstruction; Wang et al.,
    "Reconstructive Visual Instruction Tuning", ICLR 2025): the LLM's outputs at the image
    positions reconstruct the image's latent tokens through a small head, used in training only."""

    weight: float = 0.0
    """The reconstruction loss's weight beside the answer loss (the error is relative: 1.0 is
    that of predicting zeros); 0 turns it off. ROSS weighs its objective 1.0."""
    hidden: int = 0
    """The head's inner width; 0 takes the LLM's hidden size."""

    def __post_init__(self) -> None:
        _check_range("reconstruction.weight", self.weight, 0.0)
        _check_range("reconstruction.hidden", self.hidden, 0)

    @property
    def enabled(self) -> bool:
        return self.weight > 0


TRAIN_ALIASES = {
    "learning_rate": "lr",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "num_train_epochs": "epochs",
    "lr_scheduler_type": "lr_scheduler",
    "dataloader_num_workers": "num_workers",
    "activation_checkpointing": "gradient_checkpointing",
}
"""transformers.TrainingArguments names accepted in a recipe's train section for our fields."""


@dataclass
class RecipeConfig:
    """A whole training recipe: what `vittle train --recipe FILE` reads."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)

    def __post_init__(self) -> None:
        if not self.data.path:
            raise ValueError("data.path is required: the LLaVA conversation JSON to train on")
        if self.reconstruction.enabled and self.train.stage not in ("instruct", "baseline"):
            raise ValueError(f"reconstruction.weight is set, but train.stage={self.train.stage!r} has no image positions to "
                             "reconstruct from the LLM's outputs; use it in the instruct or baseline stage")
        if self.reconstruction.enabled and self.lora.enabled:
            raise ValueError("reconstruction.weight with lora.r: the reconstruction head is trained in full training only; "
                             "set lora.r=0 or reconstruction.weight=0")
        if self.lora.enabled and self.train.stage == "align":
            raise ValueError("lora.r is set, but train.stage='align' trains the projector alone, which LoRA does not touch; "
                             "use LoRA in the instruct or baseline stage")


FIELD_ALIASES: dict[type, dict[str, str]] = {TrainConfig: TRAIN_ALIASES}
"""Other accepted names of a section's fields (`vittle.settings.build` maps them)."""
