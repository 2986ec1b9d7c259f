# The baby GPT on character-level Tiny Shakespeare, for one GPU (nanoGPT's train_shakespeare_char.py).
# Prepare the data first: python3 prepare.py shakespeare_char
# Measured on one H100: val 1.4667 at iter 1500, 38.9 s from process start, without the samples
# (--eval_sample_tokens=0; docs/performance.md).
out_dir = 'out-shakespeare-char'
dataset = 'shakespeare_char'
eval_interval = 50  # cheap on a GPU, and the run stops being useful soon after the best val (it overfits)
eval_full_val = True  # one exact pass over the 111k val characters instead of 200 random batches
eval_iters = 5  # batches for the train-loss estimate
log_interval = 10
eval_sample_tokens = 200  # a sample at each evaluation (and in samples.txt): watch noise become Shakespeare
eval_sample_start = 'ROMEO:\n'

batch_size = 64
block_size = 256  # context of up to 256 previous characters

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
bias = False  # as nanoGPT's train.py default; slightly better and faster here

learning_rate = 1e-3  # a baby network can take a higher learning rate
max_iters = 2000  # best val comes near iter 1500; the rest overfits (best.pt keeps the best)
lr_decay_iters = 2000  # usually max_iters
min_lr = 1e-4  # learning_rate / 10
beta2 = 0.99  # a bit higher than GPT-2's 0.95: few tokens per iteration
warmup_iters = 100

compile = False  # compiling costs ~15 s at start-up, more than it saves in a run this short
