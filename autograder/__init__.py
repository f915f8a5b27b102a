"""Grading pipeline for the hardware-acceleration assignment.

One module per stage, data flowing one way:

    release  -> collect -> grade -> feedback -> export -> report

`python -m autograder --help` lists the commands.
"""
