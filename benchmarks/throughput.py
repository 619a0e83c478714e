"""Training and inference throughput of the book's digit models on this machine (images per
second; the number reader's, on strips, is in RESULTS.md's section on it).

    python benchmarks/throughput.py            # full: 30 timed steps per model
    python benchmarks/throughput.py --smoke    # a few steps, to keep the script from rotting

Figures are printed, never asserted: speed depends on the machine. The training step is the
one ``hwr train`` runs (SGD with momentum, hwrnet stored channels-last); inference runs in
eval mode under ``torch.inference_mode`` with batches of 1,000.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from hwr_utils.models import MODEL_TASKS, MODELS, build_model, count_parameters


def images_per_second(step, batch_size: int, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - tic)


def measure(name: str, batch_size: int, warmup: int, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(name)
    if getattr(model, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))

    def train_step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    train = images_per_second(train_step, batch_size, warmup, steps)
    model.eval()
    big = torch.randn(1000, 1, 28, 28)

    def infer_step():
        with torch.inference_mode():
            model(big)

    infer = images_per_second(infer_step, 1000, max(1, warmup // 2), max(1, steps // 3))
    return {"params": count_parameters(model), "train": train, "infer": infer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps only")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    warmup, steps = (1, 2) if args.smoke else (5, 30)
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"{'model':<10}{'parameters':>12}{'train img/s':>14}{'infer img/s':>14}")
    for name in (m for m in MODELS if m not in MODEL_TASKS):  # the digit classifiers (28x28)
        row = measure(name, args.batch_size, warmup, steps)
        print(f"{name:<10}{row['params']:>12,}{row['train']:>14,.0f}{row['infer']:>14,.0f}")


if __name__ == "__main__":
    main()
