"""What llama.cpp itself allocates for a model and a context, as JSON (run as a script).

``python llama_memory_report.py MODEL.gguf N_CTX N_SEQ`` loads the model on the CPU, makes a
context the way ``baco_local.engine.backend`` does (unified KV cache, ``n_seq`` sequences) and prints
``llama_model_size`` and the buffer sizes llama.cpp logs (KV cache, compute, output), in bytes.
It runs in its own process so that its log callback does not replace baco's.
"""

from __future__ import annotations

import ctypes
import json
import re
import sys

import llama_cpp

MIB = 1024 ** 2


def report(path: str, n_ctx: int, n_seq: int) -> dict[str, int]:
    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(_level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(path.encode(), llama_cpp.llama_model_default_params())
    if not model:
        raise SystemExit(f"llama.cpp could not load {path}")
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = min(512, n_ctx)
    params.n_ubatch = min(512, n_ctx)
    params.n_seq_max = n_seq
    params.kv_unified = True
    context = llama_cpp.llama_init_from_model(model, params)
    if not context:
        raise SystemExit("llama.cpp could not create the context")
    log = "".join(lines)

    def mib(pattern: str) -> int:
        return round(sum(float(v) for v in re.findall(pattern + r"\s*=\s*([\d.]+) MiB", log)) * MIB)

    result = {
        "weights": int(llama_cpp.llama_model_size(model)),
        "kv_cache": mib(r"KV buffer size"),
        "compute": mib(r"compute buffer size") + mib(r"output buffer size"),
    }
    llama_cpp.llama_free(context)
    llama_cpp.llama_model_free(model)
    return result


if __name__ == "__main__":
    print(json.dumps(report(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
