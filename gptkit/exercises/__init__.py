"""The exercises of `python3 learn.py`, in the order a learner meets them: the model's own data flow
(batch -> positions -> attention -> heads -> norm -> Block -> loss), then training it by hand
(backward, AdamW), then generating from it (sampling, the KV cache); then the pieces that make GPT-2 a
Llama (RMSNorm, RoPE, SwiGLU, grouped-query attention); the step before the model, a BPE tokenizer; and last the
other half of the paper's model: the encoder-decoder's cross-attention, under a padding mask.

Each exercise is a module here, named as its template exercises/NAME.py and the learner's copy
mine/NAME.py, holding:
    TITLE   one line: what the learner builds
    WRITES  the function(s) or class(es) the learner writes, as the template names them
    GROUPS  the checks, one generator function per thing written: group(solution) yields Results
    TRAIN   for a part of the model, a harness.Training (how the learner's piece replaces the
            repository's for `learn.py train`); None otherwise
The checking machinery they share is harness.py.
"""

from gptkit.exercises import (adamw, attention, backward, batch, block, bpe, cross_attention, gqa, kvcache, layernorm,
                              loss, multihead, positions, rmsnorm, rope, sampling, swiglu)

EXERCISES = {module.__name__.rsplit(".", 1)[1]: module for module in (
    batch, positions, attention, multihead, layernorm, block, loss, backward, adamw, sampling, kvcache,
    rmsnorm, rope, swiglu, gqa, bpe, cross_attention)}
