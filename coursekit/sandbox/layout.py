"""What a kernel's sandbox shows, shared by both ways of building it (bubblewrap and the fork server)."""
from __future__ import annotations

from pathlib import Path

SANDBOX_HOME = "/home/student"
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
                "/etc/localtime", "/etc/hosts")
# The kit's own folder is replaced by an empty one showing only these: the kernel-side package
# (coursekit.recorder) and the package's __init__ it needs to be imported as coursekit.recorder.
KIT_SHOWN = ("__init__.py", "recorder")
KERNEL_MODULE = "coursekit.recorder.kernel"


def kit_folder() -> str:
    """The real path of the coursekit package, wherever it is installed (a checkout or site-packages)."""
    return str(Path(__file__).resolve().parent.parent)


def kit_view() -> dict:
    """What the sandbox shows of the kit: the folder to hide and the entries in it to show again."""
    folder = kit_folder()
    return {"folder": folder, "shown": [str(Path(folder) / name) for name in KIT_SHOWN]}
