"""What the scripts at the top of the repository lean on: one module per job, imported as
`from gptkit.checkpoint import load_trained` from the repository root (no install step).

    errors       UserError and run_main: one line of error, exit code 2, no traceback
    config       config files read as data, --key=value arguments, did-you-mean hints
    data         datasets on disk, and the one function that makes batches
    tokenizer    characters and GPT-2 BPE (offline too); tokens as text, words found among them
    checkpoint   the checkpoint format: written and read in one place each
    sharded      parallel=fsdp's sharded checkpoints (Distributed Checkpoint), and ckpt.pt from them
    resume       --init_from=resume: the settings a resumed run may change, the optimizer state loaded
    rundir       the run folder: one writer (a lock), free space, atomic writes
    runlog       log.jsonl, TensorBoard, W&B, samples.txt
    nanogpt      nanoGPT's checkpoints, meta.pkl and optimizer state, read as ours
    optim        AdamW and Muon
    system       device, dtype, threads, compile, random states, Ctrl-C
    distributed  several processes under torchrun: DDP or FSDP
    memory       the memory planner: bytes per GPU before anything is built (parameters from a meta model)
    quantize     int8 weights for CPU sampling
    decode       a RoPE cache that slides past block_size, gpt-fast's static KV cache with a compiled decode
                 step, and beam search
    translation  translating held-out pairs and scoring them: exact match, BLEU, chrF (sacrebleu)
    tracing      watching a forward pass: every named step (STEPS) handed to a function
    attention_maps  reading attention weights and next-token probabilities out of a model
    explore      the attention as one HTML page to explore offline (visualize.py explore, notebooks)
    shape_trace  the named tensors of one forward pass, printed
    plots        PNG plots (matplotlib)
    hf_weights   Hugging Face checkpoints in and out: OpenAI's GPT-2, Llama-architecture directories
    gguf_export  one GGUF file for llama.cpp and Ollama
    exercises    learn.py's exercises: a learner's pieces checked against ours (a package, one module each)

model.py, the GPT itself, stays at the top: it is the file to read, and needs only torch; so does
transformer.py, the encoder-decoder that translates, built from model.py's pieces.
"""
