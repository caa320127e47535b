"""Running `facegate` in-process for CLI tests: output captured, the one-line error checked.

Its fixtures (`cli_tmp`, `staged_gallery`) are in conftest.py.
"""

from __future__ import annotations

from appliance.cli import main


def run(capsys, *args: object) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `facegate ARGS...`."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *fragments: str) -> str:
    """The single `facegate: error:` line of stderr (no traceback), holding every fragment."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("facegate: error:")]
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
