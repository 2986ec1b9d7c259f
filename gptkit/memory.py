"""How much memory a model needs, before it is built: refuse what cannot fit."""

from gptkit.errors import UserError
from gptkit.system import device_memory


def estimated_params(config):
    """Parameters of the GPT a config describes, without building it: 12 C^2 per block (q, k, v and the
    output projection 4 C^2, the MLP 8 C^2), the token embedding (and a separate head), positions."""
    C = config.n_embd
    positions = config.block_size if config.pos_encoding == "learned" else 0
    return config.n_layer * 12 * C * C + (config.vocab_size * (1 if config.tie_weights else 2) + positions) * C


def check_memory(config, device):
    """Refuse, before allocating anything, a model whose weights, gradients and AdamW moments (16 bytes per
    parameter in float32) exceed the device's memory: --n_layer=100000 would otherwise allocate block
    after block until the machine runs out."""
    params, have = estimated_params(config), device_memory(device)
    if have is not None and 16 * params > have:
        raise UserError(f"a model of {params / 1e6:,.0f}M parameters needs about {16 * params / 2**30:,.0f} GiB for "
                        f"its weights, gradients and optimizer state, more than this {device}'s {have / 2**30:,.0f} "
                        f"GiB; lower n_layer or n_embd")
