"""Per-sample seeds, `baco gen --shard` and `baco merge`: real CLI processes on the tiny pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_gen_cli import assert_clean_error, baco, model_args, read_records, write_numbered_prompts

from baco_local.engine.seeds import SEED_RULE, parse_shard, sample_seed, shard_of


@pytest.fixture()
def many(tmp_path: Path) -> Path:
    return write_numbered_prompts(tmp_path / "many.jsonl", 9)


def gen_args(tiny_pair, prompt_file: Path, out: Path, *extra: str) -> list[str]:
    """One prompt at a time (``--parallel 1``): records in prompt order, each made the same way in
    every shard (the default P depends on how many prompts a run has)."""
    return ["gen", "-f", str(prompt_file), *model_args(tiny_pair), "-n", "2", "--max-tokens", "8", "--seed", "7",
            "--parallel", "1", "-o", str(out), *extra]


def test_seed_rule_is_a_stable_hash_of_seed_id_and_index() -> None:
    assert sample_seed(7, 0, "p1") == sample_seed(7, 0, "p1")
    assert len({sample_seed(7, i, key) for i in range(3) for key in ("p1", "p2", "1")}) == 9
    assert sample_seed(7, 1, "p1") != sample_seed(8, 1, "p1")
    assert 0 <= sample_seed(2**40, 5, "x") < 2**63
    assert sample_seed(3, 2) == 5  # without an id (chat): seed + i, as before


def test_shard_rule_puts_every_id_in_exactly_one_shard() -> None:
    keys = [f"id-{i}" for i in range(200)]
    for count in (1, 2, 3, 7):
        shards = [shard_of(key, count) for key in keys]
        assert all(1 <= s <= count for s in shards)
        assert shards == [shard_of(key, count) for key in reversed(keys)][::-1]  # order does not matter
        assert len(set(shards)) == count  # 200 ids reach every shard
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "1/0", "a/b", "3", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_a_prompts_samples_do_not_depend_on_the_other_prompts(tiny_pair, many: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    assert baco(*gen_args(tiny_pair, many, whole)).returncode == 0
    lines = many.read_text(encoding="utf-8").splitlines()
    alone = tmp_path / "alone.jsonl"
    (tmp_path / "one.jsonl").write_text(lines[4] + "\n", encoding="utf-8")
    assert baco(*gen_args(tiny_pair, tmp_path / "one.jsonl", alone)).returncode == 0
    record = read_records(alone)[0]
    assert record == read_records(whole)[4]
    assert record["settings"]["seed_rule"] == SEED_RULE
    assert [s["seed"] for s in record["samples"]] == [sample_seed(7, i, "p4") for i in range(2)]


def test_resume_refuses_a_file_of_the_old_seed_rule(tiny_pair, many: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert baco(*gen_args(tiny_pair, many, out)).returncode == 0
    old = []
    for record in read_records(out):
        del record["settings"]["seed_rule"]  # what an older baco wrote
        old.append(json.dumps(record, ensure_ascii=False) + "\n")
    out.write_text("".join(old), encoding="utf-8")
    before = out.read_bytes()
    result = baco(*gen_args(tiny_pair, many, out))
    assert_clean_error(result, "another seed rule ('seed+index'")
    assert out.read_bytes() == before


def run_shards(tiny_pair, prompt_file: Path, folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir()
    outs = []
    for index in range(1, count + 1):
        out = folder / f"shard{index}.jsonl"
        result = baco(*gen_args(tiny_pair, prompt_file, out, "--shard", f"{index}/{count}"))
        assert result.returncode == 0, result.stderr
        outs.append(out)
    return outs


def test_three_shards_merged_are_byte_identical_to_one_run(tiny_pair, many: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    assert baco(*gen_args(tiny_pair, many, whole)).returncode == 0
    outs = run_shards(tiny_pair, many, tmp_path / "shards")
    ids = [[r["id"] for r in read_records(out)] if out.exists() else [] for out in outs]
    assert sorted(sum(ids, [])) == sorted(f"p{i}" for i in range(9))  # each id in exactly one shard
    assert all(ids)  # 9 ids reach all 3 shards with this rule (a fixed hash: this cannot flake)

    merged = tmp_path / "merged.jsonl"
    result = baco("merge", str(merged), *map(str, reversed(outs)), "--prompt-file", str(many))
    assert result.returncode == 0, result.stderr
    assert merged.read_bytes() == whole.read_bytes()
    from_folder = tmp_path / "from_folder.jsonl"
    assert baco("merge", str(from_folder), str(tmp_path / "shards"), "-f", str(many)).returncode == 0
    assert from_folder.read_bytes() == whole.read_bytes()

    rerun = baco(*gen_args(tiny_pair, many, outs[0], "--shard", "1/3"))  # resumes: nothing to do
    assert rerun.returncode == 0 and "resuming" in rerun.stderr, rerun.stderr

    missing = tmp_path / "missing.jsonl"
    result = baco("merge", str(missing), str(outs[0]), str(outs[1]), "-f", str(many))
    assert result.returncode == 1
    assert f"{len(ids[2])} of 9 prompt ids are in no shard: {ids[2][0]!r}" in result.stderr
    assert read_records(missing) == [r for r in read_records(whole) if r["id"] not in ids[2]]


def test_merge_refusals(tiny_pair, many: Path, tmp_path: Path) -> None:
    outs = run_shards(tiny_pair, many, tmp_path / "shards", count=2)
    out = tmp_path / "m.jsonl"
    assert_clean_error(baco("merge", str(out), str(outs[0]), str(outs[0])), "is a duplicate of")
    assert not out.exists()

    records = read_records(outs[0])
    records[0]["generations"][0] += " changed"
    conflict = tmp_path / "conflict.jsonl"
    conflict.write_text(json.dumps(records[0], ensure_ascii=False) + "\n", encoding="utf-8")
    assert_clean_error(baco("merge", str(out), str(outs[0]), str(conflict)), "is in conflict with")

    other = tmp_path / "other.jsonl"
    result = baco(*gen_args(tiny_pair, many, other, "--shard", "2/2", "--max-tokens", "5"))
    assert result.returncode == 0, result.stderr
    assert_clean_error(baco("merge", str(out), str(outs[0]), str(other)), "other settings")
    assert_clean_error(baco("merge", str(out), str(outs[0]), str(tmp_path / "nope.jsonl")), "does not exist")
    (tmp_path / "other.txt").write_text("something else\n", encoding="utf-8")
    assert_clean_error(baco("merge", str(out), str(outs[0]), "-f", str(tmp_path / "other.txt")),
                       "is not in the prompt file")
    assert not out.exists()
    assert_clean_error(baco("merge", str(outs[1]), str(outs[0])), "already exists")


@pytest.mark.parametrize("value", ["0/3", "4/3", "1/0", "two/3", "3"])
def test_bad_shard_values_are_one_line(tiny_pair, many: Path, tmp_path: Path, value: str) -> None:
    assert_clean_error(baco(*gen_args(tiny_pair, many, tmp_path / "o.jsonl", "--shard", value)), "--shard")
