"""A corpus of hostile submissions, graded in one batch; see README.md in this folder."""
