# GPT-2 (124M) on OpenWebText, on one node of 8 GPUs: nanoGPT's config/train_gpt2.py, its published
# baseline (val loss ~2.85 after 600k iterations, about 4 days on 8x A100 40GB, by nanoGPT's README).
# We have not run it end to end (docs/memory.md); its tiny-size test is tests/test_recipes.py.
# Prepare the data first: python3 prepare.py openwebtext   (or fineweb_edu, with --dataset=fineweb_edu)
#   torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py
# Whether it fits your GPUs, and what --parallel=fsdp or --activation_checkpointing=True would change:
#   python3 bench.py memory config/train_gpt2.py --gpus=8 --gpu_memory=24GB
out_dir = 'out-gpt2'
dataset = 'openwebtext'

# the model: GPT-2 small, without biases as nanoGPT trains it
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False

# 12 batch size * 1024 block size * 5 gradaccum * 8 GPUs = 491,520 tokens per iteration (~0.5M, as GPT-2)
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8  # all 8 GPUs together: each process takes 5 of the 40 micro-batches

# 600,000 iterations of 491,520 tokens: 295B tokens
max_iters = 600000
lr_decay_iters = 600000
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 2000
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

eval_interval = 1000
eval_iters = 200
log_interval = 10
compile = True

wandb_log = False  # nanoGPT's logs to W&B: set True (pip install wandb)
wandb_project = 'owt'
wandb_run_name = 'gpt2-124M'
