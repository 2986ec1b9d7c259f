# A character-level Shakespeare model for a 2-core laptop CPU: val about 1.62 after its 800 steps.
# Prepare the data first: python3 prepare.py shakespeare_char
# Small and shallow on purpose: on a CPU, time goes into matmuls, so fewer FLOPs per token wins;
# rotary positions, QK-norm, ReLU^2, zero-initialised projections and Muon let it take a high
# learning rate. Measured figures (time and loss, machine and date): docs/performance.md.
out_dir = 'out-shakespeare-char-cpu'
dataset = 'shakespeare_char'
device = 'cpu'

# Small batches, many steps: at this budget more, noisier steps beat fewer exact ones
# (800 steps of 32 x 64 tokens reach 1.62; 600 steps of 64 x 64 reached 1.77, in more time).
batch_size = 32
block_size = 64
n_layer = 3
n_head = 3
n_embd = 96
dropout = 0.0  # too small and too briefly trained to overfit
bias = False

pos_encoding = 'rope'  # rotary positions (Su et al. 2021)
qk_norm = True  # normalise q and k before the dot product: stable at a high learning rate
activation = 'relu2'  # ReLU squared (So et al. 2021)
zero_init_proj = True  # every block starts as the identity
tie_weights = False  # a separate output head: val 1.883 vs 1.958 after 250 AdamW steps of the tied model

optimizer = 'muon'  # orthogonalised momentum for the block matrices (Jordan et al. 2024), AdamW for the rest
learning_rate = 6e-3
min_lr = 6e-4
max_iters = 800
lr_decay_iters = 800
warmup_iters = 10
beta2 = 0.99

eval_interval = 100
eval_full_val = True  # the whole val split: an exact loss, no sampling noise
eval_iters = 5  # batches for the train-loss estimate
log_interval = 10
eval_sample_tokens = 200  # a sample at each evaluation (and in samples.txt): watch noise become Shakespeare
eval_sample_start = 'ROMEO:\n'
