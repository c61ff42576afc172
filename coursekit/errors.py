"""The one family of errors a user can cause; the CLI turns them into a one-line message."""


class CourseKitError(Exception):
    """A problem the user can fix; the message says what to do."""
