"""Answer extractors on real recorded answers (copied from the RouterBench train files in
../shared/data/routerbench: arc_challenge, winograde and mbpp), plus the shapes users write."""

from __future__ import annotations

import pytest

from router.checks.extractors import (
    extract,
    extract_choice,
    extract_code,
    extract_number,
    get_extractor,
    normalize_text,
    options_in,
    register_extractor,
)

ARC_PROMPT = (
    "Which statement best explains why magnets usually stick to a refrigerator door?\n"
    "A) The refrigerator door is smooth.\nB) The refrigerator door contains iron.\n"
    "C) The refrigerator door is a good conductor.\nD) The refrigerator door has electric wires in it.\n"
    'Print only a single choice  from "A" or "B" or "C" or "D" without explanation.\nAnswer:\nB\n\n'
    "Earth orbits the Sun once a year. About how many times does the moon orbit Earth in a year?\n"
    "A) 28\nB) 13\nC) 1\nD) 7\n"
    'Print only a single choice  from "A" or "B" or "C" or "D" without explanation.\nAnswer:'
)
WINO_PROMPT = (
    "Kyle doesn't wear leg warmers to bed, while Logan almost always does. _ is more likely to live in "
    "a colder climate.\nA) Kyle\nB) Logan\n"
    'Print only a single choice  from "A" or "B" without explanation. Answer:\nB\n\n'
    "The roof of Rachel's home is old and falling apart, while Betty's is new. The home value of _ is lower.\n"
    "A) Betty\nB) Rachel\n"
    'Print only a single choice  from "A" or "B" without explanation. Answer:'
)


@pytest.mark.parametrize(("response", "expected"), [
    # recorded RouterBench responses, verbatim (list-literal cells included)
    ("['B\\n']", "B"),            # mistral-7b / mixtral / llama-2-70b style
    ("['C']", "C"),               # gpt-4, claude-v1, Yi style
    ("['D)']", "D"),              # claude-instant-v1
    ("['D (']", "D"),             # gpt-3.5-turbo-1106
    ("['A.']", "A"),              # claude-v2
    ("['A questioning']", "A"),   # claude-v2, graded correct (answer starts with the letter)
    ("['I do']", None),           # claude-v2 refusing
    ("['Unfortunately I']", None),
    ("['Sediment']", None),       # claude-v2 answering with a word
    ("['* Jeremy']", None),
    ("['You have']", None),       # gpt-4's one non-answer
    ("['G\\n']", None),           # mistral-7b naming an option that does not exist
    # shapes users and chat models write
    ("(B)", "B"),
    ("Answer: C", "C"),
    ("The answer is B.", "B"),
    ("I think the correct answer is (D) because iron is magnetic.", "D"),
    ("B) The refrigerator door contains iron.", "B"),
    ("The answer is (b)", "B"),
    ("the answer is c.", "C"),
    ("The answer is a bit unclear to me.", None),
])
def test_choice_on_arc_answers(response: str, expected: str | None):
    assert extract_choice(response, ARC_PROMPT) == expected


def test_choice_maps_option_text_to_its_letter():
    # mixtral-8x7b answered ARC with the option's text, and Winogrande with a name (cut short).
    assert extract_choice("['13']", ARC_PROMPT) == "B"
    assert extract_choice("['Rachel']", WINO_PROMPT) == "B"
    assert extract_choice("['Bett']", WINO_PROMPT) == "A"
    assert extract_choice("['Kyle']", WINO_PROMPT) is None  # an option of an earlier example only


def test_choice_letters_limited_to_the_prompts_options():
    assert options_in(WINO_PROMPT) == {"A": "Betty", "B": "Rachel"}
    assert extract_choice("C", WINO_PROMPT) is None
    assert extract_choice("C") == "C"


@pytest.mark.parametrize(("response", "expected"), [
    ("42", "42"),
    ("The answer is -17.", "-17"),
    ("It costs $1,204.50 in total.", "1204.5"),
    ("3.0", "3"),
    ("First 12 apples, then 7 more: 19", "19"),
    ("So x = 0.25, which we round later to 1.", "0.25"),
    ("#### 1,000,000", "1000000"),
    ("−5 degrees", "-5"),
    ("no digits here", None),
])
def test_number(response: str, expected: str | None):
    assert extract_number(response) == expected


GPT4_MBPP = (
    "Certainly! Below is a Python function that takes two lists as input: `source_list` and `elements_to_remove`."
    "\n\n```python\ndef remove_elements(source_list, elements_to_remove):\n    # Using list comprehension to "
    "create a new list without the elements to remove\n    return [element for element in source_list if "
    "element not in elements_to_remove]\n\n# Example usage:\nsource = [1, 2, 3, 4, 5, 6]\nto_remove = [2, 4, 6]"
    "\nresult = remove_elements(source, to_remove)\nprint(result)  # Output: [1, 3, 5]\n```\n\nThis function "
    "iterates over each element in `source_list`."
)
CLAUDE_MBPP_JS = (
    "Here is a function to find the intersection of two arrays in JavaScript:\n\n```js\nfunction "
    "intersection(arr1, arr2) {\n  return arr1.filter(x => arr2.includes(x));\n}\n```\n\nTo explain:"
)


def test_code_takes_the_python_block_and_ignores_comments_and_layout():
    code = extract_code(GPT4_MBPP)
    assert code is not None and code.startswith("def remove_elements(source_list, elements_to_remove):")
    assert "#" not in code and "Certainly" not in code
    same = ("```python\ndef remove_elements(source_list,elements_to_remove):\n\n"
            "    return [element for element in source_list if element not in elements_to_remove]\n"
            "source = [1,2,3,4,5,6]\nto_remove = [2,4,6]\nresult = remove_elements(source, to_remove)\n"
            "print(result)\n```")
    assert extract_code(same) == code


def test_code_skips_other_languages_and_takes_unfenced_answers():
    assert extract_code(CLAUDE_MBPP_JS) is None
    assert extract_code("def f(x):\n    return x + 1") == "def f(x):\n    return x + 1"


@pytest.mark.parametrize(("response", "expected"), [
    (" Paris", "paris"),
    ("The Eiffel Tower!", "eiffel tower"),
    ("  An   apple, a day. ", "apple day"),
    ("...", None),
])
def test_text(response: str, expected: str | None):
    assert normalize_text(response) == expected


def test_registry_by_name_and_custom_extractors():
    assert extract("choice", "['B\\n']") == "B"
    assert get_extractor("number")("x = 2") == "2"
    with pytest.raises(KeyError, match="known: choice, code, key, number, text"):
        get_extractor("letters")

    @register_extractor("yes_no_test")
    def yes_no(text: str, prompt: str | None = None) -> str | None:
        word = text.strip().lower()
        return word if word in ("yes", "no") else None

    try:
        assert extract("yes_no_test", " Yes") == "yes"
    finally:
        from router.checks.extractors import EXTRACTORS

        EXTRACTORS.pop("yes_no_test")
