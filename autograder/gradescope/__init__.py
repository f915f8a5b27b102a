"""Grading on Gradescope's autograder: one container per submission.

- `build`: the `gradescope` command, which writes the autograder zip (run by the instructor);
- `run`: what the zip's `run_autograder` runs in the container, for one submission;
- `notebook`: the notebook graded there, from the grading template and the submission;
- `results`: results.json in Gradescope's format.

`run`, `notebook` and `results` import nothing of nbgrader, which the container does not have.
"""
