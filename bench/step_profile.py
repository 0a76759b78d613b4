"""Where the time of one training step goes, per network: the torch profiler over one step.

Each network (SAVi, STEVE with its frozen dVAE, SlotDiffusion with its frozen VQ-VAE, the dVAE, the
VQ-VAE) at the speed suite's ``pair`` setting (the reference MOVi-E configuration at 128x128 as it
is, 2 clips of 3 frames; tokenizers 6 frames: ``bench/suite.py``), built and fed as there, trains
one warm-up step and then one profiled step (forward, loss, backward, gradient clipping, fused Adam
as the training loop runs it), in float32 and with bf16 autocast (``train.cpu_amp: bf16``). The self
time of every operator is summed into kinds (matrix products, convolutions, attention and softmax,
random numbers, normalisation, the optimizer's element-wise updates, other element-wise work) and
into the step's phases (forward + loss, backward, clipping + Adam); the top operators are listed too.

Writes ``bench/results/step_profile.json`` and ``.md``. Usage: ``python bench/step_profile.py
[--networks savi steve ...] [--amp off bf16]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import torch
from machine import cpu_model
from suite import MODELS, RESULTS, TOKENIZERS, _build, _config, _input

#: operator kinds, first match wins (PyTorch's CPU operator names)
KINDS = (
    ("random numbers", r"bernoulli|exponential|uniform|normal_|random_|multinomial|rand"),
    ("attention and softmax", r"scaled_dot_product|softmax"),
    ("convolution", r"conv|mkldnn_convolution"),
    ("matrix products", r"::(mm|bmm|addmm|baddbmm|matmul|linear|addbmm)$"),
    ("normalisation", r"norm"),
    ("optimizer updates", r"_foreach|_fused_adam|addcdiv|addcmul|lerp"),
)
PHASES = ("forward + loss", "backward", "clip + Adam")
TOP_OPS = 8


def kind_of(op: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, op):
            return kind
    return "other element-wise"


def profile_step(name: str, amp: str) -> dict:
    """One profiled training step of ``name`` (after a warm-up step): the shares of self CPU time."""
    from slotbench.runtime import autocast
    from slotbench.training.distributed import LossStep
    from slotbench.training.tasks import param_groups

    torch.manual_seed(0)
    cfg = _config(name, "pair")
    with tempfile.TemporaryDirectory() as tmp:
        model = _build(name, cfg, Path(tmp))
    optimizer = torch.optim.Adam(param_groups(model, cfg["train"]), lr=1e-4, fused=True)  # as the loop trains
    video = _input(name, "pair", cfg)
    step = LossStep(model.train())
    dev = torch.device("cpu")

    def one_step(record):
        if hasattr(model, "set_step"):
            model.set_step(0, 1000)
        with record(PHASES[0]), autocast(dev, amp, amp):
            loss = step(video)["loss"]
        with record(PHASES[1]):
            loss.backward()
        with record(PHASES[2]):
            torch.nn.utils.clip_grad_norm_(model.parameters(), max(cfg["train"]["clip_grad"], 1e-6))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    one_step(lambda _: torch.profiler.record_function("warm-up"))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        one_step(torch.profiler.record_function)
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total for e in events if e.key in PHASES}
    ops = {e.key: e.self_cpu_time_total for e in events if e.key not in PHASES and e.key.startswith("aten::")}
    total = sum(ops.values()) or 1.0
    kinds: dict[str, float] = defaultdict(float)
    for op, us in ops.items():
        kinds[kind_of(op)] += us
    step_s = sum(phases.values()) / 1e6
    return {"network": name, "amp": amp, "step_s_profiled": round(step_s, 3),
            "phases": {k: round(v / max(sum(phases.values()), 1.0), 3) for k, v in phases.items()},
            "kinds": {k: round(v / total, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "top_ops": [{"op": op, "share": round(us / total, 3), "kind": kind_of(op)}
                        for op, us in sorted(ops.items(), key=lambda kv: -kv[1])[:TOP_OPS]]}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Where the time of a training step goes", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} thread(s); "
             f"1-minute load average {m['load_average_at_start']} at the start (the shares hold under load, the "
             f"seconds do not). Written {result['date']} by `bench/step_profile.py`.", "",
             "One training step after a warm-up step, at the speed suite's `pair` setting (reference MOVi-E "
             "configuration, 128x128, 2 clips of 3 frames; tokenizers 6 frames). Shares of the operators' self "
             "CPU time by kind, and of the step by phase; the profiler itself adds a few percent.", "",
             "| network | precision | profiled s | " + " | ".join(name for name, _ in KINDS)
             + " | other element-wise | forward + loss / backward / clip + Adam |",
             "|---|---|---|" + "---|" * (len(KINDS) + 2)]
    for r in result["runs"]:
        kinds = [f"{100 * r['kinds'].get(name, 0):.0f} %" for name, _ in KINDS]
        phases = " / ".join(f"{100 * r['phases'].get(p, 0):.0f} %" for p in PHASES)
        lines.append(f"| {r['network']} | {'bf16 autocast' if r['amp'] == 'bf16' else 'float32'} | "
                     f"{r['step_s_profiled']} | " + " | ".join(kinds)
                     + f" | {100 * r['kinds'].get('other element-wise', 0):.0f} % | {phases} |")
    lines += ["", "Top operators (share of self CPU time):", ""]
    for r in result["runs"]:
        tops = ", ".join(f"`{t['op'].removeprefix('aten::')}` {100 * t['share']:.0f} %" for t in r["top_ops"])
        lines.append(f"- {r['network']}, {'bf16' if r['amp'] == 'bf16' else 'float32'}: {tops}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=[*MODELS, *TOKENIZERS], choices=[*MODELS, *TOKENIZERS])
    parser.add_argument("--amp", nargs="+", default=["off", "bf16"], choices=["off", "bf16"])
    args = parser.parse_args()
    result = {"benchmark": "where the time of a training step goes",
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "load_average_at_start": round(os.getloadavg()[0], 2)},
              "runs": [profile_step(name, amp) for name in args.networks for amp in args.amp]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "step_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "step_profile.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
