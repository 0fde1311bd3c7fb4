"""Exit codes of `qgjob submit --wait` and `qgjob wait` (PRODUCT.md). The most severe wins."""

PASSED = 0
TEST_FAILED = 1
BAD_INPUT = 2
INFRA_ERROR = 3
TIMED_OUT = 4
CANCELLED = 5
INTERRUPTED = 130  # Ctrl-C (SIGINT) ended the wait, as shells report 128 + 2; the jobs keep running
TERMINATED = 143  # SIGTERM ended the wait (128 + 15); the same report, the jobs keep running

HELP = (
    "Exit codes: 0 all passed; 1 a test failed; 2 bad usage or input; 3 infrastructure error; "
    "4 timed out waiting; 5 cancelled. The most severe wins. 130 (143): the wait was interrupted by Ctrl-C "
    "(SIGTERM); the jobs keep running."
)
