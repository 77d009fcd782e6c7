"""nbgrader configuration for the course (run nbgrader from the repository root).

Instructor commands: see docs/instructor.md. Grades come from the trusted grader
(``python -m pgcheck.grading autograde NAME``): it runs every submission in a bubblewrap
jail and writes the scores into the gradebook through nbgrader's API. nbgrader itself never
executes a submission; do not run ``nbgrader autograde`` on student work (it would execute
it with your rights).
"""

import os

c = get_config()  # noqa: F821  (injected by nbgrader)
os.makedirs("course", exist_ok=True)

c.CourseDirectory.root = os.path.abspath(".")  # nbgrader is run from the course root
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "course/submitted"
c.CourseDirectory.autograded_directory = "course/autograded"
c.CourseDirectory.feedback_directory = "course/feedback"
c.CourseDirectory.db_url = "sqlite:///course/gradebook.db"
c.CourseDirectory.course_id = "policy-gradient"

# used only when nbgrader executes notebooks you wrote (never submissions): every cell may
# take 2 minutes (training cells); a cell that runs longer is interrupted
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# feedback: hidden tests show neither their source nor their traceback
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "pgcheck.grading.feedback.HideHiddenTests",
]

# files never copied into a release or a submission: Lab's checkpoints and every other hidden
# entry (.DS_Store, editor swap files, ...)
c.CourseDirectory.ignore = [".*", "*.pyc", "__pycache__", "feedback"]
