# Evaluate OpenAI's gpt2-large (n_layer=36, n_head=20, n_embd=1280: 774M parameters) on OpenWebText's train and val
# splits, as nanoGPT's config/eval_gpt2_large.py. We have not run it end to end (docs/memory.md).
# Needs `pip install transformers` and the weights (downloaded to the Hugging Face cache on first use);
# prepare the data first: python3 prepare.py openwebtext
#   python3 train.py config/eval_gpt2_large.py
init_from = 'gpt2-large'
dataset = 'openwebtext'
out_dir = 'out-eval-gpt2-large'  # eval_only writes only log.jsonl here
eval_only = True
batch_size = 8
eval_iters = 500  # 500 batches of 8 x 1024 tokens: 4M tokens per split, for a good estimate
wandb_log = False
