"""The knobs of a pretend training run. The offline proposer rewrites the values marked `knob:`."""

LEARNING_RATE = 0.3  # knob: log(0.001, 1.0)
MOMENTUM = 0.5  # knob: float(0.0, 0.99)
BATCH_SIZE = 16  # knob: choice(8, 16, 32, 64, 128)
WARMUP_STEPS = 10  # knob: int(0, 200)
