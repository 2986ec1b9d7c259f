# Tiny Shakespeare with GPT-2's BPE tokenizer (50257 tokens), a small model trained from scratch.
# Prepare the data first: python3 prepare.py shakespeare
out_dir = 'out-shakespeare'
dataset = 'shakespeare'

batch_size = 32
block_size = 256
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 6e-4
max_iters = 2000
lr_decay_iters = 2000
min_lr = 6e-5
warmup_iters = 100

eval_interval = 200
eval_iters = 50
log_interval = 10
compile = True
