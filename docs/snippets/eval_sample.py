"""model.eval() and torch.no_grad() for sampling: no graph is built, and the names match the scalar engine's."""
import random

import torch

from microgpt_scalar.config import get_config
from microgpt_scalar.data import Tokenizer
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.model import init_params
from microgpt_scalar.train import sample as scalar_sample
from microgpt_torch.model import GPT

config = get_config(init_std=0.3)
params = init_params(config, random.Random(0), value_cls=float)  # one set of weights for both engines
model = GPT.from_scalar_params(config, params)
tokenizer = Tokenizer("abcdefghijklmnopqrstuvwxyz")

print("training mode:", model.training)
model.eval()  # switches layers like dropout to inference (this model has none); model.train() switches back
print("after eval(): ", model.training)
idx = torch.tensor([[tokenizer.BOS]])
print("with gradients:   logits.requires_grad", model(idx)[0].requires_grad)
with torch.no_grad():  # no graph: less memory and time, and nothing to backpropagate
    print("under no_grad():  logits.requires_grad", model(idx)[0].requires_grad)


def sample(rng, temperature=0.5):
    token_ids = [tokenizer.BOS]
    with torch.no_grad():
        while len(token_ids) <= config.block_size:
            logits, _ = model(torch.tensor([token_ids]))
            probs = torch.softmax(logits[0, -1] / temperature, dim=-1)  # float64, as the scalar engine's
            token_id = rng.choices(range(tokenizer.vocab_size), weights=probs.tolist())[0]
            if token_id == tokenizer.BOS:
                break
            token_ids.append(token_id)
    return tokenizer.decode(token_ids)


torch_rng, scalar_rng = random.Random(7), random.Random(7)
print("torch: ", [sample(torch_rng) for _ in range(4)])
scalar_model = ScalarGPT(config, params=params)
print("scalar:", [scalar_sample(scalar_model, tokenizer, scalar_rng) for _ in range(4)])
