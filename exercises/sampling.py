"""Exercise 10, sampling: pick the next token from the model's logits.

The model gives logits for every token of the vocabulary; generation draws one. Two knobs shape the
distribution first:
    temperature: logits / temperature. Below 1 it sharpens the distribution (more likely tokens,
        safer text), above 1 it flattens it (more surprising text). 0 means greedy: the argmax.
    top_k: keep only the k largest logits; the others become -inf, so their probability is 0.
Then probs = softmax(logits) over the vocabulary, and one token is drawn per row.

Sources: Fan, Lewis and Dauphin 2018, "Hierarchical Neural Story Generation" (top-k sampling);
Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration" (temperature and top-k compared).
The repository's own is sample_next in model.py.

Hint: torch.topk(logits, k).values[:, [-1]] is each row's k-th largest logit, shape (B, 1). Draw
with torch.multinomial(probs, num_samples=1, generator=generator): with the same generator the
same distribution draws the same tokens, which is how the checks compare yours with the reference.

Check it: python3 learn.py check sampling
"""

import torch
import torch.nn.functional as F


def sample_next(logits, temperature=1.0, top_k=None, generator=None):
    """logits: (B, V) -> (B, 1) int64 token ids. temperature 0: the argmax. top_k None: keep every token."""
    raise NotImplementedError
