"""Output records of ``baco gen``: one JSON line per prompt, appended as each prompt finishes.

A record is NoveltyBench's ``generations.jsonl`` shape (``id``, ``prompt``, ``model``,
``generations``) plus per-sample provenance (``samples``) and the run's ``settings``. Lines are
appended whole by :class:`~baco_local.runs.jsonl_file.JsonlWriter`, so an interrupted run leaves
complete lines only; a rerun of the same command skips the ids already present (resume). A rerun
continues a file only when it is the same run: the same settings (:func:`resume_difference`, the
one place that decides), the same model files (size and fingerprint) and the same text for every
prompt id already done; a file holding an id twice is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import OutputFileError
from .jsonl_file import JsonlContent, read_jsonl
from ..engine.loop import Sample
from ..engine.seeds import OLD_SEED_RULE
from ..models.model_identity import describe_identity
from .prompt_file import PromptItem, id_key

# Settings that must match for a rerun to resume into an existing file. ``model_files`` identifies
# both GGUF files (size and fingerprint); ``ctx_size`` can change finish reasons, and ``draft`` and
# ``n`` (how the samples are batched) the floating-point path to each token.
RESUME_KEYS = ("router", "gamma", "n", "sampling", "max_tokens", "stop", "seed", "system", "base_template",
               "chat_template", "model", "model_files", "ctx_size", "draft")
GEN_HINT = "use another -o"
# Settings that say how a run decoded on its machine (the thread plan, the batch width): recorded,
# never compared, so the same run on another machine or cluster layout is still the same run.
DECODE_PLAN_KEYS = ("concurrency", "parallel")


def sample_record(sample: Sample) -> dict[str, Any]:
    """Provenance of one generation."""
    return {
        "tokens": len(sample.tokens),
        "sources": sample.sources,
        "base_fraction": round(sample.base_fraction, 4),
        "finish_reason": sample.finish_reason,
        "seed": sample.seed,
    }


def prompt_record(item: PromptItem, model: str, samples: list[Sample], settings: dict[str, Any]) -> dict[str, Any]:
    """The output line for one prompt."""
    return {
        "id": item.id,
        "prompt": item.prompt,
        "model": model,
        "generations": [s.text for s in samples],
        "samples": [sample_record(s) for s in samples],
        "settings": settings,
    }


def comparable_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without its settings' decode plan (:data:`DECODE_PLAN_KEYS`): what two runs of the
    same generation on different machines or layouts should agree on, byte for byte."""
    settings = {k: v for k, v in record["settings"].items() if k not in DECODE_PLAN_KEYS}
    return {**record, "settings": settings}


def is_generation_record(record: Any) -> bool:
    """True for a line that ``baco gen`` (or ``baco sweep``) writes."""
    return (isinstance(record, dict) and isinstance(record.get("id"), (str, int))
            and not isinstance(record.get("id"), bool) and isinstance(record.get("prompt"), str)
            and isinstance(record.get("model"), str) and isinstance(record.get("generations"), list)
            and isinstance(record.get("settings"), dict))


@dataclass(frozen=True)
class ExistingOutput:
    """What an output file already holds."""

    prompts: dict[str, str]  # the prompt text of every finished id (by id_key)
    settings: list[dict[str, Any]]  # the settings of every record, in file order
    valid_bytes: int  # length of the prefix made of complete, valid lines

    @property
    def done(self) -> set[str]:
        """The finished prompt ids (by id_key)."""
        return set(self.prompts)


def read_existing(path: Path) -> ExistingOutput:
    """Read an output file: finished ids, their prompts and settings (a torn last line is not trusted).

    Refuses a file that is not baco's, and one that holds a prompt id twice.
    """
    content = read_jsonl(path, is_generation_record, GEN_HINT)
    return ExistingOutput(unique_records(path, content, lambda r: id_key(r["id"]), GEN_HINT),
                          [line.record["settings"] for line in content.lines], content.valid_bytes)


def unique_records(path: Path, content: JsonlContent, key: Any, hint: str) -> dict[Any, str]:
    """``{key(record): prompt}`` of every record; a key seen twice is refused, naming both lines."""
    seen: dict[Any, int] = {}
    prompts: dict[Any, str] = {}
    for line in content.lines:
        k = key(line.record)
        if k in seen:
            raise OutputFileError(f"{path} holds {_describe_key(k, line.record['id'])} twice "
                                  f"(lines {seen[k]} and {line.number}), "
                                  f"so two runs wrote to it; {hint}")
        seen[k], prompts[k] = line.number, line.record["prompt"]
    return prompts


def _describe_key(key: Any, prompt_id: Any) -> str:
    if isinstance(key, tuple):
        return f"the record of {key[0]} for prompt id {prompt_id!r}"
    return f"prompt id {prompt_id!r}"


def check_same_prompts(path: Path, done: Mapping[str, str], items: Iterable[PromptItem], hint: str) -> None:
    """Refuse a rerun whose prompt file has another text for an id already done (by id_key)."""
    for item in items:
        recorded = done.get(id_key(item.id))
        if recorded is not None and recorded != item.prompt:
            raise OutputFileError(f"{path} has another text for prompt id {item.id!r}; "
                                  f"the prompt file changed, {hint}")


def resume_difference(recorded: Mapping[str, Any], current: Mapping[str, Any],
                      keys: Iterable[str] = RESUME_KEYS) -> str:
    """The first of ``keys`` whose value differs between a recorded run and this one, as
    ``"KEY: OLD there, NEW now"``; "" when the run is the same.

    This is the one comparison that decides whether a rerun may continue a file or a run folder.
    A key this run has but the record lacks (written by an older baco) counts as a difference.
    """
    for key in keys:
        if key in current and key not in recorded:
            return f"{key}: not recorded there (written by an older baco), {_shown(key, current[key])} now"
        old, new = recorded.get(key), current.get(key)
        if old == new:
            continue
        if key == "model_files" and isinstance(old, dict) and isinstance(new, dict):
            side = next((s for s in sorted(set(old) | set(new)) if old.get(s) != new.get(s)), "")
            return f"{side} model file: {describe_identity(old.get(side))} there, {describe_identity(new.get(side))} now"
        return f"{key}: {_shown(key, old)} there, {_shown(key, new)} now"
    return ""


def _shown(key: str, value: Any) -> str:
    if key == "model_files" and isinstance(value, dict):
        return "; ".join(f"{side} {describe_identity(identity)}" for side, identity in value.items())
    return repr(value)


def check_resumable(path: Path, existing: ExistingOutput, settings: dict[str, Any],
                    items: Iterable[PromptItem]) -> None:
    """Refuse to append to a file written by another run: other settings, models or prompts."""
    for recorded in existing.settings:
        rule = recorded.get("seed_rule", OLD_SEED_RULE)
        if "seed_rule" in settings and rule != settings["seed_rule"]:
            raise OutputFileError(f"{path} was written with another seed rule ({rule!r}; this baco uses "
                                  f"{settings['seed_rule']!r}), so a rerun cannot continue it; {GEN_HINT} to start a new run")
        difference = resume_difference(recorded, settings)
        if difference:
            raise OutputFileError(f"{path} holds a run with different {difference}; {GEN_HINT} to start a new run")
    check_same_prompts(path, existing.prompts, items, GEN_HINT)
