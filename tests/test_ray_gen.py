"""`baco gen --ray`: real CLI drivers on a local Ray instance started once for this module, the tiny pair."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from baco_local.runs.ray_gen import PoolShape, idle_actors
from baco_local.runs.records import comparable_record
from test_gen_cli import assert_clean_error, baco, kill_after_records, model_args, write_numbered_prompts

ray = pytest.importorskip("ray", reason="the Ray tests need the extra: pip install -e '.[ray]'")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance (2 CPUs, 80 MB object store, no dashboard) that the drivers join."""
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the drivers below are this machine's own processes
    context = ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False,
                       log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_numbered_prompts(tmp_path_factory.mktemp("ray") / "prompts.jsonl", 12)


def gen_args(tiny_pair, prompts: Path, out: Path, *extra: str) -> list[str]:
    return ["gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "16", "--seed", "5",
            "-o", str(out), *extra]


def ray_args(cluster: str) -> list[str]:
    return ["--ray", cluster, "--ray-actors", "2", "--ray-cpus", "1", "--ray-batch-size", "2"]


@pytest.fixture(scope="module")
def local_lines(tiny_pair, prompts: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The records of the same run on this machine, with the scheduler that the actors run (-np = -n)."""
    out = tmp_path_factory.mktemp("local") / "local.jsonl"
    result = baco(*gen_args(tiny_pair, prompts, out, "--parallel", "2"))
    assert result.returncode == 0, result.stderr
    return lines_of(out)


def lines_of(path: Path) -> list[str]:
    """The file's records, sorted, each without its decode plan (how one machine's decodes ran: the
    thread plan differs between an actor and the local run, and resume never compares it)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all('"concurrency"' in line for line in lines)  # every record says how it ran
    return sorted(json.dumps(comparable_record(json.loads(line))) for line in lines)


def test_ray_run_gives_the_records_of_a_local_run(tiny_pair, prompts, cluster, local_lines, tmp_path) -> None:
    out = tmp_path / "ray.jsonl"
    result = baco(*gen_args(tiny_pair, prompts, out, *ray_args(cluster)), timeout=300)
    assert result.returncode == 0, result.stderr
    assert lines_of(out) == local_lines  # byte for byte, once each, in the order prompts finished
    assert "Warning" not in result.stderr and "will have work" not in result.stderr  # 6 batches, 2 actors
    again = baco(*gen_args(tiny_pair, prompts, out, *ray_args(cluster)), timeout=300)
    assert again.returncode == 0 and "resuming: 12 of 12 prompts" in again.stderr, again.stderr


def test_ray_run_resumes_after_the_driver_is_killed(tiny_pair, prompts, cluster, local_lines, tmp_path) -> None:
    out = tmp_path / "ray.jsonl"
    args = gen_args(tiny_pair, prompts, out, *ray_args(cluster))
    partial = kill_after_records(args, out, 2)
    assert 2 <= partial.count("\n") < 12, "the driver should have been stopped mid-run"
    result = baco(*args, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"resuming: {partial.count(chr(10))} of 12 prompts" in result.stderr
    assert out.read_text(encoding="utf-8").startswith(partial)
    assert lines_of(out) == local_lines


def _actor_pids() -> list[int]:
    """Processes of this machine that run a GenWorker actor (Ray names them after the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"GenWorker" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_an_actor_killed_mid_run_is_retried(tiny_pair, prompts, cluster, local_lines, tmp_path) -> None:
    out = tmp_path / "ray.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "baco_local", *gen_args(tiny_pair, prompts, out,
                                                                              *ray_args(cluster))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
            time.sleep(0.05)
        written = out.read_text().count("\n")
        victims = _actor_pids()
        assert victims and written < 12, "the run should be under way with its actors"
        os.kill(victims[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert lines_of(out) == local_lines  # complete, and no prompt twice


def test_a_run_with_an_idle_actor_says_so_once(tiny_pair, prompts, cluster, local_lines, tmp_path) -> None:
    out = tmp_path / "ray.jsonl"
    result = baco(*gen_args(tiny_pair, prompts, out, "--ray", cluster, "--ray-actors", "2", "--ray-cpus", "1",
                            "--ray-batch-size", "16"), timeout=300)
    assert result.returncode == 0, result.stderr
    assert lines_of(out) == local_lines
    assert "12 prompts make 1 batch of --ray-batch-size 16: only 1 of 2 actors will have work" in result.stderr
    assert "UserWarning" not in result.stderr  # Ray Data's own advice about the same is not shown


def test_prompts_too_few_for_the_actors_are_noted() -> None:
    shape = PoolShape(actors=4, cpus=1, batch_size=16)
    assert idle_actors(40, shape) == ("40 prompts make 3 batches of --ray-batch-size 16: only 3 of 4 actors "
                                      "will have work (a smaller --ray-batch-size spreads them)")
    assert idle_actors(64, shape) == idle_actors(0, shape) == ""  # every actor busy; nothing left to run


def test_bad_addresses_are_one_line_errors(tiny_pair, prompts, tmp_path) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out.jsonl"
    result = baco(*gen_args(tiny_pair, prompts, out, "--ray", f"127.0.0.1:{port}"))
    assert_clean_error(result, f"no Ray cluster answers at 127.0.0.1:{port}")
    assert_clean_error(baco(*gen_args(tiny_pair, prompts, out, "--ray", "nowhere")),
                       "--ray takes auto, local or HOST:PORT (a cluster's GCS address), got 'nowhere'")
    # Ray Data fails inside Ray Client with an AttributeError (ray-project/ray#48682): refused up front
    assert_clean_error(baco(*gen_args(tiny_pair, prompts, out, "--ray", "ray://127.0.0.1:10001")),
                       "Ray Data does not run through Ray Client (ray://)")
    assert not out.exists()


def test_without_ray_installed_it_says_how_to_install(tiny_pair, prompts, tmp_path) -> None:
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), *sys.path])}
    result = subprocess.run([sys.executable, "-m", "baco_local", *gen_args(tiny_pair, prompts, tmp_path / "o.jsonl",
                                                                           "--ray", "local")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert_clean_error(result, "--ray needs Ray (with Ray Data), which is not installed: pip install 'baco-local[ray]'")


def _job(tiny_pair, base: Path, pair: str | None = None):
    """A RayJob as the driver builds it for the tiny pair, with the base file at ``base`` on "this node"."""
    import dataclasses

    from baco_local.cli.gen_ray import RayJob
    from baco_local.cli.options import RunOptions
    from baco_local.cli.setup import model_files, resolve_models, ModelChoice

    real_base, aligned = tiny_pair
    resolved = resolve_models(ModelChoice(real_base, aligned, None, None, None, 0))
    files = model_files(resolved.spec)
    fields = {f.name: None for f in dataclasses.fields(RunOptions)}
    run = RunOptions(**{**fields, "yes": False, "no_escape": False, "no_draft": False, "ignore_memory": False,
                        "verbose": False, "quiet": True, "gpu_layers": 0, "pair": pair})
    resolved = dataclasses.replace(resolved, spec=dataclasses.replace(resolved.spec, base_path=base))
    return RayJob(resolved, run, None, 1, 1, None, {"model_files": files, "model": "m"})


def test_a_node_without_the_model_files_names_itself_and_the_fix(tiny_pair, tmp_path) -> None:
    from baco_local.cli.gen_ray import node_files
    from baco_local.runs.ray_gen import NodeError, node_name

    with pytest.raises(NodeError) as missing:
        node_files(_job(tiny_pair, tmp_path / "elsewhere" / "base.gguf"))
    message = str(missing.value)
    assert message.startswith(f"node {node_name()}: the base model file {tmp_path / 'elsewhere' / 'base.gguf'} "
                              "is not there; copy it there (same path)")
    other = tmp_path / "other.gguf"
    other.write_bytes(tiny_pair[1].read_bytes())  # the aligned file where the base should be
    with pytest.raises(NodeError, match="the base model file .* is not the driver's"):
        node_files(_job(tiny_pair, other))
