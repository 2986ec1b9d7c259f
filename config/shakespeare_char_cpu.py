# A character-level Shakespeare model for a 2-core laptop CPU: val below 1.90 in about two minutes.
# Prepare the data first: python prepare.py shakespeare_char
# Small and shallow on purpose: on a CPU, time goes into matmuls, so fewer FLOPs per token wins;
# rotary positions, QK-norm, ReLU^2 and zero-initialised projections let it take a high learning rate.
out_dir = 'out-shakespeare-char-cpu'
dataset = 'shakespeare_char'
device = 'cpu'

batch_size = 64
block_size = 64
n_layer = 3
n_head = 3
n_embd = 96
dropout = 0.0  # too small and too briefly trained to overfit
bias = False

pos_encoding = 'rope'
qk_norm = True
activation = 'relu2'
zero_init_proj = True

learning_rate = 6e-3
max_iters = 600
lr_decay_iters = 600
min_lr = 6e-4
beta2 = 0.99
warmup_iters = 20

eval_interval = 50
eval_full_val = True  # the whole val split: an exact loss, no sampling noise
eval_iters = 5  # batches for the train-loss estimate
log_interval = 10
