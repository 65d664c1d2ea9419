"""Train a small GPT for a fixed time budget; score.py scores it. THE file the agent edits.

Read top to bottom: hyperparameters, the model, the optimizers, the training loop, the summary.
Everything that defines the measurement (data, tokenizer, sequence length, evaluation) is in
prepare.py, and score.py runs this file and scores its model apart; neither may change.

    python score.py train.py                       # as a session runs it; 60 s CPU, 300 s CUDA
    python train.py                                # on its own: it then scores itself
    AUTORESEARCH_TIME_BUDGET=120 python train.py   # any budget, in seconds of training

Output: a `progress t=<s> step=<n> loss=<x>` line at regular intervals, then the summary block
(`val_bpb:` and `test_bpb:` when run on its own, ...). A NaN or exploding loss (or a NaN
val_bpb) exits with status 1.
"""

import math
import os
import sys
import time

T_START = time.time()  # total_seconds counts everything, imports included
sys.dont_write_bytecode = True  # no __pycache__/ in the repository: git status stays clean

import prepare  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Hyperparameters. One literal per line: the offline proposer rewrites these values in place.
# A few depend on the hardware; those have a CUDA_ twin used when a GPU is present.

DEPTH = 2  # transformer blocks on CPU; the width follows as DEPTH * ASPECT_RATIO
CUDA_DEPTH = 12  # GPT-2-small class on a GPU: 12 blocks x 768 wide
ASPECT_RATIO = 64  # model width per block of depth
HEAD_DIM = 64  # attention head size; heads = width / HEAD_DIM
MLP_RATIO = 4  # hidden width of the MLP, in multiples of the model width
LOGIT_SOFTCAP = 15.0  # logits pass through softcap * tanh(x / softcap): no runaway logits

# Most sequences per forward/backward (a memory bound, not a research knob: the step size is
# TOTAL_BATCH_TOKENS; a smaller micro-batch only adds gradient accumulation).
DEVICE_BATCH_SIZE = 64
CUDA_DEVICE_BATCH_SIZE = 16
# Tokens per optimizer step (gradient accumulation fills the gap). On a 2-core CPU, 2048 beat
# 4096 by ~0.08 bpb at equal tokens: many small steps win when the run is this short.
TOTAL_BATCH_TOKENS = 2048
CUDA_TOTAL_BATCH_TOKENS = 262144

MATRIX_LR = 0.02  # Muon, for the 2-D weights inside the blocks
EMBEDDING_LR = 0.3  # AdamW, token embedding (scaled by (width / 768) ** -0.5)
UNEMBEDDING_LR = 0.004  # AdamW, output head (same scaling)
MUON_MOMENTUM = 0.95
ADAM_BETA1 = 0.8
ADAM_BETA2 = 0.95
WEIGHT_DECAY = 0.0  # decoupled, on the Muon matrices only

WARMUP_RATIO = 0.0  # fraction of the time budget spent ramping the learning rate up
WARMDOWN_RATIO = 0.5  # fraction of the budget at the end spent decaying it linearly
FINAL_LR_FRAC = 0.0  # learning rate at the very end, as a fraction of the peak

COMPILE = True  # torch.compile on CUDA (never on CPU: it needs a C++ toolchain, long warm-up)
SEED = 42

# The harness gives every run its own seed (so repeats differ and the noise is measured);
# SEED applies outside a session. The other overrides are for tests and benchmarks.
seed = int(os.environ.get("AUTORESEARCH_SEED", SEED))
max_steps = int(os.environ.get("AUTORESEARCH_MAX_STEPS", 0))  # 0: no limit but the budget

# ---------------------------------------------------------------------------------------------
# Device. CUDA: bf16 autocast, TF32 matmuls, compile. CPU: fp32 on every core we may use.

device = prepare.DEVICE
on_cuda = device.type == "cuda"
if on_cuda:
    DEPTH, DEVICE_BATCH_SIZE, TOTAL_BATCH_TOKENS = (
        CUDA_DEPTH,
        CUDA_DEVICE_BATCH_SIZE,
        CUDA_TOTAL_BATCH_TOKENS,
    )
    torch.set_float32_matmul_precision("high")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
else:
    # One thread per core we may use: sched_getaffinity honours taskset and cpusets, where
    # os.cpu_count() reports the host's. OMP_NUM_THREADS wins, so that an engine running
    # several candidates at once can split the cores (oversubscribed threads spin and crawl).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or cores or 1))
    autocast = torch.autocast("cpu", enabled=False)
SEQ_LEN = prepare.MAX_SEQ_LEN
UNTIMED_STEPS = 3 if on_cuda else 1  # first steps pay for allocation (and compilation)

# ---------------------------------------------------------------------------------------------
# The model: a GPT with RMSNorm (no learned scale), rotary position embeddings, QK-norm,
# ReLU^2 MLP, a logit softcap and an output head not tied to the embedding.


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    # type_as: under autocast rms_norm may compute in fp32; attention wants q, k, v alike.
    return F.rms_norm(x, (x.size(-1),)).type_as(x)


class Rotary(nn.Module):
    cos: torch.Tensor  # (1, max_len, 1, head_dim / 2), buffers: they follow .to(device)
    sin: torch.Tensor

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", angles.sin()[None, :, None, :], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, heads, head_dim)
        cos = self.cos[:, : x.size(1)].to(x.dtype)
        sin = self.sin[:, : x.size(1)].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, width: int, rotary: Rotary) -> None:
        super().__init__()
        self.heads = width // HEAD_DIM
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.rotary = rotary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q = self.q(x).view(B, T, self.heads, HEAD_DIM)
        k = self.k(x).view(B, T, self.heads, HEAD_DIM)
        v = self.v(x).view(B, T, self.heads, HEAD_DIM)
        # QK-norm bounds the attention logits, which lets the learning rate be high.
        q, k = self.rotary(rms_norm(q)), self.rotary(rms_norm(k))
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, MLP_RATIO * width, bias=False)
        self.down = nn.Linear(MLP_RATIO * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)).square())


class Block(nn.Module):
    def __init__(self, width: int, rotary: Rotary) -> None:
        super().__init__()
        self.attn = Attention(width, rotary)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(rms_norm(x))
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, depth: int, width: int, max_len: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, width)
        rotary = Rotary(HEAD_DIM, max_len)
        self.blocks = nn.ModuleList(Block(width, rotary) for _ in range(depth))
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.embed.weight, std=1.0)
        for name, p in self.blocks.named_parameters():
            if name.endswith(("out.weight", "down.weight")):
                nn.init.zeros_(p)  # each block starts as the identity on the residual stream
            else:
                bound = math.sqrt(3.0 / p.size(1))  # uniform with std 1/sqrt(fan_in)
                nn.init.uniform_(p, -bound, bound)
        nn.init.normal_(self.head.weight, std=0.001)  # start close to the uniform prediction

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) when targets is None (what evaluate_bpb calls), else mean loss."""
        x = rms_norm(self.embed(idx))
        for block in self.blocks:
            x = block(x)
        logits = self.head(rms_norm(x)).float()
        logits = LOGIT_SOFTCAP * torch.tanh(logits * (1.0 / LOGIT_SOFTCAP))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# ---------------------------------------------------------------------------------------------
# Optimizers. Muon for the matrices inside the blocks; AdamW for the embedding and the head,
# whose rows are looked up or scored one token at a time and do not suit orthogonal updates.


@torch.no_grad()
def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T from g = U S V^T, by a quintic Newton-Schulz iteration.

    The coefficients push every singular value into roughly [0.7, 1.2] in five steps; exact
    orthogonality is not needed, only that no direction dominates the update.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.is_cuda else g.float()  # bf16 is fast on GPUs, slow on CPUs
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / (x.norm() + 1e-7)  # spectral norm <= Frobenius norm <= 1: inside the basin
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update is orthogonalized before it is applied."""

    def __init__(self, params: list[nn.Parameter], lr: float, momentum: float, wd: float):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": wd})

    @torch.no_grad()
    def step(self) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                buf = state["momentum"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = orthogonalize(p.grad.lerp(buf, group["momentum"]))
                # Orthogonal updates have unit singular values; tall matrices get more so that
                # the per-element update size does not shrink with the fan-out.
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-group["lr"] * scale)


def lr_multiplier(progress: float) -> float:
    """Learning-rate factor at a fraction of the time budget: warmup, flat, linear warmdown."""
    if WARMUP_RATIO > 0 and progress < WARMUP_RATIO:
        return min(1.0, (progress + 1e-3) / WARMUP_RATIO)
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    remaining = max(0.0, 1.0 - progress) / WARMDOWN_RATIO
    return FINAL_LR_FRAC + (1.0 - FINAL_LR_FRAC) * remaining


# ---------------------------------------------------------------------------------------------
# Setup: data (built once and cached by prepare), model, optimizers.

prepared = prepare.prepare()  # no-op when the cache is valid; builds it otherwise
tokenizer = prepared.tokenizer
torch.manual_seed(seed)
width = math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM) * HEAD_DIM
model = GPT(tokenizer.vocab_size, DEPTH, width, max(SEQ_LEN, prepare.MAX_SEQ_LEN)).to(device)
num_params = sum(p.numel() for p in model.parameters())

matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
adam_scale = (width / 768) ** -0.5  # AdamW rates were tuned at width 768; scale for others
muon = Muon(matrices, lr=MATRIX_LR, momentum=MUON_MOMENTUM, wd=WEIGHT_DECAY)
adamw = torch.optim.AdamW(
    [
        {"params": [model.embed.weight], "lr": EMBEDDING_LR * adam_scale},
        {"params": [model.head.weight], "lr": UNEMBEDDING_LR * adam_scale},
    ],
    betas=(ADAM_BETA1, ADAM_BETA2),
    eps=1e-10,
    weight_decay=0.0,
    fused=on_cuda,
)
optimizers = [muon, adamw]
for opt in optimizers:
    for group in opt.param_groups:
        group["peak_lr"] = group["lr"]

# A step is TOTAL_BATCH_TOKENS // SEQ_LEN sequences, run as grad_accum micro-batches of the
# largest size that divides it and fits DEVICE_BATCH_SIZE: the micro-batches then add up to
# exactly one step, whatever the two values are (so DEVICE_BATCH_SIZE only bounds memory).
step_rows = max(1, TOTAL_BATCH_TOKENS // SEQ_LEN)
micro_batch = max(d for d in range(1, max(1, DEVICE_BATCH_SIZE) + 1) if step_rows % d == 0)
tokens_per_micro = micro_batch * SEQ_LEN
grad_accum = step_rows // micro_batch
train_model = torch.compile(model, dynamic=False) if (COMPILE and on_cuda) else model
loader = prepare.make_dataloader(micro_batch, SEQ_LEN, device, seed=seed)
progress_every = float(os.environ.get("AUTORESEARCH_PROGRESS_EVERY", prepare.TIME_BUDGET / 30))
explode_at = 2 * math.log(tokenizer.vocab_size)  # twice the loss of a uniform guess

print(f"corpus: {prepared.corpus.corpus_id} tokenizer: {prepared.meta['tokenizer']}")
print(
    f"device: {device} threads: {torch.get_num_threads()} params: {num_params / 1e6:.2f}M "
    f"depth: {DEPTH} width: {width} batch: {tokens_per_micro * grad_accum} tokens/step "
    f"budget: {prepare.TIME_BUDGET:g}s"
)

# ---------------------------------------------------------------------------------------------
# Training loop. The clock counts only optimizer steps (after the first UNTIMED_STEPS); the
# learning-rate schedule runs on that clock, so a faster step means more steps, not a
# different schedule. When nothing is compiled and the untimed steps alone outlast the budget,
# the model is too slow for it: they go on the clock and the loop ends, rather than run one
# more step as slow (the largest CPU knob corner once took 2 steps of ~30 s at a 10 s budget).

step = 0
training_time = 0.0
warmup_time = 0.0  # the untimed steps' own time
timed_steps = 0  # steps on the clock, for the MFU
next_progress = progress_every
smooth_loss = 0.0
x, y = next(loader)
while True:
    t0 = time.perf_counter()
    for _ in range(grad_accum):
        with autocast:
            loss = train_model(x, y)
        (loss / grad_accum).backward()
        x, y = next(loader)  # fetch the next batch while the GPU is still busy
    progress = training_time / prepare.TIME_BUDGET
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * lr_multiplier(progress)
        opt.step()
    model.zero_grad(set_to_none=True)
    loss_value = loss.item()  # waits for the GPU: the step is done when this returns
    dt = time.perf_counter() - t0
    if step >= UNTIMED_STEPS:
        training_time += dt
        timed_steps += 1
    else:
        warmup_time += dt
    step += 1
    # Compilation is excused from the budget (CUDA), however long it takes; allocation is not
    # worth a whole budget.
    if step == UNTIMED_STEPS and train_model is model and warmup_time >= prepare.TIME_BUDGET:
        training_time, timed_steps = warmup_time, step

    if not math.isfinite(loss_value) or loss_value > explode_at:
        print(f"FAIL: loss {loss_value} at step {step} (limit {explode_at:.2f})")
        sys.exit(1)
    # Debiased exponential moving average: the raw loss of one small batch is noisy.
    smooth_loss = 0.9 * smooth_loss + 0.1 * loss_value
    shown_loss = smooth_loss / (1 - 0.9**step)
    done = step >= UNTIMED_STEPS and training_time >= prepare.TIME_BUDGET
    done = done or (max_steps > 0 and step >= max_steps)
    if training_time >= next_progress or done:
        print(f"progress t={training_time:.2f} step={step} loss={shown_loss:.6f}", flush=True)
        if progress_every > 0:  # due again at the next multiple of the interval
            next_progress = (training_time // progress_every + 1) * progress_every
    if done:
        break

# ---------------------------------------------------------------------------------------------
# Evaluation and the summary block (the engine reads `name: value` lines after `---`).

eval_batch = 16 if on_cuda else 64  # rows of prepare.MAX_SEQ_LEN tokens per forward
# In a session, score.py runs this file: hand_over exports the model and score.py scores it in
# a process of its own (val_bpb and test_bpb then appear in score.py's summary, not here). Run
# on its own, this file scores itself.
scores = {}
if not prepare.hand_over(model, eval_batch):
    with autocast:
        scores["val_bpb"] = prepare.evaluate_bpb(model, "val", eval_batch)
        scores["test_bpb"] = prepare.evaluate_bpb(model, "test", eval_batch)  # held out
    if not all(map(math.isfinite, scores.values())):  # the last update can break the model
        print(f"FAIL: {scores} after step {step}")
        sys.exit(1)


def peak_memory_mb() -> float:
    if on_cuda:
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def peak_flops() -> float:
    """Peak dense FLOP/s for MFU: bf16 tensor cores on known GPUs, a nominal figure on CPU."""
    if "AUTORESEARCH_PEAK_FLOPS" in os.environ:
        return float(os.environ["AUTORESEARCH_PEAK_FLOPS"])
    if on_cuda:
        name = torch.cuda.get_device_name(device).upper()  # e.g. "NVIDIA A100-SXM4-80GB"
        words = "".join(c if c.isalnum() else " " for c in name).split()
        table = {"H100": 989e12, "H200": 989e12, "B200": 2250e12, "A100": 312e12,
                 "L40S": 362e12, "L4": 121e12, "4090": 165e12}
        return next((v for k, v in table.items() if k in words), 0.0)  # whole words: L4 != L40S
    return torch.get_num_threads() * 3.0e9 * 32  # 3 GHz x two 8-wide fp32 FMA units per core


matmul_params = num_params - model.embed.weight.numel()
flops_per_token = 6 * matmul_params + 12 * DEPTH * width * SEQ_LEN  # weights + attention
total_tokens = step * grad_accum * tokens_per_micro
timed_tokens = timed_steps * grad_accum * tokens_per_micro
peak = peak_flops()  # 0 for a GPU not in the table: MFU is then reported as 0, not invented
mfu = flops_per_token * timed_tokens / max(training_time, 1e-9) / peak if peak else 0.0

print("---")
for name, value in scores.items():
    print(f"{name + ':':18}{value:.6f}")
print(f"training_seconds: {training_time:.1f}")
print(f"total_seconds:    {time.time() - T_START:.1f}")
print(f"peak_vram_mb:     {peak_memory_mb():.1f}")
print(f"mfu_percent:      {100 * mfu:.2f}")
print(f"total_tokens_M:   {total_tokens / 1e6:.3f}")
print(f"num_steps:        {step}")
print(f"num_params_M:     {num_params / 1e6:.3f}")
print(f"depth:            {DEPTH}")
