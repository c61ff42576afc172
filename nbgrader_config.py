"""nbgrader configuration of the ex2 course; plain `nbgrader` commands and the formgrader read it."""
import os

c = get_config()  # noqa: F821 (injected by traitlets)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "ml-ex2"

# What students see in place of the solutions.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A correct notebook runs in under 15 s; one cell never legitimately needs 30.
c.Execute.timeout = 30
c.SandboxedExecute.notebook_timeout = 180
c.SandboxedKernelManager.memory_limit_mib = 2048
c.SandboxedKernelManager.process_limit = 256
# Fair CPU. Each notebook's processes share one CPU weight and cap (a cpu cgroup, as root), however
# many sessions they start: the scheduler otherwise gives every session its own share, and a notebook
# with 120 busy processes in 120 sessions would leave an honest neighbour's kernel a sliver. With a
# cgroup the two limits above count the notebook's own CPU time, which a busy neighbour cannot
# inflate; the wall clock stops a cell or notebook only at wall_clock_slack times its limit (code that
# sleeps uses no CPU). One CPU per notebook is all the exercise uses (it runs single-threaded).
c.SandboxedKernelManager.cpu_cgroup = True
c.SandboxedKernelManager.cpu_weight = 100
c.SandboxedKernelManager.cpu_limit = 1.0
c.SandboxedExecute.wall_clock_slack = 2.0
# As root, kernels are forks of a server with torch imported (~2 s faster per
# notebook); False: bubblewrap starts every kernel afresh.
c.SandboxedKernelManager.fork_server = True
# Set to True only to grade on a machine without bubblewrap: student code then
# runs with your rights, can read the course and the network.
c.SandboxedKernelManager.allow_grading_without_sandbox = False

# The grading status (crashed, timed out, unreadable) lives in the notebook's metadata.
c.ClearMetadataPreprocessor.preserve_nb_metadata_mask = [("language_info", "name"), ("coursekit",)]

# nbconvert validates the whole notebook after every preprocessor (about 20 times per submission
# for autograde and feedback); once, after the last one, is enough to refuse an invalid result.
c.Exporter.optimistic_validation = True

# Any file is read: what is not a notebook is graded as a blank one, with a reason.
c.Autograde.exporter_class = "coursekit.nbgrader_plugins.rebuild.TolerantNotebookExporter"

# Sanitizing. RebuildFromRelease goes first: it replaces every cell with the
# release's, keeping only the sources of the student's answers, so the steps
# after it never see forged metadata, skip tags or missing test cells.
c.Autograde.sanitize_preprocessors = [
    "coursekit.nbgrader_plugins.rebuild.RebuildFromRelease",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    # nbgrader's OverwriteCells, GetGrades (below) and SaveAutoGrades look each cell up in the
    # gradebook on its own; these do it with one query per kind of cell, same rows
    # (coursekit.nbgrader_plugins.gradebook_lookups).
    "coursekit.nbgrader_plugins.gradebook_lookups.OverwriteCellsInOneQuery",
    # nbgrader's CheckCellMetadata with the JSON schema compiled once, not per cell (~0.1 CPU-s per
    # notebook, each time); same checks and errors (coursekit.nbgrader_plugins.preprocessors).
    "coursekit.nbgrader_plugins.preprocessors.CheckCellMetadataCompiledOnce",
]

# Autograding. DrawGivenValues (coursekit.nbgrader_plugins.given_values) writes this run's values
# into the given cells (drawn from the course secret in .coursekit/, the team and the submission)
# and must run before SandboxedExecute, which judges on them. SandboxedExecute
# (coursekit.nbgrader_plugins.execution) runs the kernel in a sandbox (coursekit.sandbox.kernel_manager);
# the kernel only records answers as data, and SandboxedExecute writes the judge's verdict
# (coursekit.exercise.checks) into each test cell.
# MoveTestStderrToStdout must run before SaveAutoGradesKeepingReviews (nbgrader's
# SaveAutoGrades, keeping TA grades of unchanged free-text answers), which reads
# the outputs to decide the points.
c.Autograde.autograde_preprocessors = [
    "coursekit.nbgrader_plugins.given_values.DrawGivenValues",
    "coursekit.nbgrader_plugins.execution.SandboxedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "coursekit.nbgrader_plugins.preprocessors.MoveTestStderrToStdout",
    "coursekit.nbgrader_plugins.keep_reviews.SaveAutoGradesKeepingReviews",
    "nbgrader.preprocessors.AssignLatePenalties",
    "coursekit.nbgrader_plugins.preprocessors.CheckCellMetadataCompiledOnce",  # as above
    # Last: scores are decided on what the student's code really printed, and the
    # notebook written to autograded/ (which the formgrader shows TAs) holds no live HTML.
    "coursekit.nbgrader_plugins.preprocessors.SanitizeStudentContent",
]

# Feedback goes to students: the hidden tests' source never does. CutHiddenTraceback
# (coursekit.reports.feedback) cuts tracebacks to the student's and the release's lines and
# must run before ClearHiddenTests; MarkWaitingForTA shows "waiting for a TA" instead
# of 0 points for answers no TA has graded yet and must run after GetGrades.
# nbconvert's HTML exporter, minus a soupsieve pass over every page and recompiling its templates
# in every grading process; the pages are byte for byte the same (coursekit.reports.feedback_exporter).
c.GenerateFeedback.exporter_class = "coursekit.reports.feedback_exporter.FeedbackHTMLExporter"
c.GenerateFeedback.preprocessors = [
    "coursekit.nbgrader_plugins.gradebook_lookups.GetGradesInOneQuery",
    "coursekit.reports.feedback.CutHiddenTraceback",
    "nbgrader.preprocessors.ClearHiddenTests",
    "coursekit.reports.feedback.MarkWaitingForTA",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    # Again, for notebooks autograded before the sanitizer was configured.
    "coursekit.nbgrader_plugins.preprocessors.SanitizeStudentContent",
]

# `nbgrader export`: one row per student with the team's points, not nbgrader's row per
# gradebook "student" (teams, and members with 0); coursekit.reports.nbgrader_export.
c.ExportApp.plugin_class = "coursekit.reports.nbgrader_export.TeamCsvExportPlugin"

# OLAT bulk assessment (results/olat/): points needed for `passed` = yes.
c.OlatExport.pass_mark = 50

# Similar answers between teams (coursekit grade and coursekit similarity): pairs scoring this much or
# more (0-1) are listed under "Needs attention" in report.html; a reason to compare, never a grade change.
c.Similarity.threshold = 0.45
# Pairs from this score on go into results/similarity.csv (flagged = no below the threshold).
c.Similarity.record_threshold = 0.3
