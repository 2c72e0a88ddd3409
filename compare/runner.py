"""The scalar side of a check, run the same way wherever it runs: in the engine's own process
(compare.worker, a learner's file) or in this one (a class handed in by code).

    runner = ScalarRunner(Value, Adam)
    raw = runner.probes()                       # each operation alone: plain numbers
    chain = runner.deepest_chain()              # [survived, failed] or None: how deep backward walks
    for message in runner.train(job):           # job: a protocol.TrainRequest
        ...                                     # Depth, then a Step per step, FiniteDiffs after the first

What it makes are measurements, as protocol messages: the engine's process sends them down
its pipe as they are; in this process they are read straight from `train`. Nothing here is
judged (the probes, the steps and the finite differences are judged by the checker, from
these numbers), and nothing here imports torch, so the engine's process starts and probes
while the checker is still importing torch.
"""
from __future__ import annotations

from microgpt_scalar.checkpoint import Checkpoint
from microgpt_scalar.config import GPTConfig
from microgpt_scalar.optim import Adam

from .depth import backward_speed, deepest_chain, model_depth
from .fd import finite_differences
from .probes import run_probes
from .protocol import Depth, Step, TrainRequest
from .scalar_side import ScalarSide, StepResult


class ScalarRunner:
    """One engine (its Value class and its Adam) through the check's phases. `phase` and
    `step` say where it is, so that what the engine raises can be told in one line."""

    def __init__(self, value_cls, adam_cls=Adam):
        self.value_cls, self.adam_cls = value_cls, adam_cls
        self.phase, self.step = "probing its operations", None

    def probes(self, budget: float | None = None, on_result=None) -> dict:
        """compare.probes.run_probes: each probe's raw numbers; `budget` seconds a probe (in a
        process's main thread) or none; on_result(key, result) as each ends."""
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
        """compare.depth.backward_speed: what a step's time limit is set from."""
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
    """The model's graph depth and size (compare.depth.model_depth), as a message."""
    graph, per_layer, nodes = model_depth(weights.config, weights.params, batch, limited)
    return Depth(graph=graph, per_layer=per_layer, n_layer=weights.config.n_layer, nodes=nodes)
