"""File names of a sweep directory, shared by what writes them (lmsys.launch.sweep) and what reads
them back (lmsys.analysis). No imports: reading a sweep back never loads the launcher."""

SWEEP_FILE = "sweep.json"         # DIR/sweep.json: config, arg, overrides, the trials
SUMMARY_FILE = "summary.csv"      # DIR/summary.csv: one row per trial
ERROR_FILE = "sweep_error.txt"    # DIR/<trial>/sweep_error.txt: why the trial failed
LOG_FILE = "sweep_log.txt"        # DIR/<trial>/sweep_log.txt: the trial's stdout and stderr
