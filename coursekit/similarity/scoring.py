"""Scores for pairs of teams, found through an index of the features few teams share.

Features are code fingerprints and word shingles, per answer cell. Rarity counts: a
feature that `shared` of the class's N teams have weighs (log(N / shared) / log(N))²:
1 for a team's own passage, 0.4 for one a tenth of a class of 40 wrote, nearly nothing
for what most of the class wrote (`x = x_start.squeeze(1)...`).

Candidates come from two indexes, never from comparing every pair: per cell, which
teams have each feature (two teams become a candidate pair when they share a feature,
or the same [FAILED] lines from the judge, that at most RARE_LIMIT teams have), and a
MinHash LSH index of whole notebooks (datasketch), for a copy of a notebook whose
every answer is a usual one.

A candidate pair's score has two parts:
- share: how much of the two teams' answers they share, all cells pooled: twice the
  weight of the shared features over the content of both notebooks (each feature
  counting at least SIZE_FLOOR there, so answers made of what most teams wrote share
  little); no cell counts for more than CELL_CAP, so no single long answer decides;
- for each answer both teams got wrong with the same [FAILED] lines (the same wrong
  value, or the same failed check): WRONG_STRENGTH / (k - 1)³ x (1 - (k - 1) / (N - 1)),
  k being the number of teams with that failure and that answer: the same rare wrong
  answer is the strongest sign of shared work, a mistake three teams make counts an
  eighth as much, a failure most of the class got (a cell that ran for no one) nothing.
They combine as independent signs: score = 1 - (1 - share) x Π (1 - wrong-answer part).
The constants were set on the synthetic classes of tests/similarity_class.py (planted
copies against independent teams); tests/test_similarity.py reports how they do.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from coursekit.similarity.fingerprints import EMPTY, Boilerplate, Features, features, merged, stable_hash
from coursekit.similarity.records import Answer, AnswerKind, AnswerMatch, Cluster, PairScore, Settings

RARE_LIMIT = 10
RARITY_POWER = 2
CELL_CAP = 5.0
SIZE_FLOOR = 0.1
# Notebooks become candidates when this Jaccard share of their features (those at most COMMON_SHARE of the
# class have) is likely the same.
NOTEBOOK_OVERLAP = 0.3
NOTEBOOK_PERMUTATIONS = 64
COMMON_SHARE = 0.5
WRONG_STRENGTH = 0.9
# A failure both teams got is about their shared answer when this much of the answers match.
SAME_ANSWER = 0.5
# An answer is listed behind a pair from this part of the score on.
LISTED_EVIDENCE = 0.01
DIGITS = 4


@dataclass(frozen=True)
class ClassFeatures:
    """Every team's features per answer cell, and the index of which teams have each feature."""

    teams: tuple[str, ...]
    features: dict[tuple[str, str], Features]          # (team, grade_id) -> features, non-blank answers only
    kinds: dict[str, AnswerKind]                        # grade_id -> kind
    teams_with: dict[tuple[str, int], tuple[str, ...]]  # (grade_id, hash) -> teams, sorted
    failures: dict[tuple[str, str], tuple[str, ...]]    # (team, grade_id) -> [FAILED] lines
    failure_teams: dict[tuple[str, tuple[str, ...]], tuple[str, ...]]  # (grade_id, lines) -> teams
    weights: dict[tuple[str, int], float]               # (grade_id, hash) -> rarity weight

    def weigh(self, grade_id: str, hashes) -> float:
        return math.fsum(self.weights[(grade_id, hash_value)] for hash_value in hashes)

    def content(self, grade_id: str, hashes) -> float:
        """How much an answer holds: its features' weights, each at least SIZE_FLOOR, so that two answers
        made only of what most teams wrote share a small part of their content, not all of it."""
        return math.fsum(max(SIZE_FLOOR, self.weights[(grade_id, hash_value)]) for hash_value in hashes)

    def cells_of(self, team: str) -> list[str]:
        return [grade_id for grade_id in self.kinds if (team, grade_id) in self.features]


def rarity(shared: int, teams: int) -> float:
    if teams <= 2 or shared <= 1:
        return 1.0
    return max(0.0, math.log(teams / shared) / math.log(teams)) ** RARITY_POWER


def index_class(answers: dict[str, list[Answer]], boilerplate: Boilerplate) -> ClassFeatures:
    found: dict[tuple[str, str], Features] = {}
    kinds: dict[str, AnswerKind] = {}
    teams_with: dict[tuple[str, int], list[str]] = defaultdict(list)
    failures: dict[tuple[str, str], tuple[str, ...]] = {}
    failure_teams: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    # Many teams hand in the same text: each distinct one is fingerprinted once.
    known: dict[tuple[AnswerKind, str], Features] = {}
    for team in sorted(answers):
        for answer in answers[team]:
            kinds.setdefault(answer.grade_id, answer.kind)
            if boilerplate.blank(answer):
                continue  # the stub or the release's own lines: nothing to compare, its failures included
            answer_features = known.get((answer.kind, answer.text))
            if answer_features is None:
                try:
                    answer_features = features(answer, boilerplate)
                except (Exception, RecursionError):
                    answer_features = EMPTY  # an answer no tokenizer reads is compared as empty, never the end of the run
                known[(answer.kind, answer.text)] = answer_features
            if answer_features.places:
                found[(team, answer.grade_id)] = answer_features
            for hash_value in answer_features.places:
                teams_with[(answer.grade_id, hash_value)].append(team)
            if answer.failures:
                failures[(team, answer.grade_id)] = answer.failures
                failure_teams[(answer.grade_id, answer.failures)].append(team)
    teams = len(answers)
    return ClassFeatures(tuple(sorted(answers)), found, kinds, {key: tuple(value) for key, value in teams_with.items()},
                         failures, {key: tuple(value) for key, value in failure_teams.items()},
                         {key: rarity(len(value), teams) for key, value in teams_with.items()})


def candidates(index: ClassFeatures) -> list[tuple[str, str]]:
    """Pairs of teams that share a feature or a failure at most RARE_LIMIT teams have, or much of their notebooks."""
    found: set[tuple[str, str]] = set()
    for teams in [*index.teams_with.values(), *index.failure_teams.values()]:
        if 2 <= len(teams) <= RARE_LIMIT:
            found.update((teams[first], teams[second])
                         for first in range(len(teams)) for second in range(first + 1, len(teams)))
    return sorted(found | alike_notebooks(index))


def alike_notebooks(index: ClassFeatures) -> set[tuple[str, str]]:
    """Pairs whose whole notebooks (every cell's features but the commonest) overlap much: MinHash LSH.

    Copying a notebook whose every answer is a usual one leaves no rare feature, yet
    agreeing in every cell is no accident; this finds such pairs without comparing all of them.
    """
    from datasketch import MinHash, MinHashLSH

    common = max(RARE_LIMIT, COMMON_SHARE * len(index.teams))
    salts = {grade_id: stable_hash(grade_id) for grade_id in index.kinds}
    signatures = {}
    for team in index.teams:
        values = sorted(hash_value ^ salts[grade_id] for grade_id in index.cells_of(team)
                        for hash_value in index.features[(team, grade_id)].places
                        if len(index.teams_with[(grade_id, hash_value)]) <= common)
        if values:
            signature = MinHash(num_perm=NOTEBOOK_PERMUTATIONS, seed=1, hashfunc=int, scheme="affine64")
            signature.update_batch(values)
            signatures[team] = signature
    lsh = MinHashLSH(threshold=NOTEBOOK_OVERLAP, num_perm=NOTEBOOK_PERMUTATIONS)
    for team, signature in signatures.items():
        lsh.insert(team, signature)
    found = set()
    for team, signature in signatures.items():
        found.update(tuple(sorted((team, other))) for other in lsh.query(signature) if other != team)
    return found


def wrong_answer_part(teams: int, class_size: int) -> float:
    """WRONG_STRENGTH / (teams - 1)³, less the larger the share of the class with it (all of it: nothing)."""
    teams = max(2, teams)
    return WRONG_STRENGTH / (teams - 1) ** 3 * max(0.0, 1.0 - (teams - 1) / max(1, class_size - 1))


def shared_by(index: ClassFeatures, grade_id: str, matched: list[int]) -> int:
    """How many teams have the matched passages: the median over the matched features."""
    return statistics.median_low(len(index.teams_with[(grade_id, hash_value)]) for hash_value in matched)


@dataclass(frozen=True)
class CellOverlap:
    grade_id: str
    matched: tuple[int, ...]      # hashes both answers have
    shared: float                 # their weight
    similarity: float             # Dice of the two answers' weighted features
    same_failure: tuple[str, ...]
    wrong: float                  # the wrong-answer part, 0 without a shared failure


def cell_overlap(index: ClassFeatures, team_a: str, team_b: str, grade_id: str,
                 masses: dict[tuple[str, str], float]) -> CellOverlap | None:
    features_a, features_b = index.features.get((team_a, grade_id)), index.features.get((team_b, grade_id))
    matched = tuple(sorted(features_a.places.keys() & features_b.places.keys())) if features_a and features_b else ()
    shared = index.weigh(grade_id, matched)
    cell_mass = masses.get((team_a, grade_id), 0.0) + masses.get((team_b, grade_id), 0.0)
    similarity = 2 * shared / cell_mass if cell_mass else 0.0
    failure = index.failures.get((team_a, grade_id), ())
    same_failure = failure if failure and failure == index.failures.get((team_b, grade_id)) else ()
    wrong = 0.0
    if same_failure:
        teams = len(index.failure_teams[(grade_id, same_failure)])
        if matched and similarity >= SAME_ANSWER:
            teams = min(teams, shared_by(index, grade_id, list(matched)))
        wrong = wrong_answer_part(teams, len(index.teams))
    if not matched and not same_failure:
        return None
    return CellOverlap(grade_id, matched, shared, similarity, same_failure, wrong)


def score_pair(index: ClassFeatures, team_a: str, team_b: str, masses: dict[tuple[str, str], float],
               totals: dict[str, float], settings: Settings) -> PairScore | None:
    """The pair's score with the answers behind it; None below the record threshold."""
    overlaps = [overlap for grade_id in index.kinds
                if (overlap := cell_overlap(index, team_a, team_b, grade_id, masses)) is not None]
    total = totals[team_a] + totals[team_b]
    share_of = {overlap.grade_id: 2 * overlap.shared * capped(masses, team_a, team_b, overlap.grade_id) / total
                if total else 0.0 for overlap in overlaps}
    remaining = 1.0 - min(1.0, math.fsum(share_of.values()))
    for overlap in overlaps:
        remaining *= 1.0 - overlap.wrong
    score = round(1.0 - remaining, DIGITS)
    if score < settings.record_threshold:
        return None
    matches = []
    for overlap in overlaps:
        evidence = 1.0 - (1.0 - share_of[overlap.grade_id]) * (1.0 - overlap.wrong)
        if evidence >= LISTED_EVIDENCE:
            matches.append(describe(index, team_a, team_b, overlap, evidence))
    matches.sort(key=lambda match: (-match.evidence, match.grade_id))
    return PairScore(team_a, team_b, score, tuple(matches), score >= settings.threshold)


def describe(index: ClassFeatures, team_a: str, team_b: str, overlap: CellOverlap, evidence: float) -> AnswerMatch:
    places_a = index.features[(team_a, overlap.grade_id)].places if overlap.matched else {}
    places_b = index.features[(team_b, overlap.grade_id)].places if overlap.matched else {}
    return AnswerMatch(
        grade_id=overlap.grade_id, kind=index.kinds[overlap.grade_id], similarity=round(overlap.similarity, DIGITS),
        shared_by=shared_by(index, overlap.grade_id, list(overlap.matched)) if overlap.matched else 0,
        evidence=round(evidence, DIGITS), same_failure=overlap.same_failure,
        spans_a=merged(span for hash_value in overlap.matched for span in places_a[hash_value]),
        spans_b=merged(span for hash_value in overlap.matched for span in places_b[hash_value]))


def capped(masses: dict[tuple[str, str], float], team_a: str, team_b: str, grade_id: str) -> float:
    """The factor that brings a cell's weight down to at most CELL_CAP, so no single long answer decides a pair."""
    largest = max(masses.get((team_a, grade_id), 0.0), masses.get((team_b, grade_id), 0.0))
    return min(1.0, CELL_CAP / largest) if largest else 1.0


def score_class(index: ClassFeatures, settings: Settings) -> list[PairScore]:
    """Every candidate pair scoring at least the record threshold, strongest first."""
    masses = {key: index.content(key[1], sorted(found.places)) for key, found in sorted(index.features.items())}
    totals: dict[str, float] = defaultdict(float)
    for (team, _), mass in sorted(masses.items()):
        totals[team] += min(mass, CELL_CAP)
    pairs = []
    for team_a, team_b in candidates(index):
        pair = score_pair(index, team_a, team_b, masses, totals, settings)
        if pair is not None:
            pairs.append(pair)
    pairs.sort(key=lambda pair: (-pair.score, pair.team_a, pair.team_b))
    return pairs


def clusters(pairs: list[PairScore]) -> list[Cluster]:
    """Connected groups of three or more teams joined by flagged pairs."""
    parent: dict[str, str] = {}

    def root(team: str) -> str:
        while parent.setdefault(team, team) != team:
            parent[team] = parent[parent[team]]
            team = parent[team]
        return team

    flagged = [pair for pair in pairs if pair.flagged]
    for pair in flagged:
        first, second = root(pair.team_a), root(pair.team_b)
        if first != second:
            parent[max(first, second)] = min(first, second)
    groups: dict[str, list[str]] = defaultdict(list)
    for team in sorted(parent):
        groups[root(team)].append(team)
    found = []
    for members in groups.values():
        if len(members) >= 3:
            inside = tuple(pair for pair in flagged if pair.team_a in members)
            found.append(Cluster(tuple(members), inside))
    found.sort(key=lambda cluster: (-max(pair.score for pair in cluster.pairs), cluster.teams))
    return found
