"""Write the small RouterBench sample shipped in data/routerbench-sample/.

    python data/make_routerbench_sample.py [SOURCE_DIR]   # default: ../shared/data/routerbench

From each *train* CSV it draws a fixed-seed random sample of prompts (only prompts where every
model has an outcome, so single-model baselines compare like with like) and writes them, in
file order, as JSONL in the format `router.lab.datasets` reads.

Multiple-choice records get a derived `gold` letter (RouterBench ships correctness flags, not the
answer key): the choice every model marked correct gave, when they agree and no model marked
wrong gave it too. It lets `router simulate` score models without a recording (a local rung).
"""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path

from router.checks.extractors import extract_choice
from router.lab.datasets import Dataset, Record, load_dataset

SEED = 20240318  # RouterBench's arXiv submission date
SAMPLES = {  # output name: (source file, rows, multiple choice)
    "arc_challenge.jsonl": ("arc_challenge_train.csv", 100, True),
    "winogrande.jsonl": ("winograde_train.csv", 100, True),
    "mbpp.jsonl": ("mbpp_train.csv", 60, False),
}


def choice_gold(record: Record) -> str | None:
    """The letter the models marked correct agree on, unless a model marked wrong gave it too."""
    right = {extract_choice(o.response, record.prompt) for o in record.outcomes.values() if o.correct}
    wrong = {extract_choice(o.response, record.prompt) for o in record.outcomes.values() if o.correct is False}
    if len(right) == 1 and None not in right and not right & wrong:
        return right.pop()
    return None


def sample(source: Path, rows: int, multiple_choice: bool) -> Dataset:
    full = load_dataset(source)
    complete = [r for r in full.records if len(r.outcomes) == len(full.models)]
    picked = set(random.Random(SEED).sample(range(len(complete)), rows))
    records = [r for i, r in enumerate(complete) if i in picked]
    if multiple_choice:
        records = [replace(r, gold=choice_gold(r)) for r in records]
    return Dataset(records, f"{source.name} sample")


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parent
    source_dir = Path(argv[0]) if argv else here.parent.parent / "shared" / "data" / "routerbench"
    out_dir = here / "routerbench-sample"
    out_dir.mkdir(exist_ok=True)
    for name, (source, rows, multiple_choice) in SAMPLES.items():
        dataset = sample(source_dir / source, rows, multiple_choice)
        dataset.to_jsonl(out_dir / name)
        print(f"{out_dir / name}: {len(dataset)} prompts from {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
