"""What the app accepts and refuses, before any model runs."""

from __future__ import annotations

import numpy as np
import pytest

from vittle.app.inputs import MAX_QUESTION_CHARS, WORKING_SIDE, InputError, clean_question, load_query_image, whole_number


@pytest.mark.parametrize(("name", "message"), [
    ("text", "not an image this app can read"),
    ("empty", "empty (0 bytes)"),
    ("truncated", "damaged or truncated"),
    ("bomb", "400.0 MP; the limit is 25.0 MP"),
])
def test_bad_files_get_a_clear_message(bad_files, name, message):
    with pytest.raises(InputError, match="^The ") as caught:
        load_query_image(bad_files[name])
    assert message in str(caught.value)


def test_size_and_pixel_caps_are_checked_before_decoding(odd_images):
    with pytest.raises(InputError, match=r"MB; the limit is 0 MB"):
        load_query_image(odd_images["large"], max_bytes=1000)
    with pytest.raises(InputError, match=r"The image is 3000 x 1500 pixels \(4.5 MP\); the limit is 1.0 MP"):
        load_query_image(odd_images["large"], max_pixels=1_000_000)


def test_missing_file_and_no_image():
    assert load_query_image(None) is None
    assert load_query_image("") is None
    with pytest.raises(InputError, match="could not be found"):
        load_query_image("/nonexistent/upload.png")


def test_unusual_images_become_rgb(odd_images):
    results = {name: load_query_image(path) for name, path in odd_images.items()}
    for name, result in results.items():
        assert result.image.mode == "RGB", name
    assert results["1x1"].image.size == (1, 1)
    assert results["1x1"].image.getpixel((0, 0)) == (200, 30, 30)
    assert np.all(np.asarray(results["rgba"].image) == 255)  # transparent pixels flattened onto white
    assert "transparency flattened onto white" in results["rgba"].notes
    assert results["cmyk"].notes == ["CMYK image converted to RGB"]
    deep = np.asarray(results["16bit"].image)[..., 0]
    assert deep.min() == 0 and deep.max() == 255  # scaled, not clipped to white
    assert results["16bit"].notes == ["I;16 image scaled to 8 bits"]
    assert results["animated"].notes[0] == "animated image: the first of its 3 frames is used"
    assert results["animated"].image.getpixel((5, 5)) == (255, 0, 0)
    assert results["large"].image.size == (WORKING_SIDE, WORKING_SIDE // 2)
    assert "shrunk from 3000 x 1500 to 1024 x 512" in results["large"].notes


def test_questions():
    assert clean_question("  What colour?  ") == "What colour?"
    assert clean_question("<image>\nWhat colour?") == "What colour?"
    assert clean_question("ما هو اللون؟ 🎨") == "ما هو اللون؟ 🎨"
    for empty in ("", "   ", None, "<image>"):
        with pytest.raises(InputError, match="question box is empty"):
            clean_question(empty)
    with pytest.raises(InputError, match=f"10,000 characters long; the limit is {MAX_QUESTION_CHARS:,}"):
        clean_question("x" * 10_000)


@pytest.mark.parametrize(("value", "expected"), [(3, 3), (3.0, 3), ("5", 5), (1, 1)])
def test_whole_numbers_pass(value, expected):
    assert whole_number("severity", value) == expected


@pytest.mark.parametrize("value", [2.7, 0, 6, "high", None, float("nan")])
def test_fractions_text_and_out_of_range_are_refused(value):
    with pytest.raises(InputError, match=r"The severity must be a whole number from 1 to 5, got "):
        whole_number("severity", value)


def test_an_output_image_is_written_once_atomically_and_never_rewritten(tmp_path, monkeypatch):
    """Gradio rewrote a served image in place on every update (identical queries then downloaded
    truncated files); ServedImage writes each file once, through a temp file."""
    import numpy as np
    from PIL import Image

    from vittle.app.components import ServedImage

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    component = ServedImage()
    component.GRADIO_CACHE = str(tmp_path)
    image = Image.fromarray((np.arange(64 * 64 * 3) % 251).astype("uint8").reshape(64, 64, 3))
    first = component.postprocess(image)
    path = tmp_path / first.path
    stamp = (path.stat().st_ino, path.stat().st_mtime_ns)
    again = component.postprocess(np.asarray(image))  # the same picture, as an array, in a later update
    assert again.path == first.path and (path.stat().st_ino, path.stat().st_mtime_ns) == stamp
    assert Image.open(path).size == (64, 64) and path.suffix == ".webp"
    assert [p.name for p in path.parent.iterdir()] == ["image.webp"]  # no temp file left beside it
    assert component.postprocess(None) is None
