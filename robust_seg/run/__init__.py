"""Run plumbing shared by the entry points: the command line (``cli``, ``help``), the run directory and its lock
(``directory``), device, threads, seeds and process group (``runtime``), what made a run's numbers
(``provenance``), the top-level schema every run shares (``config``) and the run's progress meter (``progress``)."""
