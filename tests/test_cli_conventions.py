"""Conventions a llama.cpp or Ollama user expects of the `baco` command: --version, -v/-q, shell
completion, --help that reads cleanly, and README tables that agree with the option definitions."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from test_gen_cli import baco, model_args
from typer.testing import CliRunner

from baco_local.chat import COMMANDS
from baco_local.cli.app import app, fill_optional_values
from baco_local.cli.options import PANELS
from baco_local.metrics.registry import METRICS

README = Path(__file__).resolve().parent.parent / "README.md"
LLAMA_LOG = "llama_model_loader"  # a line llama.cpp logs while loading any GGUF


def baco_on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout to a pipe); returns (exit code, terminal text)."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "baco_local", *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=secondary,
                               env={**os.environ, "TERM": "xterm", "COLUMNS": "120"})
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    process.communicate(timeout=120)
    os.close(primary)
    return process.returncode, b"".join(chunks).decode("utf-8", errors="replace")


def test_version() -> None:
    for flag in ("--version", "-V"):
        result = baco(flag)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert re.fullmatch(r"baco-local \d+\.\d+\.\d+\S*", lines[0])
        assert re.fullmatch(r"llama-cpp-python 0\.3\.\d+ \(llama\.cpp \S+\)", lines[1])
        assert lines[2].startswith("llama.cpp system: ") and "CPU" in lines[2]


def test_verbose_shows_llama_cpp_log_and_quiet_shows_nothing(tiny_pair) -> None:
    args = ["gen", "-p", "Hello", *model_args(tiny_pair), "--max-tokens", "3"]
    normal, verbose, quiet = baco(*args), baco(*args, "-v"), baco(*args, "--quiet")
    assert normal.returncode == verbose.returncode == quiet.returncode == 0
    assert LLAMA_LOG not in normal.stderr and "memory estimate" in normal.stderr
    assert LLAMA_LOG in verbose.stderr
    assert quiet.stderr == "" and quiet.stdout == normal.stdout


def test_quiet_turns_the_progress_bar_off_on_a_terminal(tiny_pair) -> None:
    args = ["gen", "-p", "Hello", *model_args(tiny_pair), "--max-tokens", "3"]
    code, shown = baco_on_a_terminal(*args)
    assert code == 0 and "generating" in shown and "memory estimate" in shown
    code, shown = baco_on_a_terminal(*args, "-q")
    assert code == 0 and shown.strip() == ""


def test_quiet_and_verbose_in_chat_and_eval(tiny_pair, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    chat = subprocess.run([sys.executable, "-m", "baco_local", "chat", "--base", str(base), "--aligned", str(aligned),
                           "-t", "1", "--max-tokens", "3", "-q"], input="Hello\n", capture_output=True, text=True,
                          timeout=120, env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr
    assert "memory estimate" not in chat.stderr and LLAMA_LOG not in chat.stderr
    records = tmp_path / "gen.jsonl"
    records.write_text('{"id": 1, "prompt": "Hi", "model": "m", "generations": ["a b", "c d"]}\n', encoding="utf-8")
    evaluated = baco("eval", str(records), "--no-semantic", "--aligned", str(aligned), "-v")
    assert evaluated.returncode == 0 and LLAMA_LOG in evaluated.stderr


def test_shell_completion() -> None:
    env = {**os.environ, "_BACO_COMPLETE": "complete_bash", "COMP_WORDS": "baco ge", "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-m", "baco_local"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0 and result.stdout.split() == ["gen"]
    env.update(COMP_WORDS="baco gen --n-pre", COMP_CWORD="2")
    result = subprocess.run([sys.executable, "-m", "baco_local"], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout.split() == ["--n-predict"]
    shown = baco("--show-completion", "bash")
    assert shown.returncode == 0 and "_BACO_COMPLETE" in shown.stdout


def test_a_bare_json_option_means_stdout() -> None:
    assert fill_optional_values(["eval", "out.jsonl", "--json"]) == ["eval", "out.jsonl", "--json", "-"]
    assert fill_optional_values(["eval", "out.jsonl", "--json", "--no-semantic"]) == \
        ["eval", "out.jsonl", "--json", "-", "--no-semantic"]
    assert fill_optional_values(["eval", "out.jsonl", "--json", "s.json"]) == ["eval", "out.jsonl", "--json", "s.json"]
    assert fill_optional_values(["models", "list", "--json"]) == ["models", "list", "--json"]  # a flag there


# --- help -------------------------------------------------------------------------------------------

COMMAND_PATHS = [[], ["gen"], ["chat"], ["eval"], ["sweep"], ["merge"], ["serve"], ["models"], ["models", "list"], ["models", "pull"],
                 ["models", "info"], ["models", "check"]]


def help_text(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="baco", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda path: " ".join(path) or "baco")
def test_help_shows_no_types_after_flags_and_no_braces(path: list[str]) -> None:
    text = help_text(*path)
    assert "<bool>" not in text and "<list[" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage


@pytest.mark.parametrize("command", ["gen", "chat", "sweep"])
def test_help_panels_come_in_order(command: str) -> None:
    titles = re.findall(r"╭─ (\w+) ─", help_text(command))
    assert titles[0] == "Options" and titles[1:] == sorted(titles[1:], key=PANELS.index)
    assert re.search(r"─ Prompts ─[^╭]*--system", help_text(command)) or command == "sweep"


def test_help_says_only_what_applies() -> None:
    chat, sweep, gen = help_text("chat"), help_text("sweep"), help_text("gen")
    assert "for a lone sequence" in gen and "lone sequence" not in chat and "lone sequence" not in sweep
    assert "reply k of the chat uses seed + k" in chat
    assert "llama.cpp's -n is --max-tokens here" in gen
    assert "distinct-1" in help_text("eval") and "distinct-1" not in sweep  # the metric list is in one place


def test_sweep_help_reads_as_one_paragraph_per_idea() -> None:
    sweep = typer.main.get_command(app).commands["sweep"]  # type: ignore[attr-defined]
    assert "\n    " not in (sweep.help or "")  # no indentation left over from the docstring
    listing = help_text()
    line = next(line for line in listing.splitlines() if "│ sweep" in line)
    after = listing.splitlines()[listing.splitlines().index(line) + 1]
    assert "frontier." in line and "│ merge" in after  # one line in the command list


# --- README tables --------------------------------------------------------------------------------

def readme_table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after ``heading`` in README.md."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # without the header and its rule


def option_names(cell: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", cell))


def command_options(name: str) -> dict[str, object]:
    """Every option string of a command (``--help`` aside), with its parameter."""
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    return {opt: param for param in command.params for opt in (*param.opts, *param.secondary_opts)
            if opt != "--help" and opt.startswith("-")}


def default_shown(default: object) -> str | None:
    if default is None or default is False or default == []:
        return None
    return f"{default:g}" if isinstance(default, float) else str(default)


@pytest.mark.parametrize("heading, command, shared_elsewhere", [
    ("### `baco gen`", "gen", False),
    ("### `baco sweep`", "sweep", True),  # sweep's table lists its own options; the others are gen's
    ("### `baco serve`", "serve", True),
])
def test_readme_option_tables_agree_with_the_options(heading: str, command: str, shared_elsewhere: bool) -> None:
    options = command_options(command)
    rows = readme_table(heading)
    listed = {name: row for row in rows for name in option_names(row[0])}
    gen_options = command_options("gen")
    wanted = {o for o in options if not (shared_elsewhere and o in gen_options and o not in ("-n", "--samples"))}
    assert set(listed) - set(options) == set(), "the README lists options the command does not have"
    assert wanted - set(listed) == set(), "the README leaves out options of the command"
    for name, row in listed.items():
        shown = default_shown(options[name].default)  # type: ignore[attr-defined]
        if shown is not None:
            assert shown in row[1], f"{name}: README says {row[1]!r}, the option's default is {shown}"


def test_readme_chat_commands_agree_with_the_commands() -> None:
    listed = {name for row in readme_table("| command |") for name in re.findall(r"`(/\w+)", row[0])}
    assert listed == {f"/{name}" for name in COMMANDS}


def test_readme_metric_table_agrees_with_the_registry() -> None:
    rows = readme_table("| metric | group |")
    listed = {}
    for row in rows:
        name = row[0].strip("`")
        match = re.fullmatch(r"(.*-)(\d(?:/\d)+)", name)  # distinct-1/2/3
        for metric in ([match.group(1) + n for n in match.group(2).split("/")] if match else [name]):
            listed[metric] = row[2]
    assert set(listed) == set(METRICS)
    for name, direction in listed.items():
        assert direction == METRICS[name].direction, name


def test_end_of_input_inside_a_command_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """typer turns an EOFError (Ctrl-D at a prompt) into its own Abort: one line and 130, no traceback."""
    import io

    from baco_local.cli import app as app_module

    reading = typer.Typer()

    @reading.command()
    def ask() -> None:
        input()

    monkeypatch.setattr(app_module, "app", reading)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SystemExit) as stopped:
        app_module.main([])
    assert stopped.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "Error: interrupted"
