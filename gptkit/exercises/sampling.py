"""sampling: sample_next(logits, temperature, top_k, generator) -> (B, 1) token ids, checked against
model.sample_next: with the same generator, the same distribution draws the same tokens, so thousands
of rows compare the learner's distribution with the reference's exactly."""

import torch

import model
from gptkit.exercises.harness import Result, check_shape, compare, first_match, random

TITLE = "sampling the next token: temperature and top-k"
WRITES = "sample_next"
CASES = [(2000, 8, 1.0, None), (2000, 8, 0.5, None), (2000, 8, 2.0, None), (2000, 8, 1.0, 3), (500, 50, 0.8, 10)]


def seeded():
    return torch.Generator().manual_seed(1234)


def draw(logits, temperature=1.0, top_k=None):
    """model.sample_next's tokens, drawn by the seeded generator: a mistake is its settings or its logits changed."""
    return model.sample_next(logits, temperature, top_k, generator=seeded())


def keep_top(logits, k, fill=float("-inf")):
    kth = torch.topk(logits, k).values[:, [-1]]  # (B, 1)
    return logits.masked_fill(logits < kth, fill)


def keep_bottom(logits, k):
    kth = torch.topk(logits, k, largest=False).values[:, [-1]]  # (B, 1)
    return logits.masked_fill(logits > kth, float("-inf"))


def causes(got, logits, temperature, top_k):
    """Draw with the sampling mistakes learners make, from the same generator; the one that gives `got` names it."""
    V = logits.shape[-1]
    k = top_k or V
    variants = []
    if top_k:
        variants += [
            (f"top_k={k} kept {k + 1} tokens: the k-th largest is torch.topk(logits, k).values[:, [-1]] (index k - 1 "
             f"of a descending sort); drop the logits below it", lambda: draw(logits, temperature, k + 1)),
            (f"top_k kept the {k} smallest logits: keep the k largest (torch.topk takes the largest)",
             lambda: draw(keep_bottom(logits / temperature, k))),
            ("top_k has no effect: set every logit below the k-th largest to -inf before the softmax",
             lambda: draw(logits, temperature)),
            ("tokens outside the top k are still drawn: the dropped logits must be -inf, not 0 (exp(0) = 1)",
             lambda: draw(keep_top(logits / temperature, k, fill=0.0))),
        ]
    if temperature != 1:
        variants += [
            ("temperature multiplies the logits; divide: logits / temperature (a higher temperature flattens the "
             "distribution)", lambda: draw(logits * temperature, 1.0, top_k)),
            ("temperature has no effect: divide the logits by it before the softmax",
             lambda: draw(logits, 1.0, top_k)),
        ]
    variants.append(("you always take the most likely token: draw from the distribution, "
                     "torch.multinomial(probs, num_samples=1, generator=generator)", logits.argmax(-1, keepdim=True)))
    return first_match(got, variants) or ("the tokens differ from model.sample_next's with the same generator: "
                                          "draw with torch.multinomial(probs, num_samples=1, generator=generator)")


def matches_model(mine):
    for i, (B, V, temperature, top_k) in enumerate(CASES):
        logits = random(B, V, seed=i, scale=2.0)
        got = mine.call(mine.sample_next, logits.clone(), temperature=temperature, top_k=top_k, generator=seeded())
        where = f"{B} rows of {V} logits, temperature={temperature}, top_k={top_k}"
        yield check_shape(f"(B, 1) int64 token ids ({where})", got, (B, 1), torch.int64)
        expected = model.sample_next(logits, temperature, top_k, generator=seeded())
        yield compare(f"the same tokens as model.sample_next with the same generator ({where})", got, expected,
                      lambda: causes(got, logits, temperature, top_k))


def properties(mine):
    logits = random(2000, 10, seed=10, scale=2.0)
    got = mine.call(mine.sample_next, logits.clone(), temperature=1.0, top_k=3, generator=seeded())
    allowed = torch.topk(logits, 3).indices  # (B, 3)
    outside = int((allowed != got).all(-1).sum()) if isinstance(got, torch.Tensor) and got.shape == (2000, 1) else -1
    yield Result("top_k=3: every token drawn is one of its row's 3 most likely", outside == 0, "0 tokens outside",
                 f"{outside} of 2000 outside" if outside else "", causes(got, logits, 1.0, 3) if outside else "")
    again = mine.call(mine.sample_next, logits.clone(), temperature=1.0, top_k=3, generator=seeded())
    yield compare("the same generator seed gives the same tokens (draw with the generator)", again, got,
                  lambda: "draw with the generator passed in: torch.multinomial(probs, 1, generator=generator)")

    logits = random(16, 30, seed=11)
    greedy = logits.argmax(-1, keepdim=True)
    yield compare("temperature=0: greedy, the argmax of each row",
                  mine.call(mine.sample_next, logits.clone(), temperature=0.0, generator=seeded()), greedy)
    yield compare("top_k=1: the argmax, whatever the temperature",
                  mine.call(mine.sample_next, logits.clone(), temperature=1.5, top_k=1, generator=seeded()), greedy)
    many = mine.call(mine.sample_next, logits.clone(), temperature=1.0, top_k=35, generator=seeded())
    yield compare("top_k=35, more than the 30 tokens: every token stays (as without top_k)", many,
                  model.sample_next(logits, 1.0, None, generator=seeded()),
                  lambda: "keep min(top_k, V) tokens: torch.topk cannot take more than the vocabulary")


GROUPS = [matches_model, properties]
TRAIN = None
