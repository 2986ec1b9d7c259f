"""block: Block(ln_1, attn, ln_2, mlp, dropout), whose forward the learner writes, checked against
model.Block (in eval mode) and against its formula with dropout (in training mode, the same random
masks); `learn.py train block` runs every Block of the model through it."""

from contextlib import contextmanager
from functools import partial

import torch

import model
from gptkit.exercises.harness import Result, Training, check_shape, compare, first_match, random, same

TITLE = "the Block: residual connections, pre-norm, dropout"
WRITES = "Block.forward"
SHAPES = [(2, 6, 16, 2), (1, 1, 8, 1), (3, 9, 32, 4)]  # (B, T, C, n_head)
P = 0.5  # dropout in the training-mode checks


def parts(C, n_head, T, seed=0):
    """model.Block's pieces (their own dropout 0: the learner's Block drops), as the learner's Block takes them."""
    torch.manual_seed(seed)
    ref = model.Block(model.GPTConfig(n_embd=C, n_head=n_head, block_size=max(T, 1), dropout=0.0), 0)
    with torch.no_grad():  # not the 1 and 0 they start with: an ln_1 used for ln_2 shows
        for ln in (ref.ln_1, ref.ln_2):
            ln.weight.normal_(1.0, 0.3)
            ln.bias.normal_(0.0, 0.3)
    attn = ref.attn  # x (B, T, C) -> (B, T, C)
    return ref, attn


def learners(mine, ref, attn, dropout):
    return mine.call(mine.Block, ref.ln_1, attn, ref.ln_2, ref.mlp, dropout)


def formula(ref, attn, x, drop):
    """x + drop(attn(ln_1(x))), then x + drop(mlp(ln_2(x))): the GPT-2 Block, pre-LayerNorm."""
    x = x + drop(attn(ref.ln_1(x)))
    return x + drop(ref.mlp(ref.ln_2(x)))


def eval_causes(y, ref, attn, x):
    """Compute the Blocks learners write by mistake (no dropout); the one `y` matches names the mistake."""
    ln_1, ln_2, mlp = ref.ln_1, ref.ln_2, ref.mlp

    def post_norm():
        h = ln_1(x + attn(x))
        return ln_2(h + mlp(h))

    def normed_residual():
        h = ln_1(x)
        h = h + attn(h)
        h = ln_2(h)
        return h + mlp(h)

    def one_norm():
        h = x + attn(ln_1(x))
        return h + mlp(ln_1(h))

    return first_match(y, [
        ("no residual connections: the Block adds each branch to its input, x = x + attn(ln_1(x))",
         lambda: mlp(ln_2(attn(ln_1(x))))),
        ("you normalise after the residual sum (post-LN, the 2017 Transformer); GPT-2 normalises the branch's "
         "input: x + attn(ln_1(x))", post_norm),
        ("your residual carries ln_1(x), not x: add the branch to the un-normalised input", normed_residual),
        ("the MLP branch normalises with ln_1; it has its own, ln_2", one_norm),
        ("the MLP sees the Block's input, not x after attention: x = x + attn(ln_1(x)) first, then "
         "x = x + mlp(ln_2(x))", lambda: x + attn(ln_1(x)) + mlp(ln_2(x))),
        ("only the attention branch: the MLP's comes after it, x = x + mlp(ln_2(x))", lambda: x + attn(ln_1(x))),
    ], atol=1e-4, rtol=1e-3, expected=formula(ref, attn, x, lambda t: t))


def train_causes(y, ref, attn, x, seed, dropout):
    """Training mode: the dropout placements learners write by mistake, with the same random masks."""

    def seeded(fn):
        def run():
            torch.manual_seed(seed)
            return fn()
        return run

    def on_the_sum():
        h = dropout(x + attn(ref.ln_1(x)))
        return dropout(h + ref.mlp(ref.ln_2(h)))

    def on_the_input():
        h = x + attn(dropout(ref.ln_1(x)))
        return h + ref.mlp(dropout(ref.ln_2(h)))

    return first_match(y, [
        ("dropout does nothing in training mode: apply self.dropout to each branch's output, "
         "x + self.dropout(attn(ln_1(x)))", lambda: formula(ref, attn, x, lambda t: t)),
        ("the dropout hits the residual stream itself: drop only the branch, x + self.dropout(attn(ln_1(x)))",
         seeded(on_the_sum)),
        ("you drop the branch's input; drop its output: x + self.dropout(attn(ln_1(x)))", seeded(on_the_input)),
    ], atol=1e-4, rtol=1e-3)


@torch.no_grad()
def matches_model_block(mine):
    for B, T, C, n_head in SHAPES:
        ref, attn = parts(C, n_head, T)
        block = learners(mine, ref, attn, dropout=P).eval()
        x = random(B, T, C, seed=1)
        y = mine.call(block, x.clone())
        where = f"B={B}, T={T}, C={C}"
        yield check_shape(f"(B, T, C) in, (B, T, C) out ({where})", y, (B, T, C))
        yield compare(f"eval mode (no dropout): equals model.Block ({where})", y, ref.eval()(x),
                      lambda: eval_causes(y, ref, attn, x))


@torch.no_grad()
def dropout_in_training(mine):
    B, T, C, n_head = 2, 6, 16, 2
    ref, attn = parts(C, n_head, T, seed=3)
    block = learners(mine, ref, attn, dropout=P).train()
    x = random(B, T, C, seed=4)
    torch.manual_seed(7)
    y = mine.call(block, x.clone())
    torch.manual_seed(7)  # the same masks: dropout draws them in the order the branches run
    expected = formula(ref, attn, x, torch.nn.Dropout(P).train())
    yield compare(f"training mode, dropout={P}: x + dropout(attn(ln_1(x))), then x + dropout(mlp(ln_2(x)))", y,
                  expected, lambda: train_causes(y, ref, attn, x, 7, torch.nn.Dropout(P).train()))

    # branches that output 0: the Block must pass x through untouched, dropout or not
    zero = mine.call(mine.Block, ref.ln_1, torch.zeros_like, ref.ln_2, torch.zeros_like, P).train()
    y = mine.call(zero, x.clone())
    kept = same(y, x, atol=0, rtol=0)
    yield Result("with branches that output 0, training mode gives x back exactly (the residual is never dropped)",
                 kept, "x itself", "x changed" if not kept else "",
                 "" if kept else "the dropout hits the residual stream: drop only the branch's output")
    block.eval()
    yield Result("eval mode drops nothing: the same output twice", same(mine.call(block, x), mine.call(block, x),
                                                                       atol=0, rtol=0), "equal outputs", "")


@contextmanager
def substitute(mine):
    """The model's blocks (model.py's part `block`) run the learner's Block over model.Block's own pieces. Their
    dropout is inside attn and mlp already (model.py's resid_dropout), so the learner's Block gets 0."""

    class LearnersBlock(model.Block):
        def forward(self, x, rotary=None, kv_cache=model.NO_CACHE):
            attn = partial(self.attn, rotary=rotary, kv_cache=kv_cache)
            return mine.Block(self.ln_1, attn, self.ln_2, self.mlp, 0.0).train(self.training)(x)  # (B, T, C)

    with model.using_parts(block=LearnersBlock):
        yield


GROUPS = [matches_model_block, dropout_in_training]
TRAIN = Training("your Block", substitute, requires={"residual": (True,)})
