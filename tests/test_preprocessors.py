"""The course's nbgrader preprocessors on their own, on hand-made notebooks."""
from __future__ import annotations

import nbformat

from autograder.preprocessors.cap_outputs import CapOutputs


def test_cap_outputs_bounds_floods_of_any_shape():
    flood = nbformat.v4.new_code_cell("print('x' * 50_000_000)")
    flood.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="x" * 5_000_000),
        nbformat.v4.new_output("error", ename="ValueError", evalue="y" * 1_000_000,
                               traceback=["z" * 100_000] * 10_000),
        *[nbformat.v4.new_output("display_data", data={"image/png": "A" * 500_000})
          for _ in range(20)],
    ]
    quiet = nbformat.v4.new_code_cell("1")
    quiet.outputs = [nbformat.v4.new_output("stream", name="stdout", text="fine\n")]
    nb = nbformat.v4.new_notebook(cells=[flood, quiet])
    nb, _ = CapOutputs(max_chars=1000, max_rich_bytes=1_200_000).preprocess(nb, {})
    assert len(nbformat.writes(nb)) < 2_000_000
    stream, error, *rest = nb.cells[0].outputs
    assert stream.text.startswith("x" * 1000) and "4999000 more characters" in stream.text
    assert len(error.evalue) < 1100 and len(error.traceback) == 200
    images = [o for o in rest if o.output_type == "display_data"]
    assert len(images) == 2 and "18 large outputs dropped" in rest[-1].text
    assert nb.cells[1].outputs[0].text == "fine\n"
    nbformat.validate(nb)
