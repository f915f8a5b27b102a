"""A grading engine for nbgrader assignments: one module per stage of the pipeline.

Data flows one way through the stages:

    release  -> collect -> grade -> feedback -> export -> report

What is specific to an assignment lives beside its notebook, in `source/<name>/grading.py`
(`autograder.assignment`). `python -m autograder --help` lists the commands.
"""
