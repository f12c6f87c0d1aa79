"""`vittle perturb` for one query, and `vittle perturb list`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from vittle.analysis.perturb.cli import main

QUESTION = "<image>\nWhat animal is sitting on the wooden floor?\nAnswer the question using a single word or phrase."


def test_one_query_writes_image_and_result(tmp_path, capsys):
    source = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).resize((80, 60)).save(source)
    out = tmp_path / "out"
    assert main(["--image", str(source), "--question", QUESTION, "--spec", "frost:3+char_typo:2",
                 "--out", str(out), "--seed", "5"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["spec"] == "frost:3+char_typo:2" and result["seed"] == 5
    assert result["label"] == "Frost (severity 3) + Keyboard typos (level 2)"
    assert result["perturbed_question"] != QUESTION and result["perturbed_question"].startswith("<image>\n")
    assert result["perturbed_question"] in capsys.readouterr().out
    with Image.open(out / result["image"]) as produced, Image.open(source) as clean:
        assert produced.size == clean.size
        assert np.abs(np.asarray(produced, dtype=np.int16) - np.asarray(clean, dtype=np.int16)).mean() > 2
    # same seed, same result
    assert main(["--image", str(source), "--question", QUESTION, "--spec", "frost:3+char_typo:2",
                 "--out", str(tmp_path / "again"), "--seed", "5"]) == 0
    assert json.loads((tmp_path / "again" / "result.json").read_text()) == result
    assert (tmp_path / "again" / "image.png").read_bytes() == (out / "image.png").read_bytes()


def test_text_only_query_and_errors(tmp_path, capsys):
    assert main(["--question", QUESTION, "--spec", "word_swap:5", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "result.json").read_text())["image"] is None
    assert main(["--question", QUESTION, "--spec", "blur:2", "--out", str(tmp_path)]) == 2
    assert "valid names" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["--spec", "frost:2", "--out", str(tmp_path)])
    assert exit.value.code == 2 and "vittle perturb: error: image and question are both missing" in capsys.readouterr().err


def test_list_shows_every_perturbation(capsys):
    assert main(["list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 18
    assert {"name": "greek", "modality": "text", "category": "sentence", "label": "Translation to Greek",
            "levels": []} in entries
    assert main(["list"]) == 0
    assert "speckle_noise" in capsys.readouterr().out
