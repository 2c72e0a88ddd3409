"""The shared-memory group that sums data-parallel gradients on one machine's CPU
(microgpt_torch/shared_memory.py): exact sums in rank order, the same bits in every process,
an ended process reported instead of waited for, and nothing left behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import Children

from microgpt_torch import shared_memory

REPO = Path(__file__).resolve().parents[1]

WORKER = r'''
import os, sys, torch, torch.distributed as dist
from microgpt_torch import shared_memory
from microgpt_torch.shared_memory import SharedMemoryGroup
shared_memory.shared_folder = lambda: os.path.dirname(sys.argv[3])  # the test's folder, to look in after
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=3)
group = SharedMemoryGroup.join(capacity=40)
for call in range(3):  # the slots alternate halves: later calls must not read earlier numbers
    generator = torch.Generator().manual_seed(100 * call + rank)
    grads = [torch.randn(4, 5, generator=generator), torch.randn(7, generator=generator)]
    loss = torch.tensor(0.1 * (rank + 1) + call, dtype=torch.float64)
    group.sum_(grads + [loss])
    torch.save([*grads, loss], sys.argv[3] + f".{call}.{rank}")
votes = []
for says in (rank == 2, False):  # one process asked to stop, then none
    group.vote = lambda: says
    group.sum_([torch.zeros(2)])
    votes.append(group.stop_voted)
print(*votes)
model = torch.nn.Linear(3, 2)  # a different draw in every process
group.start_alike(model)
torch.save(model.state_dict(), sys.argv[3] + f".model.{rank}")
dist.barrier()
if rank == 1:  # ends without a word; the others meet once more
    os._exit(3)
try:
    group.sum_([torch.ones(3)])
except RuntimeError as error:
    print(error)
'''


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    """Three processes of a group, once: three sums, two votes, the weights made alike, then
    process 1 ends and the others meet once more."""
    folder = tmp_path_factory.mktemp("group")
    script = folder / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    children = Children()
    try:
        workers = [children.start([sys.executable, script, str(rank), str(folder / "rendezvous"),
                                   str(folder / "out")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for rank in range(3)]
        outputs = [worker.communicate(timeout=120) for worker in workers]
    finally:
        children.end_all()
    return folder, [(worker.returncode, out, err) for worker, (out, err) in zip(workers, outputs)]


def expected_sums(call: int) -> list[torch.Tensor]:
    """The sum over ranks 0, 1, 2 of what each puts in, added in rank order in float64 and
    rounded to the tensor's own dtype."""
    totals = None
    for rank in range(3):
        generator = torch.Generator().manual_seed(100 * call + rank)
        parts = [torch.randn(4, 5, generator=generator).double(), torch.randn(7, generator=generator).double(),
                 torch.tensor(0.1 * (rank + 1) + call, dtype=torch.float64)]
        totals = parts if totals is None else [a + b for a, b in zip(totals, parts)]
    return [totals[0].float(), totals[1].float(), totals[2]]


def test_every_process_gets_the_same_sums_in_rank_order_and_nothing_is_left(group_run):
    folder, results = group_run
    assert [code for code, _, _ in results] == [0, 3, 0], [err[-2000:] for _, _, err in results]
    for call in range(3):
        expected = expected_sums(call)
        for rank in range(3):
            got = torch.load(folder / f"out.{call}.{rank}")
            assert [t.dtype for t in got] == [torch.float32, torch.float32, torch.float64]
            assert all(torch.equal(g, e) for g, e in zip(got, expected)), (call, rank)
    assert [out.splitlines()[0] for _, out, _ in results] == ["True False"] * 3
    models = [torch.load(folder / f"out.model.{rank}") for rank in range(3)]
    assert all(torch.equal(models[0][name], m[name]) for m in models[1:] for name in models[0])
    assert not [p.name for p in folder.iterdir() if p.name.startswith("microgpt-group-")]


def test_the_expected_sums_tell_a_stale_half_and_float32_additions_apart():
    """What the test above compares with would catch a group that read the other half's
    numbers (the last call's) or added the processes' float32 tensors in float32."""
    for call in (1, 2):
        assert not torch.equal(expected_sums(call)[0], expected_sums(call - 1)[0])
    in_float32 = sum(torch.randn(4, 5, generator=torch.Generator().manual_seed(rank)) for rank in range(3))
    assert not torch.equal(in_float32, expected_sums(0)[0])


def test_a_process_that_ends_is_reported_not_waited_for(group_run):
    _, results = group_run
    assert results[1][0] == 3
    for rank in (0, 2):
        code, out, err = results[rank]
        assert code == 0, err[-2000:]
        assert out.splitlines()[-1] == "another training process of the group has ended", out


def test_the_group_is_for_cpu_processes_of_one_machine(monkeypatch):
    cpu = torch.device("cpu")
    assert not shared_memory.usable_for(cpu)  # no process group here
    monkeypatch.setattr(shared_memory.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(shared_memory.dist, "get_world_size", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert shared_memory.usable_for(cpu)
    assert not shared_memory.usable_for(torch.device("cuda", 0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # two machines of one process each
    assert not shared_memory.usable_for(cpu)


@pytest.mark.parametrize("folder_exists", [True, False])
def test_the_block_lives_in_memory_where_the_machine_has_it(monkeypatch, tmp_path, folder_exists):
    monkeypatch.setattr(shared_memory.os.path, "isdir", lambda path: folder_exists)
    monkeypatch.setattr(shared_memory.tempfile, "gettempdir", lambda: str(tmp_path))
    assert shared_memory.shared_folder() == ("/dev/shm" if folder_exists and os.access("/dev/shm", os.W_OK)
                                             else str(tmp_path))


def test_tensors_that_do_not_fit_the_slots_are_refused_before_anything_is_written():
    """A group of one process (no peers to meet), its slots room for 4 numbers and the vote:
    4 numbers fit and are summed; 5 are refused, the block and its halves as they were."""
    group = shared_memory.SharedMemoryGroup(0, 1, torch.zeros(2, 1, 5, dtype=torch.float64), peers=[])
    fits = torch.arange(4.0)
    group.sum_([fits])
    assert torch.equal(fits, torch.arange(4.0)) and group.half == 1
    before = group.block.clone()
    with pytest.raises(ValueError, match="5 numbers do not fit the group's slots of 4"):
        group.sum_([torch.ones(2), torch.ones(3)])
    assert torch.equal(group.block, before) and group.half == 1


class TwoAlikeProcesses:
    """Stands in for a group of two processes that trained on the same rows: each sum is twice
    this process's tensor. Records what it was given."""

    def __init__(self):
        self.given = []

    def sum_(self, tensors):
        self.given.append([t.clone() for t in tensors])
        for t in tensors:
            t.mul_(2)


def test_forward_backward_through_a_group_leaves_the_global_mean_and_its_gradient():
    """Two processes with the same rows: a global batch of twice the targets. The group's path
    of forward_backward must leave each process the gradient and the loss of the global mean,
    which are those of one process's mean, and send a zero gradient for a parameter the batch
    did not use, so every process sends the same tensors."""
    from microgpt_scalar.config import get_config
    from microgpt_torch.fast import BatchedGPT
    from microgpt_torch.train import forward_backward

    config = get_config("microgpt", vocab_size=27)
    idx = torch.randint(0, 27, (6, 8), generator=torch.Generator().manual_seed(1))
    targets = idx.roll(-1, 1)
    alone, grouped = BatchedGPT(config).double(), BatchedGPT(config).double()
    grouped.load_state_dict(alone.state_dict())
    grouped.register_parameter("unused", torch.nn.Parameter(torch.ones(3, dtype=torch.float64)))
    expected_loss = forward_backward(alone, idx, targets, idx.numel())
    group = TwoAlikeProcesses()
    loss = forward_backward(grouped, idx, targets, 2 * idx.numel(), world_size=2, shared=group)
    assert torch.allclose(loss, expected_loss, rtol=1e-12, atol=0)
    for name, p in alone.named_parameters():
        assert torch.allclose(dict(grouped.named_parameters())[name].grad, p.grad, rtol=1e-12, atol=1e-15), name
    assert torch.equal(grouped.unused.grad, torch.zeros(3, dtype=torch.float64))
    (sent,) = group.given
    names = [name for name, _ in grouped.named_parameters()]
    assert len(sent) == len(names) + 1  # the gradients, then the loss sum
    assert torch.equal(sent[names.index("unused")], torch.zeros(3, dtype=torch.float64))
