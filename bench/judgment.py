"""Judgment of the shipped policies' local rungs on the project's labeled prompts, before and after.

For each shipped policy (``offline``; ``default`` with no API key, so its network rungs are
unavailable and only the local rungs can answer) and each variant — ``before``: the confidence
block shipped before calibration (mean logprob ≥ -1.5, refusal, min_length 2); ``after``: the
policy file as shipped now — every prompt of a split of ``data/labeled/prompts.jsonl`` goes
through the real :class:`PolicyRouter` with the real bundled llama.cpp models (tool prompts
through ``bind_tools(tools, tool_choice="any")``). Each answer is graded against its reference
(:func:`router.checks.grading.grade`). Printed per policy and variant:

* **wrong/accepted**: share of accepted answers that are wrong (goal ≤ 5%);
* **right missed**: share of prompts some local rung answers right where no right answer was
  accepted (goal ≤ 50%: at least half of the right answers accepted);
* **exhausted**: share of prompts where nothing was accepted (offline: the end; default: where a
  network rung would be paid);
* **tool calls**: correct constrained calls accepted / tool prompts; **cost** (USD) and wall time.

Outcomes are appended to ``--cache`` (one JSONL per policy and variant) and reused on re-runs.
``--max-tokens`` lowers ``max_output_tokens`` (512 in the files) to keep the run short on a
shared machine; open-ended prompts then get cut off more often (graded wrong when cut).

Example:
    $ .venv/bin/python bench/judgment.py --split heldout --max-tokens 48

Measured (2026-12-08, shared 2-core machine, ``--policies offline --limit 30``: the first 30
held-out prompts, all capitals; the full held-out half did not fit the time)::

    policy   variant    n accepted wrong/acc right missed exhausted  cost $  time s
    offline  before    30       30     43.3%         0.0%      0.0%  0.0000    1271
    offline  after     30       13      7.7%        53.3%     56.7%  0.0000    1609

(the one wrong accepted: gemma's " Istanbul" for Turkey, which smollm2 agreed with). On the whole
held-out half, replayed from recorded answers by ``data/labeled/calibrate.py``: before 65.2% of
112 accepted wrong; after 4.5% of 22 accepted wrong, forced tool calls accepted 11/11.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

from router import PolicyRouter
from router.checks.grading import grade

ROOT = Path(__file__).resolve().parent.parent
BEFORE = [{"check": "logprob", "min_mean": -1.5}, {"check": "refusal"}, {"check": "min_length", "chars": 2}]
NETWORK_KEYS = ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "TINYLLAMA_GGUF")


def policy_text(name: str, variant: str, max_tokens: int) -> str:
    data = yaml.safe_load((ROOT / "policies" / f"{name}.yaml").read_text(encoding="utf-8"))
    data["policy"]["max_output_tokens"] = max_tokens
    if variant == "before":
        data["policy"]["confidence"] = BEFORE
    return yaml.safe_dump(data, sort_keys=False)


def run_one(router: PolicyRouter, row: dict) -> dict:
    model = router.bind_tools(row["tools"], tool_choice="any") if row.get("tools") else router
    start = time.perf_counter()
    message = model.invoke(row["prompt"])
    routing = message.response_metadata["routing"]
    final = next((a for a in reversed(routing["attempts"]) if a["model"] == routing["final_model"]), {})
    text = message.content if isinstance(message.content, str) else ""
    calls = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
    return {"id": row["id"], "status": routing["status"], "model": routing["final_model"], "text": text,
            "tool_calls": calls, "cost_usd": routing["total_cost_usd"], "secs": round(time.perf_counter() - start, 3),
            "attempts": [a["model"] for a in routing["attempts"]],
            "right": grade(row, text, calls, complete=final.get("finish_reason") != "length")}


def measure(outcomes: list[dict], rows: dict[str, dict], reachable: set[str]) -> dict:
    accepted = [o for o in outcomes if o["status"] == "accepted"]
    wrong = sum(not o["right"] for o in accepted)
    right_ids = {o["id"] for o in accepted if o["right"]}
    available = [o for o in outcomes if o["id"] in reachable]
    tools = [o for o in outcomes if rows[o["id"]]["task"] == "tool_call"]
    return {"n": len(outcomes), "accepted": len(accepted), "wrong_share": wrong / len(accepted) if accepted else 0.0,
            "right_missed": (sum(o["id"] not in right_ids for o in available) / len(available)) if available else 0.0,
            "exhausted": sum(o["status"] != "accepted" for o in outcomes) / max(len(outcomes), 1),
            "tool_ok": sum(o["status"] == "accepted" and o["right"] for o in tools), "tools": len(tools),
            "cost_usd": sum(o["cost_usd"] for o in outcomes), "secs": sum(o["secs"] for o in outcomes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", default="offline,default")
    parser.add_argument("--variants", default="before,after")
    parser.add_argument("--split", default="heldout", choices=["tune", "heldout"])
    parser.add_argument("--limit", type=int, default=0, help="first N prompts of the split (0: all)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--cache", default="/tmp/judgment-bench")
    parser.add_argument("--answers", default=str(ROOT / "data" / "labeled" / "answers-local.jsonl"),
                        help="local answers per model: which prompts some local rung can answer right")
    args = parser.parse_args()
    for key in NETWORK_KEYS:
        os.environ.pop(key, None)
    rows = [json.loads(line) for line in (ROOT / "data" / "labeled" / "prompts.jsonl").open(encoding="utf-8")]
    rows = [r for r in rows if r["split"] == args.split]
    if args.limit:
        rows = rows[:args.limit]
    by_id = {r["id"]: r for r in rows}
    reachable: set[str] = set()
    if Path(args.answers).exists():
        with Path(args.answers).open(encoding="utf-8") as fh:
            reachable = {a["id"] for line in fh if (a := json.loads(line))["right"]}
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"{args.split} split, {len(rows)} prompts, max_output_tokens={args.max_tokens}")
    print(f"{'policy':8} {'variant':7} {'n':>4} {'accepted':>8} {'wrong/acc':>9} {'right missed':>12} "
          f"{'exhausted':>9} {'tool ok':>7} {'cost $':>7} {'time s':>7}")
    for name in args.policies.split(","):
        for variant in args.variants.split(","):
            path = cache / f"{name}-{variant}-{args.max_tokens}.jsonl"
            done = {json.loads(line)["id"]: json.loads(line) for line in path.open()} if path.exists() else {}
            router = PolicyRouter.from_string(policy_text(name, variant, args.max_tokens), f"{name}.yaml")
            with path.open("a", encoding="utf-8") as fh:
                for row in rows:
                    if row["id"] not in done:
                        done[row["id"]] = run_one(router, row)
                        fh.write(json.dumps(done[row["id"]]) + "\n")
                        fh.flush()
            m = measure([done[r["id"]] for r in rows], by_id, reachable)
            print(f"{name:8} {variant:7} {m['n']:4d} {m['accepted']:8d} {m['wrong_share']:9.1%} "
                  f"{m['right_missed']:12.1%} {m['exhausted']:9.1%} {m['tool_ok']:3d}/{m['tools']:<3d} "
                  f"{m['cost_usd']:7.4f} {m['secs']:7.0f}")


if __name__ == "__main__":
    main()
