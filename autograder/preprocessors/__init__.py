"""nbgrader preprocessors of this course, one per module, enabled in nbgrader_config.py."""
