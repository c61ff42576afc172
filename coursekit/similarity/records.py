"""What the similarity step hands to reports: frozen records, no HTML."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_THRESHOLD = 0.45
DEFAULT_RECORD_THRESHOLD = 0.3


class AnswerKind(StrEnum):
    CODE = "code"
    TEXT = "text"


@dataclass(frozen=True)
class Answer:
    """One team's answer to one answer cell, as the autograded notebook has it."""

    team_id: str
    grade_id: str
    kind: AnswerKind
    text: str
    failures: tuple[str, ...] = ()    # the judge's [FAILED] lines on this answer (code answers only)


@dataclass(frozen=True)
class AnswerMatch:
    """What two teams' answers to one cell share."""

    grade_id: str
    kind: AnswerKind
    similarity: float                 # rarity-weighted share of the two answers that matches, 0-1
    shared_by: int                    # teams whose answer has the matched passages (2: only this pair)
    evidence: float                   # this answer's part of the pair's score, 0-1
    same_failure: tuple[str, ...]     # [FAILED] lines both answers got from the judge, () if none
    spans_a: tuple[tuple[int, int], ...]  # matching passages of team_a's answer text (start, end)
    spans_b: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PairScore:
    team_a: str                       # team_a < team_b
    team_b: str
    score: float                      # 0-1: how strongly the answers suggest shared work
    matches: tuple[AnswerMatch, ...]  # the answers behind the score, strongest first
    flagged: bool                     # at or above the threshold: a TA should look

    @property
    def answers(self) -> tuple[str, ...]:
        return tuple(match.grade_id for match in self.matches)


@dataclass(frozen=True)
class Cluster:
    """Teams joined by flagged pairs: three or more teams that share answers are one case, not separate pairs."""

    teams: tuple[str, ...]
    pairs: tuple[PairScore, ...]      # the flagged pairs among them


@dataclass(frozen=True)
class Settings:
    threshold: float = DEFAULT_THRESHOLD              # pairs from here on need attention
    record_threshold: float = DEFAULT_RECORD_THRESHOLD  # pairs from here on go into similarity.csv


@dataclass(frozen=True)
class SimilarityReport:
    settings: Settings
    teams: tuple[str, ...]                       # teams compared
    pairs: tuple[PairScore, ...]                 # pairs at or above record_threshold, strongest first
    clusters: tuple[Cluster, ...]                # groups of three or more teams
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)  # (team, grade_id) of the teams in pairs
    cell_order: tuple[str, ...] = ()             # answer cells in notebook order
    given_lines: frozenset[str] = frozenset()    # stripped lines of the release's code, shown greyed

    @property
    def flagged(self) -> tuple[PairScore, ...]:
        return tuple(pair for pair in self.pairs if pair.flagged)

    def clustered_pairs(self) -> set[tuple[str, str]]:
        return {(pair.team_a, pair.team_b) for cluster in self.clusters for pair in cluster.pairs}
