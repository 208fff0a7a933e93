"""Choose the local rungs' confidence thresholds on the tuning half of ``prompts.jsonl``.

Input: ``answers-local.jsonl``, each bundled local model's answer to each prompt (temperature 0,
as the router calls it; tool prompts under ``bind_tools(tools, tool_choice="any")``), with token
logprobs and a ``right`` label from :func:`router.checks.grading.grade`. Collect it with
``python data/labeled/calibrate.py --collect`` (slow: ~600 local calls).

The cascade ``gemma-270m → smollm2-135m`` is replayed for every candidate check set: the
shipped refusal/min_length plus ``token_logprob`` (statistic × threshold), optionally
``answer_type`` and ``agreement`` between the two models on the ``key`` extract (at temperature
0 a consultation gives the rung's own answer, so agreement is symmetric). The chosen set
maximises right answers accepted subject to wrong ≤ 5% of accepted on the *tune* half; the
same set is then reported on the held-out half. Run: ``python data/labeled/calibrate.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage

from router.checks import Answer, build_check
from router.checks.extractors import extract_key

HERE = Path(__file__).parent
CASCADE = ("gemma-270m", "smollm2-135m")
MODELS = {"gemma-270m": ("bundled:gemma-3-270m", "qa"), "smollm2-135m": ("bundled:smollm2-135m", "auto")}
GOAL_WRONG = 0.05
BASE = [{"check": "refusal"}, {"check": "min_length", "chars": 2}]
BEFORE = [{"check": "logprob", "min_mean": -1.5}, *BASE]


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def answer_of(row: dict, rec: dict) -> Answer:
    calls = [{"name": c["name"], "args": c["args"], "id": f"call_{i}", "type": "tool_call"}
             for i, c in enumerate(rec["tool_calls"])]
    message = AIMessage(content=rec["text"], tool_calls=calls,
                        response_metadata={"logprobs": {"content": rec["tokens"]}, "finish_reason": rec["finish"]})
    text = rec["text"] if rec["text"].strip() or not calls else json.dumps(rec["tool_calls"])
    return Answer(model=rec["model"], text=text, message=message,
                  token_logprobs=tuple(t["logprob"] for t in rec["tokens"]), prompt=(HumanMessage(row["prompt"]),))


def replay(rows: list[dict], answers: dict, checks: list[dict], agreement: bool) -> dict:
    built = [build_check(c) for c in checks]
    out = {"n": 0, "accepted": 0, "wrong": 0, "right_available": 0, "right_accepted": 0, "exhausted": 0,
           "calls": 0}
    for row in rows:
        recs = [answers.get((row["id"], m)) for m in CASCADE]
        if any(r is None for r in recs):
            continue
        out["n"] += 1
        out["right_available"] += any(r["right"] for r in recs)
        keys = [extract_key(r["text"], row["prompt"]) if not r["tool_calls"] else "tool" for r in recs]
        agree = keys[0] is not None and keys[0] == keys[1]
        accepted = None
        for rec in recs:
            out["calls"] += 1 + (1 if agreement else 0)
            ok = all(c.run(answer_of(row, rec), None).passed for c in built)
            if ok and (not agreement or agree):
                accepted = rec
                break
        if accepted is None:
            out["exhausted"] += 1
        else:
            out["accepted"] += 1
            out["wrong"] += not accepted["right"]
            out["right_accepted"] += accepted["right"]
    return out


def summary(m: dict) -> str:
    acc = m["accepted"] or 1
    avail = m["right_available"] or 1
    return (f"n={m['n']} accepted={m['accepted']} wrong/accepted={m['wrong'] / acc:.1%} "
            f"right accepted={m['right_accepted']}/{m['right_available']} ({m['right_accepted'] / avail:.1%}) "
            f"exhausted={m['exhausted'] / (m['n'] or 1):.1%}")


def candidates() -> list[tuple[str, list[dict], bool]]:
    """Every check set tried: ``token_logprob`` (statistic × threshold 0 … -6 in steps of 0.2),
    with or without ``answer_type``, with or without ``agreement``."""
    out = []
    for stat in ("min", "first", "mean"):
        for tenth in range(0, 61, 2):
            t = -tenth / 10
            for typed in (False, True):
                for agree in (False, True):
                    checks = [{"check": "token_logprob", "statistic": stat, "min_logprob": t}, *BASE]
                    if typed:
                        checks.append({"check": "answer_type"})
                    label = f"token_logprob {stat}>={t}" + (" +answer_type" if typed else "") + \
                        (" +agreement" if agree else "")
                    out.append((label, checks, agree))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", default=str(HERE / "answers-local.jsonl"))
    args = parser.parse_args()
    rows = load(HERE / "prompts.jsonl")
    answers = {(r["id"], r["model"]): r for r in load(Path(args.answers))}
    tune = [r for r in rows if r["split"] == "tune"]
    held = [r for r in rows if r["split"] == "heldout"]
    print("before (shipped):  tune", summary(replay(tune, answers, BEFORE, False)))
    print("                   held", summary(replay(held, answers, BEFORE, False)))
    best = None
    frontier = []
    for label, checks, agree in candidates():
        m = replay(tune, answers, checks, agree)
        rate = m["wrong"] / m["accepted"] if m["accepted"] else 0.0
        frontier.append((rate, m["right_accepted"], label))
        better = best is None or (m["right_accepted"], -m["wrong"]) > (best[0]["right_accepted"], -best[0]["wrong"])
        if rate <= GOAL_WRONG and better:
            best = (m, label, checks, agree)
    print("frontier on tune (lowest wrong share for each number of right accepted):")
    seen: dict[int, tuple[float, str]] = {}
    for rate, right, label in frontier:
        if right not in seen or rate < seen[right][0]:
            seen[right] = (rate, label)
    for right in sorted(seen, reverse=True)[:12]:
        print(f"   right={right:3d} wrong/accepted={seen[right][0]:.1%}  {seen[right][1]}")
    if best is None:
        print("no candidate reaches the goal on tune", file=sys.stderr)
        return
    m, label, checks, agree = best
    print(f"chosen on tune:   {label}\n   tune", summary(m))
    print("   held", summary(replay(held, answers, checks, agree)))


if __name__ == "__main__":
    main()
