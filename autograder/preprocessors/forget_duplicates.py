"""ForgetDuplicates: let a notebook with a copied nbgrader cell be graded.

When a student copies a cell (Jupyter's copy and paste keeps its metadata), nbgrader's
DeduplicateIds keeps the last copy and empties the others' nbgrader metadata, and then
CheckCellMetadata rejects those empty records and the whole notebook fails to grade (an open
nbgrader issue). This removes the emptied records, so the earlier copies become plain cells.
"""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor


class ForgetDuplicates(NbGraderPreprocessor):
    def preprocess_cell(self, cell, resources, index):
        if "nbgrader" in cell.metadata and not cell.metadata.nbgrader:
            del cell.metadata["nbgrader"]
        return cell, resources
