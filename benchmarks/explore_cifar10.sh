#!/usr/bin/env bash
# The design-space sweep of docs/design-space.md on the real CIFAR-10: 12 networks, each trained the same way
# (3 epochs over a fixed 20,000-image subset, batch norm, no final ReLU, AdamW). About 42 minutes on one core
# of this machine. Rerun the same command to continue a killed sweep. Run from the repository root.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/squeezenet explore --data ../shared/data/cifar10-jpeg.tar.gz --arch 1_0 \
  --sweep squeeze_ratio=0.125,0.25,0.5,0.75,1.0 --sweep pct_3x3=0.01,0.125,0.25,0.5,0.75,0.99 \
  --bypass none,simple,complex \
  --subset 20000 --epochs 3 --batch-size 128 --batch-norm --no-final-relu --dropout 0 \
  --optimizer adamw --lr 0.004 --weight-decay 0.05 --warmup-epochs 0.5 --label-smoothing 0.1 --channels-last \
  --no-progress --out "${1:-runs/explore-cifar10}"
