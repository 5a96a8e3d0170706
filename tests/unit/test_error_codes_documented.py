"""Every error code the API can answer is in README's Errors table, under the status it comes with.

The table promises "every error, whatever the route"; codes added with new inputs (audio, call records,
rate limits) had been left out of it. Read from the code's own calls, so a new code fails this test
until it is documented.
"""

from __future__ import annotations

import ast
import re

from config.settings import ROOT

#: Calls whose first string argument is an error code (and whose first int, if any, its HTTP status).
RAISERS = {"ApiError", "EntryError", "error_response", "InvalidAudio", "UnsafeURLError"}
#: Codes raised without a status (audio and URL checks) get theirs where intake turns them into an EntryError.
ANY_STATUS = 0


def raised_codes() -> dict[str, set[int]]:
    codes: dict[str, set[int]] = {}
    for folder in ("app", "models", "webhooks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                constants = [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
                code = next((c for c in constants if isinstance(c, str) and re.fullmatch(r"[a-z0-9_]+", c)), None)
                if name in RAISERS and code:
                    status = next((c for c in constants if isinstance(c, int)), ANY_STATUS)
                    codes.setdefault(code, set()).add(status)
    for status, code in re.findall(r"(\d{3}),\s*\"([a-z_]+)\"", (ROOT / "app" / "ratelimits.py").read_text()):
        codes.setdefault(code, set()).add(int(status))  # raised through a helper that takes the code second
    return codes


def documented() -> dict[int, set[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Errors", 1)[1].split("\n#", 1)[0]
    rows: dict[int, set[str]] = {ANY_STATUS: set()}
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip().isdigit():
            rows[int(cells[1])] = set(re.findall(r"`([a-z0-9_]+)`", cells[2]))
            rows[ANY_STATUS] |= rows[int(cells[1])]
    return rows


def test_every_error_code_is_in_the_readme_table_under_its_status() -> None:
    rows = documented()
    missing = sorted(
        f"{status} {code}" for code, statuses in raised_codes().items() for status in statuses
        if code not in rows.get(status, set())
    )  # fmt: skip
    assert not missing, f"README's Errors table lacks: {missing}"


def test_the_scan_finds_codes_at_all() -> None:
    codes = raised_codes()
    assert {"invalid_json", "queue_full", "invalid_base64", "rate_limited", "webhook_url_forbidden"} <= set(codes)
    assert codes["queue_full"] == {503}


def failed_job_codes() -> set[str]:
    """The `error.code`s a job can fail with: set by workers, the sweeper and the result-size check."""
    found: set[str] = set()
    for folder in ("pipeline", "models", "store", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            found |= set(re.findall(r"(?:InputError|InvalidAudio)\(\s*\"([a-z_]+)\"", text))
            found |= set(re.findall(r"error_code=\"([a-z_]+)\"", text))
    # models.registry's placeholder (replaced before any outcome is written); the upload probe's timeout
    # (raised at intake only, a 422 in the Errors table).
    return found - {"internal", "audio_probe_timeout"}


def test_every_failed_job_code_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("Failed jobs carry `error.code`") :].split("\n\n")[0]
    listed = set(re.findall(r"`([a-z_]+)`", paragraph))
    assert {"inference_error", "attempts_exhausted", "result_too_large"} <= failed_job_codes()
    assert not failed_job_codes() - listed, f"README's failed-job codes lack: {sorted(failed_job_codes() - listed)}"


def test_codes_named_in_settings_descriptions_are_the_ones_answered() -> None:
    """docs/CONFIGURATION.md is generated from these descriptions: a "413 text_too_long" there sent readers
    looking for a code the API never answers (an over-long text is 413 input_too_large)."""
    settings_source = (ROOT / "config" / "settings.py").read_text()
    codes = raised_codes()
    named = re.findall(r"\b(\d{3}) ([a-z]+_[a-z_]+)\b", settings_source)
    assert named, "the scan finds no status and code in the settings' descriptions"
    wrong = sorted(f"{status} {code}" for status, code in named if int(status) not in codes.get(code, set()))
    assert not wrong, f"settings' descriptions name codes the API does not answer with that status: {wrong}"
