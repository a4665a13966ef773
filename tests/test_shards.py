"""Per-sample seeds, `baco gen --shard` and `baco merge`: real CLI processes on the tiny pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_gen_cli import assert_clean_error, baco, model_args, read_records

from baco_local.engine.seeds import SEED_RULE, parse_shard, sample_seed, shard_of


@pytest.fixture()
def many(tmp_path: Path) -> Path:
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"prompt number {i}"}) + "\n" for i in range(9)),
                    encoding="utf-8")
    return path


def gen_args(tiny_pair, prompt_file: Path, out: Path, *extra: str) -> list[str]:
    return ["gen", "-f", str(prompt_file), *model_args(tiny_pair), "-n", "2", "--max-tokens", "8", "--seed", "7",
            "-o", str(out), *extra]


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
