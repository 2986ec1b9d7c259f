# A character-level Shakespeare model that trains on a 2-core laptop CPU in a few minutes.
# Prepare the data first: python prepare.py shakespeare_char
out_dir = 'out-shakespeare-char-cpu'
dataset = 'shakespeare_char'
device = 'cpu'

batch_size = 12
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0  # too small and too briefly trained to overfit

learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

eval_interval = 250
eval_iters = 20
log_interval = 10
