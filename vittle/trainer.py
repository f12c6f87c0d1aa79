"""Two-stage LLaVA training with the Vittle objective, on `transformers.Trainer`.

loss = CE(answer tokens) + kl_weight * (KL_v + KL_t), alpha following its schedule per
optimizer step. DDP, DeepSpeed ZeRO, gradient checkpointing, mixed precision, resuming and
logging integrations all come from Trainer.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import yaml
from transformers import PreTrainedModel, Trainer, TrainerCallback, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from vittle.bottleneck import record_states
from vittle.checkpoint import DTYPES, load_pretrained, quantization_config, read_prefixed
from vittle.compose import compose_llava
from vittle.config import RecipeConfig
from vittle.data import ConversationCollator, ConversationDataset
from vittle.families import VisionLanguageModel, family_of, language_model, lm_head, load_processor, train_projector
from vittle.hub import push
from vittle.lora import apply_lora, copy_trained, is_lora, load_adapter_checkpoint, merged, save_trained
from vittle.model import attach_bottleneck, get_bottleneck
from vittle.objective import AlphaSchedule, vittle_loss
from vittle.plugins import AUGMENTERS, DATASETS, MODEL_INITS, PluginError, load, registered
from vittle.reconstruction import HEAD_ATTR, attach_reconstruction, detach_reconstruction, get_reconstruction, reconstruction_loss
from vittle.scale import set_residual_rms
from vittle.template import SYSTEM_PROMPT_KEY, system_prompt_of
from vittle.training_args import resumable_checkpoint, training_arguments

if TYPE_CHECKING:
    from peft import PeftModel

logger = logging.getLogger(__name__)


def configure_stage(model: VisionLanguageModel, stage: str) -> list[str]:
    """Freeze per stage; returns the names of the trainable parameters.

    pretrain: language model and LM head (text only, the projector untouched). align:
    projector only (with the family's `projector_extras`). instruct / baseline: projector, language model, LM head and the
    bottleneck if attached. The vision tower is always frozen.
    """
    model.requires_grad_(False)
    if stage == "pretrain":
        language_model(model).requires_grad_(True)
        lm_head(model).requires_grad_(True)
        return [name for name, param in model.named_parameters() if param.requires_grad]
    train_projector(model)  # with the family's extras (Qwen3-VL's deepstack mergers, LLaVA-NeXT's row separator)
    if stage in ("instruct", "baseline"):
        language_model(model).requires_grad_(True)
        lm_head(model).requires_grad_(True)
        bottleneck = get_bottleneck(model)
        if bottleneck is not None:
            bottleneck.requires_grad_(True)
    return [name for name, param in model.named_parameters() if param.requires_grad]


def prepare_model(recipe: RecipeConfig) -> tuple[PreTrainedModel, Any]:
    """The starting model and processor for a recipe, with a bottleneck attached for the
    instruct stage."""
    stage, init = recipe.train.stage, recipe.model.init
    inits = registered(MODEL_INITS)  # "tiny", "tiny-efficientnet" (vittle.toy) and the plugins'
    if init in inits:
        model, processor = inits[init].load()(recipe.model)
    elif init == "compose":
        dtype = DTYPES.get(recipe.model.dtype, torch.float32)
        model, processor = compose_llava(recipe.model.vision_tower, recipe.model.language_model, dtype=dtype)
    else:
        if "/" not in init and not Path(init).exists():  # neither a folder nor a hub id: a misspelled name
            raise PluginError(f"model.init={init!r} is not a registered name ({', '.join(sorted(inits))}), 'compose', a checkpoint folder or a hub id")
        extra: dict[str, Any] = {}
        if recipe.model.attn_implementation != "auto":
            extra["attn_implementation"] = recipe.model.attn_implementation
        if recipe.lora.quantize:  # QLoRA: the frozen weights in 4/8 bits, computing in the recipe's dtype
            compute = DTYPES.get(recipe.model.dtype, torch.bfloat16)
            extra.update(quantization_config=quantization_config(recipe.lora.quantize, compute), device_map={"": _local_device()})
        model = load_pretrained(init, dtype=recipe.model.dtype, **extra)
        processor = load_processor(init, model.config)
    if recipe.model.attn_implementation != "auto" and (init in inits or init == "compose"):
        model.set_attn_implementation(recipe.model.attn_implementation)
    existing = get_bottleneck(model)
    if stage == "instruct" and existing is None:
        attach_bottleneck(model, recipe.bottleneck)
    elif stage == "instruct" and existing is not None:
        logger.warning("continuing with the bottleneck stored in %s (%s); the recipe's is ignored", init, existing.config)
    elif existing is not None:
        raise ValueError(f"stage {stage!r} trains a model without a bottleneck, but {init} has one; start from a plain LLaVA checkpoint")
    trainable = configure_stage(model, stage)
    if recipe.reconstruction.enabled:  # ROSS: a head trained beside the model, dropped before the final save
        attach_reconstruction(model, recipe.reconstruction.hidden, recipe.reconstruction.weight).requires_grad_(True)
        trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    if recipe.lora.enabled:
        if recipe.train.gradient_checkpointing:
            model.enable_input_require_grads()  # the frozen embeddings would cut the checkpointed graph
        model = apply_lora(model, recipe.lora)
        trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    logger.info("stage %s: %d trainable tensors, %.2fM parameters", stage, len(trainable),
                sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6)
    return model.train(), processor


def _local_device() -> int | str:
    """This process's GPU under torchrun / accelerate (LOCAL_RANK), for a quantized load."""
    return int(os.environ.get("LOCAL_RANK", "0")) if torch.cuda.is_available() else "cpu"


class NonFiniteTrainingError(ValueError):
    """A loss or gradient became NaN or infinite; the run stopped before the update."""


class LoraCheckpointExtras(TrainerCallback):
    """With LoRA, every checkpoint-N also gets the weights trained in full (the projector, the
    bottleneck), which peft's adapter file leaves out (`vittle.lora.save_trained`)."""

    def on_save(self, args: Any, state: Any, control: Any, model: VisionLanguageModel | None = None, **kwargs: Any) -> None:
        if model is not None and is_lora(model) and args.should_save:
            save_trained(model, Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


class VittleTrainer(Trainer):
    """Trainer with the KL terms, the alpha schedule (`AlphaSchedule`) and CE / KL / alpha logging.

    Public routes first: alpha's schedule and LoRA's checkpoint extras are callbacks
    (`AlphaSchedule`, `LoraCheckpointExtras`); `loss_is_scaled_for_ga` and
    `model_accepts_loss_kwargs` are Trainer's documented switches for a subclass that computes its
    own loss. Two private methods are overridden because no public route reaches what they do:
    `_get_grad_norm` (the one place the step's gradient norm, DeepSpeed's included, is seen before
    the optimizer step, to stop before a non-finite update) and `_load_from_checkpoint` (resuming
    must read LLaVA's legacy key names through from_pretrained); tests/vittle/test_trainer.py fails
    when transformers changes their signatures."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for callback in (AlphaSchedule, LoraCheckpointExtras):  # alpha's schedule, as for any Trainer; LoRA's checkpoints
            if not any(isinstance(c, callback) for c in self.callback_handler.callbacks):
                self.add_callback(callback())
        self.model_accepts_loss_kwargs = False
        self._running: dict[str, list[torch.Tensor]] = defaultdict(list)

    def compute_loss(self, model: VisionLanguageModel, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        unwrapped = self.accelerator.unwrap_model(model)
        bottleneck = get_bottleneck(unwrapped)
        with record_states() as states:  # this forward's posterior (also on DDP's rebuilt outputs, which may drop `outputs.vittle`)
            outputs = model(**inputs)
        loss, terms = vittle_loss(unwrapped, outputs, inputs.get("labels"), inputs.get("attention_mask"),
                                  states[-1] if states else None)
        reconstruction = reconstruction_loss(unwrapped)
        head = get_reconstruction(unwrapped)
        if reconstruction is not None and head is not None:  # ROSS
            loss = loss + head.loss_weight * reconstruction
            terms["reconstruction"] = reconstruction
        if model.training:
            # Detached tensors, turned into numbers only when logged: no device sync per step.
            for key, value in terms.items():
                self._running[key].append(value.detach())
            if bottleneck is not None:
                self._running["alpha"].append(torch.tensor(bottleneck.train_alpha))
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: VisionLanguageModel, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        head = get_reconstruction(self.accelerator.unwrap_model(model))
        if head is not None:  # gradient checkpointing re-runs forwards in backward: do not keep those into the next step
            head.take()
        # One process: stop at once (Trainer reads this value every step anyway, for its NaN
        # filter). Several: leave it to the gradient norm, which every rank sees after the
        # all-reduce, so that no rank stops alone while the others wait for it.
        if self.args.world_size == 1 and not torch.isfinite(loss):
            self._stop("the loss is not finite")
        return loss

    def _get_grad_norm(self, model: VisionLanguageModel, grad_norm: Any = None) -> Any:
        norm = super()._get_grad_norm(model, grad_norm)
        if norm is not None and not math.isfinite(float(norm)):
            self._stop("the gradient norm is not finite")
        return norm

    def _stop(self, what: str) -> None:
        """Stop before a non-finite update reaches the weights, naming the step and the last
        checkpoint (written before it, so intact). Nothing is saved as the final model."""
        step = self.state.global_step + 1
        latest = {key: values[-1].float().item() for key, values in self._running.items() if values and key != "alpha"}
        terms = ", ".join(f"{key} {value:.4g}" for key, value in latest.items())
        output = Path(self.args.output_dir or ".")
        last = get_last_checkpoint(str(output)) if output.is_dir() else None
        kept = (f"the last checkpoint, {last}, was written before it and is intact (resume with train.resume=true)"
                if last else "no checkpoint had been written")
        raise NonFiniteTrainingError(
            f"training stopped at step {step}: {what}{f' ({terms})' if terms else ''}; {kept}. Try a lower train.lr "
            f"(now {self.args.learning_rate:g}) or check the data. No final model was saved.")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: VisionLanguageModel | None = None) -> None:
        """Trainer restores weights with a plain load_state_dict, but LLaVA checkpoints are
        written with transformers' legacy key names, so nothing would match. Load through
        from_pretrained's key conversion instead (DeepSpeed and FSDP keep their own path).
        A LoRA run restores its adapters and its fully trained weights (vittle.lora)."""
        target = model if model is not None else self.model
        assert target is not None, "Trainer holds a model"
        if is_lora(target):
            return load_adapter_checkpoint(target, resume_from_checkpoint)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        restored = load_pretrained(resume_from_checkpoint, dtype=next(target.parameters()).dtype)
        state = restored.state_dict()
        if get_reconstruction(target) is not None:  # ROSS's head: in checkpoint-N, not in the model class
            head = read_prefixed(resume_from_checkpoint, HEAD_ATTR + ".")
            state.update({f"{HEAD_ATTR}.{key}": value for key, value in head.items()})
        target.load_state_dict(state, strict=True)
        logger.info("restored weights from %s", resume_from_checkpoint)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._running:  # a training log: add the means since the last one
            logs.update({key: torch.stack([v.float().cpu() for v in values]).mean().item() for key, values in self._running.items()})
            self._running.clear()
        super().log(logs, start_time)


def rescale_to(model: PreTrainedModel, dataset: ConversationDataset, target: float, samples: int = 64) -> None:
    """Set the residual stream's RMS at the bottleneck layer to `target`, measured on the first
    `samples` training samples (vittle.scale); the logits do not change."""
    collate = ConversationCollator(dataset.processor.tokenizer.pad_token_id)
    reference = next(model.parameters())
    count = min(samples, len(dataset))
    batches = []
    for start in range(0, count, 16):
        batch = collate([dataset[i] for i in range(start, min(start + 16, count))])
        batch.pop("labels", None)
        batches.append({k: v.to(reference.device, dtype=reference.dtype if v.is_floating_point() else None) for k, v in batch.items()})
    before, after = set_residual_rms(model, batches, target)
    logger.info("model.residual_rms=%g: RMS at the bottleneck layer %.3g -> %.3g", target, before, after)


def unquantized_base(recipe: RecipeConfig) -> torch.nn.Module:
    """The recipe's starting peft model built again without quantization (QLoRA's merge)."""
    plain = dataclasses.replace(recipe, lora=dataclasses.replace(recipe.lora, quantize=""))
    return prepare_model(plain)[0]


def save_merged(recipe: RecipeConfig, trainer: Trainer, output_dir: str) -> PreTrainedModel:
    """A LoRA run's final model: adapters merged into the weights (on every process, so each
    returns the same model), saved by the main one as a plain Vittle checkpoint. QLoRA cannot
    merge into 4/8-bit weights: the main process builds its base again in the recipe's dtype
    without quantization and copies the trained weights onto it first; the others return the
    peft model."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if recipe.lora.quantize:
        if not trainer.is_world_process_zero():
            return model
        final = merged(copy_trained(model, cast("PeftModel", unquantized_base(recipe))))  # built with the recipe's adapters
    else:
        final = merged(model)
    if trainer.is_world_process_zero():
        final.save_pretrained(output_dir)
        logger.info("LoRA adapters merged; saved the full model to %s", output_dir)
    return final


def train(recipe: RecipeConfig, on_model: Callable[[torch.nn.Module], Any] | None = None) -> dict[str, Any]:
    """Run a recipe to the end; saves model, processor and the recipe in output_dir. `on_model` is
    called with the prepared model before training (the lab gives its towers its feature cache).
    Returns {"output_dir", "log_history", "max_steps" (optimizer steps), "model" (the trained model;
    with LoRA the merged one)}."""
    set_seed(recipe.train.seed)
    if recipe.data.synthetic:  # "shapes", "easyvqa*" (vittle.toy), "wordnet" or a plugin's: writes data.path if missing
        load(DATASETS, recipe.data.synthetic)(recipe.data, recipe.train.seed)
    args = training_arguments(recipe)  # first: with ZeRO-3 it makes from_pretrained partition at load
    model, processor = prepare_model(recipe)
    if on_model is not None:
        on_model(model)
    system = system_prompt_of(model.config, family_of(model).chat.system)
    if recipe.data.system_prompt is not None:
        system = recipe.data.system_prompt
        setattr(model.config, SYSTEM_PROMPT_KEY, system)  # saved with the model; the Assistant reads it
    processor.chat_template = family_of(model).chat.chat_template(system)  # saved in every checkpoint: apply_chat_template gives the trained prompt
    augment = (load(AUGMENTERS, recipe.data.augmenter)(recipe.data.augment, recipe.data.augment_prob, recipe.train.seed)
               if recipe.data.augment else None)
    dataset = ConversationDataset(recipe.data.path, processor, recipe.data.image_folder or None, recipe.data.max_length, system,
                                   cache_images=recipe.data.cache_images, instruction_loss=recipe.data.instruction_loss,
                                   augment=augment)
    if recipe.model.residual_rms:
        rescale_to(model, dataset, recipe.model.residual_rms)
    trainer = VittleTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,  # saved in every checkpoint-N
                            data_collator=ConversationCollator(processor.tokenizer.pad_token_id))
    output_dir = args.output_dir
    assert output_dir is not None, "training_arguments sets output_dir from the recipe"
    checkpoint = resumable_checkpoint(output_dir) if recipe.train.resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    final = trainer.model
    assert final is not None
    detach_reconstruction(final)  # ROSS's head is for training only
    if recipe.lora.enabled:
        final = save_merged(recipe, trainer, output_dir)
    else:
        trainer.save_model(output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(output_dir)
        recipe_path = Path(output_dir) / "vittle_recipe.yaml"
        recipe_path.write_text(yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False))
        if recipe.train.push_to_hub:
            push(output_dir, recipe.train.push_to_hub)
    return {"output_dir": output_dir, "log_history": trainer.state.log_history, "max_steps": trainer.state.max_steps,
            "model": final}
