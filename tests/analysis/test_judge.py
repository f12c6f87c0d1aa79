"""The LLM judge of LLaVA-Bench against a real HTTP server on 127.0.0.1 that speaks the chat
completions API (the real judge cannot be reached here): review layout, score parsing,
retries on 429 and timeouts, off-format replies, resumable reviews and the relative score."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vittle.analysis.evaluate.judge import (
    SYSTEM,
    Judge,
    JudgeError,
    JudgeSettings,
    combine_runs,
    parse_scores,
    review_content,
    run_reviews,
    summarize,
)
from vittle.analysis.evaluate.llava_bench_cli import main as bench_main
from vittle.analysis.evaluate.llava_files import Question, read_jsonl

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
RULES = {"llava_bench_conv": {"role": "Assistant", "prompt": "Rate both answers from 1 to 10; first line: the two scores."},
         "llava_bench_detail": {"role": "Assistant", "prompt": "Rate the detail of both answers; first line: two scores."}}


class JudgeServer:
    """A chat-completions endpoint. `script` holds what the next requests get, in order:
    ("reply", text), ("status", code, retry_after), ("sleep", seconds, text); when it is
    empty, `default(content)` gives the reply. Every request body is kept."""

    def __init__(self, default=lambda content: "8 6\nThe second answer misses details."):
        self.script, self.requests, self.default = [], [], default
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                step = server.script.pop(0) if server.script else ("reply", server.default(body["messages"][-1]["content"]))
                if step[0] == "status":
                    self.send_response(step[1])
                    if step[2] is not None:
                        self.send_header("Retry-After", str(step[2]))
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                if step[0] == "sleep":
                    threading.Event().wait(step[1])
                text = step[-1]
                payload = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    stub = JudgeServer()
    yield stub
    stub.close()


def _judge(server, **kwargs):
    sleeps = []
    settings = JudgeSettings(base_url=server.url, model="judge-1", api_key="k", backoff_s=0.01, **kwargs)
    return Judge(settings, sleep=sleeps.append), sleeps


def test_scores_are_read_from_the_first_line_only():
    assert parse_scores("8 6\nbecause") == (8.0, 6.0)
    assert parse_scores("8, 6") == (8.0, 6.0) and parse_scores("7.5 9") == (7.5, 9.0)
    for bad in ("Answer 1: 8, Answer 2: 6", "8\n6", "", "eight six", "8 6 7"):
        assert parse_scores(bad) is None, bad


def test_the_review_request_has_llavas_layout_and_the_settings(server):
    judge, _ = _judge(server)
    content = review_content("a red circle\nwhite background", "What is it?", "A red circle.", "A circle.", RULES["llava_bench_conv"])
    assert content == ("[Context]\na red circle\nwhite background\n\n[Question]\nWhat is it?\n\n"
                       "[Assistant 1]\nA red circle.\n\n[End of Assistant 1]\n\n[Assistant 2]\nA circle.\n\n[End of Assistant 2]\n\n"
                       f"[System]\n{RULES['llava_bench_conv']['prompt']}\n\n")
    assert judge.review(content).startswith("8 6")
    request = server.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k"
    assert request["body"]["model"] == "judge-1" and request["body"]["temperature"] == 0.0
    assert request["body"]["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


def test_429_and_5xx_are_retried_with_backoff_and_retry_after(server):
    judge, sleeps = _judge(server)
    server.script = [("status", 429, 3), ("status", 503, None), ("reply", "9 7")]
    assert judge.review("x") == "9 7"
    assert judge.calls == 3 and sleeps == [3.0, 0.02]  # the server's Retry-After, then the backoff (0.01 doubled)
    server.script = [("status", 429, None)] * 3
    judge, sleeps = _judge(server, retries=2)
    with pytest.raises(JudgeError, match="failed 3 times; last: HTTP 429"):
        judge.review("x")
    server.script = [("status", 401, None)]
    with pytest.raises(JudgeError, match="refused the request: HTTP 401"):
        judge.review("x")


def test_a_judge_that_does_not_answer_in_time_is_retried_then_reported(server):
    judge, _ = _judge(server, timeout_s=0.3, retries=1)
    server.script = [("sleep", 1.0, "8 6"), ("reply", "5 5")]
    assert judge.review("x") == "5 5"
    server.script = [("sleep", 1.0, "8 6"), ("sleep", 1.0, "8 6")]
    with pytest.raises(JudgeError, match=r"failed 2 times; last: no reply within 0.3 s"):
        judge.review("x")


def test_an_unreachable_judge_is_named():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    judge = Judge(JudgeSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m", retries=0))
    with pytest.raises(JudgeError, match=rf"127.0.0.1:{port}/v1 failed 1 times; last: could not connect"):
        judge.review("x")


def test_off_format_replies_are_failures_left_out_of_the_means_and_reviews_resume(server, tmp_path):
    judge, _ = _judge(server)
    questions = [Question(i, "a.jpg", f"q{i}", "conv" if i % 2 else "detail") for i in range(4)]
    references = {i: {"question_id": i, "text": "ref", "answer_id": f"r{i}"} for i in range(4)}
    answers = {i: {"question_id": i, "text": "ans", "answer_id": f"a{i}"} for i in range(4)}
    server.script = [("reply", "8 4"), ("reply", "I would rather not score these.")]
    out = tmp_path / "reviews-1.jsonl"
    with pytest.raises(JudgeError):  # the third review hits a judge that keeps failing: the run stops
        server.script += [("status", 500, None)] * 6
        run_reviews(judge, questions, {"a.jpg": "ctx"}, references, answers, RULES, out, progress=False)
    assert [row["question_id"] for row in read_jsonl(out)] == [0, 1]  # what was reviewed is kept
    server.script = [("reply", "10 5"), ("reply", "6 6")]
    reviews = run_reviews(judge, questions, {"a.jpg": "ctx"}, references, answers, RULES, out, progress=False)
    assert [row["question_id"] for row in reviews] == [0, 1, 2, 3]
    assert reviews[1]["failed"] and reviews[1]["tuple"] is None and reviews[0]["tuple"] == [8.0, 4.0]
    summary = summarize(reviews)
    # detail: questions 0 and 2 -> (8, 4) and (10, 5): means 9 and 4.5; conv: question 3 only (1 failed)
    assert summary["detail"] == pytest.approx({"n": 2, "failures": 0, "reference": 9.0, "model": 4.5, "relative": 50.0})
    assert summary["conv"] == pytest.approx({"n": 1, "failures": 1, "reference": 6.0, "model": 6.0, "relative": 100.0})
    assert summary["all"]["relative"] == pytest.approx(100 * 5.0 / 8.0) and summary["all"]["failures"] == 1
    combined = combine_runs([summary, {**summary, "all": {**summary["all"], "relative": 70.0}}])
    assert combined["all"]["relative_mean"] == pytest.approx((62.5 + 70.0) / 2)
    assert combined["all"]["relative_std"] == pytest.approx(5.303300858899107)


def test_a_question_without_a_rule_is_refused_before_any_review(server, tmp_path):
    judge, _ = _judge(server)
    questions = [Question(1, "a.jpg", "q", "complex")]
    with pytest.raises(ValueError, match="no rule 'llava_bench_complex' in the rule file"):
        run_reviews(judge, questions, {"a.jpg": "c"}, {1: {"text": "r"}}, {1: {"text": "a"}}, RULES, tmp_path / "r.jsonl", progress=False)
    assert server.requests == []


def _bench_files(folder: Path) -> dict[str, Path]:
    from vittle.toy.easyvqa import load_split

    rows = [row for row in load_split("test") if row["kind"] in ("color", "shape")][:4]
    image_dir = Path(rows[0]["image_path"]).parent
    questions = [{"question_id": i, "image": Path(r["image_path"]).name, "text": r["question"], "category": ("conv", "detail")[i % 2]}
                 for i, r in enumerate(rows)]
    files = {"questions": folder / "questions.jsonl", "context": folder / "context.jsonl", "reference": folder / "answers_gpt4.jsonl",
             "rules": folder / "rule.json"}
    folder.mkdir(parents=True, exist_ok=True)
    files["questions"].write_text("".join(json.dumps(q) + "\n" for q in questions))
    files["context"].write_text("".join(json.dumps({"image": q["image"], "caption": [f"a shape ({r['answer']})"]}) + "\n"
                                        for q, r in zip(questions, rows)))
    files["reference"].write_text("".join(json.dumps({"question_id": q["question_id"], "text": r["answer"]}) + "\n"
                                          for q, r in zip(questions, rows)))
    files["rules"].write_text(json.dumps(RULES))
    files["images"] = image_dir
    return files


def test_vittle_eval_llava_bench_end_to_end(tmp_path, capsys):
    def by_answer(content: str) -> str:  # 10 for the reference; 10 if the model's answer is in the context, else 2
        context = content.split("[Context]\n")[1].split("\n\n")[0]
        answer = content.split("[Assistant 2]\n")[1].split("\n\n")[0]
        return f"10 {10 if answer and answer in context else 2}\nscored by the stub"

    stub = JudgeServer(default=by_answer)
    files = _bench_files(tmp_path / "bench")
    out = tmp_path / "out"
    try:
        code = bench_main(["--model", f"base={ASSETS / 'tiny-baseline'}", "--questions", str(files["questions"]), "--images",
                           str(files["images"]), "--context", str(files["context"]), "--reference", str(files["reference"]),
                           "--rules", str(files["rules"]), "--specs", "clean,zoom_blur:3", "--out", str(out), "--judge-url", stub.url,
                           "--judge-model", "stub", "--judge-runs", "2", "--max-new-tokens", "4", "--device", "cpu"])
        assert code == 0, capsys.readouterr().err
        requests = len(stub.requests)
        assert requests == 2 * 2 * 4  # 2 specs x 2 runs x 4 questions
        # a second run finds every answer and review on disk: nothing is asked again
        assert bench_main(["--model", f"base={ASSETS / 'tiny-baseline'}", "--questions", str(files["questions"]), "--images",
                           str(files["images"]), "--context", str(files["context"]), "--reference", str(files["reference"]),
                           "--rules", str(files["rules"]), "--specs", "clean,zoom_blur:3", "--out", str(out), "--judge-url", stub.url,
                           "--judge-model", "stub", "--judge-runs", "2", "--max-new-tokens", "4", "--device", "cpu"]) == 0
        assert len(stub.requests) == requests
    finally:
        stub.close()
    report = json.loads((out / "results.json").read_text())
    for spec in ("clean", "zoom_blur:3"):
        answers = read_jsonl(out / "base" / spec / "answers.jsonl")
        context = {json.loads(line)["image"]: json.loads(line)["caption"][0] for line in files["context"].read_text().splitlines()}
        questions = {json.loads(line)["question_id"]: json.loads(line) for line in files["questions"].read_text().splitlines()}
        expected = sum(10 if a["text"] and a["text"] in context[questions[a["question_id"]]["image"]] else 2 for a in answers) / len(answers)
        combined = report["results"]["base"][spec]["combined"]
        assert combined["all"]["relative_mean"] == pytest.approx(100 * expected / 10)
        assert combined["all"]["relative_std"] == pytest.approx(0.0) and combined["all"]["runs"] == 2
    assert "| base |" in (out / "results.md").read_text()


def test_vittle_eval_llava_bench_without_a_judge_says_how_to_give_one(tmp_path, capsys, monkeypatch):
    for name in ("VITTLE_JUDGE_URL", "OPENAI_BASE_URL", "VITTLE_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    files = _bench_files(tmp_path)
    code = bench_main(["--answers", f"x={files['reference']}", "--questions", str(files["questions"]), "--context", str(files["context"]),
                       "--reference", str(files["reference"]), "--rules", str(files["rules"])])
    assert code == 2
    assert "no judge URL: give --judge-url or set VITTLE_JUDGE_URL" in capsys.readouterr().err
