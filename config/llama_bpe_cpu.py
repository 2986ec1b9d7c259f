# A small Llama on GPT-2's BPE tokens: the word-level lab's model (config/lab_bpe_cpu.py: 4 layers, 4 heads,
# 96 wide, the same data and steps) built as Llama is built (docs/llama.md): rotary positions, RMSNorm,
# SwiGLU, grouped-query attention, no biases.
#   python3 prepare.py shakespeare
#   python3 train.py config/llama_bpe_cpu.py
#   python3 sample.py --out_dir=out-llama-bpe --start="ROMEO:"
# The head stays tied to the embedding, as in the small Llamas (SmolLM2, Llama 3.2 1B): with a 50,304-token
# vocabulary an untied head would add 4.8 M parameters to a model of 5 M.
out_dir = 'out-llama-bpe'
dataset = 'shakespeare'
device = 'cpu'

batch_size = 8
block_size = 64
n_layer = 4
n_head = 4  # head size 24
n_kv_head = 2
n_embd = 96
pos_encoding = 'rope'
norm = 'rmsnorm'
norm_eps = 1e-5
mlp = 'swiglu'
mlp_hidden = 256  # 8/3 * 96
bias = False
tie_weights = True
dropout = 0.0

learning_rate = 2e-3
max_iters = 400
lr_decay_iters = 400
min_lr = 2e-4
beta2 = 0.99
warmup_iters = 20

eval_interval = 100
eval_iters = 10
log_interval = 10
eval_sample_tokens = 40
eval_sample_start = 'ROMEO:\n'
