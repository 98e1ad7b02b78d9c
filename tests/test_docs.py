"""Contract section 26: the README reads in five minutes, the reference says what --help says, and
every link between the pages resolves."""

import re

from conftest import ROOT

from cli_options import build_parser

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DESTINATION_PAGES = ("webhook", "smtp", "gmail", "microsoft365")


def help_options() -> set[str]:
    return {option for action in build_parser("t")._actions for option in action.option_strings}


def reference_options() -> set[str]:
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    table = text[text.index("## Options"):text.index("## Settings")]
    rows = [re.split(r"(?<!\\)\|", line)[1] for line in table.splitlines() if line.startswith("| `")]
    return {word for row in rows for word in re.findall(r"`(-[-\w]+)", row)}


def test_the_reference_names_every_option_of_help_and_no_other():
    assert help_options() - reference_options() == set(), "in --help, missing from docs/reference.md"
    assert reference_options() - help_options() == set(), "in docs/reference.md, unknown to --help"


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_every_relative_link_of_every_page_resolves():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_the_readme_is_short_and_its_quick_start_holds_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 15_500
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(first_block) == 2 and "-testmode yes" in first_block[0] and "pytest" in first_block[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert first_block[1] in ci
    for name in DESTINATION_PAGES:
        assert f"(docs/{name}.md)" in readme and (ROOT / "docs" / f"{name}.md").exists()
    for heading in ("Quick start", "The first live run", "Choosing the source", "Choosing the destination",
                    "Scheduling", "Where to read more"):
        assert f"## {heading}" in readme and f"(#{slug(heading)})" in readme


def test_each_destination_page_says_its_set_up_limits_bounces_and_troubleshooting():
    for name in DESTINATION_PAGES:
        text = (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8")
        for part in ("Limits", "ounces", "Troubleshooting"):
            assert part in text, (name, part)


def test_the_microsoft_365_page_scopes_the_permission_as_microsoft_documents_it():
    text = (ROOT / "docs" / "microsoft365.md").read_text(encoding="utf-8")
    for step in ("New-ServicePrincipal", "New-ManagementScope", "New-ManagementRoleAssignment", "Application Mail.Send",
                 "Test-ServicePrincipalAuthorization", "remove it"):
        assert step in text
    assert text.index("RBAC for Applications") < text.index("application access policies")
