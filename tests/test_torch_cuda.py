"""The model on a CUDA device against the same model on the CPU; skipped without CUDA."""
from __future__ import annotations

import random

import pytest
import torch
from helpers import load_script
from torch_checks import assert_results_close, forward_backward

from microgpt_scalar.config import get_config, param_shapes
from microgpt_scalar.data import Corpus, default_data_path, load_docs
from microgpt_torch.checkpoint import load_checkpoint
from microgpt_torch.fast import FusedGPT
from microgpt_torch.model import GPT
from microgpt_torch.train import PackedDocuments, generate, make_batch, reference_start, sample

DATA = default_data_path()  # the names file shipped with the package
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
# CUDA kernels sum in another order than the CPU's: float64 rounding only, as between the two
# engines on the CPU (worst measured there 2.3e-14 on entries up to |34|).
CUDA_ATOL, CUDA_RTOL = 1e-12, 1e-12


def random_params(config, seed=7):
    rng = random.Random(seed)
    return {name: [[rng.gauss(0, 0.3) for _ in range(n_in)] for _ in range(n_out)]
            for name, (n_out, n_in) in param_shapes(config)}


@pytest.mark.parametrize("model_class", [GPT, FusedGPT], ids=["readable", "fused"])
def test_cuda_logits_and_gradients_match_the_cpu_float64(model_class):
    config = get_config("microgpt-v2", n_layer=2)
    params = random_params(config)
    docs = load_docs(DATA)[:32]
    _, tokenizer, _, _, _ = reference_start(docs, seed=0)
    results = []
    for device in ("cpu", "cuda"):
        model = model_class.from_scalar_params(config, params, device=torch.device(device))
        idx, targets = make_batch([tokenizer.encode(doc) for doc in docs], config.block_size, device)
        results.append(forward_backward(model, idx, targets))
    assert_results_close("cuda", results[1], results[0], CUDA_ATOL, CUDA_RTOL)


def test_cuda_samples_equal_cpu_samples():
    docs, tokenizer, config, _, _ = reference_start(load_docs(DATA), seed=42)
    params = random_params(config)
    cpu = GPT.from_scalar_params(config, params)
    cuda = GPT.from_scalar_params(config, params, device=torch.device("cuda"))
    assert [sample(cuda, tokenizer, random.Random(1)) for _ in range(10)] == \
           [sample(cpu, tokenizer, random.Random(1)) for _ in range(10)]
    assert generate(cuda, tokenizer, torch.Generator().manual_seed(1), 0.5, 10) == \
           generate(cpu, tokenizer, torch.Generator().manual_seed(1), 0.5, 10)


def test_bf16_batched_run_on_cuda_trains(tmp_path, capsys):
    code = load_script("train_torch").main(["--mode", "batched", "--device", "cuda", "--bf16", "--data", str(DATA), "--steps", "50",
                        "--batch-size", "32", "--eval-every", "50", "--samples", "2", "--save", str(tmp_path / "b.pt")])
    out, _ = capsys.readouterr()
    assert code == 0 and " | val loss " in out
    assert load_checkpoint(tmp_path / "b.pt").step == 50


def test_batches_gathered_on_cuda_equal_batches_gathered_on_the_cpu():
    docs = reference_start(Corpus.from_file(DATA), seed=42)[0]
    rows = list(range(0, len(docs), 997))
    on_cpu = PackedDocuments.of_corpus(docs, 8).batch(rows)
    on_cuda = PackedDocuments.of_corpus(docs, 8, torch.device("cuda")).batch(rows)
    assert on_cuda[0].is_cuda and on_cuda[2] == on_cpu[2]
    assert torch.equal(on_cuda[0].cpu(), on_cpu[0]) and torch.equal(on_cuda[1].cpu(), on_cpu[1])


def test_batched_run_replayed_as_cuda_graphs_trains(tmp_path, capsys):
    code = load_script("train_torch").main(["--mode", "batched", "--device", "cuda", "--data", str(DATA), "--steps", "40",
                        "--batch-size", "64", "--eval-every", "20", "--samples", "2", "--compile-mode",
                        "reduce-overhead", "--log-every", "10", "--save", str(tmp_path / "g.pt")])
    out, _ = capsys.readouterr()
    assert code == 0 and out.count(" | val loss ") == 2
    assert load_checkpoint(tmp_path / "g.pt").step == 40
