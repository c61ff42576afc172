"""The `coursekit` command defers jsonschema's IRI grammar to its first use, without changing validation."""
import subprocess
import sys

CHECK = """
import sys
import coursekit.cli
import nbformat, nbgrader.api, jsonschema
assert "lark" not in sys.modules, "the IRI grammar was built at import"
checker = jsonschema.FormatChecker()
assert checker.conforms("https://example.org/r\\u00e9sum\\u00e9?q=1#top", "iri")
assert not checker.conforms("no spaces allowed", "iri")
assert checker.conforms("../relative/path", "iri-reference")
assert "lark" in sys.modules
print("ok")
"""


def test_cli_import_defers_the_iri_grammar_and_iri_checks_still_work():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_iri_checks_match_without_the_stand_in():
    plain = """
import jsonschema
checker = jsonschema.FormatChecker()
print([checker.conforms(v, f) for v in ("https://example.org/\\u00e9", "no spaces", "a:b c", "../x") for f in ("iri", "iri-reference")])
"""
    deferred = "import coursekit.cli\n" + plain
    outputs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
               for code in (plain, deferred)]
    assert outputs[0] == outputs[1]
    assert "True" in outputs[0] and "False" in outputs[0]
