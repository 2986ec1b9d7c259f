"""A GPT language model in one file, read top to bottom. It needs torch and nothing else.

Follow one batch through it: token ids (B, T) -> token embedding (B, T, C) + positional encoding
-> n_layer Blocks of [LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP -> residual]
-> final LayerNorm -> language-model head (B, T, vocab) -> cross-entropy loss.

Shapes: B batch, T sequence length (time), C = n_embd channels, nh = n_head heads,
hs = C // nh head size, S = number of key positions (T, or more with a KV cache).

The defaults are GPT-2 (Radford et al. 2019). Every "what if" is a GPTConfig field, acted on where it
acts (the score and the mask in attention, the residual switch in Block, ...), so an experiment is a
config change, not a fork. After the model: the pieces it uses (positional encodings, masks, norms),
the checks on a config, generation (KV cache, sampling), and `tracing`, which lets the shape trace
and the attention pictures watch a forward pass.

References: "Attention Is All You Need" (Vaswani et al. 2017); GPT-2; RoFormer (Su et al. 2021)
for rotary positions; karpathy/nanoGPT, whose layout and parameter names (the Hugging Face
GPT-2 names) this follows.
"""

import dataclasses
import math
import typing
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context the model is trained on
    vocab_size: int = 50304  # set from the dataset when training (GPT-2's 50257 padded to 50304: faster matmuls)
    n_layer: int = 12  # how many Blocks are stacked
    n_head: int = 12  # attention heads per Block; each sees n_embd / n_head channels
    n_embd: int = 768  # channels: the width of every token's vector in the residual stream
    dropout: float = 0.0  # on attention weights, after each residual branch and the embeddings (training only)
    bias: bool = True  # biases in Linear layers and LayerNorms, as GPT-2
    # learned: GPT-2's trained table; sinusoidal: PE(pos,2i)=sin(pos/10000^(2i/C)), PE(pos,2i+1)=cos(..);
    # rope: rotate q and k by their position (RoFormer); none: no position signal at all
    pos_encoding: Literal["learned", "sinusoidal", "rope", "none"] = "learned"
    # dot: q.k/sqrt(hs); dot_then_square: (q.k/sqrt(hs))^2; square_then_dot: sum_i q_i^2 k_i^2 / sqrt(hs);
    # neg_dot: -q.k/sqrt(hs) ("reversed")
    attn_score: Literal["dot", "dot_then_square", "square_then_dot", "neg_dot"] = "dot"
    # causal: see self and the past; none: see everything; anticausal: see self and the future
    mask: Literal["causal", "none", "anticausal"] = "causal"
    residual: bool = True  # x + f(x) around attention and MLP, or just f(x)
    norm: Literal["layernorm", "rmsnorm", "none"] = "layernorm"  # before each sublayer and at the end (pre-LN)
    tie_weights: bool = True  # lm_head shares the token embedding matrix (Press & Wolf 2017)
    # gelu: GPT-2's tanh approximation; gelu_exact: the erf GELU (nanoGPT's nn.GELU, set when loading its
    # checkpoints); relu2 = relu(x)^2, from the modded-nanogpt speedrun
    activation: Literal["gelu", "gelu_exact", "relu2"] = "gelu"
    qk_norm: bool = False  # RMS-normalise q and k per head before the score (speedrun trick)
    zero_init_proj: bool = False  # output projections start at zero, so each block starts as identity
    explicit_attention: bool = False  # always run attention step by step (step_by_step below), training too
    activation_checkpointing: bool = False  # recompute each Block in backward: ~1/3 more compute, far less memory

    def validate(self):
        check_config(self)  # below, after the model

    @property
    def sees_the_future(self):
        """Under a mask other than causal, position t sees token t + 1, the very token it is trained to predict:
        the loss falls by copying it, and generation, where no future exists yet, produces garbage."""
        return self.mask != "causal"

    @property
    def fusable_attention(self):
        """Whether attention may take the fused kernel, which knows only the dot-product score and the
        causal mask or none (CausalSelfAttention.forward says when it then does)."""
        return self.attn_score == "dot" and self.mask in ("causal", "none") and not self.explicit_attention


# ----------------------------------------------------------------------------------------------
# The model


class CausalSelfAttention(nn.Module):
    def __init__(self, config, layer):
        super().__init__()
        self.config, self.layer = config, layer
        self.n_head, self.head_size = config.n_head, config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # mixes the heads' outputs
        self.resid_dropout = nn.Dropout(config.dropout)
        self.fusable = config.fusable_attention  # tracing turns it off: the fused kernel has no steps to see

    def forward(self, x, positions, rotary=None, kv_cache=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        # split channels into heads: each head attends in its own hs-dimensional subspace
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        self.tap(q=q, k=k, v=v)
        if self.config.qk_norm:
            q, k = F.rms_norm(q, (self.head_size,)), F.rms_norm(k, (self.head_size,))  # each row to RMS 1
            self.tap(q_norm=q, k_norm=k)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)  # (B, nh, T, hs), rotated by position
            self.tap(q_rope=q, k_rope=k)
        k_positions = positions
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)  # (B, nh, S, hs): the past and the new positions
            # slot s holds position s (a ring past max_len holds others, but all before the one new query)
            k_positions = torch.arange(k.size(2), device=x.device)
        S = k.size(2)

        dropout_p = self.config.dropout if self.training else 0.0  # never drop at eval (nanoGPT PR #240)
        # Which path runs: the fused kernel (F.scaled_dot_product_attention) computes the same softmax
        # without ever storing the (T, S) weights, which makes it fast, but it only knows the default
        # score and masks. Its is_causal assumes the queries start at the first key, true without a
        # cache; with one, the queries come after the cached keys and the mask is given in full.
        if self.fusable:
            causal = self.config.mask == "causal" and S == T
            pos = kv_cache.pos if kv_cache is not None else 0
            # one token after the cache sees every key: no mask, so the kernel may take its fastest path
            # (decode.py's static buffer, pos a tensor, keeps the mask: its slots past the query are empty)
            sees_all = isinstance(pos, int) and S <= pos + 1  # no key after any query
            mask = None if S == T or sees_all else allowed_positions(self.config.mask, positions, k_positions)  # (T, S)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                               is_causal=causal)  # (B, nh, T, hs)
        else:
            y = self.step_by_step(q, k, v, positions, k_positions, dropout_p)  # (B, nh, T, hs)

        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)

    def step_by_step(self, q, k, v, q_positions, k_positions, dropout_p):
        """softmax(score(q, k) + mask) v, one step at a time. q: (B, nh, T, hs), k, v: (B, nh, S, hs)."""
        score = self.config.attn_score
        if score == "square_then_dot":
            scores = (q.square() @ k.square().transpose(-2, -1)) / math.sqrt(self.head_size)  # (B, nh, T, S)
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_size)  # (B, nh, T, S)
        if score == "dot_then_square":
            scores = scores.square()
        elif score == "neg_dot":
            scores = -scores
        allowed = allowed_positions(self.config.mask, q_positions, k_positions)  # (T, S)
        weights = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)  # exp(-inf) = 0 for hidden keys
        self.tap(scores=scores, mask=allowed, softmax=weights)  # weights: (B, nh, T, S), rows sum to 1
        weights = F.dropout(weights, p=dropout_p, training=dropout_p > 0)
        y = weights @ v  # (B, nh, T, hs): each query's weighted sum of the values
        self.tap(out=y)
        return y

    def tap(self, **tensors):
        """Nothing: `tracing` (at the end of this file) replaces it to see these steps by name."""


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.activation = config.activation

    def forward(self, x):
        h = self.c_fc(x)  # (B, T, 4C)
        # GPT-2 uses the tanh approximation of GELU; matching it keeps Hugging Face logits identical
        if self.activation == "gelu":
            h = F.gelu(h, approximate="tanh")
        elif self.activation == "gelu_exact":
            h = F.gelu(h)  # nanoGPT's nn.GELU()
        else:
            h = F.relu(h).square()
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config, layer):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)
        self.residual = config.residual

    def forward(self, x, positions, rotary=None, kv_cache=None):
        if not self.residual:  # the "what if" without residual connections: each sublayer sees only the last
            return self.mlp(self.ln_2(self.attn(self.ln_1(x), positions, rotary, kv_cache)))
        x = x + self.attn(self.ln_1(x), positions, rotary, kv_cache)  # (B, T, C): the input carried past
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        check_config(config)
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=make_norm(config),
        ))
        if config.pos_encoding == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        elif config.pos_encoding == "sinusoidal":
            self.sinusoidal = SinusoidalEncoding(config.n_embd)  # no weights: a formula
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            # the input embedding and the output layer share one matrix: fewer parameters, better LM
            self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # GPT-2: scale residual-path projections by 1/sqrt(2 * n_layer) so the sum stays O(1)
                if config.zero_init_proj:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None, kv_cache=None, last_only=False, label_smoothing=0.0):
        """idx: (B, T) token ids -> logits (B, T, vocab) and the loss if targets (B, T) are given.

        With a kv_cache, idx holds only the new positions; earlier ones come from the cache.
        last_only computes logits for the last position alone (generation needs no more).
        label_smoothing e trains against (1 - e) on the target plus e / vocab on every token.
        """
        B, T = idx.size()
        start = kv_cache.pos if kv_cache is not None else 0  # positions seen: a number, or a tensor (decode.py)
        if self.config.pos_encoding == "learned" and isinstance(start, int) and start + T > self.config.block_size:
            raise ValueError(f"learned positions stop at block_size={self.config.block_size}: there is no embedding "
                             f"for position {start + T - 1}. Feed at most the last {self.config.block_size} tokens "
                             f"(generate does), or train with pos_encoding=sinusoidal or rope, which extend further")
        positions = start + torch.arange(T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx)  # (B, T, C): one learned vector per token id
        rotary = None
        if self.config.pos_encoding == "learned":
            x = x + self.transformer.wpe(positions)  # (T, C) broadcast over B
        elif self.config.pos_encoding == "sinusoidal":
            # Vaswani et al. 3.4 scale the embeddings by sqrt(C) first: the encoding's entries are +-1,
            # and added to small token vectors (std 0.02) it would drown out which token this is
            x = x * math.sqrt(self.config.n_embd) + self.sinusoidal(positions).to(x.dtype)  # (T, C) broadcast
        elif self.config.pos_encoding == "rope":
            rotary = rotary_cos_sin(positions, self.config.n_embd // self.config.n_head)  # (T, hs/2) x 2
        x = self.transformer.drop(x)
        # activation checkpointing (Chen et al. 2016): keep only each Block's input for backward, which runs
        # the Block again to get the rest; dropout's random state is replayed, so the numbers are the same
        recompute = self.config.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.transformer.h:
            if recompute:
                x = torch.utils.checkpoint.checkpoint(block, x, positions, rotary, kv_cache, use_reentrant=False)
            else:
                x = block(x, positions, rotary, kv_cache)  # (B, T, C)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_only:
            x = x[:, [-1], :]  # (B, 1, C)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab)
        if targets is None:
            return logits, None
        # the next-token loss: average of -log p(target) over all B*T positions
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1,
                               label_smoothing=label_smoothing)
        return logits, loss

    def generate(self, idx, max_new_tokens, **kwargs):
        """Return idx (B, T) extended by max_new_tokens sampled tokens (B, T + max_new_tokens); see stream."""
        return torch.cat([idx, *stream(self, idx, max_new_tokens, **kwargs)], dim=1)

    # ------------------------------------------------------------------------------------------
    # for training, as nanoGPT

    def num_params(self, non_embedding=True):
        """Parameter count; position embeddings are not counted, as nanoGPT (the tied wte is)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def optimizer_groups(self, weight_decay):
        """Decay 2-D weights (matmuls, embeddings); never biases or norm gains."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]

    def hidden_matrices(self):
        """The 2-D weights inside the blocks: what Muon optimises (embeddings and head stay with AdamW)."""
        return [p for p in self.transformer.h.parameters() if p.dim() == 2]

    def flops_per_token(self, T=None):
        """Training FLOPs per token: 6N for the matmuls plus attention's 12*L*C*T (PaLM appendix B)."""
        T = T or self.config.block_size
        return 6 * self.num_params() + 12 * self.config.n_layer * self.config.n_embd * T

    def estimate_mfu(self, tokens_per_s, peak_flops, T=None):
        """Model FLOPs utilisation: achieved training FLOP/s over the device's peak."""
        return self.flops_per_token(T) * tokens_per_s / peak_flops

    def crop_block_size(self, block_size):
        """Shrink the context (e.g. a pretrained 1024 model fine-tuned on 256 tokens)."""
        assert block_size <= self.config.block_size
        self.config.block_size = block_size
        if "wpe" in self.transformer:
            self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])


# ----------------------------------------------------------------------------------------------
# The pieces the model uses: positional encodings, masks, norms


def sinusoidal_encoding(positions, dim):
    """PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i+1) = cos(pos / 10000^(2i/dim)).

    Vaswani et al. 2017, section 3.5. Computed for any position, so it works past block_size.
    positions: (T,) integers -> (T, dim) float32.
    """
    two_i = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)  # (dim/2,)
    angles = positions.float()[:, None] / (10000.0 ** (two_i / dim))[None, :]  # (T, dim/2)
    pe = torch.empty(len(positions), dim, device=positions.device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe


class SinusoidalEncoding(nn.Module):
    """sinusoidal_encoding as a module, so the position signal has a name in the model (and in tracing)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, positions):
        return sinusoidal_encoding(positions, self.dim)  # (T, dim)


def rotary_cos_sin(positions, head_size, base=10000.0):
    """Angles pos * theta_i with theta_i = base^(-2i/hs), for i < hs/2 (RoFormer, eq. 15).

    positions: (T,) -> cos, sin: (T, hs/2) each.
    """
    inv_freq = base ** (-torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32) / head_size)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    """Rotate each pair (x[i], x[i + hs/2]) of every head by its angle.

    x: (B, nh, T, hs). The dot product of two rotated vectors depends only on their distance in
    position, which is why RoPE encodes relative position and extends past block_size.
    """
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, nh, T, hs)
    return rotated.type_as(x)


def allowed_positions(mask, q_pos, k_pos):
    """Boolean (T, S): may query position q_pos[t] attend to key position k_pos[s]?"""
    if mask == "causal":
        return k_pos[None, :] <= q_pos[:, None]  # hide the upper-right: the future
    if mask == "anticausal":
        return k_pos[None, :] >= q_pos[:, None]  # hide the lower-left: the past
    return torch.ones(len(q_pos), len(k_pos), dtype=torch.bool, device=q_pos.device)


def make_norm(config):
    if config.norm == "layernorm":
        return nn.LayerNorm(config.n_embd, bias=config.bias)
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd)
    return nn.Identity()


def check_config(config):
    """Raise ValueError naming the first impossible setting (the command line shows it as one line)."""
    for f in dataclasses.fields(config):
        choices = typing.get_args(f.type) if typing.get_origin(f.type) is Literal else None
        if choices and getattr(config, f.name) not in choices:
            raise ValueError(f"{f.name}={getattr(config, f.name)!r} is not one of {', '.join(map(repr, choices))}")
    for key in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
        if getattr(config, key) <= 0:
            raise ValueError(f"{key} must be positive, got {getattr(config, key)}")
    if config.n_embd % config.n_head:
        raise ValueError(f"n_embd={config.n_embd} is not divisible by n_head={config.n_head}; "
                         f"pick n_head among {[h for h in range(1, 17) if config.n_embd % h == 0]}")
    head_size = config.n_embd // config.n_head
    if config.pos_encoding == "rope" and head_size % 2:
        raise ValueError(f"rope needs an even head size, got n_embd/n_head = {head_size}")
    if config.pos_encoding == "sinusoidal" and config.n_embd % 2:
        raise ValueError(f"sinusoidal encoding needs an even n_embd, got {config.n_embd}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")


# ----------------------------------------------------------------------------------------------
# Generation. Keys and values of past positions never change under the causal mask, so a KV cache
# computes them once, and each new token runs only its own position through the model.


class KVCache:
    """Keys and values of every layer for the last max_len positions.

    Positions [0, pos) have been seen. Once more than max_len have, the cache is a ring buffer:
    each new position overwrites the oldest. Only RoPE uses that (see Decoder).
    (gptkit/decode.py has gpt-fast's static variant, whose every step has the same shapes.)
    """

    def __init__(self, n_layer, max_len):
        self.n_layer, self.max_len = n_layer, max_len
        self.k = self.v = None  # (n_layer, B, nh, max_len, hs), allocated on first use
        self.pos = 0

    def update(self, layer, k, v):
        """Store this layer's new k, v (B, nh, T, hs); return the cached keys and values (B, nh, S, hs)."""
        if self.k is None:
            B, nh, _, hs = k.shape
            self.k = k.new_zeros(self.n_layer, B, nh, self.max_len, hs)
            self.v = torch.zeros_like(self.k)
        T = k.size(2)
        if self.pos + T <= self.max_len:
            end = self.pos + T
            self.k[layer, :, :, self.pos:end] = k
            self.v[layer, :, :, self.pos:end] = v
            return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
        assert T == 1, "past max_len the cache takes one position at a time"
        # key order does not matter to attention (a softmax-weighted sum), so the ring needs no shifting
        slot = self.pos % self.max_len
        self.k[layer, :, :, slot:slot + 1] = k
        self.v[layer, :, :, slot:slot + 1] = v
        return self.k[layer], self.v[layer]

    def advance(self, n):
        self.pos += n

    def keep(self, rows):
        """Keep the sequences `rows` (B',) of the batch, in that order (beam search reorders its beams)."""
        if self.k is not None:
            self.k, self.v = self.k[:, rows], self.v[:, rows]


class Decoder:
    """A batch of contexts being extended, and the logits of each one's next token.

    Without the cache, every step runs the last block_size tokens through the model (nanoGPT).
    With it, the prompt is run once (prefill) and each step feeds only the newest token; the
    logits are the same. The cache is valid only under the causal mask: with other masks,
    earlier positions change when a token is added, so they are recomputed.
    Past block_size: with RoPE the cache slides (each query sees the last block_size keys at
    relative distances it was trained on); other encodings recompute the window every step,
    exactly as without the cache.
    """

    def __init__(self, model, idx, use_cache=True):
        self.model, self.context = model, idx  # (B, T) token ids
        self.use_cache = use_cache and model.config.mask == "causal"
        self.sliding = model.config.pos_encoding == "rope"
        self.cache = None

    @torch.no_grad()
    def next_logits(self):
        """(B, vocab): the logits of the token after each context."""
        model, block_size = self.model, self.model.config.block_size
        if self.cache is not None and self.cache.pos >= block_size and not self.sliding:
            self.use_cache, self.cache = False, None  # full, and only RoPE's slides: recompute the window from now
        if self.use_cache and self.cache is None:
            self.cache = KVCache(model.config.n_layer, block_size)
            logits, _ = model(self.context[:, -block_size:], kv_cache=self.cache, last_only=True)  # prefill
        elif self.use_cache:
            logits, _ = model(self.context[:, -1:], kv_cache=self.cache)  # one new position
        else:
            logits, _ = model(self.context[:, -block_size:], last_only=True)
        return logits[:, -1, :]

    def append(self, tokens):
        """Extend each context by its token: tokens (B, 1)."""
        self.context = torch.cat([self.context, tokens], dim=1)

    def keep(self, rows):
        """Keep the contexts `rows` (and their cached keys and values), in that order."""
        self.context = self.context[rows]
        if self.cache is not None:
            self.cache.keep(rows)


@torch.no_grad()
def stream(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True,
           vocab_limit=None, generator=None, decoder=None):
    """Yield (B, 1) next tokens one step at a time, continuing the prompts idx (B, T).

    The tokens are the same with and without the cache (see Decoder). vocab_limit drops the padding
    ids past the tokenizer's vocabulary. decoder: another Decoder to run the steps (gptkit/decode.py's
    static, compiled one); by default Decoder(model, idx, use_cache).
    """
    decoder = decoder or Decoder(model, idx, use_cache)
    for _ in range(max_new_tokens):
        logits = decoder.next_logits()[:, :vocab_limit]  # (B, vocab)
        next_token = sample_next(logits, temperature, top_k, top_p, generator)  # (B, 1)
        decoder.append(next_token)
        yield next_token


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Pick the next token from logits (B, vocab) -> (B, 1).

    temperature 0 is greedy (argmax). Otherwise logits/temperature, then top_k keeps the k most
    likely tokens and top_p keeps the smallest set whose probability reaches p (nucleus sampling,
    Holtzman et al. 2019), and a token is drawn from what remains.
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p; the most likely always stays
        drop = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


# ----------------------------------------------------------------------------------------------
# Tracing: `with tracing(model, fn):` calls fn(name, tensor) at each named step of the model's forward
# passes: the shape trace (gptkit/shape_trace.py) prints them, the attention pictures keep the softmax
# weights. Module outputs are seen through forward hooks; the steps inside attention through its tap().
# Outside `tracing` nothing is hooked and tap() does nothing.


@contextmanager
def tracing(model, fn):
    """Names: idx, tok_emb, pos_emb; per layer N h.N.ln_1, h.N.attn.{q,k,v,q_norm,k_norm,q_rope,k_rope,scores,
    mask,softmax,out,merged,c_proj}, h.N.attn_residual (x + attention; attn_output without residuals),
    h.N.ln_2, h.N.mlp, h.N.out; then ln_f, logits, loss. Attention runs step by step meanwhile."""
    inputs = [(model, "idx")]  # (module, name): the module's first input, seen as it comes in
    outputs = [(model.transformer.wte, "tok_emb")]  # (module, name): what the module returns
    if "wpe" in model.transformer:
        outputs.append((model.transformer.wpe, "pos_emb"))
    if hasattr(model, "sinusoidal"):
        outputs.append((model.sinusoidal, "pos_emb"))
    for i, block in enumerate(model.transformer.h):
        # what ln_2 normalises is the residual stream after attention: x + attn(ln_1(x))
        inputs += [(block.attn.c_proj, f"h.{i}.attn.merged"),
                   (block.ln_2, f"h.{i}.attn_residual" if block.residual else f"h.{i}.attn_output")]
        outputs += [(block.ln_1, f"h.{i}.ln_1"), (block.attn.c_proj, f"h.{i}.attn.c_proj"),
                    (block.ln_2, f"h.{i}.ln_2"), (block.mlp, f"h.{i}.mlp"), (block, f"h.{i}.out")]
    outputs += [(model.transformer.ln_f, "ln_f"), (model.lm_head, "logits")]
    def see_input(name):
        def hook(module, args):
            fn(name, args[0])  # a hook that returned something would replace the input
        return hook

    def see_output(name):
        def hook(module, args, out):
            fn(name, out)
        return hook

    def see_loss(module, args, out):
        if out[1] is not None:
            fn("loss", out[1])

    handles = [module.register_forward_pre_hook(see_input(name)) for module, name in inputs]
    handles += [module.register_forward_hook(see_output(name)) for module, name in outputs]
    handles.append(model.register_forward_hook(see_loss))
    attentions = [(i, block.attn, block.attn.fusable) for i, block in enumerate(model.transformer.h)]
    for i, attn, _ in attentions:
        attn.fusable = False
        attn.tap = lambda prefix=f"h.{i}.attn", **named: [fn(f"{prefix}.{k}", t) for k, t in named.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for _, attn, fusable in attentions:
            attn.fusable = fusable
            del attn.tap  # back to the class's tap, which does nothing
