"""Exit codes of `qgjob submit --wait` and `qgjob wait` (PRODUCT.md). The most severe wins."""

PASSED = 0
TEST_FAILED = 1
BAD_INPUT = 2
INFRA_ERROR = 3
TIMED_OUT = 4
CANCELLED = 5

HELP = (
    "Exit codes: 0 all passed; 1 a test failed; 2 bad usage or input; 3 infrastructure error; "
    "4 timed out waiting; 5 cancelled. The most severe wins."
)
