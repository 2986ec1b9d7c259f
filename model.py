"""A GPT language model in one file, read top to bottom. It needs torch and nothing else.

Follow one batch through it: token ids (B, T) -> token embedding (B, T, C) + positional encoding
-> n_layer Blocks of [LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP -> residual]
-> final LayerNorm -> language-model head (B, T, vocab) -> cross-entropy loss.

Shapes: B batch, T sequence length (time), C = n_embd channels, nh = n_head heads, nkv = n_kv_head key and
value heads, hs = C // nh head size, S = number of key positions (T, or more with a KV cache).

The defaults are GPT-2 (Radford et al. 2019). Every "what if" is a GPTConfig field, chosen once when the model
is built from the tables of the lab's section at the end: skip it, and the rest is the whole GPT. karpathy/
nanoGPT's layout and parameter names (the Hugging Face GPT-2 names) are followed throughout.
"""

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass
from types import MethodType
from typing import Literal, get_args, get_origin

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
    # grouped-query attention (Ainslie et al. 2023): key and value heads, each shared by n_head / n_kv_head query
    # heads, the KV cache as many times smaller; 0 = n_head (GPT-2), 1 = multi-query attention
    n_kv_head: int = 0
    n_embd: int = 768  # channels: the width of every token's vector in the residual stream
    dropout: float = 0.0  # on attention weights, after each residual branch and the embeddings (training only)
    bias: bool = True  # biases in Linear layers and LayerNorms, as GPT-2
    # learned: GPT-2's trained table; sinusoidal: PE(pos,2i)=sin(pos/10000^(2i/C)), PE(pos,2i+1)=cos(..);
    # rope: rotate q and k by their position (RoFormer, Su et al. 2021); none: no position signal at all
    pos_encoding: Literal["learned", "sinusoidal", "rope", "none"] = "learned"
    rope_theta: float = 10000.0  # RoPE's base: pair i turns by pos * rope_theta^(-2i/hs) (Llama 3: 500000)
    # dot: q.k/sqrt(hs); dot_then_square: (q.k/sqrt(hs))^2; square_then_dot: sum_i q_i^2 k_i^2 / sqrt(hs); neg_dot
    attn_score: Literal["dot", "dot_then_square", "square_then_dot", "neg_dot"] = "dot"
    # causal: see self and the past; none: see everything; anticausal: see self and the future
    mask: Literal["causal", "none", "anticausal"] = "causal"
    residual: bool = True  # x + f(x) around attention and MLP, or just f(x)
    # before each sublayer and at the end (pre-LN): layernorm, GPT-2's; rmsnorm, x / RMS(x) * g (Zhang & Sennrich 2019)
    norm: Literal["layernorm", "rmsnorm", "none"] = "layernorm"
    norm_eps: float = 1e-5  # added under the norm's square root: LayerNorm's default, Llama's RMSNorm's
    tie_weights: bool = True  # lm_head shares the token embedding matrix (Press & Wolf 2017)
    # gelu: GPT-2's c_proj(act(c_fc x)); swiglu: Llama's gated c_proj(silu(c_fc x) * c_fc2 x) (Shazeer 2020)
    mlp: Literal["gelu", "swiglu"] = "gelu"
    # the MLP's hidden width, 0 = 4 * n_embd. swiglu's three matrices at 2/3 of that (Llama's 8/3 * n_embd, rounded
    # there to a multiple of 256) hold as many parameters as gelu's two
    mlp_hidden: int = 0
    # mlp=gelu's: gelu, GPT-2's tanh form; gelu_exact, the erf GELU (nanoGPT's); relu2 = relu(x)^2 (modded-nanogpt)
    activation: Literal["gelu", "gelu_exact", "relu2"] = "gelu"
    qk_norm: bool = False  # RMS-normalise q and k per head before the score (speedrun trick)
    zero_init_proj: bool = False  # output projections start at zero, so each block starts as identity
    explicit_attention: bool = False  # always run attention step by step (step_by_step below), training too
    activation_checkpointing: bool = False  # recompute each Block in backward: ~1/3 more compute, far less memory

    def validate(self):
        check_config(self)  # below, after the model
    # under a mask other than causal, position t sees token t + 1, the very token it is trained to predict: the
    # loss falls by copying it, and generation, where no future exists yet, produces garbage
    sees_the_future = property(lambda self: self.mask != "causal")
    # whether attention runs the fused kernel, which knows only the dot-product score and the causal mask or none
    fused_attention = property(lambda self: self.attn_score == "dot" and self.mask in ("causal", "none")
                               and not self.explicit_attention)
    kv_heads = property(lambda self: self.n_kv_head or self.n_head)
    mlp_width = property(lambda self: self.mlp_hidden or 4 * self.n_embd)

# ----------------------------------------------------------------------------------------------
# The model

class NoCache:
    """Attention without a KV cache: the keys are the T new positions, the mask the model's own (KVCache: below)."""
    pos = 0
    def update(self, layer, k, v): return k, v
    def attn_mask(self, T, device): return None
    def advance(self, n): pass

NO_CACHE = NoCache()

class CausalSelfAttention(nn.Module):
    def __init__(self, config, layer, parts=None):
        super().__init__()
        self.layer, self.n_head, self.n_kv_head = layer, config.n_head, config.kv_heads
        self.head_size = hs = config.n_embd // config.n_head
        self.widths = [config.n_embd, self.n_kv_head * hs, self.n_kv_head * hs]  # q, k, v: C, C, C unless grouped
        self.c_attn = nn.Linear(config.n_embd, sum(self.widths), bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # mixes the heads' outputs
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.qk_norm, self.causal = config.qk_norm, config.mask == "causal"
        self.score, self.mask = SCORES[config.attn_score], MASKS[config.mask]  # the lab's tables, at the end
        # the path, once: the fused kernel where it computes this attention, else step by step
        step_by_step = MethodType((parts or PARTS).step_by_step, self)
        self.attend = self.fused_attention if config.fused_attention else step_by_step

    def forward(self, x, rotary=None, kv_cache=NO_CACHE):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.widths, dim=2)  # (B, T, C), (B, T, nkv * hs) twice
        # split channels into heads: each head attends in its own hs-dimensional subspace
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, nkv, T, hs)
        self.tap(q=q, k=k, v=v)
        if self.qk_norm:
            q, k = F.rms_norm(q, (self.head_size,)), F.rms_norm(k, (self.head_size,))  # each row to RMS 1
            self.tap(q_norm=q, k_norm=k)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)  # rotated by their positions
            self.tap(q_rope=q, k_rope=k)
        mask = kv_cache.attn_mask(T, x.device)  # (T, S): which keys each query may see; None: the model's own mask
        k, v = kv_cache.update(self.layer, k, v)  # (B, nkv, S, hs): the cached past and the new positions
        y = self.attend(q, k, v, mask)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)

    def fused_attention(self, q, k, v, mask):
        """step_by_step's softmax in one kernel that never stores the (T, S) weights, which makes it fast.
        Its is_causal assumes the queries start at the first key: true when S == T."""
        causal = mask is None and self.causal and q.size(2) == k.size(2)
        dropout_p = self.attn_dropout.p if self.training else 0.0  # never drop at eval (nanoGPT PR #240)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal,
                                              enable_gqa=self.n_kv_head != self.n_head)  # (B, nh, T, hs)

    def step_by_step(self, q, k, v, mask=None):
        """softmax(score(q, k) + mask) v, one step at a time. q: (B, nh, T, hs), k, v: (B, nkv, S, hs);
        mask (T, S), or None for this model's mask, the queries being the last T of the S positions."""
        k, v = repeat_kv(k, self.n_head // self.n_kv_head), repeat_kv(v, self.n_head // self.n_kv_head)
        allowed = self.mask(q.size(2), k.size(2), q.device) if mask is None else mask  # (T, S)
        scores = self.score(q, k)  # (B, nh, T, S)
        weights = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)  # exp(-inf) = 0 for hidden keys
        self.tap(scores=scores, mask=allowed, softmax=weights)  # weights: (B, nh, T, S), rows sum to 1
        y = self.attn_dropout(weights) @ v  # (B, nh, T, hs): each query's weighted sum of the values
        self.tap(out=y)
        return y

    def tap(self, **tensors):
        """Nothing: a tracer replaces it (and `attend` by step_by_step) to see these steps by name."""

def repeat_kv(x, n):
    """(B, nkv, S, hs) -> (B, nkv * n, S, hs): query head h reads key/value head h // n (a view when n is 1)."""
    B, nkv, S, hs = x.shape
    return x[:, :, None].expand(B, nkv, n, S, hs).reshape(B, nkv * n, S, hs)

class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_width, bias=config.bias)
        self.activation = ACTIVATIONS[config.activation]  # GPT-2's: GELU, tanh form (gelu_tanh, below)
        self.c_proj = nn.Linear(config.mlp_width, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.activation(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(h))  # (B, T, C)

class Block(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config, layer, parts=None):
        super().__init__()
        parts = parts or PARTS
        self.ln_1 = parts.norm(config)
        self.attn = parts.attention(config, layer, parts)
        self.ln_2 = parts.norm(config)
        self.mlp = MLPS[config.mlp](config)

    def forward(self, x, rotary=None, kv_cache=NO_CACHE):
        x = x + self.attn(self.ln_1(x), rotary, kv_cache)  # (B, T, C): the input carried past
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x

class GPT(nn.Module):
    def __init__(self, config, parts=None):
        super().__init__()
        check_config(config)
        self.config, self.parts = config, parts or PARTS
        block = self.parts.block if config.residual else NoResidualBlock  # the what-if without x + f(x)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([block(config, i, self.parts) for i in range(config.n_layer)]),
            ln_f=self.parts.norm(config),
        ))
        self.add_positions = dict(learned=self.learned, sinusoidal=self.sinusoidal, rope=self.rope,
                                  none=self.no_positions)[config.pos_encoding]
        if config.pos_encoding == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        elif config.pos_encoding == "sinusoidal":
            self.sinusoidal_encoding = SinusoidalEncoding(config.n_embd, self.parts.sinusoidal)  # no weights
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
        """idx: (B, T) token ids -> logits (B, T, vocab) and the loss if targets (B, T) are given. With a kv_cache,
        idx holds only the new positions. last_only: the last position's logits alone (all generation needs).
        label_smoothing e trains against (1 - e) on the target plus e / vocab on every token."""
        cache = kv_cache or NO_CACHE
        x = self.transformer.wte(idx)  # (B, T, C): one learned vector per token id
        x, rotary = self.add_positions(x, cache.pos)  # (B, T, C); RoPE's (cos, sin) for attention, or None
        x = self.transformer.drop(x)
        # activation checkpointing (Chen et al. 2016): keep only each Block's input for backward, which runs
        # the Block again to get the rest; dropout's random state is replayed, so the numbers are the same
        recompute = self.config.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.transformer.h:
            if recompute:
                x = torch.utils.checkpoint.checkpoint(block, x, rotary, cache, use_reentrant=False)
            else:
                x = block(x, rotary, cache)  # (B, T, C)
        cache.advance(idx.size(1))
        if last_only:
            x = x[:, [-1], :]  # (B, 1, C)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab)
        if targets is None:
            return logits, None
        return logits, self.parts.loss(logits, targets, label_smoothing)

    # the position signal, one of four chosen when the model is built: x (B, T, C), `start` positions before

    def learned(self, x, start):
        T = x.size(1)
        if not torch.is_tensor(start) and start + T > self.config.block_size:  # (a static cache's pos is a tensor)
            raise ValueError(f"learned positions stop at block_size={self.config.block_size}: there is no embedding "
                             f"for position {start + T - 1}. Feed at most the last {self.config.block_size} tokens "
                             f"(generate does), or train with pos_encoding=sinusoidal or rope, which extend further")
        return x + self.transformer.wpe(start + torch.arange(T, device=x.device)), None  # (T, C) broadcast over B

    def sinusoidal(self, x, start):
        # Vaswani et al. 3.4 scale the embeddings by sqrt(C) first: the encoding's entries are +-1,
        # and added to small token vectors (std 0.02) it would drown out which token this is
        pe = self.sinusoidal_encoding(start + torch.arange(x.size(1), device=x.device))  # (T, C)
        return x * math.sqrt(self.config.n_embd) + pe.to(x.dtype), None

    def rope(self, x, start):
        positions = start + torch.arange(x.size(1), device=x.device)  # (T,)
        return x, rotary_cos_sin(positions, self.config.n_embd // self.config.n_head, self.config.rope_theta)

    def no_positions(self, x, start):
        return x, None

    def generate(self, idx, max_new_tokens, **kwargs):
        """Return idx (B, T) extended by max_new_tokens sampled tokens (B, T + max_new_tokens); see stream."""
        return torch.cat([idx, *stream(self, idx, max_new_tokens, **kwargs)], dim=1)

    def num_params(self, non_embedding=True):
        """Parameter count; position embeddings are not counted, as nanoGPT (the tied wte is)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding and "wpe" in self.transformer else n

# ----------------------------------------------------------------------------------------------
# The pieces the model uses: positional encodings, the loss, the checks on a config

def sinusoidal_encoding(positions, dim):
    """PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i+1) = cos(pos / 10000^(2i/dim)) (Vaswani et al. 2017,
    3.5), for any position, so past block_size too. positions: (T,) integers -> (T, dim) float32."""
    two_i = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)  # (dim/2,)
    angles = positions.float()[:, None] / (10000.0 ** (two_i / dim))[None, :]  # (T, dim/2)
    pe = torch.empty(len(positions), dim, device=positions.device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe

class SinusoidalEncoding(nn.Module):
    """An encoding function as a module, so the position signal has a name in the model (and in tracing)."""

    def __init__(self, dim, encoding=sinusoidal_encoding):
        super().__init__()
        self.dim, self.encoding = dim, encoding

    def forward(self, positions):  # (T,) -> (T, dim)
        return self.encoding(positions, self.dim)

def rotary_cos_sin(positions, head_size, base=10000.0):
    """Angles pos * theta_i, theta_i = base^(-2i/hs) for i < hs/2 (RoFormer, eq. 15): (T,) -> cos, sin (T, hs/2)."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32) / head_size)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, hs/2)
    return angles.cos(), angles.sin()

def apply_rotary(x, cos, sin):
    """Rotate each pair (x[i], x[i + hs/2]) of every head x (B, nh, T, hs) by its angle. The dot product of two
    rotated vectors depends only on their distance, so RoPE encodes relative position and extends past block_size.
    (Halves as GPT-NeoX and HF Llama pair them; RoFormer pairs neighbours: docs/settings.md#ropes-channel-pairs.)"""
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, nh, T, hs)
    return rotated.type_as(x)

def make_norm(config):
    """The norm before each sublayer and at the end: GPT-2's LayerNorm, or the lab's choice (NORMS)."""
    return NORMS[config.norm](config)

def next_token_loss(logits, targets, label_smoothing=0.0):
    """The next-token loss: the average of -log p(target) over all B*T positions (target -1: none)."""
    return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1,
                           label_smoothing=label_smoothing)

def check_config(config):
    """Raise ValueError naming the first impossible setting (the command line shows it as one line)."""
    for f in dataclasses.fields(config):
        choices = get_args(f.type) if get_origin(f.type) is Literal else None
        if choices and getattr(config, f.name) not in choices:
            raise ValueError(f"{f.name}={getattr(config, f.name)!r} is not one of {', '.join(map(repr, choices))}")
    for key in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "norm_eps", "rope_theta"):
        if getattr(config, key) <= 0:
            raise ValueError(f"{key} must be positive, got {getattr(config, key)}")
    c, hs = config, config.n_embd // config.n_head
    if c.n_kv_head < 0 or c.mlp_hidden < 0:
        raise ValueError(f"n_kv_head and mlp_hidden must be positive or 0 (default), got {c.n_kv_head}, {c.mlp_hidden}")
    if c.n_embd % c.n_head:
        raise ValueError(f"n_embd={c.n_embd} is not divisible by n_head={c.n_head}; "
                         f"pick n_head among {[h for h in range(1, 17) if c.n_embd % h == 0]}")
    if c.n_head % c.kv_heads:
        divisors = [h for h in range(1, c.n_head + 1) if c.n_head % h == 0]
        raise ValueError(f"n_kv_head={c.n_kv_head} must divide n_head={c.n_head}: one of {divisors}, or 0 for n_head")
    if c.pos_encoding == "rope" and hs % 2:
        raise ValueError(f"rope needs an even head size, got n_embd/n_head = {hs}")
    if c.pos_encoding == "sinusoidal" and c.n_embd % 2:
        raise ValueError(f"sinusoidal encoding needs an even n_embd, got {c.n_embd}")
    if not 0.0 <= c.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {c.dropout}")

# ----------------------------------------------------------------------------------------------
# Generation. Keys and values of past positions never change under the causal mask, so a KV cache
# computes them once, and each new token runs only its own position through the model.

class KVCache:
    """Keys and values of every layer for max_len positions: [0, pos) have been seen, slot s holds position s.
    It stores n_kv_head heads: grouped-query attention shrinks it by n_head / n_kv_head."""

    def __init__(self, n_layer, max_len):
        self.n_layer, self.max_len = n_layer, max_len
        self.k = self.v = None  # (n_layer, B, nkv, max_len, hs), allocated on first use
        self.pos = 0

    def update(self, layer, k, v):
        """Store this layer's new k, v (B, nkv, T, hs); return the cached keys and values (B, nkv, S, hs)."""
        if self.k is None:
            B, nkv, _, hs = k.shape
            self.k = k.new_zeros(self.n_layer, B, nkv, self.max_len, hs)
            self.v = torch.zeros_like(self.k)
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def attn_mask(self, T, device):
        """Which of the S = pos + T keys the T new queries may see, (T, S); None where the causal mask needs no
        tensor: the first T positions (the fused kernel's is_causal), or one query (it sees every key)."""
        return None if self.pos == 0 or T == 1 else causal_mask(T, self.pos + T, device)

    def advance(self, n):
        self.pos += n

class Decoder:
    """A batch of contexts being extended, and the logits of each one's next token: the prompt once (prefill), then
    the newest token each step; without the cache (other masks) or past block_size, the last block_size tokens
    every step, as nanoGPT. The logits are the same (docs/sampling.md#the-kv-cache)."""

    def __init__(self, model, idx, use_cache=True):
        self.model, self.context = model, idx  # (B, T) token ids
        self.cache = self.new_cache() if use_cache and model.config.mask == "causal" else None

    def new_cache(self):  # with full(), what a decoder that slides its cache past block_size changes
        return self.model.parts.cache(self.model.config.n_layer, self.model.config.block_size)

    def full(self):
        return self.cache.pos >= self.model.config.block_size

    @torch.no_grad()
    def next_logits(self):
        """(B, vocab): the logits of the token after each context."""
        if self.cache is not None and self.full():
            self.cache = None  # recompute the window from now on
        if self.cache is not None and self.cache.pos > 0:
            new = self.context[:, -1:]  # (B, 1): one new position, the rest is cached
        else:
            new = self.context[:, -self.model.config.block_size:]  # (B, T): the prefill, or the whole window
        logits, _ = self.model(new, kv_cache=self.cache, last_only=True)
        return logits[:, -1, :]

    def append(self, tokens):
        """Extend each context by its token: tokens (B, 1)."""
        self.context = torch.cat([self.context, tokens], dim=1)

@torch.no_grad()
def stream(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True,
           vocab_limit=None, generator=None, decoder=None):
    """Yield (B, 1) next tokens one step at a time, continuing the prompts idx (B, T); the same with and without
    the cache. vocab_limit drops the padding ids past the tokenizer's vocabulary. decoder: another with
    Decoder's next_logits and append to run the steps; by default Decoder(model, idx, use_cache)."""
    decoder = decoder or Decoder(model, idx, use_cache)
    for _ in range(max_new_tokens):
        logits = decoder.next_logits()[:, :vocab_limit]  # (B, vocab)
        next_token = sample_next(logits, temperature, top_k, top_p, generator)  # (B, 1)
        decoder.append(next_token)
        yield next_token

def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Pick the next token from logits (B, vocab) -> (B, 1). temperature 0 is greedy (argmax). Otherwise
    logits/temperature, then top_k keeps the k most likely tokens and top_p the smallest set whose probability
    reaches p (nucleus sampling, Holtzman et al. 2019), and a token is drawn from what remains."""
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

@dataclass
class Parts:
    """What a GPT is built from, each read when it is built: GPT(config, parts), by default PARTS. learn.py trains
    a learner's piece in place of one (`with using_parts(norm=...)`). What each takes and returns:"""
    attention: object = CausalSelfAttention  # (config, layer, parts) -> (x (B, T, C), rotary, kv_cache) -> (B, T, C)
    step_by_step: object = CausalSelfAttention.step_by_step  # (attention, q, k, v, mask) -> (B, nh, T, hs)
    block: object = Block  # (config, layer, parts) -> (x (B, T, C), rotary, kv_cache) -> (B, T, C); residual=True
    norm: object = make_norm  # (config) -> the module before each sublayer and at the end
    sinusoidal: object = sinusoidal_encoding  # (positions (T,), dim) -> (T, dim): pos_encoding=sinusoidal's
    loss: object = next_token_loss  # (logits (B, T, V), targets (B, T), label_smoothing) -> the loss
    cache: object = KVCache  # (n_layer, max_len) -> what a Decoder fills: pos, update, attn_mask, advance

PARTS = Parts()

@contextmanager
def using_parts(owner=None, **parts):
    """Every model built inside the `with` takes these parts in place of PARTS' (how learn.py trains a learner's):
    model.py's PARTS, or those of `owner`, another model file declaring its own (transformer.py)."""
    space = vars(owner) if owner is not None else globals()
    saved = space["PARTS"]
    space["PARTS"] = dataclasses.replace(saved, **parts)
    try:
        yield
    finally:
        space["PARTS"] = saved

# ==============================================================================================
# The lab: what if attention scored, masked or normalised otherwise, or the block had no residual?
# Each table is what a GPTConfig setting picks from when the model is built, GPT-2's choice first.
# ==============================================================================================

# attn_score: (q (B, nh, T, hs), k (B, nh, S, hs)) -> scores (B, nh, T, S)
def dot(q, k): return q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # q.k / sqrt(hs)
def dot_then_square(q, k): return dot(q, k).square()  # (q.k / sqrt(hs))^2: its sign forgotten
def square_then_dot(q, k): return dot(q.square(), k.square())  # sum_i q_i^2 k_i^2 / sqrt(hs)
def neg_dot(q, k): return -dot(q, k)  # "reversed": what matches least gets the most weight

SCORES = {"dot": dot, "dot_then_square": dot_then_square, "square_then_dot": square_then_dot, "neg_dot": neg_dot}

# mask: may query t see key s? (T, S) booleans, the T queries being the last T of the S positions
def causal_mask(T, S, device): return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)  # no future
def anticausal_mask(T, S, device): return torch.ones(T, S, dtype=torch.bool, device=device).triu(S - T)  # no past
def no_mask(T, S, device): return torch.ones(T, S, dtype=torch.bool, device=device)

MASKS = {"causal": causal_mask, "none": no_mask, "anticausal": anticausal_mask}

NORMS = {
    "layernorm": lambda config: nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias),
    "rmsnorm": lambda config: nn.RMSNorm(config.n_embd, eps=config.norm_eps),
    "none": lambda config: nn.Identity(),
}

# activation, in mlp=gelu's MLP
def gelu_tanh(x): return F.gelu(x, approximate="tanh")  # GPT-2's; matching it keeps Hugging Face's logits
def relu_squared(x): return F.relu(x).square()

ACTIVATIONS = {"gelu": gelu_tanh, "gelu_exact": F.gelu, "relu2": relu_squared}

class SwiGLU(nn.Module):
    """mlp=swiglu, Llama's MLP: c_proj(silu(c_fc x) * c_fc2 x), a gate deciding per channel how much of c_fc2 x
    passes (Shazeer 2020). Hugging Face Llama calls them gate_proj (c_fc), up_proj (c_fc2), down_proj (c_proj)."""

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_width, bias=config.bias)  # the gate
        self.c_fc2 = nn.Linear(config.n_embd, config.mlp_width, bias=config.bias)  # up
        self.c_proj = nn.Linear(config.mlp_width, config.n_embd, bias=config.bias)  # down
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = F.silu(self.c_fc(x)) * self.c_fc2(x)  # (B, T, hidden)
        return self.dropout(self.c_proj(h))  # (B, T, C)

MLPS = {"gelu": MLP, "swiglu": SwiGLU}

class NoResidualBlock(Block):
    """residual=False: each sublayer sees only the one before it; nothing carries x past them."""

    def forward(self, x, rotary=None, kv_cache=NO_CACHE):
        return self.mlp(self.ln_2(self.attn(self.ln_1(x), rotary, kv_cache)))  # (B, T, C)
