"""What a kernel's sandbox shows, shared by both ways of building it (bubblewrap and the fork server)."""

SANDBOX_HOME = "/home/student"
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
                "/etc/localtime", "/etc/hosts")
