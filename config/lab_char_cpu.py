# The experiment lab's baseline: a small GPT-2 (learned positions, GELU, LayerNorm, biases) on
# character-level Shakespeare, sized for a 2-core CPU (one run's measured time: docs/experiments.md).
# Every sweep changes one setting from here: python3 experiment.py config/lab_char_cpu.py --vary=KEY=v1,v2
# Prepare the data first: python3 prepare.py shakespeare_char
# The architecture keys (pos_encoding, qk_norm, activation, zero_init_proj, bias) are left at the
# GPT-2 defaults on purpose: the lab asks "what if GPT-2 did X instead", so the baseline is GPT-2.
out_dir = 'out-lab'
dataset = 'shakespeare_char'
device = 'cpu'

batch_size = 32
block_size = 64
n_layer = 4
n_head = 4  # head size 32; n_embd 128 also divides by 1, 2, 8 for the heads sweep
n_embd = 128
dropout = 0.0  # the baseline does not regularise; the dropout sweep adds it

learning_rate = 2e-3  # high for GPT-2 but fine at this size and with warmup
max_iters = 300  # short on purpose: a sweep of 3-4 values then takes minutes on a CPU
lr_decay_iters = 300
min_lr = 2e-4
beta2 = 0.99  # few tokens per step: a longer second-moment average steadies the noisy updates
warmup_iters = 20

eval_interval = 50
eval_full_val = True  # the whole val split: an exact loss, so runs compare without sampling noise
eval_iters = 5  # batches for the train-loss estimate (cheap, and only a rough one)
log_interval = 10
