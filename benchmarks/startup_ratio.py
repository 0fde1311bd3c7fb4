"""`qgjob submit --help` against a bare rich-click command's `--help` in the same virtualenv: interleaved runs,
medians and their ratio (docs/performance.md, "Client start-up").

    python3 benchmarks/startup_ratio.py .venv [runs]
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = '''import rich_click as click


@click.command()
@click.option("--name", help="Who to greet.")
def hello(name):
    """Say hello."""


hello()
'''


def main() -> None:
    venv = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv").resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with tempfile.TemporaryDirectory() as where:
        bare = Path(where) / "bare.py"
        bare.write_text(BARE, encoding="utf-8")
        commands = {
            "bare rich-click --help": [str(venv / "bin" / "python"), str(bare), "--help"],
            "qgjob submit --help": [str(venv / "bin" / "qgjob"), "submit", "--help"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name}: {value * 1000:.0f} ms median of {runs}")
    print(f"ratio: {medians['qgjob submit --help'] / medians['bare rich-click --help']:.2f}x")


if __name__ == "__main__":
    main()
