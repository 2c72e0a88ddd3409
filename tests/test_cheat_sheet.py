"""Every torch line of the guide's cheat sheet runs on the model's own tensors, and each links to its
page of the PyTorch documentation; the loss line computes the model's loss."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from microgpt_scalar.config import get_config
from microgpt_scalar.optim import learning_rate_at
from microgpt_torch.model import GPT
from microgpt_torch.train import make_batch

DOCS_URL = "https://pytorch.org/docs/stable/"


def cheat_sheet_rows(guide: str) -> list[tuple[str, str, str]]:
    """(scalar idiom, torch idiom, docs cell) of each row of section 6's table."""
    section = guide[guide.index("## 6. Cheat sheet"):guide.index("## 7.")]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 3 and not set(cells[0]) <= {"-"} and cells[0] != "scalar idiom":
            rows.append(tuple(cells))
    return rows


def first_code(cell: str) -> str:
    return re.search(r"`([^`]+)`", cell)[1]


@pytest.fixture(scope="module")
def rows(repo_root):
    return cheat_sheet_rows((repo_root / "docs" / "bridge.md").read_text())


def namespace(tmp_path) -> dict:
    """The model's real tensors under the names the sheet uses."""
    config = get_config()
    model = GPT(config, torch.Generator().manual_seed(0)).double()
    idx, targets = make_batch([[26, 4, 12, 12, 0, 26], [26, 0, 11, 26]], config.block_size)
    B, T = idx.shape
    x = model.norm(model.wte(idx) + model.wpe(torch.arange(T)))
    attn = model.layers[0].attn
    q = attn.wq(x)
    nh, hd = config.n_head, config.head_dim
    heads = q.view(B, T, nh, hd).transpose(1, 2)
    logits, loss = model(idx, targets)
    names = [[26, 4, 12, 12, 0, 26], [26, 0, 11, 26], [26, 9, 14, 26]]
    dataset = [(torch.tensor(t[:-1]), torch.tensor(t[1:])) for t in names]
    return dict(torch=torch, nn=nn, F=F, DataLoader=DataLoader, model=model, config=config, idx=idx, targets=targets,
                B=B, T=T, nh=nh, hd=hd, x=x, y=torch.ones_like(x), q=q, w=attn.wq.weight, i=0,
                attn_logits=heads @ heads.transpose(-2, -1), causal=torch.ones(T, T, dtype=torch.bool).tril(),
                logits=logits, loss=loss, probs=torch.softmax(logits[0, -1].detach(), -1),
                g=torch.Generator().manual_seed(0), param=torch.empty(16, 16), std=0.02,
                optimizer=torch.optim.Adam(model.parameters(), lr=0.01), learning_rate_at=learning_rate_at,
                LambdaLR=torch.optim.lr_scheduler.LambdaLR, scheduler=None, dataset=dataset,
                collate=lambda items: tuple(pad_sequence(list(t), batch_first=True) for t in zip(*items)),
                path=tmp_path / "model.pt", device=torch.device("cpu"))


def run_line(code: str, names: dict):
    """Evaluate an expression and return its value, or execute a statement and return None."""
    try:
        compiled = compile(code, "<cheat sheet>", "eval")
    except SyntaxError:
        exec(compile(code, "<cheat sheet>", "exec"), names)
        return None
    return eval(compiled, names)


def test_the_sheet_has_its_rows_and_each_links_to_the_pytorch_docs(rows):
    assert len(rows) >= 20
    for scalar, torch_idiom, docs in rows:
        assert f"]({DOCS_URL}" in docs, (scalar, docs)


def test_every_torch_line_runs_on_the_models_tensors(rows, tmp_path):
    for scalar, torch_idiom, _ in rows:
        names = namespace(tmp_path)
        code = first_code(torch_idiom)
        if "load_state_dict(torch.load(path))" in torch_idiom:  # the second half of the save line
            run_line(code, names)
            code = re.findall(r"`([^`]+)`", torch_idiom)[1]
        with torch.no_grad() if "under `no_grad`" in torch_idiom else torch.enable_grad():
            try:
                run_line(code, names)
            except Exception as error:  # the message names the line that broke
                pytest.fail(f"cheat sheet line {code!r} (for {scalar}) raised {type(error).__name__}: {error}")


def test_the_loss_line_computes_the_models_loss_and_the_old_one_fails(rows, tmp_path):
    names = namespace(tmp_path)
    (line,) = [first_code(t) for _, t, _ in rows if "cross_entropy" in t]
    torch.testing.assert_close(run_line(line, names), names["loss"], rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="Expected target size"):  # the class dimension last: what it replaced
        run_line("F.cross_entropy(logits, targets, ignore_index=-1)", names)


def test_the_lines_with_a_value_give_the_scalar_idioms_numbers(rows, tmp_path):
    names = namespace(tmp_path)
    by_scalar = {scalar: first_code(t) for scalar, t, _ in rows}
    x, w, idx, model = names["x"], names["w"], names["idx"], names["model"]
    torch.testing.assert_close(run_line(by_scalar["`linear(x, w)`"], names), torch.stack(
        [torch.stack([torch.stack([row @ xi for row in w]) for xi in doc]) for doc in x]))
    torch.testing.assert_close(run_line(by_scalar["`sum(xi * xi for xi in x) / len(x)`"], names),
                               torch.tensor([[[sum(v * v for v in xi.tolist()) / len(xi)] for xi in doc] for doc in x],
                                            dtype=torch.float64))
    assert torch.equal(run_line(by_scalar["`state_dict[\"wte\"][token_id]`"], names)[1, 2], model.wte.weight[idx[1, 2]])
    heads = run_line(by_scalar["`q[hs:hs + head_dim]` for each head"], names)
    assert torch.equal(heads[0, 1, 3], names["q"][0, 3, 4:8])
