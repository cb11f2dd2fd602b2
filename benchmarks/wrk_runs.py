"""Run wrk, the native HTTP load generator (Debian package wrk), and read its report."""

import re
import subprocess
import tempfile
from pathlib import Path

# wrk prints latencies with a unit; these convert them to milliseconds.
_MILLISECONDS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, connections: int, seconds: int, script: str) -> dict[str, float]:
    """Run wrk on ``url`` with the Lua ``script``; return requests per second ("rps") and the
    p50 and p99 latencies in milliseconds. Exits when any response was not 2xx or 3xx."""
    path = Path(tempfile.mkdtemp()) / "request.lua"
    path.write_text(script)
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(path), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in output:
        raise SystemExit(f"wrk saw error responses:\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rate, output
    result = {"rps": float(rate.group(1))}
    for percentile in ("50", "99"):
        match = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)\b", output)
        assert match, output
        result[f"p{percentile}"] = float(match.group(1)) * _MILLISECONDS[match.group(2)]
    return result
