# The baby GPT on character-level Tiny Shakespeare, for one GPU (nanoGPT's train_shakespeare_char.py).
# Prepare the data first: python prepare.py shakespeare_char
out_dir = 'out-shakespeare-char'
dataset = 'shakespeare_char'
eval_interval = 250  # the small model overfits: keep an eye on val (best.pt keeps the best)
eval_iters = 200
log_interval = 10

batch_size = 64
block_size = 256  # context of up to 256 previous characters

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3  # a baby network can take a higher learning rate
max_iters = 5000
lr_decay_iters = 5000  # usually max_iters
min_lr = 1e-4  # learning_rate / 10
beta2 = 0.99  # a bit higher than GPT-2's 0.95: few tokens per iteration
warmup_iters = 100

compile = True
