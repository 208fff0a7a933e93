"""How tight is the Gemini input bound (one token per UTF-8 byte)? Reported/bound ratios.

Counts come from Gemma 3's tokenizer, read from the bundled Gemma-3-270M GGUF: Gemma 3 uses
Gemini 2.0's tokenizer (262k SentencePiece vocabulary with byte fallback; Gemma 3 technical
report, section 2), so these are the counts Gemini reports for the same text, offline. The old
``chars / 4`` estimate is shown beside it: a ratio above 1 is an undercount.

Run: ``.venv/bin/python bench/gemini_token_bound.py``
"""

from __future__ import annotations

import math

from router.providers.llama_runtime import resolve_gguf, tokenizer_for

SAMPLES = {
    "latin": "The quick brown fox jumps over the lazy dog. Please summarise the following contract "
             "in three sentences, keeping every date and amount exactly as written. " * 4,
    "cjk": "请用一句话解释为什么天空是蓝色的，并说明光的散射原理。東京は日本の首都です。한국어 문장도 포함합니다。" * 4,
    "emoji": "🙂🚀🌍🎉🔥👍🏽👨‍👩‍👧‍👦🇫🇷" * 10,
    "code": "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n"
            "for i in range(10):\n    print(i, fib(i))  # {x: [1, 2, 3]}\n" * 4,
}


def main() -> None:
    llm = tokenizer_for(str(resolve_gguf("bundled:gemma-3-270m")), n_ctx=512, n_batch=512).llm
    print(f"{'text':6} {'chars':>6} {'bytes':>6} {'gemini':>7} {'gemini/bound':>13} {'gemini/(chars/4)':>17}")
    for name, text in SAMPLES.items():
        tokens = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        size = len(text.encode("utf-8"))
        print(f"{name:6} {len(text):6} {size:6} {tokens:7} {tokens / size:13.3f} "
              f"{tokens / math.ceil(len(text) / 4):17.2f}")


if __name__ == "__main__":
    main()
