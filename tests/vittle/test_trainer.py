import dataclasses
import math
from pathlib import Path

import pytest
import torch

from vittle.config import BottleneckConfig
from vittle.data import IGNORE_INDEX, ConversationCollator, ConversationDataset
from vittle.model import get_bottleneck
from vittle.objective import alpha_at
from vittle.settings import load_recipe
from vittle.trainer import VittleTrainer, configure_stage, prepare_model, train
from vittle.training_args import training_arguments


def test_alpha_schedules():
    cosine = BottleneckConfig(schedule="cosine", alpha_max=0.5)
    assert [alpha_at(cosine, p) for p in (0.0, 0.5, 1.0)] == pytest.approx([0.0, 0.25, 0.5])
    assert alpha_at(cosine, 0.25) == pytest.approx(0.25 * (1 - math.cos(math.pi / 4)))
    sigmoid = BottleneckConfig(schedule="sigmoid", alpha_max=0.5)
    assert alpha_at(sigmoid, 0.5) == pytest.approx(0.25)
    assert alpha_at(sigmoid, 0.0) == pytest.approx(0.5 / (1 + math.exp(5)))
    assert alpha_at(sigmoid, 1.0) == pytest.approx(0.5 / (1 + math.exp(-5)))
    assert alpha_at(BottleneckConfig(schedule="constant", alpha_max=0.3), 0.1) == 0.3
    assert alpha_at(cosine, 7.0) == 0.5  # progress is clamped


def _recipe(shapes_data, tmp_path, *overrides):
    return load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={tmp_path / 'out'}", *overrides])


def _trainable_prefixes(model):
    return {name.split(".")[0] if not name.startswith("model.") else ".".join(name.split(".")[:2])
            for name, p in model.named_parameters() if p.requires_grad}


def test_stage_freezing(shapes_data, tmp_path):
    model, _ = prepare_model(_recipe(shapes_data, tmp_path, "train.stage=align"))
    assert _trainable_prefixes(model) == {"model.multi_modal_projector"}
    assert get_bottleneck(model) is None
    model, _ = prepare_model(_recipe(shapes_data, tmp_path, "train.stage=instruct"))
    assert _trainable_prefixes(model) == {"model.multi_modal_projector", "model.language_model", "lm_head", "vittle_bottleneck"}
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    model, _ = prepare_model(_recipe(shapes_data, tmp_path, "train.stage=baseline"))
    assert get_bottleneck(model) is None
    assert _trainable_prefixes(model) == {"model.multi_modal_projector", "model.language_model", "lm_head"}
    assert configure_stage(model, "align") == ["model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.bias",
                                               "model.multi_modal_projector.linear_2.weight", "model.multi_modal_projector.linear_2.bias"]


@pytest.mark.parametrize("scope", ["prompt", "all"])
def test_loss_is_ce_plus_weighted_kl(shapes_data, tmp_path, scope):
    recipe = _recipe(shapes_data, tmp_path, f"bottleneck.text_kl_scope={scope}", "bottleneck.kl_weight=0.7")
    model, processor = prepare_model(recipe)
    data = ConversationDataset(recipe.data.path, processor)
    batch = ConversationCollator(processor.tokenizer.pad_token_id)([data[0], data[1], data[2]])
    trainer = VittleTrainer(model=model, args=training_arguments(recipe), train_dataset=data)
    model.eval()  # deterministic: the mean instead of a sample
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
    bottleneck = get_bottleneck(model)
    with torch.no_grad():
        state = model(**batch).vittle  # the same forward (eval: the mean): its record rides with the output
    kl = bottleneck.token_kl(state).mean(-1)
    text = ~state.visual_mask & batch["attention_mask"].bool()
    if scope == "prompt":
        text &= batch["labels"] == IGNORE_INDEX
    else:
        text = ~state.visual_mask  # "all": every text token, padding included
    expected = outputs.loss + 0.7 * (kl[state.visual_mask].mean() + kl[text].mean())
    torch.testing.assert_close(loss, expected)


def test_tiny_recipe_trains_logs_and_resumes(shapes_data, tmp_path):
    recipe = _recipe(shapes_data, tmp_path, "train.max_steps=40", "train.logging_steps=5", "train.save_steps=20")
    result = train(recipe)
    logs = [entry for entry in result["log_history"] if "loss" in entry]
    assert {"ce", "kl_v", "kl_t", "alpha"} <= set(logs[-1])
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    alphas = [entry["alpha"] for entry in logs]
    assert alphas == sorted(alphas) and alphas[0] < 0.01 and 0.4 < alphas[-1] <= 0.5
    out = tmp_path / "out"
    assert (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file()
    assert (out / "vittle_recipe.yaml").is_file() and (out / "checkpoint-40").is_dir()
    resumed = train(_recipe(shapes_data, tmp_path, "train.max_steps=50", "train.logging_steps=5", "train.resume=true"))
    history = [entry for entry in resumed["log_history"] if "loss" in entry]
    assert [entry["step"] for entry in history][: len(logs) - 1] == [entry["step"] for entry in logs][:-1]  # state restored
    resumed_logs = [entry for entry in history if entry["step"] > 40]
    assert [entry["step"] for entry in resumed_logs] == [45, 50]
    assert resumed_logs[0]["loss"] < 0.6 * logs[0]["loss"]  # with the trained weights, not fresh ones


def test_a_diverging_run_stops_at_the_step_and_keeps_the_last_checkpoint(shapes_data, tmp_path):
    from vittle.checkpoint import load_pretrained
    from vittle.trainer import NonFiniteTrainingError

    recipe = _recipe(shapes_data, tmp_path, "train.lr=1e30", "train.max_steps=40", "train.logging_steps=1", "train.save_steps=1",
                     "train.warmup_ratio=0")
    with pytest.raises(NonFiniteTrainingError, match=r"training stopped at step (\d+): the (loss|gradient norm) is not finite") as caught:
        train(recipe)
    message = str(caught.value)
    step = int(message.split("step ")[1].split(":")[0])
    out = tmp_path / "out"
    assert not (out / "model.safetensors").exists()  # no final model from a diverged run
    assert step >= 2  # Adam's first step moves every weight by about lr; the next forward overflows
    last = out / f"checkpoint-{step - 1}"
    assert f"the last checkpoint, {last}, was written before it and is intact" in message
    weights = load_pretrained(last).state_dict()
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert "ce nan" in message or "ce inf" in message
    assert "Try a lower train.lr (now 1e+30)" in message


@pytest.fixture(scope="module")
def two_checkpoints(shapes_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    recipe = load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={out}", "train.max_steps=4", "train.save_steps=2",
                                         "train.logging_steps=1"])
    train(recipe)
    assert (out / "checkpoint-2").is_dir() and (out / "checkpoint-4").is_dir()
    return out


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda c: (c / "model.safetensors").unlink(), "has the trainer's state (optimizer.pt, rng_state.pth, scheduler.pt, training_args.bin) "
                                                   "but no model.safetensors: the save was interrupted"),
    (lambda c: _truncate(c / "model.safetensors"), "model.safetensors is damaged or truncated"),
    (lambda c: _truncate(c / "optimizer.pt"), "optimizer.pt is damaged or truncated"),
    (lambda c: _truncate(c / "rng_state.pth"), "rng_state.pth is damaged or truncated"),
    (lambda c: _truncate(c / "scheduler.pt"), "scheduler.pt is damaged or truncated"),
    (lambda c: _truncate(c / "trainer_state.json"), "trainer_state.json is damaged"),
    (lambda c: (c / "trainer_state.json").unlink(), "trainer_state.json is missing"),
])
def test_resume_skips_a_damaged_newest_checkpoint_and_names_the_file(two_checkpoints, tmp_path, caplog, damage, reason):
    import shutil

    from vittle.checkpoint import CheckpointError, checkpoint_problem
    from vittle.training_args import resumable_checkpoint

    out = tmp_path / "out"
    shutil.copytree(two_checkpoints, out)
    assert checkpoint_problem(out / "checkpoint-4") is None and resumable_checkpoint(out) == str(out / "checkpoint-4")
    damage(out / "checkpoint-4")
    assert reason in checkpoint_problem(out / "checkpoint-4")
    with caplog.at_level("WARNING", logger="vittle.trainer"):
        assert resumable_checkpoint(out) == str(out / "checkpoint-2")
    assert f"skipping {out / 'checkpoint-4'}: " in caplog.text and reason in caplog.text
    damage(out / "checkpoint-2")
    with pytest.raises(CheckpointError, match=f"no checkpoint in {out} can be resumed from: checkpoint-4: .*; checkpoint-2: .*train.resume=false"):
        resumable_checkpoint(out)


def test_a_checkpoint_folder_loads_as_an_assistant(two_checkpoints, image):
    from vittle.inference import Assistant

    assistant = Assistant.load(two_checkpoints / "checkpoint-2", device="cpu")
    assert assistant.has_bottleneck and isinstance(assistant.answer(image, "What colour is the shape?", max_new_tokens=3), str)


def test_resume_from_the_older_checkpoint_trains_on(two_checkpoints, shapes_data, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(two_checkpoints, out)
    _truncate(out / "checkpoint-4" / "model.safetensors")
    resumed = train(load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={out}", "train.max_steps=6",
                                                 "train.save_steps=2", "train.logging_steps=1", "train.resume=true"]))
    steps = [entry["step"] for entry in resumed["log_history"] if "loss" in entry]
    assert steps[-2:] == [5, 6] and 3 in steps  # steps 3 and 4 trained again from checkpoint-2


@pytest.mark.parametrize(("extra", "message"), [
    ("train.extra.foo=1", r"train.extra.foo is not a transformers.TrainingArguments field"),
    ("train.extra.max_grad_nrm=1", r"train.extra.max_grad_nrm is not a transformers.TrainingArguments field; did you mean max_grad_norm"),
    ("train.extra.learning_rate=0.1", r"train.extra.learning_rate clashes with the recipe's train.lr, which sets it; set train.lr instead"),
    ("train.extra.per_device_train_batch_size=2", r"clashes with the recipe's train.batch_size"),
    ("train.extra.save_steps=2", r"clashes with the recipe's train.save_steps"),
    ("train.extra.remove_unused_columns=true", r"train.extra.remove_unused_columns is fixed by vittle's training"),
])
def test_train_extra_names_only_free_training_arguments(shapes_data, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        training_arguments(_recipe(shapes_data, tmp_path, extra))


def test_train_extra_passes_a_real_field_through(shapes_data, tmp_path):
    args = training_arguments(_recipe(shapes_data, tmp_path, "train.extra.max_grad_norm=0.5"))
    assert args.max_grad_norm == 0.5


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_to_bit_identical_weights(shapes_data, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from vittle.checkpoint import load_pretrained

    common = [f"data.path={shapes_data}", "train.max_steps=16", "train.save_steps=3", "train.logging_steps=4"]
    straight = train(load_recipe("tiny-shapes", [*common, f"train.output_dir={tmp_path / 'straight'}"]))["output_dir"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "vittle.cli", "train", "--recipe", "tiny-shapes", *common, f"train.output_dir={killed}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 240
        while not (killed / "checkpoint-3" / "trainer_state.json").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (killed / "model.safetensors").exists()
    train(load_recipe("tiny-shapes", [*common, f"train.output_dir={killed}", "train.resume=true"]))
    a, b = load_pretrained(straight).state_dict(), load_pretrained(killed).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)  # bit-identical, not merely close


def test_training_outside_the_cli_schedule_alpha_and_vittle_loss(tiny, image, caplog):
    """A custom loop (or TRL's / LLaVA's trainer) gets the objective from two public helpers;
    a bottleneck trained without its schedule warns once instead of silently doing nothing."""
    import logging

    import vittle
    from vittle.data import ImageEncoder, encode_query

    model, processor = tiny
    item = encode_query(processor, ImageEncoder(processor), image, "What colour is the shape?")
    inputs = {"input_ids": item["input_ids"][None], "pixel_values": item["pixel_values"][None]}
    inputs["labels"], inputs["attention_mask"] = inputs["input_ids"].clone(), torch.ones_like(inputs["input_ids"])
    vittle.attach_bottleneck(model, vittle.BottleneckConfig(layer=1, kl_weight=0.1, schedule="cosine", alpha_max=0.5, text_kl_scope="all"))
    model.train()
    with caplog.at_level(logging.WARNING, logger="vittle.bottleneck"):
        model(**inputs)
        model(**inputs)
    warnings = [r.getMessage() for r in caplog.records if "no schedule ever set it" in r.getMessage()]
    assert len(warnings) == 1  # once, not every step
    assert vittle.schedule_alpha(model, 0.0) == 0.0 and vittle.schedule_alpha(model, 1.0) == pytest.approx(0.5)
    assert vittle.schedule_alpha(model, 0.5) == pytest.approx(0.25) == model.vittle_bottleneck.train_alpha
    outputs = model(**inputs)
    loss, terms = vittle.vittle_loss(model, outputs, inputs["labels"], inputs["attention_mask"])
    assert set(terms) == {"ce", "kl_v", "kl_t"} and terms["kl_v"] > 0 and terms["kl_t"] > 0
    torch.testing.assert_close(loss, terms["ce"] + 0.1 * (terms["kl_v"] + terms["kl_t"]))
    model.vittle_bottleneck.config = dataclasses.replace(model.vittle_bottleneck.config, text_kl_scope="prompt")
    with pytest.raises(ValueError, match="text_kl_scope='prompt' needs the batch's labels and attention_mask"):
        vittle.vittle_loss(model, outputs)
    assert vittle.VittleTrainer.__name__ == "VittleTrainer" and vittle.alpha_at is not None


def test_alpha_schedule_callback_drives_a_plain_trainer(shapes_data, tmp_path):
    """`AlphaSchedule` is the schedule for any `transformers.Trainer`: alpha at each optimizer
    step is `alpha_at(config, step / max_steps)`, with gradient accumulation too (once per
    optimizer step, not per micro-batch); `VittleTrainer` adds it without being asked."""
    from transformers import Trainer, TrainerCallback

    from vittle.objective import AlphaSchedule

    recipe = _recipe(shapes_data, tmp_path, "bottleneck.schedule=cosine", "bottleneck.alpha_max=0.5", "train.max_steps=4",
                     "train.batch_size=2")
    model, processor = prepare_model(recipe)
    args = dataclasses.replace(training_arguments(recipe), gradient_accumulation_steps=2, report_to=[])
    seen: list[float] = []

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(get_bottleneck(model).train_alpha)

    data = ConversationDataset(recipe.data.path, processor)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=ConversationCollator(processor.tokenizer.pad_token_id),
                      callbacks=[AlphaSchedule(), Watch()])
    trainer.train()
    config = get_bottleneck(model).config
    assert seen == pytest.approx([alpha_at(config, step / 4) for step in range(4)]) and seen[-1] > 0
    vittle_trainer = VittleTrainer(model=model, args=args, train_dataset=data)
    assert sum(isinstance(c, AlphaSchedule) for c in vittle_trainer.callback_handler.callbacks) == 1


def test_the_private_trainer_methods_vittle_overrides_keep_their_signatures():
    """VittleTrainer overrides two private Trainer methods that no public route replaces (its
    docstring says why); a transformers release that changes them fails here, not in a user's run."""
    import inspect

    from transformers import Trainer

    assert list(inspect.signature(Trainer._get_grad_norm).parameters) == ["self", "model", "grad_norm"]
    assert list(inspect.signature(Trainer._load_from_checkpoint).parameters) == ["self", "resume_from_checkpoint", "model"]
    overridden = {name for name in vars(VittleTrainer) if name.startswith("_") and not name.startswith("__")}
    assert overridden == {"_get_grad_norm", "_load_from_checkpoint", "_stop"}  # _stop is its own
    assert not hasattr(Trainer, "_stop")
