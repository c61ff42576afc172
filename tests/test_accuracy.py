"""The answer corpus: right answers get full marks, wrong ones lose marks for that cell only."""
import re
from collections import Counter

import pytest

from coursekit import accuracy
from coursekit.exercise import checks
from coursekit.errors import CourseKitError
from conftest import REPOSITORY

CORPUS = REPOSITORY / "tests" / "corpus" / "variants.toml"


def test_corpus_is_large_and_covers_every_cell_both_ways():
    variants = accuracy.load_variants(CORPUS)
    assert len(variants) >= 60
    right = Counter(v.cell for v in variants if v.right)
    wrong = Counter(v.cell for v in variants if not v.right)
    for cell in checks.CHECKERS:
        assert right[cell] >= 3 and wrong[cell] >= 3, cell


def test_every_variant_is_graded_correctly(tmp_path):
    outcomes = accuracy.evaluate(course_root=REPOSITORY, corpus=CORPUS, work_dir=tmp_path, workers=2)
    table = accuracy.format_table(outcomes)
    print(table)
    assert all(o.graded_correctly for o in outcomes), table


@pytest.mark.parametrize("content, message", [
    ("not toml [", "not valid TOML"),
    ("", "no [[variant]] entries"),
    ("[[variant]]\ncell = 'bmm_d'\n", "lacks"),
])
def test_bad_corpus_files_give_a_clear_error(tmp_path, content, message):
    path = tmp_path / "corpus.toml"
    path.write_text(content)
    with pytest.raises(CourseKitError, match=re.escape(message)):
        accuracy.load_variants(path)


def test_missing_corpus_file_gives_a_clear_error(tmp_path):
    with pytest.raises(CourseKitError, match="does not exist"):
        accuracy.load_variants(tmp_path / "missing.toml")
