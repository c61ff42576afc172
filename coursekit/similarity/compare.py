"""The similarity step: from a course's autograded notebooks (or answers in hand) to a SimilarityReport."""
from __future__ import annotations

from pathlib import Path

from nbformat import NotebookNode

from coursekit.errors import CourseKitError
from coursekit.similarity.answers import autograded_teams, cell_order, read_class, release_notebook, release_sources
from coursekit.similarity.fingerprints import Boilerplate
from coursekit.similarity.records import Answer, Settings, SimilarityReport
from coursekit.similarity.scoring import clusters, index_class, score_class


def settings_from(config) -> Settings:
    """c.Similarity.threshold and c.Similarity.record_threshold of nbgrader_config.py (both 0-1)."""
    section = config.Similarity if "Similarity" in config else {}
    defaults = Settings()
    values = {}
    for name in ("threshold", "record_threshold"):
        value = section.get(name, getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise CourseKitError(f"c.Similarity.{name} = {value!r} in nbgrader_config.py is not a number from 0 to 1; "
                                 f"set it like c.Similarity.{name} = {getattr(defaults, name)}.")
        values[name] = float(value)
    return Settings(threshold=values["threshold"], record_threshold=min(values["record_threshold"], values["threshold"]))


def compare_answers(*, answers: dict[str, list[Answer]], release: NotebookNode, settings: Settings) -> SimilarityReport:
    """Score every pair of teams whose answers share something rare; `answers` maps team -> its answers."""
    code, markdown = release_sources(release)
    index = index_class(answers, Boilerplate.of_release(code, markdown))
    pairs = score_class(index, settings)
    in_pairs = {team for pair in pairs for team in (pair.team_a, pair.team_b)}
    kept = {(answer.team_id, answer.grade_id): answer
            for team in sorted(in_pairs) for answer in answers.get(team, [])}
    given = frozenset(line.strip() for source in code for line in source.splitlines() if line.strip())
    return SimilarityReport(settings=settings, teams=tuple(sorted(answers)), pairs=tuple(pairs),
                            clusters=tuple(clusters(pairs)), answers=kept, cell_order=cell_order(release),
                            given_lines=given)


def compare_course(*, course_root: Path, settings: Settings, teams: list[str] | None = None) -> SimilarityReport:
    """Compare the teams' autograded notebooks (default: every team that has one)."""
    teams = autograded_teams(course_root) if teams is None else teams
    return compare_answers(answers=read_class(course_root, teams), release=release_notebook(course_root),
                           settings=settings)
