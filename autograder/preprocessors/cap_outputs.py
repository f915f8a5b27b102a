"""CapOutputs: bound the size of every output a student's notebook produced.

nbgrader's LimitOutput counts lines; one 50 MB line, or a thousand plots, passes it. This cuts
each text output to `max_chars`, each error's message and traceback lines likewise, and drops
rich outputs (images, HTML) past `max_rich_bytes` per cell, so graded notebooks, formgrader and
feedback stay small whatever a submission prints.
"""
from __future__ import annotations

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer

CUT = "\n... (output cut: {} more characters)\n"


class CapOutputs(NbGraderPreprocessor):
    max_chars = Integer(20_000, help="characters kept per text output").tag(config=True)
    max_rich_bytes = Integer(2_000_000, help="bytes of rich output (images, HTML) kept per cell"
                             ).tag(config=True)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[:self.max_chars] + CUT.format(len(text) - self.max_chars)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        rich_bytes, kept = 0, []
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream":
                output.text = self._cut(output.text)
            elif kind == "error":
                output.evalue = self._cut(str(output.get("evalue", "")))
                output.traceback = [self._cut(line) for line in output.get("traceback", [])[:200]]
            elif kind in ("display_data", "execute_result"):
                size = sum(len(str(v)) for v in output.get("data", {}).values())
                if rich_bytes + size > self.max_rich_bytes:
                    continue
                rich_bytes += size
                if "text/plain" in output.get("data", {}):
                    output.data["text/plain"] = self._cut(str(output.data["text/plain"]))
            kept.append(output)
        dropped = len(cell.get("outputs", [])) - len(kept)
        if dropped:
            kept.append(nbformat.from_dict({"output_type": "stream", "name": "stdout",
                                            "text": f"... ({dropped} large outputs dropped)\n"}))
        cell.outputs = kept
        return cell, resources
