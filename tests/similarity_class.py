"""A synthetic class for the similarity tests and benchmark: independent teams and planted copies.

Independent teams answer every code cell with a form from the labelled corpus
(tests/corpus/variants.toml) and every free-text question with a form from
tests/corpus/free_text.toml, each team wording it its own way (synonyms, an opener, a
closing remark). Forms are dealt round-robin and shuffled, so each form is used by
several teams, as the usual forms are in a real class. A wrong variant's [FAILED] line
is its labelled reason, standing in for the judge's message on it.

Planted copies take another team's notebook and change it the way students do:
verbatim; variables renamed; comments and blank lines changed; lines reordered where
order does not matter; free text paraphrased lightly; all of these together; a trio
(one notebook copied twice); and a pair that shares nothing but one rare wrong answer
(whose judge's message other wrong answers get too).
"""
from __future__ import annotations

import ast
import io
import random
import re
import tokenize
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat

from coursekit.course import autograded_notebook
from coursekit.notebooks import fill_answers, grade_id
from coursekit.similarity.records import Answer, AnswerKind

CORPUS = Path(__file__).resolve().parent / "corpus"
# Names the contract fixes (before and after each cell): a copier cannot rename them.
CONTRACT_NAMES = frozenset("""x_start x x_shape a b d y vocab_size embedding_dim embedding_layer tokens embedded_x
    n_params Net model output loss_function loss X Q K Wq Wk x_words d_k scores scores_scaled var_scores
    var_scores_scaled weights scenario_a scenario_b self torch nn F math super forward print range len""".split())
PARAM_COUNT_FAILURE = "[FAILED] param_count: biases counted"  # what a common wrong answer gets too
RARE_WRONG_PARAM_COUNT = '''layers = [236, 472, 472, 10]
n_params = 0
for i in range(len(layers) - 1):
    n_params += layers[i] * layers[i + 1] + layers[i + 1]
n_params = n_params - layers[-1]
'''
COPY_KINDS = ("verbatim", "renamed", "comments", "reordered", "paraphrased", "disguised", "rare-wrong", "trio")


@dataclass(frozen=True)
class PlantedPair:
    team_a: str
    team_b: str
    kind: str

    @property
    def key(self) -> tuple[str, str]:
        return tuple(sorted((self.team_a, self.team_b)))


@dataclass(frozen=True)
class SyntheticClass:
    answers: dict[str, list[Answer]]
    planted: tuple[PlantedPair, ...]

    @property
    def planted_keys(self) -> set[tuple[str, str]]:
        return {pair.key for pair in self.planted}


def code_forms() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Per code cell: (code, failure lines) of each labelled variant."""
    forms: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for variant in tomllib.loads((CORPUS / "variants.toml").read_text(encoding="utf-8"))["variant"]:
        failures = () if variant["right"] else (f"[FAILED] {variant['cell']}: {variant['reason']}",)
        forms.setdefault(variant["cell"], []).append((variant["code"].strip("\n") + "\n", failures))
    return forms


def text_corpus() -> dict:
    return tomllib.loads((CORPUS / "free_text.toml").read_text(encoding="utf-8"))


def deal(forms: list, count: int, rng: random.Random) -> list:
    """Each form to count / len(forms) teams (rounded), in random order."""
    pool = [forms[index % len(forms)] for index in range(count)]
    rng.shuffle(pool)
    return pool


def swap_words(text: str, wording: dict[str, list[str]], rng: random.Random, chance: float) -> str:
    def swap(match: re.Match) -> str:
        word = match.group()
        lower = word.lower()
        options = [option for key, values in wording.items() for option in [key, *values]
                   if lower in (key, *values) and option != lower]
        if not options or rng.random() >= chance:
            return word
        choice = rng.choice(options)
        return choice[0].upper() + choice[1:] if word[0].isupper() else choice

    return re.sub(r"[A-Za-z]+", swap, text)


def personal_wording(text: str, corpus: dict, rng: random.Random) -> str:
    """One team's way of putting a form: some words swapped, maybe an opener and a closing remark."""
    text = swap_words(text, corpus["wording"], rng, chance=0.35)
    return rng.choice(corpus["openers"]["texts"]) + text + rng.choice(corpus["closers"]["texts"])


def paraphrase(text: str, corpus: dict, rng: random.Random) -> str:
    """A light paraphrase: many swappable words swapped, two sentences maybe switched, another opener."""
    for opener in corpus["openers"]["texts"]:
        if opener and text.startswith(opener):
            text = text[len(opener):]
    sentences = re.split(r"(?<=\.) ", text)
    if len(sentences) >= 3 and rng.random() < 0.5:
        sentences[0], sentences[1] = sentences[1], sentences[0]
    return rng.choice(["", "Well, ", "Our answer: "]) + swap_words(" ".join(sentences), corpus["wording"], rng, chance=0.7)


# ---------------------------------------------------------------- code changes of copiers

def rename_variables(code: str) -> str:
    """Every name the cell assigns (and self.attributes) renamed, except the contract's names."""
    tree = ast.parse(code)
    assigned = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned.add(node.id)
        elif isinstance(node, ast.arg):
            assigned.add(node.arg)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            assigned.add(node.attr)
    renamed = {name: f"my_{name.lower()}_{index}" for index, name in enumerate(sorted(assigned - CONTRACT_NAMES))}
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.NAME and token.string in renamed:
            token = token._replace(string=renamed[token.string])
        tokens.append(token)
    return tokenize.untokenize(tokens)


def change_comments(code: str) -> str:
    """Comments dropped, new ones and blank lines put in."""
    lines = []
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            lines.append((token.start[0], token.start[1]))
    source = code.splitlines()
    for row, column in sorted(lines, reverse=True):
        source[row - 1] = source[row - 1][:column].rstrip()
    result = []
    for number, line in enumerate(line for line in source if line.strip()):
        indent = line[:len(line) - len(line.lstrip())]
        if number % 2 == 0:
            result.append(f"{indent}# step {number // 2 + 1} of our solution")
        result.append(line)
        if number % 3 == 2:
            result.append("")
    return "\n".join(result) + "\n"


def names_in(node: ast.AST) -> tuple[set[str], set[str]]:
    stored, used = set(), set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            (stored if isinstance(child.ctx, ast.Store) else used).add(child.id)
        elif isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
            (stored if isinstance(child.ctx, ast.Store) else used).add(f"{child.value.id}.{child.attr}")
    return stored, used


def reorder_lines(code: str) -> str:
    """Neighbouring one-line statements that do not depend on each other swapped, in every block."""
    tree = ast.parse(code)
    source = code.splitlines()
    swaps = []
    bodies = [tree.body] + [node.body for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    for body in bodies:
        index = 0
        while index + 1 < len(body):
            first, second = body[index], body[index + 1]
            one_line = all(isinstance(s, (ast.Assign, ast.Expr, ast.AugAssign)) and s.lineno == s.end_lineno
                           for s in (first, second))
            stored_1, used_1 = names_in(first)
            stored_2, used_2 = names_in(second)
            independent = not (stored_1 & (used_2 | stored_2)) and not (stored_2 & used_1)
            if one_line and independent and not isinstance(first, ast.Expr) and not isinstance(second, ast.Expr):
                swaps.append((first.lineno, second.lineno))
                index += 2
            else:
                index += 1
    for first, second in swaps:
        source[first - 1], source[second - 1] = source[second - 1], source[first - 1]
    return "\n".join(source) + "\n"


def copy_answers(original: list[Answer], team: str, *, kind: str, corpus: dict, rng: random.Random) -> list[Answer]:
    changes = {"renamed": [rename_variables], "comments": [change_comments], "reordered": [reorder_lines],
               "disguised": [rename_variables, reorder_lines, change_comments]}.get(kind, [])
    copied = []
    for answer in original:
        text = answer.text
        if answer.kind == AnswerKind.CODE:
            for change in changes:
                text = change(text)
            ast.parse(text)  # a copier's code still runs
        elif kind not in ("verbatim", "trio-verbatim"):
            text = paraphrase(text, corpus, rng)
        copied.append(Answer(team, answer.grade_id, answer.kind, text, answer.failures))
    return copied


# ---------------------------------------------------------------- the class

def copier_count(teams: int) -> int:
    """Teams whose notebooks are copies, per round: one for each of the six one-copy kinds, two for the trio."""
    return max(1, teams // 40) * 8


def build_class(*, teams: int = 40, seed: int = 2) -> SyntheticClass:
    """`teams` teams, the last copier_count(teams) of them copies; every form dealt to three teams or more."""
    rng = random.Random(seed)
    corpus = text_corpus()
    codes = code_forms()
    names = [f"team{number:03d}" for number in range(1, teams + 1)]
    independent = teams - copier_count(teams)
    most_forms = max(1, independent // 3)
    # The rare wrong answer replaces param_count of two teams: the usual forms go to the others.
    rare_wrong = {names[COPY_KINDS.index("rare-wrong")], names[independent - 1]}
    dealt_code = {cell: deal(forms[:most_forms], independent, rng) for cell, forms in codes.items()}
    keeping = [number for number, team in enumerate(names[:independent]) if team not in rare_wrong]
    for number, form in zip(keeping, deal(codes["param_count"][:max(1, len(keeping) // 3)], len(keeping), rng)):
        dealt_code["param_count"][number] = form
    dealt_text = {cell: deal(forms[:most_forms], independent, rng) for cell, forms in corpus["answers"].items()}
    answers = {}
    for number, team in enumerate(names[:independent]):
        team_answers = [Answer(team, cell, AnswerKind.CODE, dealt_code[cell][number][0], dealt_code[cell][number][1])
                        for cell in codes]
        team_answers += [Answer(team, cell, AnswerKind.TEXT, personal_wording(dealt_text[cell][number], corpus, rng))
                         for cell in corpus["answers"]]
        answers[team] = team_answers
    planted = []
    # Copiers are the last teams; what they copy comes from the first ones. A class of 400 plants ten rounds.
    copier = teams
    for round_number in range(max(1, teams // 40)):
        for position, kind in enumerate(COPY_KINDS):
            source = names[round_number * len(COPY_KINDS) + position]
            if kind == "rare-wrong" and round_number:
                continue  # one rare wrong answer per class: repeated in every round, it would not be rare
            if kind == "rare-wrong":
                # Two independent teams, far apart in the class, with the same unusual wrong answer.
                other = names[independent - 1]
                wrong = RARE_WRONG_PARAM_COUNT
                for team in (source, other):
                    answers[team] = [Answer(team, answer.grade_id, answer.kind, wrong,
                                            (PARAM_COUNT_FAILURE,))
                                     if answer.grade_id == "param_count" else answer for answer in answers[team]]
                planted.append(PlantedPair(source, other, kind))
            elif kind == "trio":
                first, second = names[copier - 1], names[copier - 2]
                copier -= 2
                answers[first] = copy_answers(answers[source], first, kind="trio-verbatim", corpus=corpus, rng=rng)
                answers[second] = copy_answers(answers[source], second, kind="paraphrased", corpus=corpus, rng=rng)
                planted += [PlantedPair(source, first, kind), PlantedPair(source, second, kind),
                            PlantedPair(first, second, kind)]
            else:
                copier -= 1
                answers[names[copier]] = copy_answers(answers[source], names[copier], kind=kind, corpus=corpus, rng=rng)
                planted.append(PlantedPair(source, names[copier], kind))
    return SyntheticClass({team: answers[team] for team in names}, tuple(planted))


def write_autograded(course_root: Path, release: nbformat.NotebookNode, answers: dict[str, list[Answer]]) -> None:
    """Each team's answers as an autograded notebook, with the verdict lines the grader writes into test cells."""
    for team, team_answers in answers.items():
        notebook = fill_answers(release, {answer.grade_id: answer.text for answer in team_answers})
        failures = {answer.grade_id: answer.failures for answer in team_answers}
        for cell in notebook.cells:
            cell_id = grade_id(cell) or ""
            if cell.cell_type == "code" and cell_id.endswith("_test"):
                lines = failures.get(cell_id.removesuffix("_test"), ())
                score = 0 if lines else 1
                cell.outputs = [
                    nbformat.v4.new_output("execute_result", data={"text/plain": repr(score)}, execution_count=1),
                    nbformat.v4.new_output("stream", name="stdout",
                                           text=f"Autograder: {score} of 1 points\n" + "".join(f"{line}\n" for line in lines)
                                           + ("[passed] all parts\n" if not lines else "")),
                ]
        path = autograded_notebook(course_root, team)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, str(path))
