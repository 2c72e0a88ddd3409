"""Step 12, an answer: sampling a name in eval mode, without gradients."""
import torch
import torch.nn.functional as F


def sample(model, tokenizer, rng, temperature=0.5):
    model.eval()
    token_ids, out = [tokenizer.BOS], []
    with torch.no_grad():
        for _ in range(model.config.block_size):
            logits, _ = model(torch.tensor([token_ids]))  # (1, T, vocab_size)
            probs = F.softmax(logits[0, -1].double() / temperature, dim=-1)
            token_id = rng.choices(range(tokenizer.vocab_size), weights=probs.tolist())[0]
            if token_id == tokenizer.BOS:
                break
            token_ids.append(token_id)
            out.append(token_id)
    return tokenizer.decode(out)
