"""Section `kernels`: what one batched training step asks of a device, measured on the CPU.

Every torch operation a step dispatches (forward, backward and fused Adam, float32) is
counted with a `TorchDispatchMode`, below autograd, where each operation is what a GPU
would run as (about) one kernel; views and other metadata-only operations launch none and
are counted apart, and so are the host syncs (`.item()`). For each kernel the bytes of its
input and output tensors are added up: the memory traffic of the step, per token. Host
time per step is measured at batch 1 on one thread, where the arithmetic is negligible and
what is left is Python, autograd and dispatch: the part a GPU cannot take off the host.

From these and a few stated device figures (`H100`), `gpu_estimate` gives the expected
throughput of each of the trainer's modes: eager is bound by the host (the host time per
step, one launch per kernel) until the batch is large enough to be bound by memory
traffic; compiled (Inductor) fuses kernels, which divides their number and the traffic by
the factor `FUSION` assumed here; CUDA graphs (`--compile-mode reduce-overhead`, compiled
as well) replay the whole step in one launch, leaving the device's per-kernel floor and
memory traffic. These are estimates, to be replaced by `gpu_check`'s measured figures.
"""
from __future__ import annotations

import time
from collections import Counter

from microgpt_scalar.cli import MAX_BATCH, MAX_STEPS, int_from

from .common import SEED, read_docs, torch_start

METADATA_OPS = {  # operations that make a view or read metadata: no kernel on a GPU
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "slice", "select", "unsqueeze",
    "squeeze", "as_strided", "detach", "alias", "split", "split_with_sizes", "unbind", "chunk", "view_as", "lift_fresh",
    "_reshape_alias", "empty", "empty_like", "empty_strided",
}
SYNC_OPS = {"_local_scalar_dense", "item"}  # the host waits for the device here
H100 = {  # an H100-class GPU (SXM), as its data sheet gives it, and typical launch costs
    "hbm_bytes_per_s": 3.35e12,
    "bandwidth_efficiency": 0.5,  # small tensors of 16 floats a row reach about half the peak
    "launch_s": 5e-6,  # a kernel launch from eager PyTorch, host side
    "graph_kernel_s": 2e-6,  # a kernel inside a replayed CUDA graph, tiny tensors, device side
    "compiled_step_host_s": 2e-4,  # a compiled step's host work besides launching: guards, autograd, Adam
}
FUSION = 3.0  # assumed: Inductor fuses elementwise chains, leaving a third of the kernels and of the traffic


def count_step(batch_size: int, preset: str, data: str | None, steps_before: int = 2) -> dict:
    """Operations, syncs and bytes of one batched step at `batch_size` (after a warm-up)."""
    from microgpt_torch.train import batched_train_step

    model, optimizer, batches = new_run(batch_size, preset, data)
    for step in range(steps_before):
        batched_train_step(model, optimizer, *next(batches), step)
    idx, targets, num_targets = next(batches)
    with op_counter() as counter:
        batched_train_step(model, optimizer, idx, targets, num_targets, steps_before)
    counted = counter.summary()
    return {"batch_size": batch_size, "tokens": num_targets, "positions": idx.numel(), **counted,
            "bytes_per_token": counted["bytes"] / num_targets}


def op_counter():
    """A TorchDispatchMode that counts, while it is entered, every operation dispatched to a
    kernel (autograd's backward included) and the bytes its tensors hold; `.summary()`."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpCounter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops, self.bytes = Counter(), 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__.rstrip("_")  # add_ and add are one kernel
            self.ops[name] += 1
            if name not in METADATA_OPS and name not in SYNC_OPS:
                self.bytes += tensor_bytes(args) + tensor_bytes(kwargs) + tensor_bytes(out)
            return out

        def summary(self) -> dict:
            metadata = sum(n for name, n in self.ops.items() if name in METADATA_OPS)
            syncs = sum(n for name, n in self.ops.items() if name in SYNC_OPS)
            total = sum(self.ops.values())
            return {"ops": total, "kernels": total - metadata - syncs, "metadata_ops": metadata, "syncs": syncs,
                    "bytes": self.bytes, "by_op": dict(self.ops.most_common())}

    return OpCounter()


def tensor_bytes(tree) -> int:
    import torch

    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, (list, tuple)):
        return sum(tensor_bytes(x) for x in tree)
    if isinstance(tree, dict):
        return sum(tensor_bytes(x) for x in tree.values())
    return 0


def new_run(batch_size: int, preset: str, data: str | None):
    """(model, optimizer, endless ready batches) of batched float32 training from the reference start."""
    import torch

    from microgpt_torch.fast import BatchedGPT
    from microgpt_torch.optim import make_optimizer
    from microgpt_torch.train import PackedDocuments, batch_order

    docs = read_docs(data)
    config, params, train_tokens, _, _, _ = torch_start(docs, preset, SEED, num_steps=10**9)
    model = BatchedGPT.from_scalar_params(config, params, dtype=torch.float32)
    optimizer = make_optimizer(model, config)
    order = batch_order(len(train_tokens), batch_size, torch.Generator().manual_seed(SEED))
    packed = PackedDocuments.of(train_tokens, config.block_size)
    batches = (packed.batch(next(order)) for _ in iter(int, 1))
    return model, optimizer, batches


def host_time(batch_size: int, preset: str, data: str | None, steps: int, repeats: int = 5) -> float:
    """CPU seconds of this thread per batched step, on one torch thread: the least of `repeats`
    timings of `steps` steps on ready batches (built before the clock starts). The thread's
    CPU time, unlike the wall clock, does not count the time other processes hold the core."""
    from microgpt_torch.device import torch_threads
    from microgpt_torch.train import batched_train_step

    with torch_threads(1):
        model, optimizer, batches = new_run(batch_size, preset, data)
        ready = [next(batches) for _ in range(steps)]
        step, times = 0, []
        for _ in range(repeats):
            start = time.thread_time()
            for batch in ready:
                batched_train_step(model, optimizer, *batch, step)
                step += 1
            times.append((time.thread_time() - start) / steps)
    return min(times)


def gpu_estimate(counted: dict, host_s: float, batch_size: int) -> dict:
    """Expected tokens/s on an H100-class GPU at `batch_size`, per mode of the trainer, from
    the step counted on the CPU (its kernels, its bytes per token) and the host time per step.

    A step takes the longest of what bounds it: the host (eager launches every kernel from
    Python: the host time per step, and at least a launch per kernel), the device's kernel
    floor (a CUDA graph replays a step in one launch; each kernel still costs a few
    microseconds) and memory traffic (bytes per token over the usable bandwidth). Compiling
    fuses kernels, which divides their number and the traffic by FUSION.
    """
    tokens = counted["tokens"] / counted["batch_size"] * batch_size  # the same documents, more of them
    memory_s = tokens * counted["bytes_per_token"] / (H100["hbm_bytes_per_s"] * H100["bandwidth_efficiency"])
    kernels = counted["kernels"]
    bounds = {
        "eager": {"host": max(host_s, kernels * H100["launch_s"]), "memory": memory_s},
        "compiled": {"host": H100["compiled_step_host_s"] + kernels / FUSION * H100["launch_s"],
                     "memory": memory_s / FUSION},
        "cuda graphs": {"kernel floor": kernels / FUSION * H100["graph_kernel_s"], "memory": memory_s / FUSION},
    }
    estimate = {"batch_size": batch_size, "tokens_per_step": tokens}
    for mode, limits in bounds.items():
        bound_by, step_s = max(limits.items(), key=lambda item: item[1])
        estimate[mode] = {"step_s": step_s, "tokens_per_s": tokens / step_s, "bound_by": bound_by}
    return estimate


def add_arguments(parser) -> None:
    group = parser.add_argument_group("kernels section (preset: the first --preset)")
    group.add_argument("--kernels-batch-size", type=int_from(1, MAX_BATCH), default=2048, help="batch whose step is counted")
    group.add_argument("--kernels-gpu-batch-sizes", type=int_from(1, MAX_BATCH), nargs="+", default=[2048, 16384, 65536],
                       help="batch sizes of the GPU estimate")
    group.add_argument("--kernels-host-steps", type=int_from(1, MAX_STEPS), default=50, help="steps per host-time measurement")


def run(args) -> dict:
    if args.kernels_batch_size < 1 or args.kernels_host_steps < 1 or min(args.kernels_gpu_batch_sizes) < 1:
        raise ValueError("--kernels-batch-size, --kernels-gpu-batch-sizes and --kernels-host-steps must be positive")
    preset = args.preset[0]
    counted = count_step(args.kernels_batch_size, preset, args.data)
    host_s = host_time(1, preset, args.data, args.kernels_host_steps)
    return {
        "what": "torch operations and bytes per batched step, host time per step (CPU), and the GPU estimate",
        "preset": preset,
        "step": counted,
        "host_s_per_step_batch_1": host_s,
        "device_assumed": H100, "fusion_assumed": FUSION,
        "gpu_estimate": [gpu_estimate(counted, host_s, b) for b in args.kernels_gpu_batch_sizes],
    }


def table(figures: dict) -> str:
    step = figures["step"]
    top = ", ".join(f"{name} {n}" for name, n in list(step["by_op"].items())[:8])
    lines = [f"kernels: one batched step, {figures['preset']}, batch {step['batch_size']} ({step['tokens']:,} tokens), "
             f"float32, eager: {step['ops']} torch operations = {step['kernels']} kernels + {step['metadata_ops']} "
             f"views/metadata + {step['syncs']} host sync(s); {step['bytes_per_token']:,.0f} bytes moved per token",
             f"  most frequent: {top}",
             f"  host time per step (batch 1, one CPU thread, CPU time): {1000 * figures['host_s_per_step_batch_1']:.2f} ms",
             "  expected on an H100-class GPU (estimate; gpu_check measures it):",
             f"  {'batch':>7} {'tokens/step':>11} {'eager tokens/s':>22} {'compiled tokens/s':>22} "
             f"{'CUDA graphs tokens/s':>22}"]
    for e in figures["gpu_estimate"]:
        modes = " ".join(f"{e[mode]['tokens_per_s']:>12,.0f} ({e[mode]['bound_by'][:6]:>6})"
                         for mode in ("eager", "compiled", "cuda graphs"))
        lines.append(f"  {e['batch_size']:>7} {e['tokens_per_step']:>11,.0f} {modes}")
    return "\n".join(lines)
