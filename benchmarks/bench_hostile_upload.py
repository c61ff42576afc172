"""Memory and time of importing and grading zip bombs, next to one honest team.

Builds the two bombs of issue 10 — a 1.9 MB upload holding 40 notebooks of
49 MiB of zeros, and a ~1 KiB upload of nested zips that inflates to 2.3 GiB —
then imports the download in this process and grades it with `coursekit grade`
in a child process, and prints the peak resident memory of each (target: every
process of the run below 1 GiB).

    .venv/bin/python benchmarks/bench_hostile_upload.py [--no-grade]
"""
from __future__ import annotations

import argparse
import io
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from coursekit import demo  # noqa: E402
from coursekit.olat.importing import import_download  # noqa: E402

MEBIBYTE = 1024 * 1024
GIBIBYTE = 1024 * MEBIBYTE
_CHUNK = MEBIBYTE


def zeros_deflated(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of `size` zero bytes, and their CRC-32, without compressing gigabytes.

    After a full flush deflate starts afresh, so every 1 MiB block of zeros
    compresses to the same bytes: compress one block and repeat it.
    """
    assert size % _CHUNK == 0
    block = bytes(_CHUNK)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()
    crc = 0
    for _ in range(size // _CHUNK):
        crc = zlib.crc32(block, crc)
    return first + repeated * (size // _CHUNK - 1) + end, crc


def zip_of_deflated(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of (name, raw deflate stream, crc, uncompressed size) entries, written by hand."""
    out = io.BytesIO()
    central = []
    for name, raw, crc, size in entries:
        encoded, offset = name.encode(), out.tell()
        # version, flags, method 8 (deflate), time 0, date 1980-01-01
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(raw), size,
                              len(encoded), 0) + encoded + raw)
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(raw),
                                   size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    directory = b"".join(central)
    out.write(directory + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                                      len(directory), out.tell(), 0))
    return out.getvalue()


def notebook_bomb(*, user: str = "bomber", count: int = 40, size: int = 49 * MEBIBYTE) -> bytes:
    """~1.9 MB: `count` notebooks named for `user`'s teams, each `size` bytes of zeros."""
    raw, crc = zeros_deflated(size)
    return zip_of_deflated([(f"{user}{number}_ml_ex2.ipynb", raw, crc, size) for number in range(count)])


def nested_zip_bomb(*, user: str = "bomber", size: int = 2355 * MEBIBYTE) -> bytes:
    """~1 KiB of zips in zips whose innermost notebook is `size` bytes (2.3 GiB) of zeros."""
    raw, crc = zeros_deflated(size)
    archive = zip_of_deflated([(f"{user}_ml_ex2.ipynb", raw, crc, size)])
    for level in range(2):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as outer:
            outer.writestr(f"level{level}.zip", archive)
        archive = buffer.getvalue()
    return archive


def build_download(path: Path) -> dict[str, int]:
    honest = demo.sample_notebooks(REPOSITORY)["all_correct"]
    bombs = {"notebooks.zip": notebook_bomb(), "nested.zip": nested_zip_bomb()}
    folder = "ita_Exercise_2_2024_11_08T12_00_00"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as download:
        download.writestr(f"{folder}/Muster_Anna_anna/2_submissions/anna_ml_ex2.ipynb", honest)
        for name, content in bombs.items():
            download.writestr(zipfile.ZipInfo(f"{folder}/Bomb_Bo_bomber/2_submissions/{name}"), content)
    return {name: len(content) for name, content in bombs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-grade", action="store_true", help="only import, do not run coursekit grade")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coursekit-bench-hostile-") as work:
        work_dir = Path(work)
        started = time.monotonic()
        sizes = build_download(work_dir / "download.zip")
        print(f"built in {time.monotonic() - started:.1f} s: "
              + ", ".join(f"{name} {size / 1000:.1f} kB" for name, size in sizes.items()))

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        result = import_download(download=work_dir / "download.zip", staging=work_dir / "staging")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"import: {time.monotonic() - started:.1f} s, peak RSS {peak / 1024:.0f} MiB"
              f" (before import {before / 1024:.0f} MiB); teams {[s.team_id for s in result.submissions]}")
        for problem in result.problems:
            print(f"  ! {problem.kind}: {problem.origin}: {problem.message}")
        assert peak < GIBIBYTE // 1024, "import above 1 GiB"

        if arguments.no_grade:
            return
        course = work_dir / "course"
        demo.copy_course(course_root=REPOSITORY, destination=course)
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "coursekit.cli", "--course", str(course), "grade",
                              str(work_dir / "download.zip"), "--output", str(work_dir / "results")],
                             capture_output=True, text=True)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"coursekit grade: exit {run.returncode} in {time.monotonic() - started:.0f} s,"
              f" peak RSS of any process of the run {children / 1024:.0f} MiB")
        print(run.stdout.strip() or run.stderr.strip()[-2000:])
        assert run.returncode == 0 and children < GIBIBYTE // 1024, "grading failed or above 1 GiB"


if __name__ == "__main__":
    main()
