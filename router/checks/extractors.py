"""Answer extractors: reduce a free-text answer to the part two answers can be compared on.

Checks that compare answers (``agreement``, ``self_consistency``) name an extractor with
``extract: choice | number | code | text``. Each extractor maps an answer (and, when it helps,
the prompt it answered) to a canonical string, or ``None`` when the answer holds no such thing
(a refusal, an empty reply). ``None`` never agrees with anything.

- ``choice``: a multiple-choice letter: ``"B"``, ``"(B)"``, ``"B) wet palms"``, ``"Answer: C"``,
  ``"the answer is D"``; with the prompt, an answer that gives an option's text (``"Rachel"``,
  ``"13"``) maps to that option's letter.
- ``number``: the answer's number: ``"-1,234.50"`` → ``"-1234.5"``; a stated answer
  (``"the answer is 12"``, ``"#### 12"``, ``"= 12"``) wins over the last number in the text.
- ``code``: the first fenced Python block (or the whole answer), formatted by ``ast.unparse``
  so comments, blank lines and quoting do not matter.
- ``text``: casefolded, without punctuation, articles or repeated whitespace.
- ``key``: the answer's key content, so that two models phrasing the same answer differently
  agree: a yes/no question → ``yes``/``no``; a number asked → the number; otherwise the
  ``text`` form without the words the question already holds ("The capital of France is
  Paris." and "Paris" to "What is the capital of France?" are both ``paris``).

Example:
    >>> extract("choice", "['B\\n']")
    'B'
    >>> extract("number", "The total is $1,204.50.")
    '1204.5'
    >>> get_extractor("text")("The Eiffel Tower!")
    'eiffel tower'
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Literal, Protocol

ExtractorName = Literal["choice", "number", "code", "text", "key"]


class Extractor(Protocol):
    """The plug-in shape: answer text (and the prompt it answered) → canonical value or None."""

    def __call__(self, text: str, prompt: str | None = None) -> str | None: ...


# --------------------------------------------------------------------------- choice

_LETTERS = "ABCDE"
_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[).:]\s+(.+?)\s*$", re.MULTILINE)
# The keywords in any case; the letter upper case, or lower case only in parentheses or at the
# end ("the answer is c."), so "the answer is a bit unclear" picks nothing.
_STATED = re.compile(
    r"(?i:answer|option|choice)\s*(?i:is|would be|:)?\s*[:\-]?\s*(?i:option\s+)?"
    r"(?:\(([A-Ja-j])\)|([A-J])\b(?![a-z'])|([a-j])(?=\s*[.)]?\s*$))")
_LEADING = re.compile(r"^\s*[\[\('\"*]*\s*([A-J])\s*(?=$|[\s).:\],'\"*]|\()")
_PAREN = re.compile(r"\(([A-J])\)")


def options_in(prompt: str) -> dict[str, str]:
    """The options of the prompt's *last* question, ``{"A": "dry palms", ...}``.

    Few-shot prompts list options for every example; only the last block is the question
    being answered.
    """
    blocks = [b for b in re.split(r"\n\s*\n", prompt) if _OPTION_LINE.search(b)]
    if not blocks:
        return {}
    options: dict[str, str] = {}
    for letter, text in _OPTION_LINE.findall(blocks[-1]):
        options.setdefault(letter, text)
    return options


def extract_choice(text: str, prompt: str | None = None) -> str | None:
    """The option letter an answer picks, or None.

    The letter must be one of the prompt's options when the prompt lists them, else A–E.
    """
    text = _unwrap(text)
    options = options_in(prompt) if prompt else {}
    allowed = "".join(options) or _LETTERS
    leading = _LEADING.match(text)
    if leading and leading.group(1) in allowed:
        return leading.group(1)
    stated = [next(g for g in m.groups() if g).upper() for m in _STATED.finditer(text)]
    stated = [s for s in stated if s in allowed]
    if stated:
        return stated[-1]
    parens = {m.group(1) for m in _PAREN.finditer(text)} & set(allowed)
    if len(parens) == 1:
        return parens.pop()
    return _by_option_text(text, options)


def _by_option_text(text: str, options: dict[str, str]) -> str | None:
    """An answer that repeats an option's text (possibly cut short) picks that option."""
    said = normalize_text(text)
    if not said or not options:
        return None
    texts = {letter: normalize_text(option) for letter, option in options.items()}
    exact = [letter for letter, option in texts.items() if option == said]
    if len(exact) == 1:
        return exact[0]
    if len(said) >= 3:
        prefix = [letter for letter, option in texts.items() if option.startswith(said) or said.startswith(option)]
        if len(prefix) == 1:
            return prefix[0]
    return None


# --------------------------------------------------------------------------- number

_NUMBER = r"[-−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-−]?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_STATED_NUMBER = re.compile(
    rf"(?:answer\s*(?:is|:)|####|=|result\s*(?:is|:))\s*\**\s*({_NUMBER})", re.IGNORECASE)


def extract_number(text: str, prompt: str | None = None) -> str | None:
    """The answer's number as a canonical decimal string (``"-1234.5"``, ``"3"``), or None."""
    text = _unwrap(text)
    stated = _STATED_NUMBER.findall(text)
    found = stated[-1] if stated else None
    if found is None:
        numbers = _NUMBER_RE.findall(text)
        found = numbers[-1] if numbers else None
    return None if found is None else canonical_number(found)


def canonical_number(raw: str) -> str | None:
    cleaned = raw.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


# --------------------------------------------------------------------------- code

_FENCED = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3"}


def extract_code(text: str, prompt: str | None = None) -> str | None:
    """The first fenced Python block (or, unfenced, the whole answer), formatted canonically.

    Blocks tagged with another language are skipped: a JavaScript answer to a Python task
    holds no Python code. Code that does not parse is compared by its non-blank,
    comment-free lines.
    """
    text = _unwrap(text)
    blocks = _FENCED.findall(text)
    if blocks:
        python = [body for tag, body in blocks if tag.lower() in _PYTHON_TAGS]
        if not python:
            return None
        code = python[0]
    else:
        code = text
    code = code.strip("\n")
    if not code.strip():
        return None
    try:
        return ast.unparse(ast.parse(_dedent(code)))
    except (SyntaxError, ValueError):
        lines = (line.split("#", 1)[0].rstrip() for line in code.splitlines())
        return "\n".join(line for line in lines if line.strip()) or None


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code)


# --------------------------------------------------------------------------- text

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation + "“”‘’…")


def normalize_text(text: str, prompt: str | None = None) -> str | None:
    """Casefold, drop punctuation and articles, collapse whitespace; None when nothing is left."""
    text = _unwrap(text).casefold().translate(_PUNCTUATION)
    text = " ".join(_ARTICLES.sub(" ", text).split())
    return text or None


# --------------------------------------------------------------------------- key

_FILLER = frozenset(["is", "are", "was", "were", "it", "its", "of", "in", "on", "to", "and", "or", "for", "by", "with", "answer", "i", "think"])
_YES_NO_QUESTION = re.compile(r"\byes or no\b|^\s*(?:is|are|do|does|did|can|could|was|were|has|have|will)\b",
                              re.IGNORECASE)
_NUMBER_QUESTION = re.compile(r"\bhow (?:many|much)\b|\bnumber\b|\d\s*(?:[-+*/x×]|plus|minus|times)\s*\d",
                              re.IGNORECASE)
_FIRST_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def extract_key(text: str, prompt: str | None = None) -> str | None:
    """The answer's key content (see the module docstring), or None when nothing is left."""
    text = _unwrap(text)
    question = prompt or ""
    if _YES_NO_QUESTION.search(question):
        found = _FIRST_YES_NO.match(text)
        return found.group(1).lower() if found else None
    if _NUMBER_QUESTION.search(question):
        return extract_number(text)
    said = (normalize_text(text) or "").split()
    asked = set((normalize_text(question) or "").split()) | _FILLER
    kept = [w for w in said if w not in asked]
    return " ".join(kept) or None


# --------------------------------------------------------------------------- registry


def _unwrap(text: str) -> str:
    """RouterBench stores responses as a Python list literal (``"['B\\n']"``); accept that
    shape too, so recorded and live answers extract alike."""
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            value = ast.literal_eval(stripped)
        except (SyntaxError, ValueError):
            return text
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            return value[0]
    return text


EXTRACTORS: dict[str, Extractor] = {
    "choice": extract_choice,
    "number": extract_number,
    "code": extract_code,
    "text": normalize_text,
    "key": extract_key,
}


def get_extractor(name: str) -> Extractor:
    """The extractor registered as ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise KeyError(f"unknown extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}") from None


def register_extractor(name: str) -> Callable[[Extractor], Extractor]:
    """Decorator: make a function usable as ``extract: name`` in a policy."""

    def decorate(fn: Extractor) -> Extractor:
        EXTRACTORS[name] = fn
        return fn

    return decorate


def extract(name: str, text: str, prompt: str | None = None) -> str | None:
    """Shorthand for ``get_extractor(name)(text, prompt)``."""
    return get_extractor(name)(text, prompt)


__all__ = ["EXTRACTORS", "Extractor", "ExtractorName", "canonical_number", "extract", "extract_choice",
           "extract_code", "extract_key", "extract_number", "get_extractor", "normalize_text", "options_in",
           "register_extractor"]
