"""`queuectl enqueue JSON` skips argparse; every other command line goes through it.

The direct path must produce exactly what the parser would, or the two would
drift apart the day someone adds an option.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from queuectl.cli import _plain_enqueue
from queuectl.cli.app import build_parser


@pytest.mark.parametrize("job_json", ['{"command": "sleep 2"}', "", "not json", "{}"])
def test_the_direct_path_reads_what_the_parser_reads(job_json: str) -> None:
    argv = ["enqueue", job_json]
    direct = _plain_enqueue(argv)
    assert direct is not None
    assert vars(direct) == vars(build_parser(argv).parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["enqueue", "--json", '{"command": "true"}'],
        ["enqueue", '{"command": "true"}', "--priority", "3"],
        ["enqueue", "--file", "-"],
        ["enqueue", "-"],
        ["enqueue"],
        ["--db", "x.db", "enqueue", '{"command": "true"}'],
        ["status"],
        ["list", '{"command": "true"}'],
    ],
)
def test_every_other_command_line_goes_to_the_parser(argv: list[str]) -> None:
    assert _plain_enqueue(argv) is None


def test_a_plain_enqueue_never_imports_argparse(tmp_path: Path) -> None:
    # The point of the direct path: argparse and what its message lookups import
    # (gettext, locale) are a sixth of a single `queuectl enqueue`.
    probe = (
        "import sys\n"
        "from queuectl.cli import main\n"
        "try:\n"
        "    main(['enqueue', '{\"command\": \"true\"}'])\n"
        "except SystemExit as exit:\n"
        "    loaded = sorted({'argparse', 'gettext', 'locale'} & set(sys.modules))\n"
        "    print(exit.code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={"QUEUECTL_DB": f"{tmp_path}/queue.db", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    code_and_modules = done.stdout.strip().splitlines()[-1]
    assert code_and_modules == "0 []", done.stdout + done.stderr
