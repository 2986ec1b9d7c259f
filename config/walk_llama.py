# From GPT-2 to Llama, one setting at a time, on the lab's baseline (config/lab_char_cpu.py: 4 layers,
# 4 heads, 128 wide, 300 steps): run 0 is the lab's GPT-2, and each step adds one change to the last.
#   python3 experiment.py config/walk_llama.py
# The table (val loss, parameters, tokens/s, KV-cache bytes per token) and the plot are in out-walk/walk.md
# and walk.png; the reading is in docs/experiments.md. Prepare the data first: python3 prepare.py shakespeare_char
config = 'config/lab_char_cpu.py'
out_root = 'out-walk'
walk = ('pos_encoding=rope; '  # learned positions -> rotary (Su et al. 2021)
        'norm=rmsnorm; '  # LayerNorm -> RMSNorm (Zhang & Sennrich 2019)
        # GELU MLP -> SwiGLU (Shazeer 2020) at equal parameters: three matrices of 128 x 341 hold what two of
        # 128 x 512 do (341 = (8 C^2 + 4 C) / (3 C + 2) with C = 128, biases counted; Llama's 8/3 rule)
        'mlp=swiglu mlp_hidden=341; '
        'bias=False; '  # no biases in the linear layers (RMSNorm has none)
        'tie_weights=False; '  # a separate output head
        'n_kv_head=2; '  # grouped-query attention (Ainslie et al. 2023): 4 query heads share 2 key/value heads
        'n_kv_head=1')  # multi-query attention (Shazeer 2019): all 4 share one
