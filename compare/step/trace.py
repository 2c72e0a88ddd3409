"""The named intermediates of both forward passes, read from outside the models.

A trace holds every stage of `trace_stage_names(config)` for one document, one flat list of
numbers per position. Both models are read from outside, so neither forward carries any
tracing code of its own: the scalar model's pieces (its methods `rmsnorm`, `linear`,
`attention`, ...) are wrapped on the instance (`ScalarTracer`), the readable torch GPT is
read with forward hooks on its modules (`torch_trace`).

Where the two traces part is judged by compare.judge.step.first_divergence.
"""
from __future__ import annotations

LAYER_STAGES = ("attn_norm", "q", "k", "v", "attn_logits", "attn_weights", "attn_out", "attn_residual",
                "mlp_norm", "mlp_hidden", "mlp_act", "mlp_residual")


def trace_stage_names(config) -> list[str]:
    """The named intermediates a trace records for every position, in forward order.

    Each is a flat list of numbers per position; attention logits and weights hold the
    n_head rows over the positions 0 .. p seen so far, head by head.
    """
    names = ["embed", "embed_norm"]
    for i in range(config.n_layer):
        names += [f"layer{i}.{stage}" for stage in LAYER_STAGES]
    return names + ["logits", "probs", "loss"]


class ScalarTracer:
    """Every stage of the scalar model's forward passes, read by wrapping the model's pieces.

        with ScalarTracer(model) as tracer:
            forward_loss(model, tokens)
        tracer.trace  # stage -> one list of numbers per position, across the documents

    While the block is open, the instance's pieces are wrappers that pass every call on
    unchanged and keep what the stages need: the input and output of `rmsnorm` (the embedding,
    its norm, the stream after attention), of `linear` (told apart by the weight matrix it
    multiplies), of `softmax` (the heads' attention inside `attention`, else the
    probabilities), the inputs of `attention` and `mlp`, and the outputs of `block` and
    `loss`. The numbers kept are the engine's own, so a wrong operator shows where it acts.
    """

    LINEAR_STAGES = {"attn_wq": ("q", "out"), "attn_wk": ("k", "out"), "attn_wv": ("v", "out"),
                     "attn_wo": ("attn_out", "in"), "mlp_fc1": ("mlp_hidden", "out"), "mlp_fc2": ("mlp_act", "in")}
    PIECES = ("rmsnorm", "linear", "softmax", "attention", "mlp", "block", "loss")

    def __init__(self, model):
        self.model = model
        self.trace = {name: [] for name in trace_stage_names(model.config)}
        self.linear_stages = {id(matrix): self._linear_stage(name) for name, matrix in model.state_dict.items()}
        self.layer = None  # the block running, if any
        self.attention_done = False  # within the block: the next rmsnorm reads the stream after attention
        self.heads = None  # within attention: the logits and weights of the heads so far

    @classmethod
    def _linear_stage(cls, name: str):
        """(stage, "in" or "out") for the weight matrix `name`: which side of its product a stage is."""
        if name == "lm_head":
            return "logits", "out"
        layer, _, matrix = name.partition(".")
        if matrix not in cls.LINEAR_STAGES:
            return None
        stage, side = cls.LINEAR_STAGES[matrix]
        return f"{layer}.{stage}", side

    def __enter__(self):
        own = vars(self.model)
        self.replaced = {piece: own[piece] for piece in self.PIECES if piece in own}  # put back on exit
        for piece in self.PIECES:
            setattr(self.model, piece, getattr(self, "_" + piece)(getattr(self.model, piece)))
        return self

    def __exit__(self, *exc_info):
        for piece in self.PIECES:
            delattr(self.model, piece)
        for piece, original in self.replaced.items():
            setattr(self.model, piece, original)

    def keep(self, stage: str, values) -> None:
        self.trace[stage].append([float(v.data) for v in values])

    def _rmsnorm(self, rmsnorm):
        def traced(x):
            out = rmsnorm(x)
            if self.layer is None:
                self.keep("embed", x)
                self.keep("embed_norm", out)
            elif self.attention_done:
                self.keep(f"layer{self.layer}.attn_residual", x)
            return out
        return traced

    def _linear(self, linear):
        def traced(x, w):
            out = linear(x, w)
            found = self.linear_stages.get(id(w))
            if found is not None:
                stage, side = found
                self.keep(stage, out if side == "out" else x)
            return out
        return traced

    def _softmax(self, softmax):
        def traced(logits):
            out = softmax(logits)
            if self.heads is None:
                self.keep("probs", out)
            else:
                self.heads[0].extend(logits)
                self.heads[1].extend(out)
            return out
        return traced

    def _attention(self, attention):
        def traced(x, i, keys, values):
            self.keep(f"layer{i}.attn_norm", x)
            self.heads = ([], [])
            try:
                out = attention(x, i, keys, values)
                self.keep(f"layer{i}.attn_logits", self.heads[0])
                self.keep(f"layer{i}.attn_weights", self.heads[1])
            finally:
                self.heads = None
            self.attention_done = True
            return out
        return traced

    def _mlp(self, mlp):
        def traced(x, i):
            self.keep(f"layer{i}.mlp_norm", x)
            return mlp(x, i)
        return traced

    def _block(self, block):
        def traced(x, i, keys, values):
            self.layer, self.attention_done = i, False
            try:
                out = block(x, i, keys, values)
            finally:
                self.layer = None
            self.keep(f"layer{i}.mlp_residual", out)
            return out
        return traced

    def _loss(self, loss):
        def traced(logits, target_id):
            out = loss(logits, target_id)
            self.keep("loss", [out])
            return out
        return traced

    def by_document(self, lengths: list[int]) -> list[dict]:
        """One trace per document, the document of `lengths[d]` positions taking the next ones."""
        traces, start = [], 0
        for n in lengths:
            traces.append({name: rows[start:start + n] for name, rows in self.trace.items()})
            start += n
        return traces


def torch_trace(model, tokens: list[int]) -> dict:
    """Every stage of one document through the readable torch GPT, read by forward hooks."""
    import torch

    from microgpt_torch.fast import FusedGPT
    from microgpt_torch.model import position_losses, softmax

    if isinstance(model, FusedGPT):
        raise ValueError("a FusedGPT keeps no intermediates: trace the readable GPT of microgpt_torch.model")
    n = min(model.config.block_size, len(tokens) - 1)
    device = next(model.parameters()).device
    idx, targets = torch.tensor([tokens[:n]], device=device), torch.tensor([tokens[1:n + 1]], device=device)
    seen, handles = {}, []

    def output_of(module, name):
        handles.append(module.register_forward_hook(lambda _module, _args, out: seen.__setitem__(name, out)))

    def input_of(module, name):
        handles.append(module.register_forward_pre_hook(lambda _module, args: seen.__setitem__(name, args[0])))

    output_of(model.wte, "wte")
    output_of(model.wpe, "wpe")
    output_of(model.lm_head, "logits")
    for i, block in enumerate(model.layers):
        attn, mlp, layer = block.attn, block.mlp, f"layer{i}."
        input_of(block, layer + "input")
        input_of(attn, layer + "attn_norm")
        for name in ("q", "k", "v"):
            output_of(getattr(attn, f"w{name}"), layer + name)
        input_of(attn.softmax, layer + "attn_logits")
        output_of(attn.softmax, layer + "attn_weights")
        input_of(attn.wo, layer + "attn_out")
        output_of(attn, layer + "attn")
        input_of(mlp, layer + "mlp_norm")
        output_of(mlp.fc1, layer + "mlp_hidden")
        input_of(mlp.fc2, layer + "mlp_act")
        output_of(block, layer + "mlp_residual")
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for handle in handles:
            handle.remove()
    seen["embed"] = seen["wte"] + seen["wpe"]  # the model's own sum, done again: the same rounding
    seen["embed_norm"] = seen["layer0.input"]
    for i in range(model.config.n_layer):
        seen[f"layer{i}.attn_residual"] = seen[f"layer{i}.input"] + seen[f"layer{i}.attn"]
    seen["probs"] = softmax(seen["logits"])
    trace = {}
    for stage in trace_stage_names(model.config)[:-1]:
        x = seen[stage][0]  # batch row 0: (T, ...) or (nh, T, T) for attention
        if stage.endswith(("attn_logits", "attn_weights")):  # position p keeps the nh rows over 0 .. p
            trace[stage] = [x[:, p, :p + 1].flatten().tolist() for p in range(n)]
        else:
            trace[stage] = [row.flatten().tolist() for row in x]
    trace["loss"] = [[loss] for loss in position_losses(seen["logits"], targets)[0].tolist()]
    return trace


def entry_meaning(stage: str, position: int, index: int, chars: list) -> str:
    """What entry `index` of a stage at `position` is, in words a learner can look up."""
    if stage.endswith(("attn_logits", "attn_weights")):
        head, key = divmod(index, position + 1)  # n_head rows over positions 0 .. position
        return f"head {head}, attending to position {key}"
    if stage == "logits":
        return f"the logit of {token_text(index, chars)}"
    if stage == "probs":
        return f"the probability of {token_text(index, chars)}"
    if stage == "loss":
        return "this position's loss"
    return f"entry {index}"


def token_text(token_id: int, chars: list) -> str:
    return repr(chars[token_id]) if token_id < len(chars) else "BOS"
