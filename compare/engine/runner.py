"""The scalar side of a check, run the same way wherever it runs: in the engine's own process
(compare.engine.worker, a learner's file) or in this one (a class handed in by code).

    runner = ScalarRunner(Value, Adam)
    raw = runner.probes()                       # each operation alone: plain numbers
    chain = runner.deepest_chain()              # [survived, failed] or None: how deep backward walks
    for message in runner.train(job):           # job: a protocol.TrainRequest
        ...                                     # Depth, then a Step per step, FiniteDiffs after the first
    records, names = record_run(docs, 20, 3, Value)   # a certificate's run (compare.certify)

What it makes are measurements, as protocol messages: the engine's process sends them down
its pipe as they are; in this process they are read straight from `train`. Nothing here is
judged (the probes, the steps and the finite differences are judged by the checker, from
these numbers), and nothing here imports torch, so the engine's process starts and probes
while the checker is still importing torch.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from microgpt_scalar.checkpoint import Checkpoint
from microgpt_scalar.config import GPTConfig, get_config
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam
from microgpt_scalar.train import sample, start_run, train_step

from .depth import backward_speed, deepest_chain, model_depth
from .probes import run_probes
from .protocol import Depth, FiniteDiffs, Step, TrainRequest
from ..step.scalar import GradientRecorder, ScalarSide, StepResult


class ScalarRunner:
    """One engine (its Value class and its Adam) through the check's phases. `phase` and
    `step` say where it is, so that what the engine raises can be told in one line."""

    def __init__(self, value_cls, adam_cls=Adam):
        self.value_cls, self.adam_cls = value_cls, adam_cls
        self.phase, self.step = "probing its operations", None

    def probes(self, budget: float | None = None, on_result=None) -> dict:
        """compare.engine.probes.run_probes: each probe's raw numbers; `budget` seconds a probe
        (in a process's main thread) or none; on_result(key, result) as each ends."""
        self.phase = "probing its operations"
        return run_probes(self.value_cls, budget=budget, on_result=on_result)

    def deepest_chain(self, budget: float | None = None) -> list | None:
        """[the longest chain backward survived, the shortest it failed on or None], or None
        if backward fails on a chain (the probes say why) or overruns `budget` seconds."""
        from .statements import Overran, guarded

        self.phase = "measuring how deep its backward walks"
        try:
            if budget is None:
                return list(deepest_chain(self.value_cls))
            with guarded(budget, audit=False):
                return list(deepest_chain(self.value_cls))
        except (Exception, Overran):
            return None

    def speed(self) -> dict:
        """compare.engine.depth.backward_speed: what a step's time limit is set from."""
        self.phase = "timing its backward"
        return backward_speed(self.value_cls)

    def train(self, job: TrainRequest):
        """The steps `job` asks for, as messages: the model's depth, one Step per step, and
        after the first step the finite differences' estimates at that step's weights."""
        w = job.weights
        weights = Checkpoint(GPTConfig.from_dict(w["config"]), w["chars"], w["params"], w["adam"], w["step"], w["seed"])
        self.phase, self.step = "setting up the model", None
        yield model_depths(weights, job.batches[0], job.limited)
        side = ScalarSide(weights, self.value_cls, self.adam_cls)
        for i, batch in enumerate(job.batches):
            self.phase, self.step = "training", weights.step + i
            message = as_step(self.step, side.step(batch, self.step))
            yield message
            if i == 0 and job.fd:
                self.phase = "finite differences"
                fd_side = ScalarSide(weights, self.value_cls, self.adam_cls)  # the parameters before this step's update
                yield finite_differences(fd_side, batch, job.fd, job.seed)


def as_step(step: int, result: StepResult) -> Step:
    """A step's numbers as plain floats (an engine may hold numpy scalars), ready for JSON."""
    def rows(matrices: dict) -> dict:
        return {name: [[float(x) for x in row] for row in matrix] for name, matrix in matrices.items()}

    return Step(step, float(result.loss), rows(result.grads), rows(result.params), rows(result.adam_m),
                rows(result.adam_v), [rows(t) for t in result.traces])


def model_depths(weights: Checkpoint, batch: list, limited: bool) -> Depth:
    """The model's graph depth and size (compare.engine.depth.model_depth), as a message."""
    graph, per_layer, nodes = model_depth(weights.config, weights.params, batch, limited)
    return Depth(graph=graph, per_layer=per_layer, n_layer=weights.config.n_layer, nodes=nodes)


# --- finite differences: a witness that needs no torch -------------------------------------
#
#     d loss / d p  ~  (loss(p + h) - loss(p - h)) / 2h
#
# The error of that estimate is about h ** 2 / 6 * (third derivative), from the truncated
# Taylor series, plus about |loss| * 1e-16 / h from rounding the two losses. Measured on the
# built-in documents with dense weights, 36 gradients (4 per tensor, magnitudes 2e-8 .. 0.04)
# against torch's float64 autograd, the worst absolute error of the estimate was
#     h = 1e-3: 2.3e-6   h = 1e-4: 2.4e-8   h = 1e-5: 2.3e-10   h = 1e-6: 5.3e-10   h = 1e-7: 5e-9
# so h = 1e-5 sits at the bottom of the U. Its error is absolute, not relative (2.3e-10 on a
# gradient of 0.04, and up to 0.1% on gradients near 1e-7): FD_TOLERANCE in
# compare.judge.tolerances. Only the estimates are made here; they are judged against the
# engine's gradients by the checker (compare.judge.fd).

STEP_SIZE = 1e-5


def sample_entries(shapes: dict, k: int, rng: random.Random) -> list[tuple[str, int, int]]:
    """k entries, from one tensor after another in turn (so every tensor is checked once k
    reaches the number of tensors), each chosen at random within its tensor. The engine's
    own gradients play no part in the choice: a gradient it wrongly leaves at 0 can be drawn."""
    pools = []
    for name, (n_out, n_in) in shapes.items():
        pool = [(name, r, c) for r in range(n_out) for c in range(n_in)]
        rng.shuffle(pool)
        pools.append(pool)
    in_turn = [entry for group in itertools.zip_longest(*pools) for entry in group if entry is not None]
    return in_turn[:k]


def finite_differences(side, batch, k: int, seed: int) -> FiniteDiffs:
    """Central differences of the side's loss on `batch` at its current parameters, for k
    entries drawn with `seed`: the estimates alone, each {"name", "index", "estimate"}."""
    entries = []
    shapes = {name: (len(rows), len(rows[0])) for name, rows in side.model.state_dict.items()}
    for name, r, c in sample_entries(shapes, k, random.Random(seed)):
        p = side.model.state_dict[name][r][c]
        original = p.data
        p.data = original + STEP_SIZE
        loss_up = side.loss(batch)
        p.data = original - STEP_SIZE
        loss_down = side.loss(batch)
        p.data = original
        entries.append({"name": name, "index": [r, c], "estimate": (loss_up - loss_down) / (2 * STEP_SIZE)})
    return FiniteDiffs(STEP_SIZE, entries)


# --- a certificate's run (compare.certify): the published run's first steps, recorded -------

@dataclass
class StepRecord:
    step: int  # 1-based, as printed
    loss: float
    printed: str  # the loss as the log prints it, f"{loss:.4f}"
    grad_norms: dict  # parameter name -> sqrt(sum of squared gradients), before the update


def gradient_norms(grads: dict) -> dict:
    """name -> sqrt(sum of g * g) over the tensor (name -> rows of gradients), with fsum so
    the order of terms is moot."""
    return {name: math.sqrt(math.fsum(g * g for row in rows for g in row)) for name, rows in grads.items()}


def step_record(step: int, loss: float, grads: dict) -> StepRecord:
    """A step's record from its loss and gradients: the loss as the log prints it, the norms."""
    return StepRecord(step, loss, f"{loss:.4f}", gradient_norms(grads))


def record_run(docs: list[str], steps: int, num_samples: int, value_cls=Value, config: GPTConfig | None = None,
               seed: int = 42, on_step=None, on_grads=None) -> tuple[list[StepRecord], list[str]]:
    """Train the first `steps` of the run `config` describes (default: preset microgpt, whose
    num_steps sets the learning-rate schedule), then sample `num_samples` names.

    `on_step(record)` sees each step as it ends; if it returns False the run stops there and
    no names are sampled. `on_grads(record, grads)` sees the step's gradients too (name ->
    rows). Returns (step records, samples).
    """
    config = get_config() if config is None else config
    docs, tokenizer, model, optimizer, rng = start_run(docs, config, seed, value_cls)
    recorder = GradientRecorder(optimizer, model)  # the gradients, from before Adam resets them
    records = []
    for s in range(steps):
        loss = float(train_step(model, recorder, tokenizer.encode(docs[s % len(docs)]), s))
        records.append(step_record(s + 1, loss, recorder.grads))
        if on_grads is not None:
            on_grads(records[-1], recorder.grads)
        if on_step is not None and on_step(records[-1]) is False:
            return records, []
    return records, [sample(model, tokenizer, rng) for _ in range(num_samples)]
