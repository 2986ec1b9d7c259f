# The CPU recipe tuned for one thing: time to nanoGPT's CPU result (val 1.886) on a 2-core laptop.
# Measured on a 2-core AMD EPYC (torch 2.13 CPU): see docs/performance.md. nanoGPT takes 131 s there.
# Prepare the data first: python3 prepare.py shakespeare_char
# Trades: evaluates once, at the end (no curve to watch); not GPT-2's architecture (export.py refuses it);
# for better samples train config/shakespeare_char_cpu.py, which runs longer.
out_dir = 'out-shakespeare-char-cpu-fast'
dataset = 'shakespeare_char'
device = 'cpu'

# Small batches: at this budget more, noisier steps beat fewer exact ones (180 steps of 32 x 64
# tokens reach val 1.85-1.86; 100 steps of 64 x 64, in more time, 1.90-1.92).
batch_size = 32
block_size = 64
n_layer = 3
n_head = 3
n_embd = 96
dropout = 0.0
bias = False

pos_encoding = 'rope'  # rotary positions (Su et al. 2021)
qk_norm = True  # normalise q and k before the dot product: stable at a high learning rate
activation = 'relu2'  # ReLU squared (So et al. 2021); GELU: val 1.918 vs 1.867 (300 steps of 16 x 64)
zero_init_proj = True  # every block starts as the identity
tie_weights = False  # a separate output head: val 1.883 vs 1.958 after 250 AdamW steps of the tied model

optimizer = 'muon'  # orthogonalised momentum for the block matrices (Jordan et al. 2024), AdamW for the rest
learning_rate = 6e-3
min_lr = 6e-4
max_iters = 180  # val 1.851, 1.864, 1.860 for seeds 1337, 1, 2; 160 steps end at 1.894
lr_decay_iters = 180
warmup_iters = 10
beta2 = 0.99

eval_interval = 180  # once, at the end: each evaluation of the whole val split costs ~2 s here
eval_first = False
eval_full_val = True  # the whole val split: an exact loss
eval_iters = 5  # batches for the train-loss estimate
log_interval = 10
