"""Write the small RouterBench sample shipped in data/routerbench-sample/.

    python data/make_routerbench_sample.py [SOURCE_DIR]   # default: ../shared/data/routerbench

From each *train* CSV it draws a fixed-seed random sample of prompts (only prompts where every
model has an outcome, so single-model baselines compare like with like) and writes them, in
file order, as JSONL in the format `router.lab.datasets` reads.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from router.lab.datasets import Dataset, load_dataset

SEED = 20240318  # RouterBench's arXiv submission date
SAMPLES = {  # output name: (source file, rows)
    "arc_challenge.jsonl": ("arc_challenge_train.csv", 100),
    "winogrande.jsonl": ("winograde_train.csv", 100),
    "mbpp.jsonl": ("mbpp_train.csv", 60),
}


def sample(source: Path, rows: int) -> Dataset:
    full = load_dataset(source)
    complete = [r for r in full.records if len(r.outcomes) == len(full.models)]
    picked = set(random.Random(SEED).sample(range(len(complete)), rows))
    return Dataset([r for i, r in enumerate(complete) if i in picked], f"{source.name} sample")


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parent
    source_dir = Path(argv[0]) if argv else here.parent.parent / "shared" / "data" / "routerbench"
    out_dir = here / "routerbench-sample"
    out_dir.mkdir(exist_ok=True)
    for name, (source, rows) in SAMPLES.items():
        dataset = sample(source_dir / source, rows)
        dataset.to_jsonl(out_dir / name)
        print(f"{out_dir / name}: {len(dataset)} prompts from {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
