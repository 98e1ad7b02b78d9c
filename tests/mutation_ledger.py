"""The survivors of the last mutation run, each with the one-line reason it survives. After
`venv/bin/mutmut run --max-children 2`, from the repository's root:
`venv/bin/python tests/mutation_ledger.py > tests/mutation_survivors.md`. A survivor no reason
below fits is listed as TODO: give it a test, or a reason here."""

from __future__ import annotations

import ast
import difflib
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

CODEC = "equivalent: codec and charset names are case-insensitive"
HEADER_CASE = "equivalent: header field names are case-insensitive (RFC 5322 §1.2.2) and MIME types too"
FALSY = "equivalent: None and False (or '' and None) are read the same way here"
WINDOWS = "not observable off Windows: the retry on a locked file runs only on win32"
LOCALE = "not observable on a UTF-8 locale (this machine and CI): only a non-UTF-8 default encoding or \\r\\n newline would differ"
TEMPNAME = "equivalent: the name or folder of a temporary file that is renamed or removed at once"
CTRL_C = "not observable in-process: thread names, daemon flags and join timeouts matter only on Ctrl+C, tested through the CLI (test_hostile), which a mutation run skips"
LOG = "a diagnostic log line at DEBUG/INFO: its wording is not a rule"
FASTPATH = "equivalent: only decides whether a cache or a fast path is used; the same parser gives the same answer"
PADDING = "equivalent: pads a short row with more empty cells than needed, or pads a full row with none"

CACHED = ("not observable in a mutation run: worked out once (a module constant, or behind an lru_cache) in the "
          "process mutmut forks each mutant from; killed when applied to the source (test_date_rules: the 12-hour "
          "month-first forms)")
MESSAGE = "a diagnostic's wording in a log line, not a rule the job keeps"

# What kills the functions mutmut's selection does not reach (status 'no tests'): each is tested by the
# named files, which start servers or the command line, and are left out of the selection for time.
UNREACHED: dict[str, str] = {
    "ticket_core.x_sent_entry": "test_bounces (Postfix and Dovecot, the Gmail and Graph stand-ins); test_state_rules' writer test",
    "state_file.xǁ_Checkerǁsent_entry": "test_state_rules (a wrong sent email named by its key), test_bounces",
    "state_file.xǁ_Checkerǁcursor": "test_state_rules (a wrong bounce cursor named by its key), test_bounces",
}

# (function, the change, why it survives): every pattern names the change it excuses, never a whole function.
RULES = [
    # ticket_core
    (r"ticket_core\.x_cell_text__", r"type\(None\)", FASTPATH),
    (r"ticket_core\.x_is_valid_email__", r"rindex", "equivalent: the address pattern allows one '@', so index and rindex agree"),
    (r"ticket_core\.x_find_columns__", r"\(none\)|\(NONE\)", "unreachable: find_columns runs only on a row with a known header, so some header is found"),
    (r"ticket_core\.x_select_closed_tickets__", r"width|len\(row\) <=", PADDING),
    (r"ticket_core\.x_select_closed_tickets__", r"type\(raw_date\)|type\(None\)", FASTPATH),
    (r"ticket_core\.x_select_closed_tickets__", r"SKIP_NO_TICKET, None", "equivalent: the ticket cell is empty there, and cell_text(None) is '' too"),
    (r"ticket_core\.x__find_layout__", r"\(1, None\)", "equivalent: the number is not read when every row is blank"),
    (r"ticket_core\.x__find_layout__", r"None, True\)|first, None\)", "equivalent: a header layout never reads its first row again, and has_header None reads as False"),
    (r"ticket_core\.xǁ_CellMeaningsǁ__init__", r"casefold\(\), (None)?\)", "equivalent: a status that is not closed is falsy either way ('' or None)"),
    (r"ticket_core\.x__seed_layout_doubt__", r"XXXX", "equivalent: 'XXXX' is no address either, so the doubt is the same"),
    (r"ticket_core\.x_group_by_customer__", r"<= len\(group\)", "equivalent: sorting again by (date, length, id) keeps an order already sorted by distinct dates"),
    (r"ticket_core\.x__drop_recorded__", r"or True", "equivalent: an empty record gives None from get() as well"),
    (r"ticket_core\.x_split_by_weekly_guard__", r"min_days <= 0 and not last_emailed|min_days < 0 or not last_emailed|min_days >= 0 and last",
     "equivalent: with no guard (min_days <= 0) the loop defers nobody either; inside it min_days > 0 always holds"),
    (r"ticket_core\.x_next_held__", r"or True", "equivalent: the selected ids are only read when there are newly held tickets"),
    (r"ticket_core\.x_recall_matches__", r'found = None|if \(email_key\) or True|if email_key else "XXXX"|name: str = "XXXX"',
     "equivalent: no match reads as falsy either way, and the key of no address ('' or any text) is no customer a recall names"),
    (r"ticket_core\.x_cap_emails__", r"len\(customers\) < most", "equivalent: with exactly `most` customers the sort picks them all, in the report's order"),
    (r"ticket_core\.x__take_unambiguous_recalls__", r"closed_at > earlier\.closed_at", "equivalent: two rows of one address claiming a ticket by its customer's name on one day make the same ticket"),
    (r"ticket_core\.x_customer_name_key__", r"full_name and \(|tickets\[\+1\]|tickets\[-2\]|customer\.tickets\) (and False|or True)|else \"XXXX\"",
     "equivalent: a customer's full name is its newest ticket's (group_by_customer), so either side gives the same name"),
    (r"ticket_core\.x_still_held__", r"if held:", "equivalent: with nothing held the loop finds nothing to settle and gives back the same empty held list"),
    # delivery
    (r"delivery\.x_answer_text__", r"UTF-8", CODEC),
    (r"delivery\.xǁRateLimiterǁ__init__", r"1\.0", "equivalent: the monotonic clock is far past one second, so max(now, 1.0) is now"),
    (r"delivery\.xǁ_Runǁ__init__", r"refused_alike", "equivalent: None is falsy like '', and no destination answers with the code 'XXXX'"),
    (r"delivery\.xǁ_Runǁdeliver_one__", r"answer\.code\)|answer\.detail, \)|, None\)$|None, unreachable|detail, unreachable", "equivalent: the code of a final retry is never read (only refusals are compared)"),
    (r"delivery\.xǁ_Runǁdeliver_one__", r"if attempted|\(attempted\)|Answer\(None, answer\.detail\)|Answer\(RETRY, None\) if|Answer\(answer\.detail\)|Answer\(RETRY, \) if", "not observable: only Ctrl+C can stop the last worker's wait after a 'fewer', and then deliver_all raises and this answer is never read"),
    (r"delivery\.xǁ_Runǁgive_back__", r"-= 2|= 1$", "not killed: the count after a give-back only matters for a second 'fewer' among three or more workers, which no test stages"),
    (r"delivery\.x_deliver_all__", r"Thread|join", CTRL_C),
    (r"delivery\.x_deliver_all__", r"first_answer\.wait\(1\.2\)", "equivalent in outcome: how often the first worker is looked at while it waits; its answer ends the wait at once"),
    (r"delivery\.xǁ_Runǁsending_limit__", r"^return False$", "equivalent: after a limit no later rule records the customer again (LIMIT is neither refused nor failed twice), and the run has stopped"),
    (r"delivery\.x_retry_after_seconds__", r"Retry\((None|1)\)", "equivalent: parse_retry_after reads only the header; the retry count given to Retry is never read"),
    (r"delivery\.x__host_of__", r'if \(url\) or True|parse_url\(url, (None|"XXLocationXX"|"location"|"LOCATION"), WEB_PORTS\)',
     "equivalent: an empty Location fails parse_url and gives '' too, and the setting's name only appears in the error caught here"),
    (r"delivery\.x_resume_time__", r'rstrip\("XX\.,;\)XX"\)', "equivalent: no resume time a provider writes ends in X"),
    (r"delivery\.x_http_answer__", r'or headers\.get\("location"\) or "XXXX"\)', "equivalent: a missing Location, '' or 'XXXX', names no host either"),
    # customer_message
    (r"customer_message\.x_ticket_link__", r"XXXX", "equivalent: 'X' needs no escaping in a URL either"),
    (r"customer_message\.x_check_body_template__", r"dict\.fromkeys\(fields, (None|\"XXXX\")?\)", "equivalent: the check only needs substitute() to run; the values are never read"),
    (r"customer_message\.x_message_digest__", r"UTF-8", CODEC),
    (r"customer_message\.x_display_name__", r"UTF-8", CODEC),
    (r"customer_message\.x_display_name__", r"maxlinelen=71", "equivalent: the fold width is a readability choice; the 998-octet limit is checked by check_header_block"),
    (r"customer_message\.x_check_header_block__", r'", \)\[0\]|, 2\)\[0\]', "equivalent: only the part before the first blank line is read"),
    (r"customer_message\.x_check_header_block__", r"XXXX", "equivalent: the replacement holds no CR or LF either"),
    (r"customer_message\.x_check_header_block__", r"ASCII", CODEC),
    (r"customer_message\.x_build_email__", r"policy=None", "equivalent: message_bytes writes the message with an explicit policy"),
    (r"customer_message\.x_build_email__", r'message\["(from|FROM|to|TO|cc|CC|reply-to|REPLY-TO|subject|SUBJECT|auto-submitted|AUTO-SUBMITTED)"\]|subtype="HTML"', HEADER_CASE),
    (r"customer_message\.x_build_email__", r'charset=|cte=transfer', "equivalent: the email package writes str content as UTF-8 by default, and charset names are case-insensitive"),
    (r"customer_message\.x_outgoing_mail__", r'"quoted-printable"\), None\)', FALSY),
    (r"customer_message\.x_outgoing_mail__", r"check_header_block\(data, None\)", "equivalent: build_email always writes From and Message-ID when there is a sender"),
    (r"customer_message\.x_outgoing_mail__", r'"message-id"|"MESSAGE-ID"', HEADER_CASE),
    (r"customer_message\.x__eight_bit_if_needed__", r"default=(None|1)\)|splitlines\(\)\), \)", "equivalent: a body is never empty, so max() always has a line and its default is never used"),
    (r"customer_message\.x_subject_for__", r"template_values\(customer, \)", "not killed: only a subject holding $ticket_list or $ticket_lines with --ticket-url would differ (the links come from the content)"),
    # report_dates
    (r"report_dates\.x_parse_iso_moment__", r"\) / \(", "equivalent: a timedelta divided by -1 or 1 equals it multiplied"),
    (r"report_dates\.x_check_date_format__", r"XXXX", "equivalent: any text shows the same format error"),
    (r"report_dates\.x__strptime_regex__", r"directive = (None|fmt\[)|directive == \"XX%XX\"|directive in fields",
     "equivalent: the regex is strptime's own fast path; a misread directive makes it decline, and strptime reads the same value"),
    (r"report_dates\.xǁDateParserǁ__init__", r"ISO_8601\) (and False|or True)|fmt != ISO_8601", FASTPATH),
    (r"report_dates\.xǁDateParserǁ_parse_text__", r'"%b" in fmt and "%B"|"XX%bXX"|"%B" in fmt or "%B"|"XX%BXX"|"%b" in fmt or "%b"', FASTPATH),
    (r"report_dates\.xǁDateParserǁ_parse__", r'value or "XXXX"', "equivalent: an empty cell and 'XXXX' are both no date"),
    (r"report_dates\.xǁDateParserǁ_from_serial__", r"1000001", "equivalent: no whole number of microseconds rounds differently"),
    (r"report_dates\.xǁDateParserǁ_from_serial__", r"serial <= 2958466|serial < 2958467", "equivalent: serial 2958466 is 10000-01-01, which datetime cannot hold either: unreadable both ways"),
    (r"report_dates\.x__reads__", r'numeric = None|"%p" in fmt and not _AM_PM\.search\(text\) and|"XX%pXX"|"%P" in fmt|"%b" in fmt and "%B"|"XX%bXX"|"%B" in fmt or "%B"|"XX%BXX"|"%b" in fmt or "%b"', FASTPATH),
    (r"report_dates\.x__with_clock_variants__", r"variants|%H|%I|%p|%h|%i|%P", CACHED),
    (r"report_dates\.x_month_first_form__", r'return "XXXX"', CACHED),
    # state_file
    (r"state_file\.x_state_from_json__|state_file\.xǁ_Checkerǁ", r"moment=None", FALSY),
    (r"state_file\.x__entry_text__|state_file\.x__state_text__|state_file\.x__json__", r"ensure_ascii=None", FALSY),
    (r"state_file\.", r"UTF-8|utf-8-SIG|UTF-8-SIG", CODEC),
    (r"state_file\.x__replace__", r"win32|attempts = [56]|else 2|time\.sleep", WINDOWS),
    (r"state_file\.x_write_state_text__", r"encoding=None|newline=None|\"w\", newline|encoding=\"utf-8\", \)", LOCALE),
    (r"state_file\.", r"missing_ok", "equivalent: the file is there to remove (it was just found or made)"),
    (r"state_file\.x_write_probe__", r"_reason\(None\)", "not observable as root: a probe that fails cannot be staged"),
    (r"state_file\.x_load_state__|state_file\.x_check_regular_file__", r"_reason\(None\)", "not observable as root: a state file that cannot be read or looked at cannot be staged"),
    (r"state_file\.x_append_rejected_csv__", r'newline|else "utf-8", \) as handle', LOCALE),
    (r"state_file\.x_remove_rejected_csv_lines__|state_file\.x_remove_rejected_csv_customers__", r'newline|encoding="utf-8-sig", \)', "equivalent: rejected.csv cells never hold line breaks (a reason is one line)"),
    (r"state_file\.x_remove_rejected_csv_customers__", r"len\(row\) (<= 2|< 3)|len\(kept\) <= len\(rows\)|len\(rows\) \+ 1",
     "equivalent: a line the job writes has five cells, and rewriting the file with the same lines leaves it the same"),
    (r"state_file\.x_write_probe__", r'prefix=(None|"XX\.write-probe\.XX"|"\.WRITE-PROBE\.")|suffix=(None|"XX\.tmpXX"|"\.TMP")|mkstemp\(suffix=|probe\.", dir=folder\)', TEMPNAME),
    (r"state_file\.x__state_text__", r'cursors: str = "XX\{\}XX"', "equivalent: every caller passes the cursors, so the default is never used"),
    (r"state_file\.xǁStateWriterǁrecord__", r"cleared: list\[str\] = None", FALSY),
    (r"state_file\.xǁStateWriterǁ__init__", r"strict=(False|None)|items\(\)\), \)\)|_changes = 1", "equivalent: keys and items of one dict always zip evenly; the change counter only needs to grow"),
    (r"state_file\.xǁStateWriterǁ_changed__", r"_changes \+= 2", "equivalent: the change counter only needs to grow"),
    (r"state_file\.xǁStateWriterǁ_save_including__", r"_saved_changes > change", "equivalent: a save of what is already saved writes the same text"),
    (r"state_file\.xǁStateWriterǁ_encoded__", r"_encoded_cache\.get\(None|\(None, \"XXXX\"\)", FASTPATH),
    (r"state_file\.xǁStateWriterǁ_held_ids__", r"_held_ids_cache = None", FASTPATH),
    (r"state_file\.xǁStateWriterǁ_settle_held__", r"not self\.state\.held and", FASTPATH),
    (r"state_file\.xǁStateWriterǁrecord__", r'warning\(|getLogger\(', MESSAGE),
    (r"state_file\.x_acquire_lock__", r"timeout=1", "equivalent in outcome: the same refusal after a one-second wait (no test measures time)"),
    # url_rules
    (r"url_rules\.x_unusable_ca_bundle__", r"get\(name, None\)|get\(name, \)", FALSY),
    (r"url_rules\.x_unusable_ca_bundle__", r"if not value and", "equivalent: an empty variable names no file, and ssl loads nothing from it without an error"),
    (r"url_rules\.x_unusable_ca_bundle__", r"seen\.add\(None\)", "equivalent: a bundle named twice is checked twice with the same answer"),
    (r"url_rules\.x_unusable_ca_bundle__", r"reason", "equivalent: the errors ssl raises for a bundle (a missing file, a bad PEM) always carry strerror, so the fallbacks after it are never read"),
    (r"url_rules\.x_url_secrets__", r'parse_url\(url, (None|"XXXX"), default_ports\)', "equivalent: the setting's name is only used in an error message, and this call hides the message"),
]


def mutant_diffs() -> list[dict]:
    """Every mutant `mutmut results` lists (those not killed), with its status and changed lines."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results"], capture_output=True, text=True).stdout
    listed = [(line.split(":")[0].strip(), line.split(":")[1].strip()) for line in out.splitlines() if ":" in line]
    sources: dict[str, dict[str, list[str]]] = {}
    records = []
    for name, status in listed:
        module, _, function = name.partition(".")
        if module not in sources:
            text = Path(f"mutants/{module}.py").read_text(encoding="utf-8")
            lines = text.splitlines()
            sources[module] = {node.name: lines[node.lineno - 1:node.end_lineno] for node in ast.walk(ast.parse(text))
                               if isinstance(node, ast.FunctionDef) and "__mutmut_" in node.name}
        found = sources[module]
        short_name = function.split("ǁ")[-1]
        original_name = function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
        mutant = found.get(function) or found.get(short_name)
        original = found.get(original_name) or found.get(original_name.split("ǁ")[-1])
        minus: list[str] = []
        plus: list[str] = []
        if mutant is not None and original is not None:
            mutant = [line.replace(function, original_name).replace(short_name, original_name.split("ǁ")[-1])
                      for line in mutant]
            for line in difflib.unified_diff(original, mutant, lineterm="", n=0):
                if line[:3] not in ("---", "+++") and not line.startswith("@@"):
                    (minus if line.startswith("-") else plus).append(line[1:].strip())
        records.append({"name": name, "status": status, "minus": minus, "plus": plus})
    return records


def unspecific_rules() -> list[str]:
    """Rules that would excuse any change of their functions: a change pattern must name the change."""
    return [f"{name_pattern} / {change_pattern!r}" for name_pattern, change_pattern, _ in RULES
            if not change_pattern.strip() or re.search(change_pattern, "") is not None]


def rule_for(record: dict) -> tuple[str, str, str] | None:
    """The rule whose function pattern names the mutant's function and whose change pattern is found in
    what the mutant wrote (its changed lines, never the original ones)."""
    diff = " ".join(record["plus"])
    for rule in RULES:
        name_pattern, change_pattern, _ = rule
        if re.search(name_pattern, record["name"]) and re.search(change_pattern, diff):
            return rule
    return None


def reason_for(record: dict) -> str:
    rule = rule_for(record)
    return rule[2] if rule else "TODO"


def short(lines: list[str]) -> str:
    text = " / ".join(lines)
    return text if len(text) <= 110 else text[:107] + "..."


def main() -> int:
    """The ledger on stdout; exit 1 when a rule is unspecific or a survivor has neither a test nor a reason."""
    unspecific = unspecific_rules()
    if unspecific:
        print("rules that excuse any change (give each the change it excuses):", *unspecific, sep="\n  ", file=sys.stderr)
        return 1
    records = mutant_diffs()
    survivors = [record for record in records if record["status"] == "survived"]
    unreached = [record for record in records if record["status"] == "no tests"]
    timed_out = [record for record in records if record["status"] == "timeout"]
    not_run = [record for record in records if record["status"] == "not checked"]
    by_module = defaultdict(list)
    for record in survivors:
        by_module[record["name"].split(".")[0]].append(record)
    print("# Surviving mutants and why they survive\n")
    print("The mutants `venv/bin/mutmut run --max-children 2` leaves alive in the rule modules (developers' page,")
    print('"Mutation testing"), each with the one-line reason no test kills it. Made by')
    print("`tests/mutation_ledger.py`; after a run, make it again and give every new survivor a test or a reason.\n")
    print("| reason | survivors |\n|---|---:|")
    for reason, count in Counter(map(reason_for, survivors)).most_common():
        print(f"| {reason} | {count} |")
    kinds = Counter(reason_for(record).split(":")[0] for record in survivors)
    print(f"\nIn all: {len(survivors)} survivors: " + ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
          + f". Timed out (counted as killed): {len(timed_out)}.")
    if not_run:
        print(f"\n## Not run to the end in this round ({len(not_run)})\n")
        print("The run was stopped before these: mutmut runs the slowest mutants last, and each of these takes the")
        print("delivery tests, which now run the job in-process (real HTTP and SMTP servers, retries, backoff).")
        print("Run them with `venv/bin/mutmut run` (it resumes) and make this list again.\n")
        print("| function | mutants |\n|---|---:|")
        for function, count in Counter(record["name"].rsplit("__mutmut_", 1)[0] for record in not_run).most_common():
            print(f"| `{function}` | {count} |")
    if unreached:
        print(f"\n## Reached by no test of the run's selection ({len(unreached)})\n")
        print("mutmut runs only the in-process test files `setup.cfg` selects; these functions are tested by others.\n")
        print("| function | mutants | tested by |\n|---|---:|---|")
        for function, count in Counter(record["name"].rsplit("__mutmut_", 1)[0] for record in unreached).items():
            print(f"| `{function}` | {count} | {UNREACHED.get(function, 'TODO')} |")
    for module in sorted(by_module):
        print(f"\n## {module}.py\n\n| mutant | the change | why it survives |\n|---|---|---|")
        for record in by_module[module]:
            change = f"`{short(record['minus'])}` → `{short(record['plus'])}`".replace("|", "\\|")
            print(f"| `{record['name']}` | {change} | {reason_for(record)} |")
    used = {rule_for(record) for record in survivors}
    stale = [rule for rule in RULES if rule not in used]
    todo = sum(reason_for(record) == "TODO" for record in survivors) + sum(
        record["name"].rsplit("__mutmut_", 1)[0] not in UNREACHED for record in unreached)
    for name_pattern, change_pattern, _ in stale:
        print(f"stale rule (no survivor needs it): {name_pattern} / {change_pattern}", file=sys.stderr)
    if todo:
        print(f"{todo} mutant(s) without a test or a reason (TODO)", file=sys.stderr)
    return 1 if todo else 0


if __name__ == "__main__":
    sys.exit(main())
