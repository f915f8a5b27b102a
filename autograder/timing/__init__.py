"""Timing for grading verdicts: measuring (`measure`) kept apart from pure statistics (`stats`)."""
