"""How much memory training takes on each GPU, worked out before anything is built: the planner of
`python3 bench.py memory CONFIG --gpus=N --gpu_memory=80GB`, and train.py's refusal of a model that
cannot fit at all (check_memory). docs/memory.md has the table for GPT-2's four sizes.

Bytes per process, with P parameters, N processes, B micro-batch, T block_size, C n_embd, V vocab,
w the bytes of a computed number (2 in bfloat16 or float16, 4 in float32):

  weights      P counted on the model itself, built on the meta device (shapes, no memory).
               DDP: 4P, float32; in bfloat16 autocast also keeps a 2-byte copy of every matrix (the
               Blocks' and the head's) through the step. FSDP: 4P/N slices, + the weights gathered to
               compute with (w bytes each): the root's (embeddings, final norm, head) for the whole step,
               and 2 Blocks' at a time, or all of them with fsdp_reshard_after_forward=False.
  gradients    DDP: 4P, + 4P of all-reduce buckets with more than one process (DDP copies gradients into
               them unless gradient_as_bucket_view=True). FSDP: 4P/N slices, + whole float32 gradients:
               4P while micro-steps accumulate without syncing (gradient_accumulation_steps > N, unless
               sync_every_micro_step), else 2 Blocks' in backward.
  optimizer    AdamW's two float32 moments: 8P (8P/N under FSDP). Muon: one 4-byte momentum for the
               matrices inside the Blocks, AdamW for the rest.
  activations  kept by the forward pass for backward (Korthikanti et al. 2022, "Reducing Activation
               Recomputation in Large Transformer Models", section 4.1: 34*B*T*C bytes per Block in 16-bit,
               with a fused attention kernel that keeps no T x T scores). Here, per Block,
               B*T*C * (2*4 + 14w): the input of each LayerNorm in float32 (CUDA's autocast computes norms
               in float32), then in units of B*T*C numbers the inputs of the attention's two matmuls and of
               the MLP's first (1 + 1 + 1), q, k and v (3; 1 + 2 n_kv_head/n_head under grouped-query
               attention), the GELU's 4C-wide input and output (4 + 4; with mlp=swiglu the gate's input and
               output, the up projection and their product, 4 of mlp_hidden/C each);
               + 2 bytes of dropout masks per element when dropout > 0, + B*nh*T*T*(4 + ...) when attention
               runs step by step. Activation checkpointing keeps only each Block's input (4 bytes) and
               rebuilds one Block at a time in backward. The head keeps the final norm's and lm_head's
               inputs and 4*B*T*V of float32 log-probabilities; the start of backward needs 8*B*T*V more
               (their gradient and the logits'), the peak of most small models.

What is checked (tests/test_fsdp.py): weights, gradients and optimizer state against the bytes torch
allocates, one process and each of two FSDP processes, within 1-3%; the activations a forward pass keeps
against the CPU allocator's count, float32 and bfloat16, within 3%, GPT-2's blocks and grouped-query
attention with SwiGLU (in float32; in bfloat16 autocast on the CPU SwiGLU keeps about 5% more). Not counted
yet: what rmsnorm, rope and qk_norm keep on top (on the CPU, 8 to 15 more bytes per B*T*C in each Block).
Not checked here, a model until a GPU measures it: the peaks of backward, the GPU kernels' own choices (which attention kernel, what it keeps),
the allocator's fragmentation and CUDA's and NCCL's buffers; fits() plans on 90% of a GPU's memory.
"""
import math
from dataclasses import astuple, dataclass, replace
from functools import lru_cache

import torch

from gptkit.checkpoint import new_model
from gptkit.errors import UserError
from gptkit.system import device_memory, pick_dtype
from model import GPTConfig

USABLE = 0.9  # of a GPU's memory: the rest for the CUDA context, NCCL and the allocator's fragmentation


@dataclass(frozen=True)
class Counts:
    block: int  # the parameters of one Block (of the encoder-decoder: one encoder layer and one decoder layer)
    block_matrices: int  # of them, in 2-D weights (what Muon optimises)
    root: int  # everything outside the Blocks: the token embedding (and a separate head), positions, final norm


def param_counts(config):
    """Counts for the model a config describes (a GPTConfig, or transformer.py's TransformerConfig), from the
    model itself built on the meta device with one layer (every layer has the same parameters): no memory, and
    a millisecond whatever the model's size. A matrix shared by several modules (tied or shared embeddings)
    counts once."""
    return _counts(type(config), tuple(astuple(replace(config, n_layer=1))))


@lru_cache(maxsize=64)
def _counts(settings, one_layer):  # the settings' class and their fields as a tuple (a dataclass is not hashable)
    with torch.device("meta"):
        model = new_model(settings(*one_layer))
    layers = [model.transformer.h[0]] if settings is GPTConfig else [model.encoder[0], model.decoder[0]]
    block = [p for layer in layers for p in layer.parameters()]
    n_block = sum(p.numel() for p in block)
    return Counts(n_block, sum(p.numel() for p in block if p.dim() == 2),
                  sum(p.numel() for p in model.parameters()) - n_block)


def block_params(config):
    return param_counts(config).block


def root_params(config):
    return param_counts(config).root


def estimated_params(config):
    """Parameters of the model a config describes, without allocating it: exactly GPT(config).num_params(False),
    or Transformer(config).num_params()."""
    return config.n_layer * block_params(config) + root_params(config)


@dataclass
class Plan:
    """Bytes per process for one configuration, activations at micro-batch `batch_size`."""

    weights: int  # the float32 weights this process keeps (all of them, or its slices under FSDP)
    weight_copies: int  # computed with: autocast's bfloat16 copies (DDP), the gathered weights (FSDP)
    gradients: int  # float32, as the weights
    gradient_buffers: int  # DDP's all-reduce buckets; FSDP's whole gradients in backward and while accumulating
    optimizer: int
    activations: int  # kept by the forward pass for backward
    activation_peak: int  # needed on top of them at the worst moment of backward
    batch_size: int
    per_sequence: int  # activations + activation_peak of each sequence in the micro-batch

    @property
    def state(self):
        """What does not grow with the micro-batch: weights, gradients, optimizer state and their buffers."""
        return self.weights + self.weight_copies + self.gradients + self.gradient_buffers + self.optimizer

    @property
    def total(self):
        return self.state + self.activations + self.activation_peak

    def fits(self, gpu_memory):
        return self.total <= USABLE * gpu_memory

    def largest_batch(self, gpu_memory):
        """The largest micro-batch that fits in gpu_memory (0: not even one sequence)."""
        return max(0, math.floor((USABLE * gpu_memory - self.state) / self.per_sequence))


def compute_bytes(dtype):
    """Bytes of each computed number for the dtype setting; auto plans for a GPU, so bfloat16."""
    return 4 if dtype == "float32" else 2


def activation_bytes(config, batch_size, w, checkpointing=None):
    """(kept for backward, the peak on top of it) in bytes for a micro-batch, as the module docstring
    says; w: the bytes of a computed number."""
    checkpointing = config.activation_checkpointing if checkpointing is None else checkpointing
    B, T, C, V = batch_size, config.block_size, config.n_embd, config.vocab_size
    qkv = C + 2 * config.kv_heads * (C // config.n_head)  # q, k and v (3C without grouped-query attention)
    mlp = (4 if config.mlp == "swiglu" else 2) * config.mlp_width  # the activation's inputs and outputs
    per_block = B * T * (C * (2 * 4 + (2 if config.dropout > 0 else 0)) + w * (3 * C + qkv + mlp))
    if not config.fused_attention:  # the T x T scores, softmaxed in float32; dropped weights and masks
        per_block += B * config.n_head * T * T * (4 + (1 + w if config.dropout > 0 else 0))
    blocks = config.n_layer * (B * T * C * 4 if checkpointing else per_block)
    head = B * T * C * (4 + w) + 4 * B * T * V + 16 * B * T  # ln_f and lm_head inputs, log-probs, token ids
    peak = max(8 * B * T * V, per_block if checkpointing else 0)
    return blocks + head, peak


def plan_memory(config, cfg, gpus=1, parallel="ddp", checkpointing=None):
    """The Plan of one process among `gpus` for a GPTConfig and a TrainConfig (batch_size, dtype,
    optimizer, gradient_accumulation_steps, sync_every_micro_step, fsdp_reshard_after_forward), under DDP
    or FSDP."""
    P, N, L = estimated_params(config), gpus, config.n_layer
    w = compute_bytes(cfg.dtype)
    hidden = L * param_counts(config).block_matrices  # the matrices inside the Blocks: Muon's
    optimizer = 8 * P if cfg.optimizer == "adamw" else 4 * hidden + 8 * (P - hidden)
    if parallel == "fsdp":
        gathered = min(L, 2 if cfg.fsdp_reshard_after_forward else L)
        weights, weight_copies = 4 * P // N, w * (root_params(config) + gathered * block_params(config))
        # micro-steps without a sync add up whole gradients
        accumulating = cfg.gradient_accumulation_steps > N and not cfg.sync_every_micro_step
        gradients, gradient_buffers = 4 * P // N, 4 * P if accumulating else 8 * block_params(config)
        optimizer //= N
    else:  # autocast's bfloat16 copies of the matrices: the Blocks' and the head's (tied or not)
        weights, weight_copies = 4 * P, 2 * (hidden + config.vocab_size * config.n_embd) if w == 2 else 0
        gradients, gradient_buffers = 4 * P, 4 * P if N > 1 else 0
    kept, peak = activation_bytes(config, cfg.batch_size, w, checkpointing)
    one_kept, one_peak = activation_bytes(config, 1, w, checkpointing)
    return Plan(weights, weight_copies, gradients, gradient_buffers, optimizer, kept, peak, cfg.batch_size,
                one_kept + one_peak)


def check_memory(config, cfg, device, gpus=1):
    """Refuse, before allocating anything, a model whose weights, gradients and optimizer state (the
    planner's, for one process of this run) exceed the device's memory: --n_layer=100000 would otherwise
    allocate block after block until the machine runs out. cfg: the TrainConfig."""
    have = device_memory(device)
    cfg = replace(cfg, dtype=str(pick_dtype(cfg.dtype, device)).removeprefix("torch."))  # auto as train.py resolves it
    need = plan_memory(config, cfg, gpus, cfg.parallel).state
    if have is not None and need > have:
        raise UserError(f"a model of {estimated_params(config) / 1e6:,.0f}M parameters needs about {need / 2**30:,.0f} "
                        f"GiB for its weights, gradients and optimizer state, more than this {device}'s "
                        f"{have / 2**30:,.0f} GiB; lower n_layer or n_embd (python3 bench.py memory plans it)")


def kv_cache_bytes_per_token(config, w=4):
    """Bytes the KV cache keeps per token of context: a key and a value of every layer's n_kv_head heads,
    2 * n_layer * n_kv_head * hs numbers of w bytes (4 in float32). Grouped-query attention divides it by
    n_head / n_kv_head (model.KVCache stores the n_kv_head heads, not the repeated ones). For the encoder-
    decoder (TransformerConfig): its decoder's self-attention cache per target token, every head; decoding
    also keeps each decoder layer's cross-attention keys and values of the source, as many bytes again per
    source token (transformer.TranslationCache)."""
    heads = config.kv_heads if isinstance(config, GPTConfig) else config.n_head
    return 2 * config.n_layer * heads * (config.n_embd // config.n_head) * w
