"""`process_ticket.py --check`: settings, destination, Google and state file checked, a line each; nothing read or sent."""

from __future__ import annotations

from destinations import CheckFailedError, how_to_name_one
from state_file import StateError, acquire_lock, load_state, write_probe


def check_all(settings) -> int:
    """Print one line per check, saying what to fix; 0 when all pass, else 2."""
    checks = [("settings", lambda: "the command line and the environment are usable"),
              ("destination", lambda: check_destination(settings)),
              ("report", lambda: check_source(settings)),
              ("state", lambda: check_state(settings))]
    destination = settings.destination
    if destination is not None and destination.check_bounces is not None and destination.reads_bounces(
            settings.send_context()):
        checks.insert(2, ("bounces", lambda: check_bounces(settings)))
    if settings.ping_url:
        from heartbeat import check_ping_url
        checks.append(("heartbeat", lambda: f"pings go to {check_ping_url(settings.ping_url).label} (none sent now)"))
    failed = 0
    for name, check in checks:
        try:
            print(f"ok    {name}: {check()}")
        except CheckFailedError as problem:
            failed += 1
            print(f"FAIL  {name}: {problem}")
        except Exception as error:  # a check must never end the others: one line, like the rest
            failed += 1
            print(f"FAIL  {name}: unexpected {type(error).__name__}: {error}")
    return 2 if failed else 0


def check_destination(settings) -> str:
    if settings.destination is not None:
        return settings.destination.check_live(settings.send_context())
    if settings.test_mode:
        return "none set (test mode sends nothing)"
    raise CheckFailedError(f"no destination: set {how_to_name_one()}")


def check_bounces(settings) -> str:
    """The mailbox the delivery reports come back to can be read (login or permission); no message read."""
    from destinations import SettingError

    try:
        return settings.destination.check_bounces(settings.send_context())
    except SettingError as error:
        raise CheckFailedError(str(error)) from None


def check_source(settings) -> str:
    if settings.report:
        if not settings.report.is_file():
            raise CheckFailedError(f"report file not found: {settings.report}")
        return f"{settings.report} exists (not read now)"
    import google_api

    try:
        title = google_api.check_sheet_access(settings.sheet_id, credentials_path=settings.credentials, token_path=settings.token,
                                              api_key=settings.api_key, endpoint=settings.sheets_endpoint)
    except google_api.GoogleSetupError as error:
        raise CheckFailedError(str(error)) from None
    return f"Google Sheet {title!r} can be read with these credentials"


def check_state(settings) -> str:
    path = settings.state_file
    try:
        stored = load_state(path)
        lock = acquire_lock(path)
        try:
            write_probe(path.parent)
        finally:
            lock.release()
    except StateError as error:
        raise CheckFailedError(str(error)) from None
    if stored is None:
        return f"no state file at {path} yet: the first live run needs --since DD/MM/YYYY; its folder is writable"
    return f"{path} is readable (last_run_date {stored.last_run_date:%d/%m/%Y}), its folder writable and not locked"
