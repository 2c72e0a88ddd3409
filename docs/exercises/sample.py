"""Step 12: sampling a name in eval mode, without gradients.

The scalar engine writes a name one token at a time, from BOS until it draws BOS again:

    logits = model.forward(token_id, pos_id, keys, values)
    probs = softmax([logit / temperature for logit in logits])
    token_id = rng.choices(range(tokenizer.vocab_size), weights=[p.data for p in probs])[0]

Write `sample` for the torch model (which has no cache: run the whole prefix and take the last
position's logits). Sampling needs no gradients, and a model has a mode for it. Draw with the
same rng call on float64 probabilities, and the same weights and rng give the same names as the
scalar engine. Check it:

    python scripts/exercise.py sample
"""
import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401


def sample(model, tokenizer, rng, temperature=0.5):
    """One name, at most model.config.block_size characters."""
    # TODO: the model's evaluation mode, no gradients, then the loop above.
    raise NotImplementedError("TODO: sample")
