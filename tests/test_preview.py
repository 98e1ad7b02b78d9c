"""What the customer reads (contract section 14): the HTML body, and a preview of every email before the first live run."""

import email
import email.policy
from datetime import date, timedelta
from html.parser import HTMLParser
from string import Template

from conftest import ROOT, clean_env, closed_ticket, customer, run_job, write_csv

from customer_message import render_html

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
ROWS = [["Zoë <b>&amp;", 'O"Neil', "zoe@example.com", "T<1>", "Closed", RECENT],
        ["Zoë <b>&amp;", 'O"Neil', "zoe@example.com", "T2", "Closed", RECENT],
        ["Bo", "Li", "bo+news@example.com", "9", "Closed", RECENT]]
EXAMPLES = ROOT / "examples"


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_every_value_is_html_escaped_and_ticket_list_is_one_li_per_ticket():
    zoe = "Zoë <b>&amp;"
    tickets = [closed_ticket("zoe@example.com", ticket_id, date(2026, 11, day), name=zoe, first_name=zoe)
               for ticket_id, day in (("T<1>", 20), ("T2", 21))]
    html = render_html(customer("zoe@example.com", *tickets, name=zoe, first_name=zoe),
                       Template("<p>Hello $first_name ($full_name), $ticket_count:</p>$ticket_list"))
    assert "Zoë &lt;b&gt;&amp;amp;" in html and "<b>" not in html and "T&lt;1&gt;" in html
    parsed = _Structure()
    parsed.feed(html)
    assert parsed.tags == ["p", "ul", "li", "li"]
    assert "Ticket T<1>, closed on 20 Nov 2026" in "".join(parsed.text)


def preview(tmp_path, *extra, rows=ROWS):
    report = write_csv(tmp_path / "r.csv", rows)
    return run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--state-file", str(tmp_path / "s.json"),
                   "--preview-dir", str(tmp_path / "preview"), *extra)


def read_eml(path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_preview_writes_one_eml_per_customer_in_the_tables_order_as_smtp_would_send_it(tmp_path):
    folder = tmp_path / "preview"
    folder.mkdir()
    (folder / "old-run.eml").write_text("stale")
    (folder / "notes.txt").write_text("mine")
    result = preview(tmp_path, "--smtp-url", "smtp://127.0.0.1:9", "--from", "Support <support@example.com>",
                     "--html-template", str(EXAMPLES / "body.html"), "--body-template", str(EXAMPLES / "body.txt"),
                     "--cc", "audit@example.com")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["001-zoe@example.com.eml", "002-bo+news@example.com.eml", "notes.txt"]
    assert "2 .eml file(s)" in result.stdout
    message = read_eml(folder / "001-zoe@example.com.eml")
    assert message["From"] == "Support <support@example.com>" and message["Cc"] == "audit@example.com"
    assert message["To"].addresses[0].addr_spec == "zoe@example.com"
    assert message["Message-ID"].endswith("@example.com>") and message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert "T<1>" in text.get_content() and "T&lt;1&gt;" in html.get_content() and "<li>" in html.get_content()
    assert not (tmp_path / "s.json").exists()


def test_a_webhook_preview_has_no_from_or_message_id_unless_from_is_given(tmp_path):
    result = preview(tmp_path)
    assert result.returncode == 0, result.stderr
    message = read_eml(tmp_path / "preview" / "001-zoe@example.com.eml")
    assert message["From"] is None and message["Message-ID"] is None
    assert message.get_content_type() == "text/plain" and "T2" in message.get_content()


def test_the_webhook_payload_carries_the_html_body(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", ROWS)
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "no", "--state-file", str(tmp_path / "s.json"),
                     "-webhook_url", webhook.url, "--html-template", str(EXAMPLES / "body.html"), "--cc", "audit@example.com")
    assert result.returncode == 0, result.stderr
    zoe = next(p for p in webhook.payloads() if p["email_address"] == "zoe@example.com")
    assert "<li>Ticket T&lt;1&gt;" in zoe["email"]["html_body"] and "T<1>" in zoe["email"]["body"]
    assert zoe["email"]["cc_address"] == ["audit@example.com"]


def test_preview_outside_test_mode_is_refused(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", ROWS)
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "no", "-webhook_url", webhook.url,
                     "--preview-dir", str(tmp_path / "p"), "--state-file", str(tmp_path / "s.json"))
    assert result.returncode == 2 and "--preview-dir" in result.stderr
    assert webhook.requests == [] and not (tmp_path / "p").exists()


def test_an_unknown_placeholder_in_the_html_template_is_refused_at_start(tmp_path):
    template = tmp_path / "t.html"
    template.write_text("<p>$first_name $ticket_table</p>", encoding="utf-8")
    result = preview(tmp_path, "--html-template", str(template))
    assert result.returncode == 2 and "$ticket_table" in result.stderr


def test_the_shipped_examples_preview_on_the_example_report(tmp_path):
    result = run_job("--report", str(EXAMPLES / "weekly_report.csv"), "--since", "01/11/2026", "-testmode", "yes",
                     "--body-template", str(EXAMPLES / "body.txt"), "--html-template", str(EXAMPLES / "body.html"),
                     "--preview-dir", str(tmp_path / "preview"), "--from", "Support <support@example.com>",
                     "--state-file", str(tmp_path / "s.json"), env=clean_env())
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "preview").iterdir())
    assert len(files) == 12 and files[0].name == "001-jane.doe@example.com.eml"
    assert "1005" in read_eml(files[0]).get_body(("plain",)).get_content()
