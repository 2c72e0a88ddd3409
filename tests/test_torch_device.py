"""CUDA and data-parallel conditions simulated on the CPU: the device chosen, the process
group set up, TensorFloat-32 switched through the fp32_precision API, weights drawn under
another default device, and a non-finite weight in one process stopping every process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers import load_script

import compare
from compare.check import compare_step, device_of
from microgpt_scalar.config import get_config
from microgpt_scalar.data import default_data_path
from microgpt_torch.device import DeviceError, float32_precision, init_distributed, pick_device
from microgpt_torch.model import GPT

DATA = default_data_path()  # the names file shipped with the package
SWITCHES = (torch.backends.cuda.matmul, torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with one CUDA device, as far as the device choice can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_keeps_faithful_and_float64_runs_on_the_cpu(one_gpu):
    assert pick_device("auto", 0) == torch.device("cuda", 0)
    assert pick_device("auto", 0, keep_on_cpu=True) == torch.device("cpu")
    assert pick_device("cuda", 0, keep_on_cpu=True) == torch.device("cuda", 0)  # named: honoured
    assert pick_device("cpu", 0) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "CPU", "cpu:0", "cuda:", "cuda:01", "cuda:-1", "cuda:x", "auto:0"])
def test_a_device_name_is_refused_by_training_and_the_checker_alike(one_gpu, name):
    with pytest.raises(DeviceError) as by_training:
        pick_device(name)
    with pytest.raises(compare.DeviceError) as by_checker:
        device_of(name)
    assert str(by_training.value) == str(by_checker.value) == f"unknown device {name!r}; choose auto, cpu, cuda or cuda:N"


def test_cuda_n_is_that_device_in_training_and_the_checker(one_gpu):
    assert pick_device("cuda:0", 3) == torch.device("cuda", 0)  # named: whatever the local rank
    assert device_of("cuda:0") == "cuda:0" and device_of("cuda") == "cuda"
    assert device_of("auto") == "cpu"  # a one-document float64 step is quicker on the CPU
    for refuse in (pick_device, device_of):
        with pytest.raises(DeviceError, match=r"^--device cuda:1: this machine has 1 CUDA device\(s\)"):
            refuse("cuda:1")


def test_a_local_rank_past_the_devices_is_refused_in_one_line(one_gpu):
    with pytest.raises(DeviceError) as raised:
        pick_device("auto", 1)
    assert str(raised.value) == ("LOCAL_RANK 1 needs CUDA device 1, but this machine has 1 (start at most 1 "
                                 "process(es) per machine, or use --device cpu)")
    assert pick_device("cpu", 1) == torch.device("cpu")  # gloo processes need no GPU each


def test_script_refuses_a_local_rank_past_the_devices(one_gpu, monkeypatch, capsys):
    monkeypatch.setenv("LOCAL_RANK", "1")
    code = load_script("train_torch").main(["--mode", "batched", "--data", str(DATA), "--steps", "1"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "") and err.startswith("error: LOCAL_RANK 1 needs CUDA device 1") and err.count("\n") == 1


def test_cuda_processes_bind_their_gpu_before_joining_the_group(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(("init", kwargs)))
    init_distributed(torch.device("cuda", 1))
    assert calls == [("set_device", torch.device("cuda", 1)),
                     ("init", {"backend": "nccl", "device_id": torch.device("cuda", 1)})]
    calls.clear()
    init_distributed(torch.device("cpu"))
    assert calls == [("init", {"backend": "gloo"})]


def precision_state():
    return [switch.fp32_precision for switch in SWITCHES]


def test_compare_step_after_the_new_tf32_api_runs_and_restores_it(monkeypatch):
    """torch raises RuntimeError when the legacy allow_tf32 flags meet a process that used
    fp32_precision; the check sets "ieee" through the new API and puts the user's back."""
    import microgpt_torch.device as device

    seen = []
    monkeypatch.setattr(device, "float32_precision", lambda precision: seen.append(precision) or
                        float32_precision(precision))  # what the check calls
    saved = precision_state()
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        before = precision_state()
        assert compare_step().agrees and seen == ["ieee"]
        assert precision_state() == before
    finally:
        for switch, value in zip(SWITCHES, saved):
            switch.fp32_precision = value


def test_precision_table_switches_tf32_through_the_new_api_and_restores_it():
    table = load_script("precision_table")
    saved = precision_state()
    tf32 = next(s for s in table.SETTINGS if s.switch == "tf32")
    with table._switch(tf32):
        assert precision_state() == ["tf32"] * 4
    assert precision_state() == saved


def test_weights_are_drawn_on_the_cpu_whatever_the_default_device(monkeypatch):
    """CUDA refuses a CPU generator for a CUDA tensor; the meta device plus a spy that
    refuses the same stands in for it here."""
    config = get_config("microgpt", vocab_size=27)
    expected = {name: p.detach().clone() for name, p in GPT(config).named_parameters()}
    normal = torch.Tensor.normal_

    def strict_normal(tensor, *args, generator=None, **kwargs):
        if generator is not None and generator.device != tensor.device:
            raise RuntimeError(f"expected a generator on {tensor.device}, got one on {generator.device}")
        return normal(tensor, *args, generator=generator, **kwargs)

    monkeypatch.setattr(torch.Tensor, "normal_", strict_normal)
    with pytest.raises(RuntimeError, match="expected a generator on meta"):
        torch.empty(2, device="meta").normal_(0, 1, generator=torch.Generator())  # the spy bites
    with torch.device("meta"):
        model = GPT(config)
    assert all(p.device.type == "meta" for p in model.parameters())
    drawn = GPT(config)  # on the CPU again: the same numbers as before the spy
    assert all(torch.equal(p, expected[name]) for name, p in drawn.named_parameters())


WORKER = r'''
import sys, torch, torch.distributed as dist
from microgpt_scalar.config import get_config
from microgpt_scalar.data import default_data_path
from microgpt_torch.model import GPT
from microgpt_torch.train import NonFiniteLossError, check_finite_params
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=2)
model = GPT(get_config("microgpt", vocab_size=27))
if rank == 1:
    with torch.no_grad():
        model.wpe.weight[0, 0] = float("inf")
try:
    check_finite_params(model, 7)
    print("no error")
except NonFiniteLossError as error:
    print(error)
dist.destroy_process_group()
'''


def test_a_non_finite_weight_in_one_process_stops_every_process(tmp_path, children):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [children.start([sys.executable, script, str(rank), str(tmp_path / "rendezvous")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err[-1000:] for _, err in outputs]
    assert [out for out, _ in outputs] == ["a parameter in another process is not finite after step 7\n",
                                          "parameter wpe.weight is not finite after step 7\n"]


@pytest.fixture()
def two_torch_threads():
    from microgpt_torch.device import torch_threads

    with torch_threads(2):
        yield


def test_a_small_batch_steps_on_one_thread_and_a_large_one_on_torchs(two_torch_threads):
    """The batched step's threads by its rows (microgpt_torch/device.py): one below the table's
    rows on the CPU, torch's own count from there on and on devices the table has no entry for;
    torch's count is given back after the step, also when the step fails."""
    from microgpt_torch.device import ONE_THREAD_BELOW_ROWS, threads_for_rows
    from microgpt_torch.fast import BatchedGPT
    from microgpt_torch.optim import make_optimizer
    from microgpt_torch.train import batched_steps, batched_train_step

    below = ONE_THREAD_BELOW_ROWS["cpu"]
    for rows, device, expected in ((below - 1, "cpu", 1), (below, "cpu", 2), (8, "cuda", 2)):
        with threads_for_rows(rows, torch.device(device)):
            assert torch.get_num_threads() == expected, (rows, device)
        assert torch.get_num_threads() == 2
    with pytest.raises(ZeroDivisionError), threads_for_rows(8, torch.device("cpu")):
        1 / 0
    assert torch.get_num_threads() == 2

    config = get_config("microgpt", vocab_size=27)
    model = BatchedGPT(config)
    seen = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append(torch.get_num_threads()))
    optimizer = make_optimizer(model, config)
    for rows in (4, below):
        idx = torch.randint(0, 27, (rows, 8), generator=torch.Generator().manual_seed(rows))
        batched_train_step(model, optimizer, idx, idx.roll(-1, 1), idx.numel(), 0)
    assert seen == [1, 2] and torch.get_num_threads() == 2
    one_step = get_config("microgpt", vocab_size=27, num_steps=1)
    documents = [[26, 1 + i % 20, 2 + i % 7, 26] for i in range(below)]
    for rows, expected in ((4, 1), (below, 2)):  # the loop that reads the loss back only every so often
        model = BatchedGPT(one_step)
        seen = []
        model.register_forward_pre_hook(lambda module, inputs: seen.append(torch.get_num_threads()))
        steps = batched_steps(model, make_optimizer(model, one_step), documents, rows, torch.Generator().manual_seed(0),
                              check_each_step=False)
        assert [step for step, _ in steps] == [0] and seen == [expected] and torch.get_num_threads() == 2
