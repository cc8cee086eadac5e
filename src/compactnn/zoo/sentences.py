"""A deterministic corpus of varied English sentences for sentence-embedding experiments.

No downloads: sentences are built from templates and word lists over twelve topics
(sport, food, weather, travel, technology, science, health, finance, music, animals,
home, work), each with several sentence shapes (statements, questions, requests,
comparisons, past and future events), so that the corpus has clusters of related
sentences (nearest-neighbour retrieval is meaningful) without exact duplicates.
The same ``seed`` always gives the same sentences in the same order.

>>> train, held_out = sentence_split(n_train=100, n_held_out=20, seed=0)
>>> len(train), len(held_out), set(train).isdisjoint(held_out)
(100, 20, True)
"""

from __future__ import annotations

import numpy as np

from compactnn._validate import integer

__all__ = ["TOPICS", "generate_sentences", "sentence_split"]

_NAMES = ("Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
          "Kemal", "Lucia", "Marta", "Nikos", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
          "my sister", "our neighbour", "the teacher", "a young student", "the old man",
          "my colleague", "the manager", "her cousin", "the doctor", "a tourist")
_PLACES = ("Lisbon", "Oslo", "Kyoto", "Nairobi", "Lima", "Toronto", "Prague", "Hanoi", "Cairo",
           "Melbourne", "the mountains", "the coast", "a small village", "the city centre",
           "the old town", "the harbour", "the countryside", "the island")
_TIMES = ("yesterday", "last week", "this morning", "on Sunday", "every evening", "in April",
          "after lunch", "before dawn", "at the weekend", "tonight", "next month", "in winter")
_ADJ = ("quick", "slow", "noisy", "quiet", "expensive", "cheap", "strange", "wonderful",
        "difficult", "simple", "long", "short", "famous", "unusual", "busy", "calm")

# topic -> (subjects, verbs + objects, descriptive nouns)
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "sport": (
        ("the football team", "the tennis player", "the runner", "the swimmer", "the coach",
         "the cyclists", "the goalkeeper", "the basketball squad"),
        ("won the final", "lost the match", "trained on the track", "broke the record",
         "scored a late goal", "missed the penalty", "finished the marathon",
         "played in the rain", "signed a new contract", "injured a knee"),
        ("match", "tournament", "stadium", "race", "season", "league", "game", "trophy"),
    ),
    "food": (
        ("the chef", "the baker", "my grandmother", "the restaurant", "the waiter",
         "the cook", "the kitchen staff", "the food truck"),
        ("baked fresh bread", "cooked a spicy curry", "served cold soup", "burned the rice",
         "made a chocolate cake", "grilled some fish", "prepared a vegetable stew",
         "opened a bottle of wine", "sliced the tomatoes", "ran out of coffee"),
        ("recipe", "meal", "dinner", "breakfast", "dessert", "sauce", "menu", "salad"),
    ),
    "weather": (
        ("the storm", "the wind", "the rain", "the snow", "the fog", "the heat wave",
         "the forecast", "the thunder"),
        ("flooded the streets", "closed the airport", "knocked down trees",
         "kept everyone indoors", "cleared by noon", "cooled the air", "lasted all night",
         "damaged the roofs", "covered the hills", "surprised the farmers"),
        ("weather", "climate", "temperature", "sky", "cloud", "storm", "season", "breeze"),
    ),
    "travel": (
        ("the train", "the flight", "the ferry", "the bus driver", "the travellers",
         "the hotel", "the tour guide", "the pilot"),
        ("arrived two hours late", "was cancelled", "left on time", "crossed the border",
         "stopped at every station", "lost our luggage", "offered a free upgrade",
         "followed the coastal road", "booked the last room", "showed us the old castle"),
        ("journey", "trip", "ticket", "passport", "holiday", "map", "suitcase", "route"),
    ),
    "technology": (
        ("the new phone", "the laptop", "the software update", "the server", "the robot",
         "the app", "the website", "the printer"),
        ("crashed again", "ran out of battery", "fixed the security bug",
         "slowed down the computer", "deleted my files", "answered the question",
         "uploaded the photos", "stopped working", "installed itself overnight",
         "translated the text"),
        ("device", "program", "network", "screen", "keyboard", "password", "cable", "chip"),
    ),
    "science": (
        ("the researchers", "the telescope", "the chemist", "the experiment", "the biologist",
         "the physicist", "the laboratory", "the satellite"),
        ("discovered a new planet", "measured the radiation", "mixed two liquids",
         "observed a rare bird", "published the results", "failed to replicate the study",
         "mapped the ocean floor", "detected a weak signal", "sequenced the genome",
         "cooled the sample"),
        ("theory", "atom", "molecule", "galaxy", "cell", "data", "hypothesis", "measurement"),
    ),
    "health": (
        ("the nurse", "the patient", "the hospital", "the surgeon", "the pharmacist",
         "the clinic", "the dentist", "the therapist"),
        ("treated the fever", "prescribed new medicine", "recovered quickly",
         "checked the blood pressure", "cancelled the appointment", "gave the vaccine",
         "set the broken arm", "recommended more sleep", "ran some tests",
         "reduced the waiting time"),
        ("illness", "medicine", "treatment", "diet", "exercise", "injury", "sleep", "pain"),
    ),
    "finance": (
        ("the bank", "the investors", "the company", "the stock market", "the accountant",
         "the government", "the shop owner", "the startup"),
        ("raised interest rates", "lost a lot of money", "paid the taxes",
         "doubled its profits", "cut the budget", "borrowed from a friend",
         "sold the shares", "opened a savings account", "missed the deadline",
         "hired new staff"),
        ("price", "loan", "salary", "debt", "budget", "profit", "invoice", "tax"),
    ),
    "music": (
        ("the band", "the pianist", "the choir", "the singer", "the orchestra",
         "the drummer", "the violinist", "the radio station"),
        ("played a new song", "cancelled the concert", "recorded an album",
         "sang out of tune", "tuned the guitar", "practised for hours",
         "performed in the park", "sold out the tour", "wrote the lyrics",
         "won a music award"),
        ("melody", "rhythm", "concert", "song", "album", "instrument", "note", "chorus"),
    ),
    "animals": (
        ("the dog", "the cat", "the horse", "the parrot", "the fox", "the bees",
         "the elephant", "the fish"),
        ("chased the ball", "slept in the sun", "escaped from the garden",
         "ate all the food", "barked at the postman", "climbed the tree",
         "swam across the lake", "hid under the bed", "followed the farmer",
         "made a nest"),
        ("pet", "zoo", "farm", "forest", "tail", "feather", "paw", "nest"),
    ),
    "home": (
        ("the kitchen", "the roof", "the landlord", "the plumber", "the children",
         "the old house", "the garden", "the washing machine"),
        ("needed a new coat of paint", "leaked during the night", "raised the rent",
         "repaired the pipes", "cleaned their rooms", "was sold last year",
         "grew tomatoes and beans", "made a terrible noise", "stayed cold all winter",
         "lost the keys"),
        ("house", "apartment", "furniture", "window", "door", "floor", "neighbour", "room"),
    ),
    "work": (
        ("the team", "the boss", "the engineers", "the interns", "the office",
         "the committee", "the designers", "the sales department"),
        ("finished the project", "worked late again", "held a long meeting",
         "missed the target", "moved to a new building", "approved the plan",
         "presented the report", "changed the schedule", "asked for a raise",
         "answered the emails"),
        ("job", "meeting", "deadline", "report", "contract", "career", "office", "task"),
    ),
}

_SHAPES = (
    "{S} {V} {T}.",
    "{T}, {S} {V}.",
    "{N} said that {s} {V} {T}.",
    "Did you hear that {s} {V}?",
    "I think {s} {V} in {P}.",
    "In {P}, {s} {V} {T}.",
    "According to {n}, {s} {V}.",
    "Nobody expected that {s} {V}.",
    "Why do people say that {s} {V}?",
    "It was a {A} {D} when {s} {V}.",
    "{N} told me about a {A} {D} in {P}.",
    "This {D} felt {A} compared with the last one.",
    "Can you tell me more about the {D} in {P}?",
    "Please write a short note about the {A} {D}.",
    "{N} is worried about the {D}.",
    "After {s} {V}, {n} went home.",
    "We talked about the {D} {T}.",
    "The news that {s} {V} spread quickly.",
)


def _fill(rng: np.random.Generator, topic: str) -> str:
    subjects, verbs, nouns = TOPICS[topic]
    shape = _SHAPES[rng.integers(len(_SHAPES))]
    subj = subjects[rng.integers(len(subjects))]
    name = _NAMES[rng.integers(len(_NAMES))]
    text = shape.format(
        S=subj[0].upper() + subj[1:], s=subj, V=verbs[rng.integers(len(verbs))],
        T=_TIMES[rng.integers(len(_TIMES))], P=_PLACES[rng.integers(len(_PLACES))],
        N=name[0].upper() + name[1:], n=name, A=_ADJ[rng.integers(len(_ADJ))],
        D=nouns[rng.integers(len(nouns))])
    return text[0].upper() + text[1:]


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences, topics drawn uniformly; the same seed gives the same list.

    Raises:
        ValueError: ``n`` is negative or larger than the generator can make distinct.

    >>> generate_sentences(3, seed=1) == generate_sentences(3, seed=1)
    True
    """
    integer("n", n, 0)
    rng = np.random.default_rng(seed)
    topics = sorted(TOPICS)
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"could not make {n} distinct sentences (made {len(out)})")
        s = _fill(rng, topics[rng.integers(len(topics))])
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def sentence_split(n_train: int = 3000, n_held_out: int = 500,
                   seed: int = 0) -> tuple[list[str], list[str]]:
    """Disjoint ``(train, held_out)`` lists of distinct sentences (distillation data and
    the evaluation set), deterministic in ``seed``: the held-out sentences are the first
    ``n_held_out`` generated, the training sentences the next ``n_train``, so the
    held-out set does not depend on ``n_train`` and a larger ``n_train`` extends the
    training list (the generator is prefix-stable).

    >>> train, held = sentence_split(10, 5)
    >>> len(train), len(held)
    (10, 5)
    >>> sentence_split(20, 5)[0][:10] == train and sentence_split(20, 5)[1] == held
    True
    """
    if n_train < 0 or n_held_out < 0:
        raise ValueError(f"sizes must be non-negative, got {n_train}, {n_held_out}")
    sents = generate_sentences(n_held_out + n_train, seed)
    return sents[n_held_out:], sents[:n_held_out]
