"""Model sizes of the bypass variants against the paper's Table 3 (4.8, 4.8 and 7.7 MB), and what 7.7 would take.

    .venv/bin/python benchmarks/bypass_sizes.py

The paper's "MB" behave like ``ls -h`` on the Caffe model file: MiB, rounded UP to one decimal below 10 (two
significant digits above). That reading matches its other sizes too (SR 0.75 is 18.47 MiB -> "19MB"; Figure 3b's
SR 0.5 models span 5.64-20.33 MiB -> "5.7MB" to "21MB"). The candidates below put a shortcut layer of a given
kind around chosen Fire modules of SqueezeNet v1.0 (1000 classes) and count the parameters; nothing is fitted.
"""

from __future__ import annotations

import itertools
import math

import squeezenet as sq

PAPER = {"none": 4.8, "simple": 4.8, "complex": 7.7}


def ls_h(size_bytes: float) -> str:
    """GNU ``ls -h``: powers of 1024, rounded up, one decimal below 10."""
    mib = size_bytes / 2**20
    return f"{math.ceil(mib * 10) / 10:.1f}M" if mib < 10 else f"{math.ceil(mib):.0f}M"


def row(label: str, params: int) -> str:
    size = 4 * params
    return f"{label:58} {params:>10,} {size / 1e6:>7.2f} {size / 2**20:>7.2f} {ls_h(size):>6}"


def main() -> None:
    print(f"{'network (SqueezeNet v1.0, 1000 classes)':58} {'params':>10} {'MB':>7} {'MiB':>7} {'ls -h':>6}")
    for mode, paper in PAPER.items():
        params = sq.summary(sq.get_spec("1_0", bypass=mode), 224).total_params
        print(row(f"ours: bypass={mode} (paper: {paper} MB)", params))

    spec = sq.get_spec("1_0")
    fires = spec.fire_modules()
    inputs = [spec.conv1_filters, *(fire.expand for fire in fires[:-1])]
    names = spec.fire_names()
    vanilla = sq.summary(spec, 224).total_params

    def conv(index: int, kernel: int) -> int:
        return inputs[index] * fires[index].expand * kernel * kernel + fires[index].expand

    differ = [i for i in range(len(fires)) if inputs[i] != fires[i].expand]
    match = [i for i in range(len(fires)) if inputs[i] == fires[i].expand]
    print("\ncandidates for the complex variant (shortcut convs added to vanilla):")
    for around_differ, around_match in itertools.product((None, 1, 3), (None, 1, 3)):
        extra = sum(conv(i, around_differ) for i in differ if around_differ) + \
            sum(conv(i, around_match) for i in match if around_match)
        label = (f"{f'{around_differ}x{around_differ}' if around_differ else 'no'} conv at "
                 f"{','.join(names[i][4:] for i in differ)}; "
                 f"{f'{around_match}x{around_match}' if around_match else 'identity'} at "
                 f"{','.join(names[i][4:] for i in match)}")
        print(row(label, vanilla + extra))
    hits = []
    every = range(len(fires))
    for chosen in itertools.chain.from_iterable(itertools.combinations(every, n) for n in range(1, len(fires) + 1)):
        size = 4 * (vanilla + sum(conv(i, 1) for i in chosen)) / 2**20
        if 7.6 < size <= 7.7:
            hits.append("fire" + ",".join(names[i][4:] for i in chosen))
    print(f"\nsubsets of Fire modules whose 1x1 shortcut convs give ls -h 7.7M: {'; '.join(hits) or 'none'}")


if __name__ == "__main__":
    main()
