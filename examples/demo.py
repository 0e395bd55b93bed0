"""The main job of `make demo`: show the paper's Table 1 and run the network once."""

from __future__ import annotations

import torch

import squeezenet as sq


def main() -> None:
    print(sq.summary("1_0"))
    model = sq.build("1_0").eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, 227, 227))
    print(f"\nforward pass: input (2, 3, 227, 227) -> logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
