# Fine-tune OpenAI's GPT-2 (124M) on Tiny Shakespeare (nanoGPT's finetune_shakespeare.py, from gpt2
# rather than gpt2-xl so it fits one ordinary GPU). Needs `pip install transformers` and the weights
# in the Hugging Face cache (downloaded on first use). Prepare the data first: python3 prepare.py shakespeare
out_dir = 'out-shakespeare-gpt2'
dataset = 'shakespeare'
init_from = 'gpt2'  # or gpt2-medium, gpt2-large, gpt2-xl, or a local GPT-2 directory

eval_interval = 5
eval_iters = 40
always_save_checkpoint = False  # only best.pt matters: it is written when val improves

# 1 batch_size * 32 grad_accum * 1024 tokens = 32,768 tokens per iteration;
# shakespeare has 301,966 tokens, so 1 epoch ~= 9.2 iterations
batch_size = 1
block_size = 1024
gradient_accumulation_steps = 32
max_iters = 20

# fine-tune at a small constant learning rate
learning_rate = 3e-5
decay_lr = False
dropout = 0.0
