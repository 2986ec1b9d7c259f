"""The Transformer of "Attention Is All You Need" (Vaswani et al. 2017): an encoder-decoder that translates.

model.py is the decoder-only half (the GPT). This file is the whole model of the paper, built from
model.py's own pieces (MLP, the norms, the sinusoidal encoding, causal self-attention), adding only
what is new: the encoder's self-attention, which sees the whole source; cross-attention, whose queries
come from the decoder and whose keys and values come from the encoder; and padding masks, so that
sentences of different lengths share a batch.

Follow one pair of sentences through it:
  source ids (B, S) -> embedding * sqrt(C) + sinusoidal positions
  -> n_layer EncoderLayers [self-attention over every source token (no causal mask), MLP]
  -> memory (B, S, C): one vector per source token, computed once per sentence.
  target ids (B, T), starting with BOS -> embedding * sqrt(C) + sinusoidal positions
  -> n_layer DecoderLayers [causal self-attention, cross-attention into memory, MLP]
  -> logits (B, T, vocab): at each target position, the next target token.
How does each output word know which input words to look at? Cross-attention: target position t
asks with its query, every source token answers with its key, and the softmax of their dot products
weighs the source tokens' values (visualize.py attention draws those weights).

Shapes: B batch, S source length, T target length, C = n_embd, nh = n_head, hs = C // nh.
Padding: source rows are padded with pad_id at the end; `allowed` (B, 1, 1, S) is True for real source
tokens, and every attention into the source hides the rest (a padded sentence then translates exactly
as it does alone). Target padding needs no mask: the causal mask already hides positions after t, and
the padded positions' targets are -1, which the loss ignores.

The settings are TransformerConfig; the paper's base model is n_layer=6, n_head=8, n_embd=512,
dropout=0.1, post-LN, shared embeddings (its FFN's ReLU is model.py's activation setting).
"""

import math
import sys
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import MLP, NO_CACHE, CausalSelfAttention, GPTConfig, KVCache, SinusoidalEncoding, make_norm
from model import using_parts as using_model_parts


@dataclass
class TransformerConfig:
    block_size: int = 128  # positions: the longest source, and the longest target with its BOS or EOS
    vocab_size: int = 512  # one vocabulary for source and target, special tokens included (set from the dataset)
    n_layer: int = 6  # layers in the encoder, and as many in the decoder (the paper's N)
    n_head: int = 8  # attention heads (the paper's h)
    n_embd: int = 512  # channels (the paper's d_model)
    dropout: float = 0.1  # on each sublayer's output, the attention weights and the embeddings (P_drop)
    bias: bool = True  # biases in Linear layers and norms
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"  # the paper's LayerNorm, or RMSNorm
    # post: LayerNorm(x + Sublayer(x)), the paper's (section 3.1); pre: x + Sublayer(LayerNorm(x)), GPT-2's,
    # which keeps the residual path unnormalised and trains without a long warmup (Xiong et al. 2020)
    norm_position: Literal["post", "pre"] = "post"
    activation: Literal["gelu", "gelu_exact", "relu2"] = "gelu"  # the MLP's nonlinearity (model.py's MLP)
    # one matrix for the source embedding, the target embedding and the output layer (section 3.4)
    shared_embeddings: bool = True
    # the special tokens' ids (prepare.py puts them after the tokenizer's own; set from the dataset)
    pad_id: int = 509  # fills a short sentence up to the batch's longest
    bos_id: int = 510  # the decoder's first input: "begin the translation"
    eos_id: int = 511  # the decoder's last output: "the translation is done"

    sees_the_future = False  # the decoder's self-attention is always causal (model.py's GPTConfig asks)

    def validate(self):
        check_config(self)

    def parts(self):
        """The GPTConfig that model.py's pieces (MLP, norms, causal self-attention) are built from."""
        return GPTConfig(block_size=self.block_size, vocab_size=self.vocab_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout, bias=self.bias,
                         norm=self.norm, activation=self.activation, pos_encoding="sinusoidal", mask="causal")


def check_config(config):
    """Raise ValueError naming the first impossible setting."""
    config.parts().validate()  # the settings the pieces share with the GPT, checked as model.py checks them
    if config.norm_position not in ("post", "pre"):
        raise ValueError(f"norm_position={config.norm_position!r} is not one of 'post', 'pre'")
    for key in ("pad_id", "bos_id", "eos_id"):
        if not 0 <= getattr(config, key) < config.vocab_size:
            raise ValueError(f"{key}={getattr(config, key)} is outside the vocabulary of {config.vocab_size}")


# ----------------------------------------------------------------------------------------------
# What is new: attention between two sequences, under a padding mask


class Attention(nn.Module):
    """Multi-head attention of x's queries over the keys and values of a source sequence, hiding padding.

    Encoder self-attention: the source is x itself, and nothing but padding is hidden (no causal mask:
    the whole sentence is there to read). Cross-attention: the queries come from the decoder, the keys
    and values from the encoder's output (keys_values(memory), computed once per sentence).
    """

    def __init__(self, config):
        super().__init__()
        self.n_embd, self.n_head, self.head_size = config.n_embd, config.n_head, config.n_embd // config.n_head
        self.c_q = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # queries, from x
        self.c_kv = nn.Linear(config.n_embd, 2 * config.n_embd, bias=config.bias)  # keys and values, from the source
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # mixes the heads' outputs
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.attend = self.fused_attention  # a tracer swaps in step_by_step, to see the weights

    def heads(self, x):
        """(B, L, C) -> (B, nh, L, hs): each head attends in its own hs-dimensional subspace."""
        B, L, C = x.size()
        return x.view(B, L, self.n_head, self.head_size).transpose(1, 2)

    def keys_values(self, source):
        """The keys and values of a source sequence (B, S, C): (B, nh, S, hs) each."""
        k, v = self.c_kv(source).split(self.n_embd, dim=2)  # (B, S, C) each
        return self.heads(k), self.heads(v)

    def forward(self, x, allowed, kv=None):
        """x: (B, T, C), the sequence asking. allowed: (B, 1, 1, S), True where key s is a real token.
        kv: the keys and values (B, nh, S, hs) of another sequence (cross-attention); None: x's own."""
        B, T, C = x.size()
        q = self.heads(self.c_q(x))  # (B, nh, T, hs)
        k, v = kv if kv is not None else self.keys_values(x)  # (B, nh, S, hs) each
        self.tap(q=q, k=k, v=v)
        y = self.attend(q, k, v, allowed)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)

    def fused_attention(self, q, k, v, allowed):
        """step_by_step's softmax in one kernel that never stores the (T, S) weights."""
        dropout_p = self.attn_dropout.p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)  # (B, nh, T, hs)

    def step_by_step(self, q, k, v, allowed):
        """softmax(q k^T / sqrt(hs), padded keys hidden) v. q: (B, nh, T, hs); k, v: (B, nh, S, hs)."""
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_size)  # (B, nh, T, S)
        # the padding mask hides keys (the last axis): no query reads a padded source position
        weights = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)  # (B, nh, T, S), rows sum to 1
        self.tap(scores=scores, mask=allowed, softmax=weights)
        return self.attn_dropout(weights) @ v  # (B, nh, T, hs): each query's weighted sum of the source's values

    def tap(self, **tensors):
        """Nothing: a tracer replaces it (and `attend` by step_by_step) to see these steps by name."""


# ----------------------------------------------------------------------------------------------
# The layers: each sublayer inside a residual connection with its norm after it (the paper) or before


class PostNorm(nn.Module):
    """LayerNorm(x + Sublayer(x)): the paper's residual connection (section 3.1)."""

    def __init__(self, config, sublayer):
        super().__init__()
        self.sublayer, self.norm = sublayer, make_norm(config)

    def forward(self, x, *args):
        return self.norm(x + self.sublayer(x, *args))  # (B, L, C)


class PreNorm(nn.Module):
    """x + Sublayer(LayerNorm(x)): GPT-2's; the residual path is never normalised."""

    def __init__(self, config, sublayer):
        super().__init__()
        self.sublayer, self.norm = sublayer, make_norm(config)

    def forward(self, x, *args):
        return x + self.sublayer(self.norm(x), *args)  # (B, L, C)


RESIDUALS = {"post": PostNorm, "pre": PreNorm}


class EncoderLayer(nn.Module):
    def __init__(self, config, parts):
        super().__init__()
        gpt, residual = config.parts(), RESIDUALS[config.norm_position]
        self.attn = residual(gpt, parts.attention(gpt))
        self.mlp = residual(gpt, MLP(gpt))

    def forward(self, x, allowed):
        x = self.attn(x, allowed)  # (B, S, C): every source token reads every other (but padding)
        return self.mlp(x)  # (B, S, C)


class DecoderLayer(nn.Module):
    def __init__(self, config, layer, parts):
        super().__init__()
        gpt, residual = config.parts(), RESIDUALS[config.norm_position]
        self.self_attn = residual(gpt, CausalSelfAttention(gpt, layer))  # model.py's, KV cache and all
        self.cross_attn = residual(gpt, parts.attention(gpt))
        self.mlp = residual(gpt, MLP(gpt))

    def forward(self, x, allowed, memory_kv, kv_cache=NO_CACHE):
        x = self.self_attn(x, None, kv_cache)  # (B, T, C): the target so far, causally (no rotary positions)
        x = self.cross_attn(x, allowed, memory_kv)  # (B, T, C): queries from the target, keys/values from the source
        return self.mlp(x)  # (B, T, C)


# ----------------------------------------------------------------------------------------------
# The model


@dataclass
class Parts:
    """What a Transformer is built from, read when it is built: Transformer(config, parts), by default PARTS.
    learn.py trains a learner's piece in place of one (`with using_parts(attention=...)`)."""
    # (config.parts()) -> the encoder's self-attention and each decoder layer's cross-attention: forward(x (B, T, C),
    # allowed (B, 1, 1, S), kv=None) -> (B, T, C); keys_values(source (B, S, C)) -> a tuple of (B, ...) tensors, the
    # kv that forward reads
    attention: object = Attention


PARTS = Parts()


def using_parts(**parts):
    """Every Transformer built inside the `with` takes these parts in place of PARTS' (model.using_parts)."""
    return using_model_parts(sys.modules[__name__], **parts)


class Transformer(nn.Module):
    def __init__(self, config, parts=None):
        super().__init__()
        check_config(config)
        self.config, parts = config, parts or PARTS
        self.src_embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.tgt_embed = self.src_embed if config.shared_embeddings else nn.Embedding(config.vocab_size, config.n_embd)
        self.sinusoidal = SinusoidalEncoding(config.n_embd)  # no weights: a formula
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList([EncoderLayer(config, parts) for _ in range(config.n_layer)])
        self.decoder = nn.ModuleList([DecoderLayer(config, i, parts) for i in range(config.n_layer)])
        # pre-LN leaves each stack's output unnormalised: one more norm at its end (GPT-2's ln_f); post-LN's
        # last sublayer has normalised it already
        final_norm = (lambda: make_norm(config.parts())) if config.norm_position == "pre" else nn.Identity
        self.encoder_ln, self.decoder_ln = final_norm(), final_norm()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.shared_embeddings:  # section 3.4: the output layer is the embedding matrix too
            self.lm_head.weight = self.src_embed.weight

    def _init_weights(self, module):
        # fairseq's Transformer: Xavier for the projections, N(0, C^-1/2) for embeddings, so that the
        # embedding times sqrt(C) has entries of size 1, as the sinusoidal encoding's are
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.n_embd ** -0.5)

    def embed(self, table, ids, start=0):
        """Token ids (B, L) -> (B, L, C): the embedding scaled by sqrt(C), plus the position's sinusoid (3.4, 3.5)."""
        positions = start + torch.arange(ids.size(1), device=ids.device)  # (L,)
        x = table(ids) * math.sqrt(self.config.n_embd) + self.sinusoidal(positions).to(table.weight.dtype)
        return self.drop(x)  # (B, L, C)

    def source_mask(self, src):
        """(B, S) source ids -> allowed (B, 1, 1, S): True for real tokens, False for padding; broadcast over
        heads and queries, it hides padded keys from every query."""
        return (src != self.config.pad_id)[:, None, None, :]

    def encode(self, src):
        """Source ids (B, S) -> memory (B, S, C) and the padding mask (B, 1, 1, S)."""
        allowed = self.source_mask(src)
        x = self.embed(self.src_embed, src)  # (B, S, C)
        for layer in self.encoder:
            x = layer(x, allowed)  # (B, S, C)
        return self.encoder_ln(x), allowed

    def memory_keys_values(self, memory):
        """Each decoder layer's cross-attention keys and values of the memory: [(B, nh, S, hs) x 2] per layer.
        They depend on the source alone, so decoding computes them once per sentence (TranslationCache)."""
        return [layer.cross_attn.sublayer.keys_values(memory) for layer in self.decoder]

    def decode(self, tgt, allowed, memory_kv, kv_cache=NO_CACHE):
        """Target ids (B, T) -> (B, T, C). With a KVCache, tgt holds only the positions after its pos."""
        x = self.embed(self.tgt_embed, tgt, kv_cache.pos)  # (B, T, C)
        for layer, kv in zip(self.decoder, memory_kv):
            x = layer(x, allowed, kv, kv_cache)  # (B, T, C)
        kv_cache.advance(tgt.size(1))
        return self.decoder_ln(x)

    def forward(self, src, tgt, targets=None, cache=None, label_smoothing=0.0):
        """src (B, S), tgt (B, T) token ids -> logits (B, T, vocab), and the loss if targets (B, T) are given
        (-1 where there is nothing to predict: padding). tgt starts with BOS; targets is tgt shifted left, EOS last.

        With a cache (TranslationCache), src was encoded when it was made and tgt holds only the new positions.
        """
        if cache is None:
            memory, allowed = self.encode(src)  # (B, S, C), (B, 1, 1, S)
            x = self.decode(tgt, allowed, self.memory_keys_values(memory))  # (B, T, C)
        else:
            x = self.decode(tgt, cache.allowed, cache.memory_kv, cache.kv_cache)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1,
                               label_smoothing=label_smoothing)
        return logits, loss

    def num_params(self):
        """Parameters, each counted once (the shared embedding too)."""
        return sum(p.numel() for p in self.parameters())



# ----------------------------------------------------------------------------------------------
# Translating: the decoder writes one token at a time, from BOS until EOS


class TranslationCache:
    """What decoding token by token reuses: the source's padding mask, each decoder layer's cross-attention
    keys and values of the encoder's output (the source is encoded once), and the decoder's own keys and
    values (model.py's KVCache: under the causal mask, earlier target positions never change)."""

    def __init__(self, model, src):
        memory, self.allowed = model.encode(src)  # (B, S, C), (B, 1, 1, S)
        self.memory_kv = model.memory_keys_values(memory)
        self.kv_cache = KVCache(model.config.n_layer, model.config.block_size)

    def keep(self, rows):
        """Keep the sentences `rows` (B',), in that order (beam search follows its beams)."""
        self.allowed = self.allowed[rows]
        self.memory_kv = [tuple(t[rows] for t in kv) for kv in self.memory_kv]  # Attention's (k, v), each (B, ...)
        if self.kv_cache.k is not None:  # (n_layer, B, nh, max_len, hs) each
            self.kv_cache.k, self.kv_cache.v = self.kv_cache.k[:, rows], self.kv_cache.v[:, rows]


class TranslationDecoder:
    """model.Decoder's interface for translations, so model.stream and gptkit/decode.py's beam_search drive
    it: context (B, t) is the target so far, from BOS; next_logits() the logits of its next token.

    Without the cache, each step runs the whole model on the source and the whole target so far; with it,
    only the newest target token runs through the decoder. The logits are the same.
    """

    def __init__(self, model, src, use_cache=True):
        self.model, self.src = model, src  # (B, S) source ids
        self.context = torch.full((src.size(0), 1), model.config.bos_id, dtype=torch.long, device=src.device)
        self.cache = TranslationCache(model, src) if use_cache else None
        self.fed = 0  # target positions the cache holds

    @torch.no_grad()
    def next_logits(self):
        """(B, vocab): the logits of the token after each target so far."""
        if self.context.size(1) > self.model.config.block_size:
            raise ValueError(f"a translation longer than block_size={self.model.config.block_size} positions")
        if self.cache is None:
            logits, _ = self.model(self.src, self.context)
        else:
            logits, _ = self.model(None, self.context[:, self.fed:], cache=self.cache)
            self.fed = self.context.size(1)
        logits = logits[:, -1, :]  # (B, vocab)
        logits[:, [self.model.config.pad_id, self.model.config.bos_id]] = float("-inf")  # never written
        return logits

    def append(self, tokens):
        """Extend each target by its token: tokens (B, 1)."""
        self.context = torch.cat([self.context, tokens], dim=1)

    def keep(self, rows):
        self.context, self.src = self.context[rows], self.src[rows]
        if self.cache is not None:
            self.cache.keep(rows)


def until_eos(ids, eos_id):
    """A decoded target's ids up to (not including) its first EOS."""
    return ids[:ids.index(eos_id)] if eos_id in ids else ids


@torch.no_grad()
def translate(model, src, max_new_tokens=None, use_cache=True):
    """Greedy translations of a batch of padded sources (B, S): each row's target ids, without BOS and EOS.
    Each step takes the most likely token; a row is done at its EOS, the batch when every row is."""
    decoder = TranslationDecoder(model, src, use_cache)
    for _ in range(max_new_tokens or model.config.block_size - 1):
        decoder.append(decoder.next_logits().argmax(dim=-1, keepdim=True))  # (B, 1)
        if (decoder.context == model.config.eos_id).any(dim=1).all():
            break
    return [until_eos(row[1:], model.config.eos_id) for row in decoder.context.tolist()]
