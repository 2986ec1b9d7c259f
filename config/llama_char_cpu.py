# A small Llama for the char-level lab: the lab's baseline (config/lab_char_cpu.py: 4 layers, 4 heads,
# 128 wide, the same data, steps and learning rate) built as Llama is built (docs/llama.md):
# rotary positions, RMSNorm, a SwiGLU MLP, grouped-query attention, no biases, an untied head.
#   python3 prepare.py shakespeare_char
#   python3 train.py config/llama_char_cpu.py
#   python3 sample.py --out_dir=out-llama-char --start="ROMEO:"
#   python3 export.py --out_dir=out-llama-char --to=hf llama-char   # a LlamaForCausalLM directory
out_dir = 'out-llama-char'
dataset = 'shakespeare_char'
device = 'cpu'

batch_size = 32
block_size = 64
n_layer = 4
n_head = 4  # head size 32
n_kv_head = 2  # grouped-query attention: each key/value head serves two query heads; the KV cache is halved
n_embd = 128
pos_encoding = 'rope'
rope_theta = 10000.0  # Llama 2's base (Llama 3: 500000, for its long contexts)
norm = 'rmsnorm'
norm_eps = 1e-5  # Llama 2's rms_norm_eps
mlp = 'swiglu'
mlp_hidden = 341  # 8/3 * 128: SwiGLU's three matrices then hold what GPT-2's two 4 * n_embd ones do
bias = False
tie_weights = False
dropout = 0.0

learning_rate = 2e-3
max_iters = 300
lr_decay_iters = 300
min_lr = 2e-4
beta2 = 0.99
warmup_iters = 20

eval_interval = 50
eval_full_val = True
eval_iters = 5
log_interval = 10
