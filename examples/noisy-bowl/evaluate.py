"""A noisy synthetic objective standing in for a training run (no GPU, no data, ~0.1 s).

It prints `loss: <value>` like a training script's summary block. The minimum is near
LEARNING_RATE = 0.03, MOMENTUM = 0.9, BATCH_SIZE = 32, WARMUP_STEPS = 50, where the loss is
about 1.0; each evaluation adds Gaussian noise (σ = 0.01 by default, env NOISE) so that, as with
real training, two runs of the same code never agree exactly.
"""

import math
import os
import random

import params

# Seeded from the run's seed, as every script should be (README "Seeds"): a session replays
# exactly (its tests cannot fail by a lucky draw), and run by hand it draws afresh.
seed = os.environ.get("AUTORESEARCH_SEED")
random.seed(int(seed) if seed else None)
noise = float(os.environ.get("NOISE", "0.01"))
loss = (
    1.0
    + (math.log10(params.LEARNING_RATE) + 1.5) ** 2
    + 4.0 * (params.MOMENTUM - 0.9) ** 2
    + 0.05 * abs(math.log2(params.BATCH_SIZE / 32))
    + ((params.WARMUP_STEPS - 50) / 100) ** 2
    + random.gauss(0.0, noise)
)
print(f"loss: {loss:.6f}")
print(f"peak_memory_mb: {10 * params.BATCH_SIZE}")
