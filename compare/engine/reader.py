"""The engine's results, read in the checker: from the engine's own process
(compare.engine.process.EngineProcess) or from a class handed in by code and run here
(InProcessEngine), as the same messages from the same ScalarRunner.

    reader = ScalarReader(source, source.engine())
    depth = reader.begin(start, batches, fd, seed)      # the engine's process starts training now
    result = reader.step(batch, step, depth)            # a StepResult, within the step's time limit
    estimates = reader.finite_differences(k)            # judged by compare.judge.fd
"""
from __future__ import annotations

from microgpt_scalar.checkpoint import Checkpoint
from microgpt_scalar.optim import Adam

from .depth import RECURSION_ADVICE, DepthCheck, depth_limited
from .loader import engine_facts, first_line
from .process import EngineFailure
from .protocol import Depth, FiniteDiffs, Message, ProtocolError, Step, TrainRequest
from .runner import ScalarRunner
from ..step.scalar import StepResult


class InProcessEngine:
    """A class handed in by code, run in this process by the ScalarRunner that runs a file's
    engine in its own process, and read the way that process is read (EngineProcess): what
    was found, then one message at a time. Trusted like the caller: no sandbox, no time limit."""

    sandbox = ""

    def __init__(self, value_cls, adam_cls=Adam):
        self.label = f"{value_cls.__module__}.{value_cls.__qualname__}"
        self.runner = ScalarRunner(value_cls, adam_cls)
        self.phase = "loading"
        self._chain, self._messages = None, iter(())

    def engine(self) -> dict:
        """What the engine's process finds (EngineProcess.engine), found here: its probes, how
        deep its backward walks, its facts."""
        probes = self.runner.probes()
        self._chain = self.runner.deepest_chain()
        return {"label": self.label, "notes": [], "probes": probes, "chain": self._chain, "missing": None,
                "skipped": [], "facts": engine_facts(self.runner.value_cls), "speed": {}, "hung": False}

    def start_training(self, weights: dict, batches: list, fd: int, seed: int) -> None:
        self._messages = self.runner.train(TrainRequest(weights, batches, fd, seed, depth_limited(self._chain)))

    def next_message(self, phase: str, *expected, timeout=None, why="", predicted=None) -> Message:
        """The runner's next message; what the engine raises becomes one EngineFailure line."""
        self.phase = phase
        try:
            return next(self._messages)
        except StopIteration:
            self.protocol_failure(ProtocolError("nothing more"))
        except Exception as error:
            step = self.runner.step
            where = f"at step {step + 1}" if step is not None else f"while {self.runner.phase}"
            recursion = isinstance(error, RecursionError) and self.runner.phase == "training"
            raise EngineFailure(f"the scalar engine ({self.label}) raised {type(error).__name__} {where}: "
                                f"{first_line(error)}", recursion) from error

    def protocol_failure(self, error: ProtocolError):
        raise EngineFailure(f"the scalar engine ({self.label}) gave {error} while {self.phase}")


STEP_FACTOR = 20  # a step may take this many times what the engine's speed predicts
STEP_FLOOR = 45.0  # seconds: never stop a step sooner (a busy machine, a slow start: the speed is measured once)
EVERY_PATH_FLOOR = 5.0  # ... unless the probes showed a backward that takes every path (it never ends)


class ScalarReader:
    """The scalar side's results, read as messages from the engine's process (EngineProcess)
    or from a class run here (InProcessEngine): numbers come back, nothing else."""

    def __init__(self, process, found: dict):
        self.process, self.chain = process, found["chain"]
        self.speed = found.get("speed") or {}
        self.nodes = None
        self.every_path = False  # set once the probes show a walk that takes every path: the step cannot end

    def begin(self, start: Checkpoint, batches, fd, seed) -> DepthCheck:
        weights = {"config": start.config.to_dict(), "chars": list(start.chars), "params": start.params,
                   "adam": start.adam, "step": start.step, "seed": start.seed}
        self.process.start_training(weights, batches, fd, seed)
        survived, failed = self.chain if self.chain else (None, None)
        return DepthCheck(survived, failed, None, None, start.config.n_layer)  # the rest comes with the first step

    def step(self, batch, step: int, depth: DepthCheck) -> StepResult:
        if depth.graph is None:
            found = self.process.next_message("setting up the model", Depth)
            depth.graph, depth.per_layer = found.graph, found.per_layer
            self.nodes = found.nodes
        limit, why, predicted = self.limit(1.0)
        try:
            message = self.process.next_message(f"training step {step + 1}", Step, timeout=limit, why=why,
                                                predicted=predicted)
        except EngineFailure as error:
            if error.recursion:
                raise EngineFailure(f"{error}; {RECURSION_ADVICE.format(graph=depth.graph, survived=depth.survived)}",
                                    True) from None
            raise
        if message.step != step:
            self.process.protocol_failure(ProtocolError(f"step {message.step + 1} where step {step + 1} was due"))
        if len(message.traces) != len(batch):  # each document's forward pass is checked stage by stage
            self.process.protocol_failure(ProtocolError(f"{len(message.traces)} traces for a batch of {len(batch)} "
                                                        f"documents"))
        return StepResult(message.loss, message.grads, message.params, message.adam_m, message.adam_v, message.traces)

    def limit(self, passes: float) -> tuple:
        """(seconds, why, predicted seconds) for a phase of `passes` forward-and-backward passes
        of the model: 20 times what the engine's speed on the probes predicts, at least
        STEP_FLOOR; (None, "", None) when its speed is unknown (the process's own limit holds)."""
        if not self.speed.get("per_node") or not self.nodes:
            return None, "", None
        predicted = passes * self.nodes * self.speed["per_node"]
        if self.every_path:  # a walk over every path of a graph this size does not end: no need to wait long
            return max(EVERY_PATH_FLOOR, 3 * predicted), (
                f"3x the {predicted:.2g} s its speed on the probes predicts for a graph of about {self.nodes:,} "
                f"nodes; its backward walks every path, not every node, as the probe of many paths showed"), predicted
        limit = max(STEP_FLOOR, STEP_FACTOR * predicted)
        return limit, (f"{STEP_FACTOR}x the {predicted:.2g} s its speed on the probes predicts for a graph of about "
                       f"{self.nodes:,} nodes: a backward that walks far more nodes than the graph has, or an "
                       f"endless loop? --timeout sets a hard limit"), predicted

    def finite_differences(self, k: int) -> FiniteDiffs:
        """The estimates of k gradients at the first step's weights (judged by compare.judge.fd)."""
        limit, why, predicted = self.limit(2 * k)  # two losses per gradient, each a forward pass (an upper bound)
        estimates = self.process.next_message("finite differences", FiniteDiffs, timeout=limit, why=why,
                                              predicted=predicted and predicted / 2)
        if len(estimates.entries) != k:
            self.process.protocol_failure(ProtocolError(f"{len(estimates.entries)} finite-difference estimates "
                                                        f"where {k} were asked for"))
        return estimates
