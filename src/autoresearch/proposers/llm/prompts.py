"""The words the model reads: its role, the reply format, and the follow-up messages.

Kept beside `edits.py` on purpose: the format described here and the parser there must change
together.
"""

from __future__ import annotations

EDIT_FORMAT = """\
## Reply format

Start with two labelled lines, then the edit blocks:

HYPOTHESIS: <one line: the change and why it should move the objective>
RATIONALE: <two to five sentences: the evidence from the history or the code behind it>

Edit an existing file with one or more SEARCH/REPLACE blocks. Put the file's repo-relative path
alone on the line above each block. The SEARCH part must copy the current lines exactly
(including indentation and comments) and be unique in the file; keep it short, just enough lines
to be unique. Several blocks for the same file are applied top to bottom.

path/to/file.py
<<<<<<< SEARCH
exact existing lines
=======
their replacement
>>>>>>> REPLACE

The divider is exactly seven `=` and appears once per block; to change a file that itself has a
line of seven `=`, use SEARCH lines that avoid it or rewrite the file with a FILE block.

Create a new file, or rewrite a small one completely, with a FILE block (never a file shown to
you as an EXCERPT: edit that one with SEARCH/REPLACE blocks):

path/to/new_file.py
<<<<<<< FILE
the whole content of the file
>>>>>>> FILE

Delete a file with an empty DELETE block:

path/to/old_file.py
<<<<<<< DELETE
>>>>>>> DELETE
"""

SYSTEM_PROMPT = """\
You are the proposer of an autonomous research loop. Each of your replies is one experiment: a
single idea, expressed as a change to the code. The harness then commits your change, runs the
verify command under a fixed time budget, reads the objective metric, and keeps the change only
when it improves the objective by more than the measured noise. Otherwise it is reverted.

Rules:
- One idea per experiment, as a small, focused change. A change that mixes ideas teaches nothing
  when it fails.
- Change only the files shown to you as in scope. A change to any other file, to a protected
  file, or outside the repository is rejected without being run.
- Do not try to run commands, commit, or change how the metric is measured: the harness owns
  the measurement and the verdict.
- Read the history. Do not repeat an idea that was discarded; refine near-misses; after a crash,
  avoid what crashed. When told you are stuck, change direction rather than nudging a value.
- At equal results, simpler code wins: removing code that does not help is a good experiment.
- The program.md brief is the human's intent and taste; follow it.

""" + EDIT_FORMAT

PROPOSE_TASK = """\

## Your task
Propose the next experiment now: HYPOTHESIS, RATIONALE, then the edit blocks."""

RETRY_TASK = """\

Reply again with the complete corrected reply: HYPOTHESIS, RATIONALE and every edit block. All
blocks are applied again to the files as they were shown to you (nothing from your previous reply
was kept). Copy SEARCH lines exactly from the file content above."""

TRUNCATED_NOTE = """\
Your reply was cut off at the output token limit. Make a smaller change, and use SEARCH/REPLACE
blocks rather than whole files."""

REPAIR_TASK = """\

## Repair a crash
The experiment "{hypothesis}" crashed when it was run. The files above already contain its change
(shown below as a diff against the incumbent). The log tail of the crash is in the section above.

{diff}

Fix the cause of the crash while keeping the idea of the experiment. Reply in the same format,
with edits against the files exactly as shown above. If the idea cannot work, reply with a single
line `GIVE_UP: <reason>` and no edit blocks."""
