"""Where submissions come from, one module per source, each turning its input into the same
`candidates.Candidate`s (and `Rejected` files with reasons), as nbgrader's ZipCollect does with
its collector plugins:

| source | module | input |
|---|---|---|
| Canvas | `canvas` (+ `zips`) | "Download Submissions" zip; also the gradebook CSV columns |
| Moodle | `moodle` (+ `zips`) | "Download all submissions" zip; also the worksheet columns |
| folder | `folder` | one `<student>.ipynb` or `<student>/` per student |
| nbgrader's exchange | `exchange` | what students' `nbgrader submit` put in the inbound folder |
| drop folder | `dropfolder` | a folder that fills up over time (an LMS sync, a share) |

`collect` (one import) and `watch` (as they arrive) share them. Adding a source is one file here.
"""
