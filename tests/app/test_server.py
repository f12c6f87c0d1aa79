"""The running app over HTTP: every endpoint through gradio_client, bad input, served files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import easy_vqa
import httpx
import pytest
from gradio_client import Client, handle_file

EASYVQA = easy_vqa.get_test_image_paths()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def run(client, image, question="what color is the shape?", visual="frost", severity=3, text="none", level=3,
        vittle="vittle-f", method="pca"):
    return client.predict(handle_file(str(image)) if image else None, question, visual, severity, text, level, vittle, method,
                          api_name="/run")


def test_endpoints_are_named(client):
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == {"/run", "/sweep", "/embeddings", "/robustness"}


def test_run_returns_four_answers_and_panels(client, service):
    result = run(client, EASYVQA[0], visual="gaussian_noise", severity=4, text="char_typo", level=2)
    (image, question, header, b_clean, b_pert, v_clean, v_pert, embeddings, distances, variance, kl, tokens, summary,
     baseline_distribution, vittle_distribution, effects, download, link, overlay, record) = result
    query = service.prepare(EASYVQA[0], "what color is the shape?", "gaussian_noise", 4, "char_typo", 2)
    expected = list(service.answers(query, "vittle-f"))[-1]
    assert [b_clean, b_pert, v_clean, v_pert] == [expected[r] for r in ("baseline_clean", "baseline_perturbed", "vittle_clean", "vittle_perturbed")]
    assert question == query.perturbed_question and "Gaussian noise (severity 4) + Keyboard typos (level 2)" in header
    assert image.endswith(".webp") or image.endswith(".png")
    figures = {name: json.loads(payload["plot"]) for name, payload in
               (("embeddings", embeddings), ("distances", distances), ("variance", variance), ("kl", kl), ("overlay", overlay))}
    points = [trace for trace in figures["embeddings"]["data"] if trace.get("meta", {}).get("part") == "points"]
    assert {trace["name"] for trace in points} == {"clean", "Gaussian noise 4 + Keyboard typos 2"}  # the menus' names, not the spec
    assert sum(len(trace["x"]) for trace in points) == 2 * 2 * 24  # 2 models x (clean, perturbed) x 24 reference queries
    assert "Baseline: " in points[0]["hovertext"][0] and len(figures["embeddings"]["layout"]["meta"]["thumbnails"]["perturbed"]) == 24
    assert sum(trace["type"] == "bar" for trace in figures["distances"]["data"]) == 2
    assert [trace["type"] for trace in figures["overlay"]["data"]] == ["image", "heatmap"]
    assert figures["overlay"]["data"][1]["zmin"] == 0 and figures["overlay"]["data"][1]["zmax"] >= 1
    assert len(figures["variance"]["data"][0]["z"]) == 4 and {len(row) for row in figures["variance"]["data"][0]["z"]} == {4}  # 16 image tokens
    assert figures["variance"]["layout"]["template"]["layout"]["plot_bgcolor"] == "white"  # the plotly_white look
    assert "<span" in tokens and "Cosine distance between the clean and perturbed query" in summary
    bars = json.loads(vittle_distribution["plot"])
    assert [trace["name"] for trace in bars["data"]] == ["clean", "perturbed"] and bars["layout"]["xaxis"]["range"][0] == 0
    turn = json.loads(record)
    assert turn["answers"]["vittle_perturbed"] == v_pert and "total variation" in effects and "example=" in link
    assert sorted(Path(f).name for f in download) == ["perturbed.png", "turn.json"]
    assert json.loads(Path(next(f for f in download if f.endswith(".json"))).read_text()) == turn


def test_sweep_endpoint(client):
    figure, summary, download, record = client.predict(handle_file(EASYVQA[0]), "what color is the shape?", "contrast", 3, "none", 3,
                                                       "vittle-f", "pca", 0.0, api_name="/sweep")
    traces = json.loads(figure["plot"])["data"]
    assert len(traces) == 4 and all(len(trace["x"]) == 6 for trace in traces)  # clean and severities 1-5, 2 models x 2 panels
    sweep = json.loads(record)["sweep"]
    assert sweep["alpha"] == 0.0 and [p["severity"] for p in sweep["points"]["Vittle (F)"]] == [1, 2, 3, 4, 5]
    assert "Contrast severity 1-5" in summary and len(download) == 2
    with pytest.raises(Exception, match="choose a visual corruption, or a text perturbation with levels"):
        client.predict(handle_file(EASYVQA[0]), "what color is the shape?", "none", 3, "none", 3, "vittle-f", "pca", api_name="/sweep")


def test_embeddings_endpoint_umap(client):
    embeddings, summary = client.predict(handle_file(EASYVQA[3]), "what shape is this?", "zoom_blur", 2, "none", 3, "vittle-l",
                                         "umap", api_name="/embeddings")
    figure = json.loads(embeddings["plot"])
    assert "UMAP" in figure["layout"]["title"]["text"]
    assert [t.get("name") for t in figure["data"]].count("your query: Zoom blur 2") == 2
    assert "Vittle (L)" in summary


def test_robustness_endpoint(client):
    table, figure, status = client.predict("vittle-l", api_name="/robustness")
    assert "| Vittle (L) (shown) |" in table and "The first robustness lab" in table  # the embedded models: the staged study's numbers
    traces = json.loads(figure["plot"])["data"]  # the staged study's forest plot: every arm's difference per group
    assert len(traces) == 4 and "Vittle (L) (8)" in traces[1]["y"] and len(traces[1]["y"]) == len(traces[1]["error_x"]["array"])
    assert status.startswith("Models: Baseline, Vittle (F), Vittle (L) on cpu (ready")  # and the precompute's progress, if running


@pytest.mark.parametrize(("severity", "level", "message"), [
    (2.7, 3, "The severity must be a whole number from 1 to 5, got 2.7"),
    (3, 1.5, "The text level must be a whole number from 1 to 5, got 1.5"),
    (3, 0, "Value 0 is less than minimum value 1"),  # the slider's own range check
    (6, 3, "Value 6 is greater than maximum value 5"),
])
def test_fractional_or_out_of_range_levels_are_refused_not_truncated(client, severity, level, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        run(client, EASYVQA[1], severity=severity, level=level, text="char_typo")
    assert message in str(caught.value) and "Traceback" not in str(caught.value)


@pytest.mark.parametrize(("name", "message"), [
    ("text", "not an image this app can read"),
    ("empty", "empty (0 bytes)"),
    ("truncated", "damaged or truncated"),
    ("bomb", "400.0 MP; the limit is 25.0 MP"),
])
def test_bad_images_get_a_message_and_the_server_keeps_serving(client, bad_files, name, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="The ") as caught:
        run(client, bad_files[name])
    assert message in str(caught.value) and "Traceback" not in str(caught.value)
    assert run(client, EASYVQA[1], visual="none")[3]  # still answering


def test_a_turn_without_an_image_is_refused_with_a_message(client):
    """The page's initial state (or an upload over the size limit) has no image; the models only
    answer questions about one."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Choose an image first"):
        run(client, None)
    with pytest.raises(AppError, match="Choose an image first"):
        client.predict(None, "What color?", "none", 3, "none", 3, "vittle-f", "pca", api_name="/embeddings")


@pytest.mark.parametrize(("question", "message"), [
    ("", "question box is empty"),
    ("x" * 10_000, "10,000 characters long; the limit is 2,000"),
])
def test_bad_questions(client, question, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        run(client, EASYVQA[0], question=question)


@pytest.mark.parametrize("name", ["1x1", "rgba", "cmyk", "16bit", "palette", "animated"])
def test_unusual_images_are_answered(client, odd_images, name):
    result = run(client, odd_images[name], text="greek")
    assert all(result[3:7]) and result[7] is not None


def test_right_to_left_and_emoji(client):
    result = run(client, EASYVQA[2], question="ما لون الشكل؟ 🎨", visual="none", text="char_delete")
    assert all(result[3:7])


def test_upload_cap(server, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(2 * 1024 * 1024))
    response = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.png", big.read_bytes(), "image/png")})
    assert response.status_code == 413


def test_the_page_is_sent_compressed_to_a_browser_that_accepts_it(server):
    import gzip

    plain = httpx.get(server, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert "window.gradio_config" in plain.text and int(plain.headers["content-length"]) == len(plain.content)
    assert "accept-encoding" in plain.headers["vary"].lower()
    with httpx.stream("GET", server, headers={"Accept-Encoding": "gzip, deflate, br"}) as response:
        raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip" and int(response.headers["content-length"]) == len(raw)
    page = gzip.decompress(raw).decode()
    assert len(raw) < len(plain.content) / 4  # the page is mostly its configuration's JSON
    assert page.count("window.gradio_config =") == 1 and abs(len(page) - len(plain.text)) < 200  # the same page
    refused = httpx.get(server, headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers and "window.gradio_config" in refused.text
    api = httpx.get(f"{server}gradio_api/info", headers={"Accept-Encoding": "gzip"})  # the API is untouched
    assert api.status_code == 200 and api.headers.get("content-encoding") != "gzip" and "/run" in api.json()["named_endpoints"]


def test_the_page_asks_for_no_web_font(server):
    """The theme's text is in the visitor's own fonts: nothing for the first text to wait for."""
    css = httpx.get(f"{server}theme.css")
    assert css.status_code == 200 and "--font:" in css.text.replace(" ", "")
    assert "system-ui" in css.text and "ui-monospace" in css.text
    assert "@font-face" not in css.text and ".woff" not in css.text and "SourceSansPro" not in css.text


def test_the_page_carries_its_introduction_before_the_app(server):
    page = httpx.get(server).text
    header, app = page.find('<header id="intro">'), page.find("<gradio-app")
    assert 0 < header < app and page.count('<header id="intro">') == 1
    assert "<h1>Vittle: does an information bottleneck make a model robust?</h1>" in page[header:app]


def test_a_header_goes_before_the_app_element_only():
    from vittle.app.middleware import with_header

    page = b'<html><head><script>x("<gradio-app")</script></head><body><gradio-app eager="true"></gradio-app></body></html>'
    assert with_header(page, b"<header>H</header>") == page.replace(b"<body><gradio-app", b"<body><header>H</header><gradio-app")
    assert with_header(b"<html><body>plain</body></html>", b"<header>H</header>") == b"<html><body>plain</body></html>"
    assert with_header(page, b"") == page


@pytest.mark.parametrize(("header", "accepted"), [("gzip", True), ("gzip, deflate, br, zstd", True), ("br;q=1.0, gzip;q=0.8", True),
                                                  ("GZIP", True), ("gzip;q=0", False), ("identity", False), ("", False),
                                                  ("x-gzip", False), ("br, gzip ; q=0.0", False), ("gzip;q=abc", False)])
def test_accept_encoding_is_read_as_browsers_write_it(header, accepted):
    from vittle.app.middleware import accepts_gzip

    assert accepts_gzip(header) is accepted


def test_serves_no_file_outside_assets_and_uploads(server):
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "README.md"
    secrets = ["/etc/passwd", str(readme), str(readme.parent / "app.py")]
    variants = [*secrets, "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/etc/passwd", "....//....//etc/passwd",
                "%252e%252e%252fetc%252fpasswd", "..\\..\\etc\\passwd", "/etc/./passwd", "//etc/passwd", "file:///etc/passwd",
                "/proc/self/environ", f"{readme.parent}/assets/../README.md", f"{readme.parent}/assets/%2e%2e/README.md"]
    for path in variants:
        for route in ("gradio_api/file=", "file="):
            response = httpx.get(f"{server}{route}{path}")
            assert response.status_code in (403, 404), (route, path)
            assert "root:" not in response.text and "# vittle" not in response.text


def test_a_file_the_server_did_not_receive_is_refused_in_one_line_without_server_paths(server, caplog, capfd):
    """A request naming a file that was never uploaded (a relative name, or a path on the server):
    one warning line in the log, no traceback, and a message naming no server folder."""
    import os
    import tempfile

    def call(path: str) -> str:
        data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, "what color is the shape?", "frost", 3, "none", 3, "vittle-f", "pca", 0.2]
        event = httpx.post(f"{server}gradio_api/call/run", json={"data": data}).json()["event_id"]
        return httpx.get(f"{server}gradio_api/call/run/{event}", timeout=60).text

    capfd.readouterr()
    with caplog.at_level("INFO"):
        bodies = [call("shape.png"), call("/etc/hostname")]
    records = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(records) == 2 and all(r.levelname == "WARNING" and "\n" not in r.getMessage() and r.exc_info is None for r in records)
    assert "Traceback" not in capfd.readouterr().err
    for body in bodies:
        assert "event: error" in body and "was not uploaded to this server" in body
        assert os.getcwd() not in body and tempfile.gettempdir() not in body and "/etc" not in body and "shape.png" not in body
    refused = httpx.get(f"{server}gradio_api/file=shape.png")  # the file route echoes the name it was given, nothing more
    assert refused.status_code == 403 and os.getcwd() not in refused.text


def raw_call(server: str, endpoint: str, data: list) -> tuple[str, object]:
    """One call over raw HTTP, as curl or any HTTP client makes it: (the last event, its data)."""
    event_id = httpx.post(f"{server}gradio_api/call/{endpoint}", json={"data": data}, timeout=30).json()["event_id"]
    body = httpx.get(f"{server}gradio_api/call/{endpoint}/{event_id}", timeout=120).text
    events = [line[6:].strip() for line in body.splitlines() if line.startswith("event:")]
    payloads = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
    return events[-1], json.loads(payloads[-1]) if payloads[-1] not in ("", "null") else None


def test_every_endpoint_answers_raw_http_with_the_readmes_argument_lists(server):
    """The API is stable for clients that send only the values the README lists (inputs added
    later, alpha and the sweep's previous record, take the callback's defaults)."""
    upload = httpx.post(f"{server}gradio_api/upload", files={"files": ("shape.png", Path(EASYVQA[0]).read_bytes(), "image/png")})
    image = {"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}}
    query = [image, "what color is the shape?", "frost", 3, "none", 3, "vittle-f", "pca"]  # the README's 8 values
    event, result = raw_call(server, "run", query)
    assert event == "complete" and len(result) == 20 and all(result[3:7]), result
    assert json.loads(result[-1])["settings"]["alpha"] is None  # the model's own alpha
    event, result = raw_call(server, "run", [*query, 0.0])  # and with alpha, as gradio_client sends it
    assert event == "complete" and json.loads(result[-1])["settings"]["alpha"] == 0.0
    event, result = raw_call(server, "sweep", [*query, 0.25])  # the README's 9 values (alpha 0.25: not a training alpha)
    assert event == "complete" and len(result) == 4 and json.loads(result[-1])["sweep"]["alpha"] == 0.25
    event, result = raw_call(server, "embeddings", query)
    assert event == "complete" and len(result) == 2 and "plot" in result[0]
    event, result = raw_call(server, "robustness", ["vittle-f"])
    assert event == "complete" and len(result) == 3 and result[2].startswith("Models:")
    event, result = raw_call(server, "run", query[:5])  # too few values for the defaults: Gradio's own message
    assert event == "error"


@pytest.mark.parametrize("payload", [
    {"path": "https://example.com/cat.png", "meta": {"_type": "gradio.FileData"}},
    {"path": "http://127.0.0.1:9/shape.png", "url": "http://127.0.0.1:9/shape.png", "meta": {"_type": "gradio.FileData"}},
    "https://example.com/cat.png",
    "/etc/hostname",
    12,
])
def test_urls_and_plain_strings_are_refused_in_one_line_and_never_fetched(server, caplog, capfd, payload):
    """The server takes uploads only: it fetches no URL (no size cap could hold for a remote file)."""
    capfd.readouterr()
    with caplog.at_level("INFO"):
        event, message = raw_call(server, "run", [payload, "what color is the shape?", "frost", 3, "none", 3, "vittle-f", "pca"])
    assert event == "error" and "was not uploaded to this server" in str(message)
    records = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(records) == 1 and "\n" not in records[0].getMessage() and records[0].exc_info is None
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("lifetime", [3600, 1])
def test_uploads_and_outputs_are_deleted_when_old_and_when_the_server_stops(service, tmp_path, free_port, lifetime):
    import shutil
    import time

    from vittle.app.ui import build_demo

    demo = build_demo(service, file_lifetime_s=lifetime)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name="127.0.0.1", server_port=free_port, prevent_thread_lock=True, quiet=True)
    try:
        upload = tmp_path / "cleanup-probe.png"
        shutil.copy(EASYVQA[1], upload)
        answers = run(Client(f"http://127.0.0.1:{free_port}/", verbose=False), upload)
        assert answers[3]
        kept = {p for block in demo.blocks.values() for p in getattr(block, "keep_in_cache", set())}  # the example images
        files = [Path(p) for group in demo.temp_file_sets for p in group if p not in kept]
        assert any(p.name == "cleanup-probe.png" for p in files)
        if lifetime == 3600:
            assert len(files) >= 2 and all(p.exists() for p in files)  # the upload and the perturbed image, kept for now
        else:  # swept while the server runs (every second here, every 10 minutes by default)
            deadline = time.monotonic() + 10
            while any(p.exists() for p in files) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not any(p.exists() for p in files)
    finally:
        demo.close()
    left = [p for p in files if p.exists()]
    assert not left, left


def test_identical_queries_at_once_get_whole_images_and_no_failed_turn(server):
    """8 clients sending the same query together: every perturbed image they download is whole
    (Gradio rewrote a shared output file in place on each update; ServedImage writes it once)."""
    import threading

    from PIL import Image

    results, errors, lock = [], [], threading.Lock()

    def user() -> None:
        client = Client(server, verbose=False)
        for _ in range(3):
            try:
                image = run(client, EASYVQA[4], visual="frost", severity=3)[0]
                with Image.open(image) as opened:
                    opened.load()
                    size = opened.size
                with lock:
                    results.append(size)
            except Exception as err:  # counted: a failed turn or a truncated download
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=user) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors[:3]
    assert len(results) == 24 and len(set(results)) == 1


def test_sessions_are_bounded_sessionless_api_calls_included(service, app_main, free_port):
    """Each API call without a session hash is a session to Gradio (a copy of the page's settings,
    ~0.3 MB); the server keeps `--sessions` of them, the least recently used leaving first."""
    args = app_main.parse_args(["--port", str(free_port), "--sessions", "3"])
    _, demo = app_main.build(args, service)
    demo.launch(prevent_thread_lock=True, quiet=True, **app_main.launch_options(args))
    try:
        url = f"http://127.0.0.1:{free_port}/"
        for _ in range(8):
            event, result = raw_call(url, "robustness", ["vittle-f"])
            assert event == "complete"
        assert demo.state_session_capacity == 3 and 1 <= len(demo.state_holder.session_data) <= 3
    finally:
        demo.close()


def test_gradio_s_records_of_finished_sessions_are_pruned(service, app_main, free_port, monkeypatch):
    """Gradio keeps an empty set of pending event ids per session hash after its events complete
    (one per sessionless call, forever) and its message queue (up to 2,000). The app prunes both
    in the server's loop."""
    monkeypatch.setattr(app_main, "SESSION_PRUNE_S", 0.5)
    args = app_main.parse_args(["--port", str(free_port)])
    _, demo = app_main.build(args, service)
    demo.launch(prevent_thread_lock=True, quiet=True, **app_main.launch_options(args))
    try:
        url = f"http://127.0.0.1:{free_port}/"
        pending = demo._queue.pending_event_ids_session
        for _ in range(6):
            assert raw_call(url, "robustness", ["vittle-f"])[0] == "complete"
            assert all(len(ids) <= 1 for ids in pending.values())
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(pending) == 0  # six sessions came and went; none is left behind
        deadline = time.monotonic() + 10
        while demo._queue.pending_messages_per_session and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(demo._queue.pending_messages_per_session) == 0  # nor their message queues
    finally:
        demo.close()


def test_gradio_s_records_of_files_the_sweep_deleted_are_dropped(client, server, app_main, tmp_path):
    """Gradio records every upload's and output file's path (`Blocks.temp_file_sets`) and never
    drops one; after the sweep deletes files, `forget_deleted_files` drops their paths and keeps
    the others."""
    demos = [demo for demo in app_main._DEMOS if getattr(demo, "local_url", None) == server]
    assert len(demos) == 1
    demo = demos[0]
    from PIL import Image

    image = Image.open(EASYVQA[2]).convert("RGB")
    image.putpixel((0, 0), (time.time_ns() % 256, 7, 11))  # a new file: Gradio keeps one copy of each content
    unique = tmp_path / "unique.png"
    image.save(unique)
    before = {path for files in demo.temp_file_sets for path in files}
    run(client, unique)
    recorded = {path for files in demo.temp_file_sets for path in files} - before
    assert any(path in demo.upload_file_set for path in recorded)  # the upload, and the turn's output files
    assert len(recorded) >= 2
    kept, deleted = tmp_path / "kept.json", tmp_path / "deleted.json"
    kept.write_text("{}")
    component_files = next(files for files in demo.temp_file_sets if files is not demo.upload_file_set)
    demo.upload_file_set.update({str(kept), str(deleted)})
    component_files.add(str(tmp_path / "gone.png"))
    assert app_main.forget_deleted_files(demo) >= 2
    assert str(kept) in demo.upload_file_set and str(deleted) not in demo.upload_file_set
    assert str(tmp_path / "gone.png") not in component_files
    assert recorded <= {path for files in demo.temp_file_sets for path in files}  # the turn's files exist: still recorded
    demo.upload_file_set.discard(str(kept))
