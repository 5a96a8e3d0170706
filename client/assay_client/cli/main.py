"""`assay`: the command line entry point. The one module of the package that reads the environment."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import IO, Any

import click

from assay_client._http import RetryEvent
from assay_client.cli import admin
from assay_client.cli.config import CliConfig, ConfigError, resolve
from assay_client.cli.progress import Display
from assay_client.cli.run import SubmitOptions, exit_code, submit_items
from assay_client.cli.sources import InputError, Item, audio_files, read_file, record_files, text_arguments
from assay_client.client import Client
from assay_client.errors import AssayError, Unauthorized, WaitTimeout
from assay_client.models import Job
from assay_client.retry import RetryPolicy


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _echo_json(value: Any) -> None:
    click.echo(_dumps(value))


class _State:
    """What the group's options resolved to; commands make their client from it."""

    def __init__(self, config: CliConfig) -> None:
        self.config = config

    def client(self, retry: RetryPolicy | None = None, on_retry: Any = None) -> Client:
        if not self.config.api_key:
            raise click.UsageError(
                "no API key: pass --api-key, set ASSAY_API_KEY, or put api_key in ~/.config/assay/config.toml"
            )
        return Client(
            self.config.url,
            self.config.api_key,
            timeout=self.config.timeout,
            retry=retry or QUICK_RETRY,
            on_retry=on_retry or _say_retry,
        )


# One-off commands (jobs, analyses) are for a person waiting at the prompt: retry briefly, and say so.
QUICK_RETRY = RetryPolicy(max_attempts=5, max_elapsed=15)


def _say_retry(event: RetryEvent) -> None:
    click.echo(f"assay: {event.describe()}", err=True)


pass_state = click.make_pass_decorator(_State)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--url", metavar="URL", help="API base URL [env ASSAY_URL; default http://127.0.0.1:8000]")
@click.option("--api-key", metavar="KEY", help="API key [env ASSAY_API_KEY]")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="TOML file with url, api_key, timeout [env ASSAY_CONFIG; default ~/.config/assay/config.toml]",
)
@click.option("--timeout", type=float, metavar="SECONDS", help="per-request timeout [default 30]")
@click.version_option("0.1.0", prog_name="assay")
@click.pass_context
def cli(ctx: click.Context, url: str | None, api_key: str | None, config_path: str | None, timeout: float | None):
    """Assay from the command line: submit text or audio, wait with a progress bar, manage jobs and keys."""
    try:
        config = resolve(url=url, api_key=api_key, timeout=timeout, config_path=config_path, env=os.environ)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.obj = _State(config)


# -- submit ------------------------------------------------------------------------------------


def _items(texts: tuple[str, ...], file: str | None, directory: str | None, fmt: str, recursive: bool) -> list[Item]:
    given = sum(bool(x) for x in (texts, file, directory))
    if given != 1:
        raise click.UsageError("give texts as arguments, or --file, or --dir (exactly one of them)")
    try:
        if file:
            items = read_file(file, fmt)  # type: ignore[arg-type]
        elif directory:
            items = audio_files(directory, recursive)
        else:
            items = text_arguments(texts)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    if not items:
        raise click.UsageError("nothing to submit: the input holds no non-blank line")
    return items


def _input_kind(client: Client, analysis: str) -> str | None:
    """What the analysis takes, as the server says (call records go as file uploads, one job per file)."""
    return next((a.input for a in client.analyses() if a.name == analysis), None)


def _record_items(file: str | None, directory: str | None, recursive: bool) -> list[Item]:
    try:
        return record_files(file, directory, recursive)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None


def _json_object(value: str | None, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=name)
    return parsed


@cli.command()
@click.argument("analysis")
@click.argument("texts", nargs=-1)
@click.option(
    "--file", "-f", "file", metavar="PATH", help="JSONL (objects with a text field) or plain text lines; - is stdin"
)
@click.option("--dir", "-d", "directory", metavar="DIR", help="a folder of audio: wav mp3 m4a ogg opus flac webm")
@click.option("--recursive", is_flag=True, help="with --dir: include subfolders")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "text"]), default="auto", show_default=True)
@click.option("--wait", "-w", is_flag=True, help="wait for the results, with a progress bar on standard error")
@click.option("--out", "-o", type=click.Path(dir_okay=False, writable=True), help="write JSON lines here, not stdout")
@click.option("--metadata", metavar="JSON", help="a JSON object set on every job (a JSONL line's own metadata wins)")
@click.option("--webhook", metavar="URL", help="POST each job's completion to this URL")
@click.option(
    "--options",
    "job_options",
    metavar="JSON",
    help="job options, e.g. '{\"cache\": false}' or '{\"return_diagnostics\": true}'",
)
@click.option(
    "--columns",
    metavar="JSON",
    help='call records: the file\'s column names, e.g. \'{"caller": "a_number", "callee": "b_number"}\'',
)
@click.option("--parameters", metavar="JSON", help="call records: thresholds, e.g. '{\"min_unique_destinations\": 30}'")
@click.option(
    "--chunk-size",
    type=click.IntRange(1, 1000),
    default=250,
    show_default=True,
    help="jobs per batch request; keep it the same to resume",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="long-polls open at once while waiting",
)
@click.option("--wait-timeout", type=click.FloatRange(min=0), metavar="SECONDS", help="give up waiting after this long")
@click.option(
    "--retry-for",
    type=float,
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="keep retrying 429/503 and connection failures this long per request",
)
@click.option("--fresh", is_flag=True, help="new jobs even for content submitted before (no resuming)")
@click.option(
    "--progress/--no-progress", default=None, help="force the progress bar on or off [default: on a terminal]"
)
@pass_state
def submit(
    state: _State,
    analysis: str,
    texts: tuple[str, ...],
    file: str | None,
    directory: str | None,
    recursive: bool,
    fmt: str,
    wait: bool,
    out: str | None,
    metadata: str | None,
    webhook: str | None,
    job_options: str | None,
    columns: str | None,
    parameters: str | None,
    chunk_size: int,
    concurrency: int,
    wait_timeout: float | None,
    retry_for: float,
    fresh: bool,
    progress: bool | None,
) -> None:
    """Submit ANALYSIS jobs for TEXTS, a --file or a --dir; one JSON line per input, in input order.

    Re-running the same command resumes: nothing already submitted is submitted again (keys are derived
    from the content, its position and the chunk size), so after Ctrl-C just run it again.

    Exit status: 0 all succeeded (or were accepted, without --wait); 2 some failed or were canceled;
    1 an error; 130 interrupted.
    """
    if out:
        _check_writable(out)
    display = Display(analysis, 0, waiting=wait, enabled=progress)
    client = state.client(RetryPolicy(max_attempts=None, max_elapsed=retry_for), display.on_retry)
    uploads = _input_kind(client, analysis) == "cdr"
    if uploads and (texts or not (file or directory)):  # a file name as an argument became a text job
        raise click.UsageError(f"{analysis} analyses call-record files: give them with --file PATH or --dir DIR")
    if not uploads and (columns or parameters):
        raise click.UsageError("--columns and --parameters describe call-record files (cdr_fraud)")
    items = _record_items(file, directory, recursive) if uploads else _items(texts, file, directory, fmt, recursive)
    display.set_total(len(items))
    options = SubmitOptions(
        uploads=uploads,
        analysis=analysis,
        metadata=_json_object(metadata, "--metadata"),
        webhook=webhook,
        chunk_size=chunk_size,
        wait=wait,
        timeout=wait_timeout,
        concurrency=concurrency,
        salt=secrets.token_hex(8) if fresh else "",
        job_options=_json_object(job_options, "--options"),
        columns=_json_object(columns, "--columns"),
        parameters=_json_object(parameters, "--parameters"),
    )
    began = time.monotonic()
    # --out is opened at the first result: a run that fails before one (a bad key, the server down)
    # leaves the results of the last run as they were.
    opened: list[IO[str]] = []
    code = 0
    try:
        with display:

            def emit(line: dict[str, Any]) -> None:
                if out and not opened:
                    opened.append(open(out, "w", encoding="utf-8"))  # noqa: SIM115 (closed below)
                sink = opened[0] if out else sys.stdout
                sink.write(_dumps(line) + "\n")
                sink.flush()

            try:
                submit_items(client, items, options, emit, display)
            except WaitTimeout as exc:  # the accepted jobs were written as last seen: say so, then the summary
                display.console.print(
                    f"[red]error[/]: {exc}; their lines show them as last seen: `assay jobs get ID --wait N` "
                    "or the same command again picks them up",
                    soft_wrap=True,
                )
                code = 1
            except AssayError as exc:  # name each refused entry by its line or file, not by its index
                if isinstance(exc.details, list):
                    exc.details = [_with_source(entry, items) for entry in exc.details]
                elif isinstance(exc.details, dict):
                    exc.details = _with_source(exc.details, items)
                raise
            else:
                code = exit_code(display)
    except KeyboardInterrupt:
        display.console.print(
            f"[yellow]interrupted[/]: {display.submitted} of {len(items)} submitted. "
            "Run the same command again to resume: nothing is submitted twice.",
            soft_wrap=True,
        )
        code = 130
    finally:
        for sink in opened:
            sink.close()
        client.close()
    if code != 130:
        display.console.print(display.summary(time.monotonic() - began), highlight=False, soft_wrap=True)
    sys.exit(code)


def _with_source(entry: Any, items: list[Item]) -> Any:
    index = entry.get("index") if isinstance(entry, dict) else None
    if isinstance(index, int) and 0 <= index < len(items):
        return {"source": items[index].source, **entry}
    return entry


def _check_writable(out: str) -> None:
    """Before anything is submitted: a --out that cannot be written would lose the run's results."""
    target = Path(out)
    if target.is_dir() or not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise click.UsageError(f"--out {out}: not a file in a folder this user can write to")


# -- jobs --------------------------------------------------------------------------------------


@cli.group()
def jobs() -> None:
    """List, read, cancel and erase jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "canceled"]))
@click.option("--analysis")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="jobs to print (pages are followed)"
)
@pass_state
def jobs_list(state: _State, status: str | None, analysis: str | None, limit: int) -> None:
    """Newest first, one JSON line per job."""
    with state.client() as client:
        for job in client.list_jobs(status=status, analysis=analysis, limit=limit):
            _echo_json(job.to_dict())


@jobs.command("get")
@click.argument("job_id")
@click.option(
    "--wait", "wait", type=click.FloatRange(min=0), metavar="SECONDS", help="wait up to this long for it to finish"
)
@pass_state
def jobs_get(state: _State, job_id: str, wait: float | None) -> None:
    """One job as JSON."""
    with state.client() as client:
        job: Job = client.wait(job_id, timeout=wait) if wait else client.get(job_id)
        _echo_json(job.to_dict())


@jobs.command("cancel")
@click.argument("job_ids", nargs=-1, required=True)
@pass_state
def jobs_cancel(state: _State, job_ids: tuple[str, ...]) -> None:
    """Cancel jobs: queued ones never run; running ones have their result discarded."""
    with state.client() as client:
        _each(job_ids, lambda job_id: _cancel_line(client.cancel(job_id)))


def _cancel_line(outcome: Any) -> dict[str, Any]:
    return {"job": outcome.job.to_dict(), "cancellation": outcome.cancellation}


def _each(job_ids: tuple[str, ...], act: Any) -> None:
    """Every id gets its try (one refused id does not leave the rest untouched): a JSON line each that worked,
    an error line each that did not, and exit status 1 if any did not."""
    failed = 0
    for job_id in job_ids:
        try:
            _echo_json(act(job_id))
        except AssayError as exc:
            failed += 1
            click.echo(f"error: {job_id}: {exc}", err=True)
    if failed:
        sys.exit(1)


@jobs.command("delete")
@click.argument("job_ids", nargs=-1, required=True)
@pass_state
def jobs_delete(state: _State, job_ids: tuple[str, ...]) -> None:
    """Erase jobs' input, result and metadata (the bare record stays)."""
    with state.client() as client:
        _each(job_ids, lambda job_id: client.delete(job_id).to_dict())


@jobs.command("webhooks")
@click.argument("job_id")
@pass_state
def jobs_webhooks(state: _State, job_id: str) -> None:
    """A job's webhook events with every delivery attempt, one JSON line per event."""
    with state.client() as client:
        for event in client.webhook_attempts(job_id):
            _echo_json(event.raw)


# -- analyses ----------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON line per analysis")
@pass_state
def analyses(state: _State, as_json: bool) -> None:
    """The analyses this deployment serves."""
    with state.client() as client:
        found = client.analyses()
    if as_json:
        for analysis in found:
            _echo_json(analysis.raw)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("analysis", "input", "labels", "model", box=None)
    for a in found:
        table.add_row(a.name, a.input, ", ".join(a.labels), a.model)
    console = Console()
    if not console.is_terminal:  # piped: rich assumes 80 columns and cut the model names short
        console = Console(width=Console(width=10_000).measure(table).maximum)
    console.print(table)


# -- keys (admin) ------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """API keys (admin): straight against the database, like `python -m store.cli keys`. Uses DATABASE_URL."""


def _server() -> Any:
    try:
        return admin.server_modules(Path.cwd())
    except admin.ServerCodeMissingError as exc:
        raise click.ClickException(str(exc)) from None


@keys.command("create")
@click.option("--tenant", required=True, help="tenant name (created on first use)")
@click.option("--label", default="", help="a note to recognise the key by")
@click.option("--json", "as_json", is_flag=True, help="print {key_id, tenant_id, key} as JSON")
def keys_create(tenant: str, label: str, as_json: bool) -> None:
    """Issue a key; the secret is shown only now."""
    server = _server()
    with admin.transaction(server) as conn:
        issued = server.create_key(conn, tenant, label)
    if as_json:
        _echo_json({"key_id": issued.key_id, "tenant_id": issued.tenant_id, "key": issued.secret})
        return
    click.echo(f"key id: {issued.key_id}\ntenant: {issued.tenant_name} ({issued.tenant_id})\nkey:    {issued.secret}")
    click.echo("Store the key now: only its hash is kept.", err=True)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by id (key_…); it stops working within the API's auth cache time."""
    server = _server()
    with admin.transaction(server) as conn:
        revoked = server.revoke_key(conn, key_id)
    if not revoked:
        raise click.ClickException(f"no live key {key_id}")
    click.echo(f"revoked {key_id}")


@keys.command("list")
def keys_list() -> None:
    """Every key, one JSON line each (never the secrets)."""
    server = _server()
    with admin.transaction(server) as conn:
        rows = server.list_keys(conn)
    for row in rows:
        _echo_json(row)


# -- entry point -------------------------------------------------------------------------------


def main() -> None:
    """Console-script entry: errors become one line on standard error and exit status 1 (usage errors too:
    click's own 2 is what `submit` means by "some jobs failed"); Ctrl-C is 130 in every command."""
    try:
        code = cli.main(prog_name="assay", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except OSError as exc:  # writing results: a full disk, a closed pipe
        if isinstance(exc, BrokenPipeError):
            sys.exit(1)
        click.echo(f"error: {exc.strerror or exc}", err=True)
        sys.exit(1)
    except AssayError as exc:
        click.echo(f"error: {exc}", err=True)
        if exc.details is not None:
            click.echo(f"details: {_dumps(exc.details)}", err=True)
        if isinstance(exc, Unauthorized):
            click.echo("check the API key (--api-key, ASSAY_API_KEY or the config file)", err=True)
        sys.exit(1)
