"""`baco sweep`: the grid, the run folder, resuming, and one-line errors; a small sweep on the tiny pair."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from baco_local.cli.app import main
from baco_local.errors import OutputFileError, UsageError
from baco_local.engine.loop import GenerationSettings
from baco_local.metrics.extras import PLOT_MODULES, SEMANTIC_MODULES, available
from baco_local.engine.routers import get_router
from baco_local.runs.sweep import KnobLists, build_grid
from baco_local.runs.sweep_folder import RunFolder, grid_difference

SHARED = GenerationSettings(router=get_router("p-punc"), gamma=0.3, max_tokens=8)
GRID = ["--routers", "p-punc,h", "--gammas", "0.2,0.5", "--entropy-gammas", "1", "--temps", "0.7,1.2",
        "--nudging-gammas", "0.3", "--ensemble-weights", "0.3", "--xtc-probabilities", "0.5", "--top-nsigmas", "1"]
POINTS = ["p-punc@gamma=0.2", "p-punc@gamma=0.5", "h@gamma=1",
          "aligned@temp=0.7,min_p=0.05", "aligned@temp=1.2,min_p=0.05",
          "base@temp=0.7,min_p=0.05", "base@temp=1.2,min_p=0.05", "nudging@gamma=0.3", "ensemble@w=0.3",
          "prompting@temp=0.7", "prompting@temp=1.2", "prompting-seq@temp=0.7", "prompting-seq@temp=1.2",
          "xtc@xtc_p=0.5", "top-nsigma@n=1"]
METHODS = ["p-punc", "h", "aligned", "base", "nudging", "ensemble", "prompting", "prompting-seq", "xtc", "top-nsigma"]
PROMPTS = "Tell me a story\nWrite about the moon\n"


# --- the grid -------------------------------------------------------------------------------

def test_default_grid_has_every_method_and_knob() -> None:
    points = {p.id: p for p in build_grid(KnobLists(), SHARED)}
    assert len(points) == 3 * 3 + 2 * 3 + 2 + 4 + 4 + 3 + 3 + 4 + 4 + 3 + 3
    assert list(points)[:3] == ["p-punc@gamma=0.1", "p-punc@gamma=0.3", "p-punc@gamma=0.5"]
    h = points["h@gamma=1.5"].settings
    assert h.router.name == "h" and h.gamma == 1.5 and h.sampling == SHARED.sampling
    assert points["punc"].settings.router.name == "punc" and points["punc"].knobs == ()
    aligned = points["aligned@temp=1.2,min_p=0.05"].settings
    assert aligned.router.name == "aligned" and aligned.sampling.temperature == 1.2
    assert aligned.sampling.top_k == SHARED.sampling.top_k and aligned.ensemble is None
    assert points["base@temp=0.5,min_p=0.05"].settings.router.name == "base"
    assert points["nudging@gamma=0.4"].settings.router.name == "nudging"
    ensemble = points["ensemble@w=0.1"].settings
    assert ensemble.ensemble == 0.1 and ensemble.router.name == "aligned"
    assert {p.settings.max_tokens for p in points.values()} == {8}


def test_baselines_sweep_every_temperature_with_every_min_p() -> None:
    points = build_grid(KnobLists(routers=(), baselines=("base",), temps=(0.5, 1.0), min_ps=(0.0, 0.1)), SHARED)
    assert [p.id for p in points] == ["base@temp=0.5,min_p=0", "base@temp=0.5,min_p=0.1",
                                      "base@temp=1,min_p=0", "base@temp=1,min_p=0.1"]
    assert [p.settings.sampling.min_p for p in points] == [0.0, 0.1, 0.0, 0.1]


@pytest.mark.parametrize("knobs, fragment", [
    ({"routers": ("p", "zzz")}, "unknown router 'zzz'"),
    ({"routers": ("nudging",)}, "'nudging' is a baseline"),
    ({"routers": ("p", "P")}, "--routers lists p more than once"),
    ({"baselines": ("aligned", "greedy")}, "unknown baseline 'greedy'"),
    ({"gammas": (0.1, 1.5)}, "--gammas: 1.5 is out of range"),
    ({"gammas": ()}, "--gammas needs at least one value"),
    ({"gammas": (0.3, 0.3)}, "--gammas lists 0.3 more than once"),
    ({"entropy_gammas": (-1.0,)}, "--entropy-gammas: -1 is out of range (each value must be >= 0)"),
    ({"temps": (-0.5,)}, "--temps: -0.5"),
    ({"min_ps": (2.0,)}, "--min-ps: 2"),
    ({"nudging_gammas": (1.2,)}, "--nudging-gammas: 1.2"),
    ({"ensemble_weights": (float("nan"),)}, "--ensemble-weights: nan"),
    ({"routers": (), "baselines": ()}, "the grid is empty"),
])
def test_bad_knobs(knobs: dict, fragment: str) -> None:
    with pytest.raises(UsageError) as error:
        KnobLists(**knobs)
    assert fragment in str(error.value)


def test_grid_difference_names_what_changed() -> None:
    stored = {"models": "a+b", "points": {"p@gamma=0.1": {"n": 2}, "p@gamma=0.3": {"n": 2}}}
    assert grid_difference(stored, json.loads(json.dumps(stored))) == ""
    assert "models" in grid_difference(stored, {**stored, "models": "c+d"})
    added = grid_difference(stored, {**stored, "points": {**stored["points"], "h@gamma=1": {"n": 2}}})
    assert added == "this command's grid is with h@gamma=1"
    changed = grid_difference(stored, {**stored, "points": {"p@gamma=0.1": {"n": 3}, "p@gamma=0.3": {"n": 2}}})
    assert changed == "p@gamma=0.1 n: 2 there, 3 now"


def test_a_folder_without_records_takes_a_new_grid(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    first, second = {"models": "a+b", "points": {"p": {"n": 2}}}, {"models": "a+c", "points": {"p": {"n": 2}}}
    folder.open(first)
    folder.open(second)  # nothing generated yet: a corrected command may start over
    assert json.loads(folder.spec.read_text(encoding="utf-8")) == second
    folder.generations.write_text('{"id": 1, "model": "p", "prompt": "x", "generations": [], "settings": {}}\n',
                                  encoding="utf-8")
    folder.open(second)
    with pytest.raises(OutputFileError, match="different grid .models: 'a.c' there, 'a.b' now"):
        folder.open(first)


# --- the command --------------------------------------------------------------------------------

def sweep_args(tiny_pair, prompts: Path, run_dir: Path) -> list[str]:
    base, aligned = tiny_pair
    return ["sweep", "-f", str(prompts), "--base", str(base), "--aligned", str(aligned), "-o", str(run_dir),
            "-n", "2", "--max-tokens", "8", "--threads", "1", "--judge", str(aligned), *GRID]


def baco(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "baco_local", *args], capture_output=True, text=True, timeout=300)


def run_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text(PROMPTS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished(tiny_pair, prompts: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small sweep, run once: (run folder, the finished process)."""
    run_dir = tmp_path_factory.mktemp("sweep") / "run"
    result = baco(*sweep_args(tiny_pair, prompts, run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir, result


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_sweep_writes_the_run_folder(finished) -> None:
    run_dir, result = finished
    records = [json.loads(line) for line in lines(run_dir / "generations.jsonl")]
    assert sorted((r["model"], r["id"]) for r in records) == sorted((p, i) for p in POINTS for i in (1, 2))
    assert all(len(r["generations"]) == 2 and r["settings"]["point"] == r["model"] for r in records)
    ensemble = next(r for r in records if r["model"] == "ensemble@w=0.3")
    assert ensemble["settings"]["ensemble"] == 0.3
    points = json.loads((run_dir / "points.json").read_text(encoding="utf-8"))["points"]
    assert [p["id"] for p in points] == POINTS and all(p["prompts"] == 2 for p in points)
    assert all(p["values"]["aligned-loglik"] < 0 and 1 <= p["values"]["judge"] <= 10 for p in points)
    assert all(0 <= p["values"]["distinct-2"] <= 1 for p in points)
    assert len(lines(run_dir / "scores.jsonl")) == len(records)


def test_sweep_summary_has_coverage_and_dominance_per_plane_and_group(finished) -> None:
    run_dir, result = finished
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    semantic = available(SEMANTIC_MODULES)
    diversity = [m["name"] for m in summary["metrics"] if m["group"] != "quality"]
    quality = [m["name"] for m in summary["metrics"] if m["group"] == "quality"]
    assert quality == ["aligned-loglik", "judge"] and ("vendi" in diversity) == semantic
    assert [(p["diversity"], p["quality"]) for p in summary["planes"]] == [(d, q) for d in diversity for q in quality]
    assert list(summary["methods"]) == METHODS
    for plane in summary["planes"]:
        assert sum(plane["dominance"].values()) == pytest.approx(1.0)
        assert all(0 <= v <= 1 for v in plane["coverage"].values())
    for method, entry in summary["methods"].items():
        for field in ("coverage", "dominance"):
            assert set(entry[field]) == {"lexical", "semantic", "overall"}
            assert (entry[field]["semantic"] is not None) == semantic
            per_plane = [plane[field][method] for plane in summary["planes"]]
            assert entry[field]["overall"] == pytest.approx(np.mean(per_plane))
    table = " ".join(result.stdout.split())
    assert "Coverage (cov) and dominance (dom)" in table and "cov lex" in table and "dom all" in table
    assert all(method in result.stdout for method in METHODS)


@pytest.mark.skipif(not available(PLOT_MODULES), reason="needs baco-local[eval]")
def test_sweep_plot_opens_and_is_not_blank(finished) -> None:
    from matplotlib.image import imread

    run_dir, _ = finished
    for path in (run_dir / "frontier.png", run_dir / "frontier-judge.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = imread(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200
        assert float(np.var(pixels[..., :3])) > 1e-3


def test_an_interrupted_sweep_continues_where_it_stopped(finished, tiny_pair, prompts: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    generations, scores = run_dir / "generations.jsonl", run_dir / "scores.jsonl"
    kept = b"".join(lines(generations)[:7])
    generations.write_bytes(kept + lines(generations)[7][:40])  # cut short in the middle of a line
    kept_scores = b"".join(lines(scores)[:5])
    scores.write_bytes(kept_scores)
    for name in ("points.json", "summary.json", "frontier.png"):
        (run_dir / name).unlink(missing_ok=True)

    result = baco(*sweep_args(tiny_pair, prompts, run_dir))
    assert result.returncode == 0, result.stderr
    assert "resuming: 7 of 30 records" in result.stderr
    after = generations.read_bytes()
    assert after.startswith(kept) and len(lines(generations)) == 30  # the torn line replaced, nothing redone
    keys = [(r["model"], r["id"]) for r in map(json.loads, lines(generations))]
    assert len(set(keys)) == 30
    assert scores.read_bytes().startswith(kept_scores) and len(lines(scores)) == 30  # only the rest scored
    assert (run_dir / "summary.json").exists() and (run_dir / "points.json").exists()

    again = baco(*sweep_args(tiny_pair, prompts, run_dir))  # all done: nothing generated or scored
    assert again.returncode == 0, again.stderr
    assert generations.read_bytes() == after and len(lines(scores)) == 30


def test_a_rerun_with_a_random_seed_continues_with_the_recorded_one(finished, tiny_pair, prompts: Path,
                                                                     tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    before = (run_dir / "generations.jsonl").read_bytes()
    result = baco(*sweep_args(tiny_pair, prompts, run_dir), "--seed", "-1")
    assert result.returncode == 0, result.stderr
    assert "--seed -1: continuing with the seed 0 recorded in" in result.stderr
    assert (run_dir / "generations.jsonl").read_bytes() == before  # nothing to redo: the same grid
    fresh = tmp_path / "fresh"
    started = baco(*sweep_args(tiny_pair, prompts, fresh), "--seed", "-1", "--routers", "p", "--gammas", "0.3",
                   "--baselines", "none", "--no-semantic")
    assert started.returncode == 0, started.stderr
    seed = json.loads((fresh / "sweep.json").read_text(encoding="utf-8"))["points"]["p@gamma=0.3"]["seed"]
    assert f"random seed {seed}" in started.stderr


def test_a_folder_with_another_grid_is_refused(finished, tiny_pair, prompts: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    before = (run_dir / "generations.jsonl").read_bytes()
    code, err = run_in_process([*sweep_args(tiny_pair, prompts, run_dir), "--gammas", "0.2,0.6"], capsys)
    assert code == 2 and err.startswith("Error:") and "different grid" in err and "p-punc@gamma=0.6" in err
    changed = tmp_path / "other.txt"
    changed.write_text("Another first prompt\nWrite about the moon\n", encoding="utf-8")
    code, err = run_in_process(sweep_args(tiny_pair, changed, run_dir), capsys)
    assert code == 2 and "another text for prompt id 1" in err
    assert (run_dir / "generations.jsonl").read_bytes() == before


@pytest.mark.parametrize("extra, fragment", [
    (["-n", "1"], "at least 2"),
    (["--gammas", ""], "comma-separated numbers"),
    (["--gammas", "0.1,x"], "comma-separated numbers"),
    (["--gammas", "0.1,1.5"], "--gammas: 1.5 is out of range"),
    (["--routers", "p,nope"], "unknown router 'nope'"),
    (["--routers", "p,,h"], "without empty items"),
    (["--routers", "aligned"], "is a baseline"),
    (["--baselines", "none", "--routers", "none"], "the grid is empty"),
    (["--entropy-gammas", "-1"], "--entropy-gammas: -1 is out of range"),
])
def test_bad_options_are_one_error_line(tiny_pair, prompts: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str) -> None:
    code, err = run_in_process([*sweep_args(tiny_pair, prompts, tmp_path / "run"), *extra], capsys)
    error_lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(error_lines) == 1 and error_lines[0].startswith("Error:"), err
    assert fragment in " ".join(err.split()), err
    assert not (tmp_path / "run").exists()


def test_the_new_baselines_have_points_rows_and_plot_entries(finished) -> None:
    """prompting, prompting-seq, xtc and top-nsigma: their points, summary-table rows, and entries
    in both figures (legend names, knob labels; the SVG keeps its text)."""
    run_dir, result = finished
    points = {p["id"]: p for p in json.loads((run_dir / "points.json").read_text(encoding="utf-8"))["points"]}
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["methods"]
    table = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    for method, point in (("prompting", "prompting@temp=0.7"), ("prompting-seq", "prompting-seq@temp=1.2"),
                          ("xtc", "xtc@xtc_p=0.5"), ("top-nsigma", "top-nsigma@n=1")):
        assert points[point]["prompts"] == 2 and points[point]["values"]["aligned-loglik"] is not None
        assert 0 <= summary[method]["coverage"]["overall"] <= 1
        assert table[method][1] == str(len(summary[method]["points"]))  # the row: method, points, values
    for name in ("frontier.svg", "frontier-judge.svg"):
        svg = (run_dir / name).read_text(encoding="utf-8")
        for label in ("Aligned, asked for variety (T)", "Aligned, shown its answers (T)", "Aligned + XTC (p)",
                      "Aligned + top-nσ (n)", "BACo P-PUNC", "Pareto frontier (all methods)", "p=0.5", "T=0.7",
                      "γ=0.2", "Coverage", "Dominance"):
            assert label in svg, (name, label)
    spec = json.loads((run_dir / "sweep.json").read_text(encoding="utf-8"))["points"]
    assert spec["xtc@xtc_p=0.5"]["sampling"]["xtc_probability"] == 0.5
    assert spec["top-nsigma@n=1"]["sampling"]["top_nsigma"] == 1.0
    assert "Give an answer that is different" in spec["prompting@temp=0.7"]["prompting"]


def test_plot_metrics_choose_the_panels(finished, tiny_pair, prompts: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    result = baco(*sweep_args(tiny_pair, prompts, run_dir), "--plot-metrics", "self-bleu,edit-distance")
    assert result.returncode == 0, result.stderr
    svg = (run_dir / "frontier.svg").read_text(encoding="utf-8")
    assert "aligned-loglik vs self-bleu" in svg and "aligned-loglik vs edit-distance" in svg and "vs vendi" not in svg
    code, err = run_in_process([*sweep_args(tiny_pair, prompts, tmp_path / "other"), "--plot-metrics", "judge"], capsys)
    assert code == 2 and "--plot-metrics: 'judge' is not a diversity metric" in err
