"""Write ``prompts.jsonl``: the project's own labeled prompt set (written by this project, MIT like it).

Every reference is either a fact the authors are sure of (country capitals, chemical symbols,
yes/no facts) or computed here (arithmetic). Each row::

    {"id", "prompt", "reference", "task", "extract", "split", ...}

``extract`` says how an answer is graded against ``reference`` (see :mod:`router.checks.grading`):
``contains`` (the reference, or one of ``aliases``, appears as a word), ``number``, ``yes_no``,
``one_word``, ``tool_call`` (``tools`` holds the schema, ``reference`` the expected call) and
``open`` (no single answer: ``reference`` is null, any complete non-empty answer is right).
``split`` is ``tune`` or ``heldout``, from a hash of the id (deterministic, about half each).

Run: ``python data/labeled/make_labeled.py`` (rewrites prompts.jsonl next to this file).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
    ("Brazil", "Brasília", ["Brasilia"]), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("India", "New Delhi"),
    ("Turkey", "Ankara"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
    ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Ireland", "Dublin"), ("Belgium", "Brussels"),
    ("Netherlands", "Amsterdam"), ("Switzerland", "Bern", ["Berne"]), ("Czech Republic", "Prague"),
    ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"), ("Colombia", "Bogotá", ["Bogota"]),
    ("Venezuela", "Caracas"), ("Cuba", "Havana"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("South Korea", "Seoul"), ("Indonesia", "Jakarta"), ("Philippines", "Manila"), ("Iran", "Tehran"),
    ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"), ("Pakistan", "Islamabad"), ("Nigeria", "Abuja"),
    ("Ethiopia", "Addis Ababa"), ("Morocco", "Rabat"), ("Ghana", "Accra"), ("New Zealand", "Wellington"),
    ("Ukraine", "Kyiv", ["Kiev"]), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"), ("Iceland", "Reykjavik", ["Reykjavík"]), ("Lebanon", "Beirut"), ("Syria", "Damascus"),
    ("Nepal", "Kathmandu"), ("Mongolia", "Ulaanbaatar", ["Ulan Bator"]), ("Afghanistan", "Kabul"),
]

TRIVIA = [
    ("What is the chemical symbol for gold?", "Au"), ("What is the chemical symbol for silver?", "Ag"),
    ("What is the chemical symbol for iron?", "Fe"), ("What is the chemical symbol for sodium?", "Na"),
    ("What is the chemical symbol for oxygen?", "O"), ("What is the chemical formula of water?", "H2O"),
    ("Which planet is closest to the Sun?", "Mercury"), ("Which planet is the largest in the Solar System?", "Jupiter"),
    ("Which planet is known as the Red Planet?", "Mars"), ("What is the largest ocean on Earth?", "Pacific"),
    ("Who wrote the play Romeo and Juliet?", "Shakespeare"), ("Who painted the Mona Lisa?", "Leonardo", ["da Vinci"]),
    ("Who developed the theory of general relativity?", "Einstein"),
    ("What gas do plants absorb from the air for photosynthesis?", "carbon dioxide", ["CO2"]),
    ("How many legs does a spider have?", "8", ["eight"]), ("How many days are in a leap year?", "366"),
    ("How many continents are there?", "7", ["seven"]), ("How many sides does a hexagon have?", "6", ["six"]),
    ("How many minutes are in an hour?", "60", ["sixty"]), ("How many hours are in a day?", "24"),
    ("What is the freezing point of water in degrees Celsius?", "0", ["zero"]),
    ("What is the boiling point of water at sea level in degrees Celsius?", "100"),
    ("What is the tallest mountain on Earth?", "Everest"), ("What is the longest river in South America?", "Amazon"),
    ("What language is mainly spoken in Brazil?", "Portuguese"), ("What is the currency of Japan?", "yen"),
    ("What is the currency of the United Kingdom?", "pound"), ("Which animal is the largest mammal?", "blue whale"),
    ("What is the hardest natural substance?", "diamond"), ("Which organ pumps blood through the body?", "heart"),
    ("What is the square root of 81?", "9", ["nine"]), ("How many players are on a soccer team on the field?", "11",
                                                         ["eleven"]),
    ("In which country are the pyramids of Giza?", "Egypt"), ("What is the largest desert in Africa?", "Sahara"),
    ("Which element has the atomic number 1?", "hydrogen"), ("Who was the first person to walk on the Moon?",
                                                             "Armstrong"),
    ("What color do you get by mixing blue and yellow?", "green"), ("How many weeks are in a year?", "52"),
    ("What is the smallest prime number?", "2", ["two"]), ("What is the capital city of the United States?",
                                                          "Washington"),
]

YES_NO = [
    ("Is the Sun a star?", "yes"), ("Is the Moon a planet?", "no"), ("Is water made of hydrogen and oxygen?", "yes"),
    ("Is Paris the capital of France?", "yes"), ("Is Berlin the capital of Spain?", "no"),
    ("Do spiders have six legs?", "no"), ("Is 7 a prime number?", "yes"), ("Is 9 a prime number?", "no"),
    ("Is the Pacific the largest ocean?", "yes"), ("Do fish breathe with gills?", "yes"),
    ("Is ice colder than boiling water?", "yes"), ("Is Mount Everest in Africa?", "no"),
    ("Is a whale a fish?", "no"), ("Is a bat a mammal?", "yes"), ("Does the Earth orbit the Sun?", "yes"),
    ("Does the Sun orbit the Earth?", "no"), ("Is gold a metal?", "yes"), ("Is glass a metal?", "no"),
    ("Is 10 an even number?", "yes"), ("Is 15 an even number?", "no"), ("Is Tokyo in Japan?", "yes"),
    ("Is Cairo in Brazil?", "no"), ("Can penguins fly?", "no"), ("Do bees make honey?", "yes"),
    ("Is the Amazon a river?", "yes"), ("Is Mars closer to the Sun than Earth?", "no"),
    ("Is a triangle a shape with three sides?", "yes"), ("Does a square have five sides?", "no"),
    ("Is 100 greater than 99?", "yes"), ("Is 3 greater than 30?", "no"), ("Is English written left to right?", "yes"),
    ("Is the Atlantic Ocean salt water?", "yes"), ("Is Australia a continent?", "yes"),
    ("Is Rome the capital of Germany?", "no"), ("Do cats lay eggs?", "no"), ("Do birds have feathers?", "yes"),
    ("Is oxygen a gas at room temperature?", "yes"), ("Is iron a liquid at room temperature?", "no"),
    ("Is a tomato blue when ripe?", "no"), ("Is snow cold?", "yes"),
]

ONE_WORD = [
    ("What is the opposite of hot?", "cold"), ("What is the opposite of up?", "down"),
    ("What is the opposite of day?", "night"), ("What is the opposite of big?", "small", ["little"]),
    ("What color is the sky on a clear day?", "blue"), ("What color is grass?", "green"),
    ("What color is snow?", "white"), ("What animal says meow?", "cat"), ("What animal barks?", "dog"),
    ("What is the plural of mouse?", "mice"), ("What is the past tense of go?", "went"),
    ("What day comes after Monday?", "Tuesday"), ("What month comes after January?", "February"),
    ("What is frozen water called?", "ice"), ("What is the first letter of the English alphabet?", "A"),
]

OPEN = [
    "Write one sentence about the sea.", "Describe a cat in one sentence.", "Give me a name for a pet goldfish.",
    "Write a short greeting for a birthday card.", "Suggest a title for a story about a lost key.",
    "Write one sentence about autumn.", "Name something you might find in a kitchen.",
    "Give one tip for sleeping better.", "Write a short slogan for a bakery.", "Describe the color red to a friend.",
    "Write a haiku about rain.", "Suggest a weekend activity.", "Write one sentence about mountains.",
    "Give me a word that rhymes with cat.", "Write a short thank-you note to a teacher.",
    "Describe your favorite season in one sentence.", "Name a fruit that is yellow.",
    "Write one sentence about the city at night.", "Suggest a name for a robot.",
    "Write a short motivational sentence.", "Describe a forest in one sentence.", "Give an example of a hobby.",
    "Write one sentence about coffee.", "Suggest a healthy breakfast.", "Write a two-line poem about the moon.",
    "Describe a sunny day in one sentence.", "Give a reason to learn a new language.",
    "Write one sentence about friendship.", "Name an animal that lives in the ocean.",
    "Write a short invitation to a picnic.", "Suggest a book genre to read on holiday.",
    "Write one sentence about trains.", "Give one way to save water at home.", "Describe a dog in one sentence.",
    "Write a short apology for being late.", "Name a musical instrument.", "Write one sentence about snow.",
    "Suggest a color for a bedroom wall.", "Write one sentence about the stars.", "Give a tip for studying.",
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                       "required": ["city"]},
    },
}
WEATHER_CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Cairo", "Sydney", "Toronto", "Moscow",
                  "Lisbon", "Dublin", "Vienna", "Oslo", "Athens", "Seoul", "Lima", "Nairobi", "Chicago", "Boston",
                  "Denver", "Dallas", "Miami", "Seattle", "Munich", "Milan", "Prague", "Warsaw", "Bangkok", "Delhi"]
WEATHER_TEMPLATES = ["What is the weather in {}?", "How is the weather in {} today?", "Is it raining in {}?"]


def _split(item_id: str) -> str:
    return "tune" if hashlib.sha256(item_id.encode()).digest()[0] % 2 == 0 else "heldout"


def rows() -> list[dict]:
    out: list[dict] = []

    def add(task: str, prompt: str, reference, extract: str, **extra) -> None:
        item_id = f"{task}-{sum(1 for r in out if r['task'] == task):03d}"
        out.append({"id": item_id, "prompt": prompt, "reference": reference, "task": task, "extract": extract,
                    **extra, "split": _split(item_id)})

    for country, capital, *aliases in CAPITALS:
        add("capital", f"What is the capital of {country}?", capital, "contains",
            **({"aliases": aliases[0]} if aliases else {}))
    rng = random.Random(25)
    for i in range(60):
        op = "+-*"[i % 3]
        a, b = (rng.randint(2, 99), rng.randint(2, 99)) if op != "*" else (rng.randint(2, 12), rng.randint(2, 12))
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        prompt = f"What is {a} {op} {b}?" if i % 2 == 0 else f"What is {a} {word} {b}?"
        add("arithmetic", prompt, str(value), "number")
    for question, answer in YES_NO:
        add("yes_no", f"{question} Answer yes or no.", answer, "yes_no")
    for question, answer, *aliases in TRIVIA:
        add("trivia", question, answer, "contains", **({"aliases": aliases[0]} if aliases else {}))
    for question, answer, *aliases in ONE_WORD:
        add("format", f"Answer with one word. {question}", answer, "one_word",
            **({"aliases": aliases[0]} if aliases else {}))
    for _ in range(15):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        add("format", f"Reply with only the number, nothing else: what is {a} + {b}?", str(a + b), "number_only")
    for i, city in enumerate(WEATHER_CITIES):
        add("tool_call", WEATHER_TEMPLATES[i % len(WEATHER_TEMPLATES)].format(city),
            {"name": "get_weather", "args": {"city": city}}, "tool_call", tools=[WEATHER_TOOL])
    for prompt in OPEN:
        add("open", prompt, None, "open")
    return out


def main() -> None:
    path = Path(__file__).with_name("prompts.jsonl")
    data = rows()
    with path.open("w", encoding="utf-8") as fh:
        for row in data:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tune = sum(r["split"] == "tune" for r in data)
    print(f"{len(data)} prompts ({tune} tune, {len(data) - tune} heldout) -> {path}")


if __name__ == "__main__":
    main()
