"""Answers as features: winnowed fingerprints of code (copydetect), word shingles of free text.

Code goes through copydetect (https://github.com/blingenf/copydetect): its pygments-based
filter turns every name into `V`, drops comments and whitespace and every string into `S`,
so renamed variables, changed comments and blank lines change nothing; its winnowing keeps
a position-independent subset of each line's k-grams. K-grams never span two lines, so
lines put in another order match as well, and two teams that reorder a usual answer the
same way share only that usual answer.
copydetect hashes k-grams with Python's `hash()`, which is salted per process; the k-grams
here are hashed with BLAKE2b instead, so the same answers give the same fingerprints, and the
same pairs, in every run.

Free text is split into words after the question page's normalization
(coursekit.ta_grading.questions.normalized: case and whitespace do not count, the stub is
blank) and cut into overlapping word shingles.

Each feature keeps where it occurs in the answer's own text, so the pages can highlight
the matching passages.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy
from copydetect.utils import filter_code, winnow

from coursekit.similarity.records import Answer, AnswerKind
from coursekit.ta_grading.questions import normalized

# Notebook answers are a few lines: k-grams of 12 filtered characters (`V=V.V(1).V(0)`),
# every smallest hash of 3 neighbours kept; any shared run of 14 filtered characters is seen.
CODE_KGRAM = 12
CODE_WINDOW = 3
TEXT_SHINGLE_WORDS = 2
# A notebook answer is a few dozen lines; the lines after this many are not fingerprinted (tokenizing is the slow part).
MAX_CODE_LINES = 400
WORD = re.compile(r"\w+")
# Fingerprints must compare exactly in copydetect's winnowing, which keeps them in float64.
HASH_BITS = 52


@dataclass(frozen=True)
class Features:
    """One answer's features: each hash with the (start, end) passages of the answer's text it covers."""

    places: dict[int, tuple[tuple[int, int], ...]]

    @property
    def hashes(self) -> frozenset[int]:
        return frozenset(self.places)


EMPTY = Features({})


def stable_hash(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - HASH_BITS)


def filtered(code: str) -> tuple[str, numpy.ndarray]:
    """copydetect's filtered code and its offsets back into the original."""
    return filter_code(code, "answer.py", language="python")


def code_kgrams(filtered_code: str) -> numpy.ndarray:
    return numpy.array([stable_hash(filtered_code[start:start + CODE_KGRAM])
                        for start in range(len(filtered_code) - CODE_KGRAM + 1)], dtype=numpy.int64)


def line_kgrams(filtered_line: str) -> numpy.ndarray:
    """The k-grams of one filtered line; a line shorter than k is one k-gram of its own."""
    if len(filtered_line) < CODE_KGRAM:
        return numpy.array([stable_hash(filtered_line)], dtype=numpy.int64)
    return code_kgrams(filtered_line)


def code_boilerplate(sources: list[str]) -> frozenset[int]:
    """Every k-gram of the given code (not only winnowed ones), so none of it can count as a match."""
    hashes: set[int] = set()
    for source in sources:
        for line in source.splitlines():
            filtered_line = filtered(line)[0]
            if filtered_line:
                hashes.update(line_kgrams(filtered_line).tolist())
    return frozenset(hashes)


def to_original(positions: numpy.ndarray, offsets: numpy.ndarray) -> numpy.ndarray:
    """Positions in the filtered code as positions in the answer's text (copydetect's compare_files does the same)."""
    if len(offsets) == 0 or len(positions) == 0:
        return positions
    return positions + offsets[:, 1][numpy.clip(numpy.searchsorted(offsets[:, 0], positions), 0, offsets.shape[0] - 1)]


def code_features(code: str, boilerplate: frozenset[int]) -> Features:
    """Winnowed k-grams line by line: no k-gram spans two lines, so lines in another order match as well.

    The answer is tokenized once; each filtered character knows its place in the answer,
    and so its line.
    """
    code = "".join(code.splitlines(keepends=True)[:MAX_CODE_LINES])
    filtered_code, offsets = filtered(code)
    if not filtered_code:
        return EMPTY
    original = to_original(numpy.arange(len(filtered_code)), offsets)
    line_starts = numpy.array([0] + [index + 1 for index, character in enumerate(code) if character == "\n"])
    line_of = numpy.searchsorted(line_starts, original, side="right") - 1
    breaks = [0, *(numpy.flatnonzero(numpy.diff(line_of)) + 1).tolist(), len(filtered_code)]
    places: dict[int, list[tuple[int, int]]] = {}
    for first, after in zip(breaks, breaks[1:]):
        hashes = line_kgrams(filtered_code[first:after])
        selected, indexes = winnow(hashes, CODE_WINDOW, remove_duplicates=False) if len(hashes) > 1 \
            else (hashes, numpy.array([0]))
        width = min(CODE_KGRAM, after - first)
        for hash_value, index in zip(selected.tolist(), indexes.tolist()):
            if hash_value not in boilerplate:
                places.setdefault(hash_value, []).append(
                    (int(original[first + index]), int(original[first + index + width - 1]) + 1))
    return Features({hash_value: merged(spans) for hash_value, spans in places.items()})


def merged(spans) -> tuple[tuple[int, int], ...]:
    """Overlapping (start, end) passages joined, in order."""
    result: list[list[int]] = []
    for start, end in sorted(spans):
        if result and start <= result[-1][1]:
            result[-1][1] = max(result[-1][1], end)
        else:
            result.append([start, end])
    return tuple((start, end) for start, end in result)


def words(text: str) -> list[tuple[str, int, int]]:
    """The words of a free-text answer with their places; none when the question page counts it as blank."""
    if not normalized(text):
        return []
    return [(match.group().casefold(), match.start(), match.end()) for match in WORD.finditer(text)]


def shingles(word_list: list[tuple[str, int, int]]) -> dict[int, list[tuple[int, int]]]:
    size = min(TEXT_SHINGLE_WORDS, len(word_list))
    places: dict[int, list[tuple[int, int]]] = {}
    for start in range(len(word_list) - size + 1) if size else ():
        window = word_list[start:start + size]
        places.setdefault(stable_hash(" ".join(word for word, _, _ in window)), []).append((window[0][1], window[-1][2]))
    return places


def text_boilerplate(sources: list[str]) -> frozenset[int]:
    """Shingles of the release's own text: a question quoted in an answer is no evidence."""
    hashes: set[int] = set()
    for source in sources:
        hashes.update(shingles([(match.group().casefold(), 0, 0) for match in WORD.finditer(source)]))
    return frozenset(hashes)


def text_features(text: str, boilerplate: frozenset[int]) -> Features:
    return Features({hash_value: tuple(spots) for hash_value, spots in shingles(words(text)).items()
                     if hash_value not in boilerplate})


def code_lines(code: str) -> list[str]:
    """The lines of code that do something: stripped, without comments and blank lines."""
    lines = []
    for line in code.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


@dataclass(frozen=True)
class Boilerplate:
    code: frozenset[int]
    text: frozenset[int]
    given_lines: frozenset[str]   # every line of the release's code, stripped

    @classmethod
    def of_release(cls, code_sources: list[str], markdown_sources: list[str]) -> "Boilerplate":
        given = frozenset(line for source in code_sources for line in code_lines(source))
        return cls(code_boilerplate(code_sources), text_boilerplate(markdown_sources), given)

    def blank(self, answer: Answer) -> bool:
        """An answer the team did not write: the stub, nothing, or only lines the release gave."""
        if answer.kind == AnswerKind.CODE:
            return all(line in self.given_lines for line in code_lines(answer.text))
        return not normalized(answer.text)


def features(answer: Answer, boilerplate: Boilerplate) -> Features:
    if answer.kind == AnswerKind.CODE:
        return code_features(answer.text, boilerplate.code)
    return text_features(answer.text, boilerplate.text)
