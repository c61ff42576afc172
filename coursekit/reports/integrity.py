"""A static integrity report for TAs: code in a submission that may game the autograder.

The scan reads what students wrote and never runs it. It lists what looks
suspicious, with cell and line, so a TA knows where to look; a finding is a
reason to read a cell, not proof of cheating, and nothing here changes a grade.

Locked cells are skipped because nbgrader restores them from the gradebook
before grading, so only their metadata can matter. Cells are parsed with `ast`
so that names are resolved through imports (`F.softmax` is torch's, `self.W`
is the student's own); a cell that does not parse is scanned line by line.

Any upload can be scanned without stopping the run: the scan reads at most
SCAN_SIZE_LIMIT bytes of notebook, CELL_SIZE_LIMIT characters of a cell and
LINE_SIZE_LIMIT characters of a line, stops after SCAN_SECONDS, and whatever
still goes wrong (a parser out of memory on deeply nested code) becomes a
finding that says what could not be scanned.
"""
from __future__ import annotations

import ast
import json
import re
import time
import warnings
from dataclasses import dataclass

from coursekit.safe_text import one_line, printable

CODE_LIMIT = 200
UNREADABLE = "unreadable-notebook"
SYNTAX_ERROR = "syntax-error"
NOT_SCANNED = "not-scanned"
# RecursionError and MemoryError: deeply nested code (`- - - … 1`) is legal Python the parser still cannot read.
PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError)
# Bounds of the scan of one notebook; the notebooks of this exercise are far below them.
# JSON of tiny objects takes ~25 times its size in memory: 8 MiB stays far below a gigabyte.
SCAN_SIZE_LIMIT = 8 * 1024 * 1024
CELL_SIZE_LIMIT = 200_000
LINE_SIZE_LIMIT = 2_000
SCAN_SECONDS = 30.0


@dataclass(frozen=True)
class Finding:
    category: str
    cell: str
    line: int
    code: str
    explanation: str


def rules(category: str, explanation: str, *names: str) -> dict[str, tuple[str, str]]:
    return {name: (category, explanation) for name in names}


# Names reached through an import, after resolving aliases such as `import subprocess as sp`.
# A trailing `*` matches every name with that prefix (`os.execv`, `os.execlp`, ...).
MODULE_RULES = {
    **rules("ipython-internals", "reaches into the interpreter that also runs the hidden tests",
            "IPython", "ipykernel", "builtins", "inspect", "ctypes", "importlib",
            "gc.get_objects", "gc.get_referrers", "gc.get_referents",
            "sys.displayhook", "sys.excepthook", "sys.settrace", "sys.setprofile", "sys._getframe",
            "sys.modules", "sys.meta_path", "sys.path_hooks"),
    **rules("file-access", "reads, lists or changes files or environment variables of the grading machine",
            "os.environ", "os.environb", "os.getenv", "os.putenv", "os.unsetenv", "os.getcwd", "os.chdir",
            "os.listdir", "os.scandir", "os.walk", "os.remove", "os.unlink", "os.rmdir", "os.removedirs",
            "os.rename", "os.renames", "os.replace", "os.open", "os.path.expanduser", "shutil", "glob",
            "pathlib.Path.cwd", "pathlib.Path.home", "pickle", "torch.load", "torch.save",
            "numpy.load*", "numpy.save*"),
    **rules("process", "starts, stops or signals processes or threads on the grading machine",
            "subprocess", "os.system", "os.popen", "os.fork", "os.forkpty", "os.exec*", "os.spawn*",
            "os.posix_spawn*", "os.kill", "os.killpg", "os._exit", "os.abort", "sys.exit", "signal",
            "multiprocessing", "threading", "_thread", "concurrent.futures", "pty"),
    **rules("network", "talks to the network from the grading machine",
            "socket", "ssl", "urllib", "urllib3", "requests", "http", "httpx", "aiohttp", "ftplib",
            "smtplib", "telnetlib", "websocket", "websockets", "xmlrpc", "torch.hub"),
}

# Names no import binds: builtins and the variables IPython puts into every notebook.
NAME_RULES = {
    **rules("ipython-internals", "the IPython shell; it can rewrite every later cell, hidden tests included",
            "get_ipython"),
    **rules("ipython-internals", "the builtins all cells share; changing them changes what the tests see",
            "__builtins__"),
    **rules("ipython-internals", "the kernel's input/output history, which holds cells that already ran",
            "In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii"),
    **rules("ipython-internals", "runs code built at run time, which this scan cannot see",
            "exec", "eval", "compile", "__import__"),
    **rules("process", "ends the kernel's run of the notebook", "exit", "quit"),
}
HISTORY_NAME = re.compile(r"_i?\d+")  # `_i3`, `_5`: the same history under numbered names

# Attribute names that are suspicious on any object, whatever the object is called.
ATTRIBUTE_RULES = {
    **rules("ipython-internals", "hooks into how the kernel transforms, runs or reports cells",
            "input_transformers", "input_transformers_cleanup", "input_transformers_post",
            "ast_transformers", "events.register", "set_custom_exc", "register_magic_function",
            "register_magics", "run_line_magic", "run_cell_magic", "user_ns", "user_global_ns",
            "displayhook", "excepthook"),
    **rules("ipython-internals", "walks interpreter frames or objects, e.g. to reach the tests' variables",
            "f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame", "cr_frame",
            "__globals__", "__builtins__", "__subclasses__", "__code__"),
    **rules("file-access", "a pathlib file operation on the grading machine",
            "iterdir", "glob", "rglob", "read_text", "read_bytes", "write_text", "write_bytes",
            "unlink", "rmdir", "expanduser"),
}

# Methods that let an object answer `==`, `allclose`, `float()` or `isinstance` however it likes.
FAKING_METHODS = frozenset({
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__float__", "__int__",
    "__index__", "__complex__", "__torch_function__", "__torch_dispatch__", "__array_ufunc__",
    "__array_function__", "__instancecheck__", "__subclasscheck__", "__getattr__", "__getattribute__",
})
FAKING_EXPLANATION = "defines a comparison or conversion method; such objects can fake ==, allclose or float()"
PATCH_EXPLANATION = "changes an imported module or library class that the hidden tests may also use"
# Setting these is ordinary configuration, not a way to change what the tests compute.
CONFIGURATION_PREFIXES = ("matplotlib", "torch.backends", "pandas.options")
# Module names a cell that does not parse probably means, since its own imports are unknown.
USUAL_MODULES = ("torch", "nn", "F", "np", "numpy", "math", "sys", "os", "builtins")

# Paths of the course or of the grading machine; a submission has no business with them.
SUSPICIOUS_PATH = re.compile(
    r"gradebook|(?:^|[/\\])source[/\\]|\.ipynb\b"
    r"|^~[\w.-]*[/\\]|(?:^|[/\\])\.\.[/\\]|^/(?:etc|proc|root|home|srv|tmp)\b")
# For what is certainly a path (an argument of `open` or `Path`, a shell word): absolute or upwards.
OUTSIDE_PATH = re.compile(r"^(?:/|~|[A-Za-z]:[/\\]|\.\.(?:[/\\]|$))")
OPENING_FUNCTIONS = ("open", "io.open", "builtins.open", "codecs.open")
PATH_EXPLANATION = "names a path outside the submission (course files, gradebook, system files)"
GRADING_WORDS = re.compile(r"nbgrader|autograd(?:e|ing)|hidden_checks|coursekit|BEGIN HIDDEN", re.I)
GRADING_EXPLANATION = "mentions the grading machinery; code can use it to behave differently when graded"

# IPython syntax: `%magic`, `%%cell_magic`, `!shell`, optionally assigned (`files = !ls`).
ESCAPED_LINE = re.compile(r"^(?P<indent>[ \t]*)(?:[\w.]+[ \t]*=[ \t]*)?(?P<escape>%%|%|!!|!)(?P<name>\w*)")
HELP_LINE = re.compile(r"^(?P<indent>[ \t]*)(?:\?{1,2}[\w.]+|[\w.]+\?{1,2})[ \t]*$")
HARMLESS_MAGICS = frozenset({"matplotlib", "time", "timeit"})
# Cell magics whose body is Python; the body of any other cell magic is another language.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
MAGIC_CATEGORIES = {
    **dict.fromkeys(("bash", "sh", "script", "system", "sx", "sc", "perl", "ruby", "python", "python2",
                     "python3", "pypy"), "process"),
    **dict.fromkeys(("writefile", "load", "run", "cd", "env", "save", "store", "bookmark", "pushd",
                     "ls", "cat", "cp", "mv", "rm", "mkdir", "rmdir"), "file-access"),
    **dict.fromkeys(("pip", "conda", "mamba"), "network"),
}
MAGIC_EXPLANATIONS = {
    "ipython-internals": "an IPython magic: it changes the kernel, outside plain Python",
    "process": "runs a shell command or another interpreter on the grading machine",
    "file-access": "an IPython magic that reads, writes or lists files or environment variables",
    "network": "installs packages from the network on the grading machine",
}
EXECUTION_TAGS = frozenset({"skip-execution", "raises-exception"})


def pattern_for(name: str) -> str:
    return re.escape(name.rstrip("*")) + (r"\w*" if name.endswith("*") else r"\b")


# The same rules as regular expressions, for cells that do not parse.
LINE_RULES = (
    [(re.compile(r"(?<![\w.])" + pattern_for(name)), rule) for name, rule in MODULE_RULES.items()]
    + [(re.compile(r"(?<![\w.])" + re.escape(name) + r"\s*[\[(.]"), rule) for name, rule in NAME_RULES.items()]
    + [(re.compile(r"\." + re.escape(name) + r"\b"), rule) for name, rule in ATTRIBUTE_RULES.items()]
    + [(re.compile(r"\b(?:" + "|".join(sorted(FAKING_METHODS)) + r")\b"), ("monkeypatch", FAKING_EXPLANATION))]
)
ASSIGNED_ATTRIBUTE = re.compile(r"^\s*(?P<root>[A-Za-z_]\w*)(?:\.\w+|\[[^\]]*\])+\s*[-+*/|&]?=(?!=)")
DELETED_ATTRIBUTE = re.compile(r"^\s*del\s+(?P<root>[A-Za-z_]\w*)(?:\.\w+|\[[^\]]*\])+")
SETATTR_CALL = re.compile(r"\b(?:setattr|delattr)\s*\(\s*(?P<root>[A-Za-z_]\w*)")
STRING_LITERAL = re.compile(r"""(?P<quote>['"])(?P<text>.*?)(?P=quote)""")
OPEN_OUTSIDE = re.compile(r"""(?<![\w.])(?:open|Path)\s*\(\s*[rbuf]*['"](?:/|~|[A-Za-z]:[/\\]|\.\.)""")


class ScanTimeout(Exception):
    """The notebook's scan used up SCAN_SECONDS."""


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise ScanTimeout


def scan_notebook(*, content: bytes, trusted_sources: frozenset[str] | None = None,
                  seconds: float = SCAN_SECONDS) -> tuple[Finding, ...]:
    """What looks suspicious in the cells a student can edit, in notebook order.

    With `trusted_sources` (the stripped sources of the release's locked cells),
    a cell is skipped only when its code is the instructor's, whatever its
    metadata claims: students can mark their own cells as locked. Never raises:
    a notebook that cannot be scanned gets a finding that says so.
    """
    if len(content) > SCAN_SIZE_LIMIT:
        return (Finding(NOT_SCANNED, "notebook", 0, "",
                        f"larger than {SCAN_SIZE_LIMIT // (1024 * 1024)} MiB, not scanned; open the file by hand"),)
    try:
        cells = notebook_cells(content)
    except (Exception, RecursionError, MemoryError) as error:
        return (Finding(UNREADABLE, "notebook", 0, "",
                        f"not a readable notebook ({type(error).__name__}); open the file by hand"),)
    findings: list[Finding] = []
    try:
        scan_cells(cells, trusted_sources, findings, Deadline(seconds))
    except ScanTimeout:
        findings.append(Finding(NOT_SCANNED, "notebook", 0, "",
                                f"the scan stopped after {seconds:g} s; the cells after the last finding"
                                " were not scanned, read them by hand"))
    except (Exception, RecursionError, MemoryError) as error:
        findings.append(Finding(NOT_SCANNED, "notebook", 0, "",
                                f"the scan failed ({type(error).__name__}); read the notebook by hand"))
    return tuple(findings)


def notebook_cells(content: bytes) -> list[dict]:
    """The cells of a notebook file, read as plain JSON.

    Not with nbformat: its validation of a notebook with many malformed
    outputs takes minutes and gigabytes, and the scan needs only the cells.
    """
    notebook = json.loads(content.decode("utf-8-sig"))
    if not isinstance(notebook, dict):
        raise ValueError("not a JSON object")
    if isinstance(notebook.get("worksheets"), list):  # nbformat 3
        cells = [cell for sheet in notebook["worksheets"] if isinstance(sheet, dict)
                 for cell in (sheet.get("cells") if isinstance(sheet.get("cells"), list) else [])]
    elif isinstance(notebook.get("cells"), list):
        cells = notebook["cells"]
    else:
        raise ValueError("no list of cells")
    return [cell for cell in cells if isinstance(cell, dict)]


def scan_cells(cells: list[dict], trusted_sources: frozenset[str] | None, findings: list[Finding],
               deadline: Deadline) -> None:
    code_cells = [(label_of(cell, position), cell) for position, cell in enumerate(cells, start=1)
                  if cell.get("cell_type") == "code"]
    # Imports of any cell, locked ones included, are visible to all later cells.
    aliases = imported_names([lines_of(cell) for _, cell in code_cells], deadline=deadline)
    for label, cell in code_cells:
        deadline.check()
        findings.extend(execution_metadata_findings(label, cell))
        lines = lines_of(cell)
        if trusted_sources is not None:
            trusted = "\n".join(lines).strip() in trusted_sources
        else:
            trusted = bool(nbgrader_metadata(cell).get("locked"))
        if trusted:
            continue
        size = sum(len(text) + 1 for text in lines)
        if size > CELL_SIZE_LIMIT:
            findings.append(Finding(NOT_SCANNED, label, 0, "",
                                    f"{size} characters of code, more than the scan reads"
                                    f" ({CELL_SIZE_LIMIT}); read this cell by hand"))
            continue
        findings.extend(scan_cell(label=label, lines=lines, aliases=aliases, deadline=deadline))


def nbgrader_metadata(cell: dict) -> dict:
    metadata = cell.get("metadata")
    nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return nbgrader if isinstance(nbgrader, dict) else {}


def label_of(cell: dict, position: int) -> str:
    # The grade id comes from the student's file: shown, it must be short and printable.
    grade_id = nbgrader_metadata(cell).get("grade_id")
    label = one_line(grade_id, limit=80) if isinstance(grade_id, str) else ""
    return label or f"cell {position}"


def lines_of(cell: dict) -> list[str]:
    source = cell.get("source", cell.get("input", ""))  # "input": nbformat 3
    if isinstance(source, list):
        source = "".join(part for part in source if isinstance(part, str))
    if not isinstance(source, str):
        return []
    # Python counts a lone \r as a line break too; line numbers must agree with the parser's.
    return source.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def execution_metadata_findings(label: str, cell: dict) -> list[Finding]:
    findings = []
    metadata = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
    tags = metadata.get("tags") if isinstance(metadata.get("tags"), list) else []
    for tag in sorted(EXECUTION_TAGS.intersection(tag for tag in tags if isinstance(tag, str))):
        findings.append(Finding("execution-metadata", label, 0, f"tags: {tag}",
                                f"the tag {tag} makes the grader skip this cell or ignore its errors"))
    nbgrader = nbgrader_metadata(cell)
    if nbgrader.get("grade") is True and not nbgrader.get("locked"):
        findings.append(Finding("execution-metadata", label, 0, "nbgrader: grade true, locked false",
                                "a graded cell the student can edit; in this course only locked test cells are graded"))
    return findings


def as_python(lines: list[str]) -> str | None:
    """The cell with IPython-only lines turned into `pass`; None when a cell magic makes it another language."""
    magic = cell_magic(lines)
    if magic is not None and magic not in PYTHON_CELL_MAGICS:
        return None
    python = []
    for text in lines:
        # `pass`, not a comment, keeps an indented block that held only a magic valid.
        escaped = ESCAPED_LINE.match(text) or HELP_LINE.match(text)
        python.append(escaped["indent"] + "pass" if escaped else text)
    return "\n".join(python)


def cell_magic(lines: list[str]) -> str | None:
    first = next((text for text in lines if text.strip()), "")
    match = ESCAPED_LINE.match(first)
    return match["name"] if match and match["escape"] == "%%" else None


def parse(python: str) -> ast.Module:
    # Python warns about e.g. "\d" in student strings; those warnings are not findings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(python)


def imported_names(cells: list[list[str]], *, deadline: Deadline | None = None) -> dict[str, str]:
    """Local name -> what it refers to, e.g. {"F": "torch.nn.functional", "T": "torch.Tensor"}."""
    trees = []
    for lines in cells:
        if deadline is not None:
            deadline.check()
        python = as_python(lines)
        if python is None or len(python) > CELL_SIZE_LIMIT:
            continue
        try:
            trees.append(parse(python))
        except PARSE_ERRORS:
            continue  # reported when the cell itself is scanned
    aliases = {}
    assignments = []  # in the order of the walk; read once imports of all cells are known
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                assignments.append(node)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        aliases[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name != "*":
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    # `T = torch.Tensor` makes T one more name for the library class, so `T.__eq__ = ...` is a patch.
    for node in assignments:
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = qualified_name(node.value, aliases)
            if target is not None and isinstance(node.value, (ast.Name, ast.Attribute)):
                aliases[node.targets[0].id] = target
    return aliases


def qualified_name(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`F.softmax` -> "torch.nn.functional.softmax"; None unless the chain starts at an imported name."""
    attributes = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute):
            attributes.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(attributes)])


def module_rule(name: str) -> tuple[str, str] | None:
    for pattern, rule in MODULE_RULES.items():
        if pattern.endswith("*"):
            if name.startswith(pattern[:-1]):
                return rule
        elif name == pattern or name.startswith(pattern + "."):
            return rule
    return None


class CellFindings:
    """The findings of one cell, at most one per line and category."""

    def __init__(self, label: str, lines: list[str], deadline: Deadline | None = None):
        self.label = label
        self.lines = lines
        self.deadline = deadline
        self.by_position: dict[tuple[int, str], Finding] = {}

    def add(self, category: str, line: int, explanation: str) -> None:
        code = printable(self.lines[line - 1][:CODE_LIMIT * 4]).strip()[:CODE_LIMIT] if 1 <= line <= len(self.lines) else ""
        self.by_position.setdefault((line, category), Finding(category, self.label, line, code, explanation))

    def in_order(self) -> list[Finding]:
        return [self.by_position[position] for position in sorted(self.by_position)]


def scan_cell(*, label: str, lines: list[str], aliases: dict[str, str],
              deadline: Deadline | None = None) -> list[Finding]:
    found = CellFindings(label, lines, deadline)
    patch_roots = set(aliases) | set(USUAL_MODULES) | {"__builtins__"}
    magic = cell_magic(lines)
    if magic is not None and magic not in PYTHON_CELL_MAGICS:
        start = next(number for number, text in enumerate(lines, start=1) if text.strip())
        category = MAGIC_CATEGORIES.get(magic, "ipython-internals")
        found.add(category, start, MAGIC_EXPLANATIONS[category])
        for number in range(start, len(lines) + 1):
            scan_line(found, number, patch_roots, shell=True)
    else:
        for number, text in enumerate(lines, start=1):
            escaped = ESCAPED_LINE.match(text)
            if escaped is None:
                continue
            is_shell = escaped["escape"].startswith("!")
            if is_shell:
                found.add("process", number, "runs a shell command on the grading machine")
            elif escaped["name"] not in HARMLESS_MAGICS:
                category = MAGIC_CATEGORIES.get(escaped["name"], "ipython-internals")
                found.add(category, number, MAGIC_EXPLANATIONS[category])
            # `%time y = a / b` times Python, where `/` is division, not a path.
            times_python = escaped["name"] in HARMLESS_MAGICS | PYTHON_CELL_MAGICS
            scan_line(found, number, patch_roots, shell=is_shell or not times_python)
        scan_python(found, aliases, patch_roots)
    for number, text in enumerate(lines, start=1):
        if GRADING_WORDS.search(text):
            found.add("grading-detection", number, GRADING_EXPLANATION)
    return found.in_order()


def scan_python(found: CellFindings, aliases: dict[str, str], patch_roots: set[str]) -> None:
    try:
        CodeScanner(found, aliases).visit(parse(as_python(found.lines)))
        return
    except (RecursionError, MemoryError):
        line, message = 0, "too deeply nested"
    except PARSE_ERRORS as error:
        line = getattr(error, "lineno", None) or 0
        message = one_line(getattr(error, "msg", None) or str(error), limit=120)
    found.add(SYNTAX_ERROR, line, f"the cell could not be parsed ({message}); it was scanned line by line instead")
    for number, text in enumerate(found.lines, start=1):
        if not text.lstrip().startswith("#"):
            scan_line(found, number, patch_roots)


def scan_line(found: CellFindings, number: int, patch_roots: set[str], *, shell: bool = False) -> None:
    """The regular-expression scan of one line, for code the parser cannot read.

    In shell commands paths are bare words, not string literals.
    """
    if found.deadline is not None:
        found.deadline.check()
    # Some patterns take time that grows with the square of a line's length; code lines are short.
    text = found.lines[number - 1][:LINE_SIZE_LIMIT]
    for pattern, (category, explanation) in LINE_RULES:
        if pattern.search(text):
            found.add(category, number, explanation)
    for match in (ASSIGNED_ATTRIBUTE.match(text), DELETED_ATTRIBUTE.match(text), SETATTR_CALL.search(text)):
        if match and match["root"] in patch_roots:
            found.add("monkeypatch", number, PATCH_EXPLANATION)
    literals = [literal["text"] for literal in STRING_LITERAL.finditer(text)]
    words = [word.strip("'\"") for word in text.split()] if shell else []
    if (OPEN_OUTSIDE.search(text) or any(SUSPICIOUS_PATH.search(path) for path in literals + words)
            or any(OUTSIDE_PATH.match(word) for word in words)):
        found.add("file-access", number, PATH_EXPLANATION)


class CodeScanner(ast.NodeVisitor):
    """Reports suspicious names, patches and paths in one parsed cell."""

    def __init__(self, found: CellFindings, aliases: dict[str, str]):
        self.found = found
        self.aliases = aliases

    def report_name(self, name: str, line: int) -> None:
        rule = module_rule(name)
        if rule is not None:
            self.found.add(rule[0], line, rule[1])

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.report_name(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level:
            self.report_name(node.module, node.lineno)
            for alias in node.names:
                self.report_name(f"{node.module}.{alias.name}", node.lineno)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.aliases:
            self.report_name(self.aliases[node.id], node.lineno)
            return
        rule = NAME_RULES.get("_ih" if HISTORY_NAME.fullmatch(node.id) else node.id)
        if rule is not None:
            self.found.add(rule[0], node.lineno, rule[1])

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = qualified_name(node, self.aliases)
        if name is not None:
            self.report_name(name, node.lineno)
        attributes = [node.attr]
        if isinstance(node.value, ast.Attribute):
            attributes.append(f"{node.value.attr}.{node.attr}")
        for attribute in attributes:
            if attribute in ATTRIBUTE_RULES:
                category, explanation = ATTRIBUTE_RULES[attribute]
                self.found.add(category, node.lineno, explanation)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            if node.attr in FAKING_METHODS:
                self.found.add("monkeypatch", node.lineno, FAKING_EXPLANATION)
            self.report_patch(node)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.report_patch(node)
        self.generic_visit(node)

    def report_patch(self, target: ast.Attribute | ast.Subscript) -> None:
        if self.is_library(target):
            name = qualified_name(target, self.aliases) or ""
            if not name.startswith(CONFIGURATION_PREFIXES):
                self.found.add("monkeypatch", target.lineno, PATCH_EXPLANATION)

    def is_library(self, node: ast.AST) -> bool:
        """Whether `node` is an imported module or library object (not the student's own, like `self`)."""
        root = node
        while isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        return isinstance(root, ast.Name) and (root.id in self.aliases or root.id == "__builtins__")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [statement.name]
            elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                names = [target.id for target in targets if isinstance(target, ast.Name)]
            else:
                names = []
            if FAKING_METHODS.intersection(names):
                self.found.add("monkeypatch", statement.lineno, FAKING_EXPLANATION)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        function = qualified_name(node.func, self.aliases)
        if function is None and isinstance(node.func, ast.Name):
            function = node.func.id
        if function in ("setattr", "delattr") and node.args and self.is_library(node.args[0]):
            self.found.add("monkeypatch", node.lineno, PATCH_EXPLANATION)
        if function in OPENING_FUNCTIONS or (function or "").startswith(("pathlib.", "os.path.")):
            arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
            paths = [part.value for argument in arguments for part in ast.walk(argument)
                     if isinstance(part, ast.Constant) and isinstance(part.value, str)]
            if any(OUTSIDE_PATH.match(path) for path in paths):
                self.found.add("file-access", node.lineno, PATH_EXPLANATION)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            if node.value in FAKING_METHODS:
                self.found.add("monkeypatch", node.lineno, FAKING_EXPLANATION)
            if SUSPICIOUS_PATH.search(node.value):
                self.found.add("file-access", node.lineno, PATH_EXPLANATION)


def location(finding: Finding) -> str:
    return f"{finding.cell}, line {finding.line}" if finding.line else finding.cell


def split_teams(findings_by_team: dict[str, tuple[Finding, ...]]) -> tuple[list[str], list[str]]:
    teams = sorted(findings_by_team)
    return [team for team in teams if findings_by_team[team]], [team for team in teams if not findings_by_team[team]]


def summary(findings_by_team: dict[str, tuple[Finding, ...]]) -> str:
    flagged, clean = split_teams(findings_by_team)
    return (f"Teams scanned: {len(findings_by_team)} ({len(flagged)} with findings, {len(clean)} without). "
            "A static scan of the code students wrote: a finding is a reason to read the cell, "
            "not proof of cheating, and nothing here changes a grade.")


def format_report(*, findings_by_team: dict[str, tuple[Finding, ...]]) -> str:
    """Plain text: a section per team with findings, then the teams without any on one line."""
    flagged, clean = split_teams(findings_by_team)
    lines = ["Integrity report", summary(findings_by_team)]
    for team in flagged:
        findings = findings_by_team[team]
        lines += ["", f"{team}: {len(findings)} finding{'s' if len(findings) != 1 else ''}"]
        for finding in findings:
            lines.append(f"  {location(finding)} [{finding.category}]")
            if finding.code:
                lines.append(f"    {finding.code}")
            lines.append(f"    -> {finding.explanation}")
    if clean:
        lines += ["", f"No findings ({len(clean)}): {', '.join(clean)}"]
    # Every line holds text from uploads (team ids, cell ids, code): no escape sequence reaches a terminal.
    return "\n".join(printable(line) for line in lines) + "\n"


def report_html(*, findings_by_team: dict[str, tuple[Finding, ...]]) -> str:
    """A standalone HTML page with a table per team, from an autoescaping template."""
    from coursekit.reports.templating import render

    flagged, clean = split_teams(findings_by_team)
    return render("integrity.html.j2", summary=summary(findings_by_team),
                  flagged=[(team, findings_by_team[team]) for team in flagged], clean=clean)
