# The baby GPT on one GPU, tuned for time to val 1.4697 with the modded-nanogpt speedrun's levers.
# Measured on one H100: val 1.4679 at iter 550, 31.4 s from process start (docs/performance.md).
# Trades: not GPT-2's architecture (export.py refuses it), Muon needs bf16 or fp32 (not fp16).
out_dir = 'out-shakespeare-char-fast'
dataset = 'shakespeare_char'
eval_interval = 50
eval_full_val = True
eval_iters = 5
stop_at_val_loss = 1.4697  # nanoGPT's published best: stop as soon as it is reached

batch_size = 64
block_size = 256
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.1

pos_encoding = 'rope'  # rotary positions (Su et al. 2021)
qk_norm = True  # normalise q and k before the dot product: stable at a higher learning rate
activation = 'relu2'  # ReLU squared in the MLP (So et al. 2021, Primer)
zero_init_proj = True  # every block starts as the identity

optimizer = 'muon'  # orthogonalised momentum for the hidden matrices, AdamW for the rest
learning_rate = 2e-3
min_lr = 2e-4
max_iters = 2000
lr_decay_iters = 2000
beta2 = 0.99
warmup_iters = 100

compile = False
