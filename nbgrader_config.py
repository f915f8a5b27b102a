"""nbgrader configuration: the directory holding this file is the course root.

Every `nbgrader` command and every `python -m autograder` command reads this file. The autograder
copies it into throw-away course roots (tests, the demo), so paths are relative to this file.
"""
import os

c = get_config()  # noqa: F821 (injected by traitlets)

_root = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = _root
c.CourseDirectory.course_id = "ml-systems"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_root, "gradebook.db")
# The jupytext pair (acceleration.py) holds the solutions: it must never be copied next to the
# release or into a student's autograded folder, as nbgrader does for every non-notebook file.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]

# Autograding: the student's notebook runs in a sandboxed kernel, minus the graded test cells,
# which TrustedTests runs in the grader's own process against the student's code in a sandboxed
# worker; nbgrader then scores the cells from those outputs as usual.
from autograder.preprocessors.cap_outputs import CapOutputs  # noqa: E402
from autograder.preprocessors.forget_duplicates import ForgetDuplicates  # noqa: E402
from autograder.preprocessors.sandboxed_execute import SandboxedExecute  # noqa: E402
from autograder.preprocessors.trusted_tests import TrustedTests  # noqa: E402
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds, IgnorePattern,
    LimitOutput, OverwriteCells, OverwriteKernelspec, SaveAutoGrades)

c.Autograde.sanitize_preprocessors = [
    ClearOutput, DeduplicateIds, ForgetDuplicates, OverwriteKernelspec, OverwriteCells,
    CheckCellMetadata,
]
c.Autograde.autograde_preprocessors = [
    SandboxedExecute, TrustedTests, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
    CapOutputs, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
]

# The kernel only runs the student's own cells and the demos (a hung one is interrupted so the
# rest still runs), 30 s for the whole notebook: the reference takes about 4 s, and no score
# depends on these outputs. Each call of student code from a test has its own limit in
# TrustedTests, and timed calls a CPU limit that follows from the test's own limit.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.SandboxedExecute.budget = 30
c.TrustedTests.call_timeout = 60

# The written questions are "manually graded answer" cells. Their rubric lives in a mark-scheme
# region of the locked prompt cell above each answer: nbgrader strips it from the release and
# restores it (from the gradebook) in the autograded copy that graders read in formgrader.
# nbgrader only expects mark schemes in task cells, hence this switch.
c.ClearMarkScheme.enforce_metadata = False

# `nbgrader validate` cuts each line of a failure at this width; the tests' messages (what was
# called, what came back, where to look) run to about 350 characters.
c.Validator.width = 400

# nbgrader's own feedback (`nbgrader generate_feedback`, formgrader's Generate Feedback button)
# renders the autograded notebook, hidden tests included; this exporter makes it this project's
# feedback page instead, the one `python -m autograder feedback` writes.
c.GenerateFeedback.exporter_class = "autograder.feedback.FeedbackExporter"

# Keep graded notebooks small whatever a submission prints.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60

# Late work: nbgrader compares each submission's timestamp.txt (kept by `collect`) with the
# assignment's due date in the gradebook and applies this plugin. "zero" gives late work no marks;
# set "none" to only flag it.
c.LateSubmissionPlugin.penalty_method = "zero"
