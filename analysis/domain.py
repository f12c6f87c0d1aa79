"""Is an image like the ones the models were trained on? A domain score from the models' own
features, calibrated on held-out images of the training distribution.

    reference = DomainReference.fit(train_features, heldout_features)     # Assistant.image_features
    reference.score(features)          # mean cosine distance to the k nearest training images
    reference.outside(features)        # score above the threshold: the answers are guesses

The features are what the language model receives of an image (the mean of its latent tokens,
`vittle.inference.Assistant.image_features`), so the score asks about the model's own view of
the image, not about pixels. The threshold is the `quantile` (default 0.95) of the held-out
images' scores: 5% of in-domain images are flagged by construction, and an image scored above
it is further from every training image than 95% of new in-domain images are.

`python -m vittle.analysis.domain` measures it for the embedded models: the AUROC of easy-vqa
test images against photos, and the share of easy-vqa test images each shift pushes past the
threshold (docs/robustness-lab/domain.md).
"""

from __future__ import annotations

import argparse
import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import easy_vqa
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from vittle.analysis.perturb import apply, list_perturbations
from vittle.files import atomic_file


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {rows.shape}")
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


@dataclass
class DomainReference:
    """The training images' features (unit vectors) and the calibrated threshold."""

    train: np.ndarray
    threshold: float
    k: int = 5
    quantile: float = 0.95

    @classmethod
    def fit(cls, train: np.ndarray, heldout: np.ndarray, k: int = 5, quantile: float = 0.95) -> DomainReference:
        """`train`: features of training images; `heldout`: features of other images of the same
        distribution (the calibration set). k nearest neighbours, threshold at `quantile`."""
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile={quantile} must be in (0, 1)")
        train = _unit(train)
        if len(train) < k:
            raise ValueError(f"k={k} nearest neighbours need at least {k} training images, got {len(train)}")
        if len(heldout) < 2:
            raise ValueError(f"the threshold needs at least 2 held-out images, got {len(heldout)}")
        reference = cls(train, 0.0, k, quantile)
        reference.threshold = float(np.quantile(reference.score(heldout), quantile))
        return reference

    def score(self, features: np.ndarray) -> np.ndarray:
        """Mean cosine distance of each row to its k nearest training images, (N,); 0 = an image
        the models were trained on."""
        similarity = _unit(features) @ self.train.T
        k = min(self.k, self.train.shape[0])
        nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
        return (1.0 - nearest.mean(axis=1)).astype(np.float64)

    def outside(self, features: np.ndarray) -> np.ndarray:
        """True where the score is above the threshold."""
        return self.score(features) > self.threshold

    def save(self, path: str | Path) -> None:
        """Write the reference as an .npz (no pickle), atomically."""
        with atomic_file(path) as handle:
            np.savez(handle, train=self.train, threshold=np.float64(self.threshold), k=np.int64(self.k),
                     quantile=np.float64(self.quantile))

    @classmethod
    def load(cls, path: str | Path) -> DomainReference | None:
        """A reference written by `save`; None where the file is missing, cut short or not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                train, threshold = np.asarray(data["train"], dtype=np.float32), float(data["threshold"])
                k, quantile = int(data["k"]), float(data["quantile"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None
        if train.ndim != 2 or len(train) < k or not math.isfinite(threshold):
            return None
        return cls(train, threshold, k, quantile)


@dataclass
class DomainVerdict:
    """One image's score, in the app and in a turn's download."""

    score: float
    threshold: float

    @property
    def outside(self) -> bool:
        return self.score > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outside": self.outside}

    def badge(self) -> str:
        """A line for the page: "" inside the domain."""
        if not self.outside:
            return ""
        return (f"**Outside what these models were trained on: the answers are guesses.** This image is further from every "
                f"training image than 95% of new easy-vqa images are (domain score {self.score:.3f}, threshold {self.threshold:.3f}).")


def auroc(inside: Sequence[float], outside: Sequence[float]) -> float:
    """Probability that an outside image scores above an inside one (ties count half)."""
    a, b = np.asarray(inside, dtype=np.float64), np.asarray(outside, dtype=np.float64)
    if not len(a) or not len(b):
        raise ValueError("AUROC needs scores of both kinds")
    greater = (b[:, None] > a[None, :]).sum() + 0.5 * (b[:, None] == a[None, :]).sum()
    return float(greater / (len(a) * len(b)))


def offline_photos(size: int = 256) -> dict[str, Any]:
    """scikit-image's sample photographs (and scans) that this installation has without a download,
    as RGB images at most `size` pixels on a side."""
    from skimage import data  # heavy

    names = ("astronaut", "camera", "cat", "coffee", "rocket", "coins", "moon", "page", "text", "clock", "brick", "grass", "gravel",
             "hubble_deep_field", "immunohistochemistry", "retina")
    photos = {}
    for name in names:
        try:
            array = np.asarray(getattr(data, name)())
        except (OSError, ValueError, ImportError, AttributeError):  # a sample this scikit-image would have to fetch: left out
            continue
        if array.dtype != np.uint8:
            array = array.astype(np.float64)
            array = (255 * (array - array.min()) / max(float(array.max() - array.min()), 1e-12)).astype(np.uint8)
        image = Image.fromarray(array).convert("RGB")
        image.thumbnail((size, size))
        photos[name] = image
    return photos


def measure(model: str, out: Path, train_images: int = 300, heldout_images: int = 300, test_images: int = 200,
            severities: Sequence[int] = (1, 3, 5)) -> dict[str, Any]:
    """The detector's numbers for `model` (a folder): AUROC of easy-vqa test images against the
    offline photos, the flagged shares of both, and per shift and severity the share of easy-vqa
    test images flagged. Writes `out` (JSON) and returns it."""
    from vittle.data import load_image  # heavy
    from vittle.inference import Assistant  # heavy

    assistant = Assistant.load(model, device="cpu")
    train = [easy_vqa.get_train_image_paths()[i] for i in range(train_images)]
    test_paths = easy_vqa.get_test_image_paths()
    heldout = [test_paths[i] for i in range(len(test_paths) - heldout_images, len(test_paths))]
    tests = [load_image(test_paths[i]) for i in range(test_images)]
    reference = DomainReference.fit(assistant.image_features(train), assistant.image_features(heldout))
    photos = offline_photos()
    inside, outside = reference.score(assistant.image_features(tests)), reference.score(assistant.image_features(list(photos.values())))
    shifts: dict[str, dict[str, float]] = {}
    for perturbation in tqdm(list_perturbations("visual"), desc="shifts"):
        for severity in severities:
            shifted = [apply(f"{perturbation.name}:{severity}", image=image, seed=i)[0] for i, image in enumerate(tests)]
            flagged = reference.outside(assistant.image_features(shifted))
            shifts.setdefault(perturbation.name, {})[str(severity)] = round(float(flagged.mean()), 4)
    result = {
        "model": str(model), "k": reference.k, "quantile": reference.quantile, "threshold": reference.threshold,
        "train_images": train_images, "heldout_images": heldout_images, "test_images": test_images,
        "auroc_test_vs_photos": auroc(inside, outside),
        "flagged": {"easyvqa_test": float((inside > reference.threshold).mean()), "photos": float((outside > reference.threshold).mean())},
        "photo_scores": {name: round(float(s), 4) for name, s in zip(photos, outside)},
        "test_score_quantiles": {q: round(float(np.quantile(inside, float(q))), 4) for q in ("0.5", "0.95", "0.99")},
        "shifted_flagged_share": shifts,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vittle.analysis.domain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the embedded baseline)")
    parser.add_argument("--out", type=Path, default=Path("docs/robustness-lab/domain.json"))
    parser.add_argument("--test-images", type=int, default=200)
    args = parser.parse_args(argv)
    model = args.model or str(Path(__file__).resolve().parent.parent / "assets" / "models" / "tiny-baseline")  # the embedded one
    result = measure(model, args.out, test_images=args.test_images)
    print(json.dumps({k: v for k, v in result.items() if k not in ("shifted_flagged_share", "photo_scores")}, indent=1))
    return 0 if math.isfinite(result["auroc_test_vs_photos"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
