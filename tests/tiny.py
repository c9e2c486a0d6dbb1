"""The tiny training run the end-to-end tests share: seconds on 2 cores, two evaluations."""

TINY_RUN = [
    "--total-steps", "240",
    "--warmup-steps", "40",
    "--update-every", "4",
    "--target-update", "50",
    "--eval-every", "120",
    "--eval-games", "1",
    "--eval-max-frames", "600",
    "--buffer-size", "500",
    "--batch-size", "8",
    "--eps-decay", "100",
]  # fmt: skip
