"""A real Postfix and a real Dovecot for the bounce tests, started here on 127.0.0.1.

Postfix accepts mail for `unknown.test` and then fails it (its `error` transport: 5.1.1 user
unknown), so Postfix itself writes the delivery status notification and delivers it, with
everything for `test.local`, into Maildirs; Dovecot serves them over IMAPS with a certificate the
tests make. Both need root (Postfix runs its daemons as the postfix user) and Debian's `postfix`
and `dovecot-imapd`, which `.ci/run` installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
IMAP_USER, IMAP_PASSWORD = "support@test.local", "imap-pass-9"
MAILBOXES = ("support", "ann", "ann.new")


def available() -> str:
    """'' when the servers can run here, else why not."""
    if not (shutil.which("postfix") and shutil.which("dovecot")):
        return "Postfix and Dovecot are not installed (apt-get install postfix dovecot-imapd)"
    if os.geteuid() != 0:
        return "Postfix and Dovecot are started by root"
    return ""


@dataclass
class MailServers:
    folder: Path
    smtp_port: int
    imap_port: int
    dovecot: subprocess.Popen

    def maildir(self, user: str) -> Path:
        return self.folder / "mail" / user / "Maildir"

    def messages(self, user: str) -> list[Path]:
        return sorted(path for sub in ("new", "cur") for path in (self.maildir(user) / sub).glob("*"))

    def wait_for(self, user: str, count: int, seconds: float = 30) -> list[Path]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(self.messages(user)) < count:
            time.sleep(0.2)
        return self.messages(user)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.folder / "conf"), "stop"], capture_output=True, timeout=60)
        self.dovecot.terminate()
        try:
            self.dovecot.wait(10)
        except subprocess.TimeoutExpired:
            self.dovecot.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def start(certificates: tuple[Path, Path, Path], free_port) -> MailServers:
    folder = Path(tempfile.mkdtemp(prefix="postfix-dovecot-", dir="/tmp"))
    folder.chmod(0o755)   # the postfix and dovecot users walk into it
    for name in ("conf", "spool", "data", "mail", "dovecot-run", "dovecot-state"):
        (folder / name).mkdir()
    shutil.chown(folder / "data", "postfix")
    for user in MAILBOXES:
        for sub in ("new", "cur", "tmp"):
            (folder / "mail" / user / "Maildir" / sub).mkdir(parents=True)
    for path in (folder / "mail", *(folder / "mail").rglob("*")):
        os.chown(path, NOBODY, NOBODY)
    smtp_port, imap_port = free_port(), free_port()
    conf = folder / "conf"
    (conf / "transport").write_text("unknown.test error:5.1.1 user unknown\n")
    (conf / "vmailbox").write_text("".join(f"{user}@test.local {user}/Maildir/\n" for user in MAILBOXES))
    (conf / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {folder}/spool
data_directory = {folder}/data
mail_owner = postfix
myhostname = mx.test.local
mydomain = test.local
myorigin = test.local
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_reject_unlisted_recipient = no
relay_domains = unknown.test
transport_maps = texthash:{conf}/transport
virtual_mailbox_domains = test.local
virtual_mailbox_base = {folder}/mail
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{NOBODY}
virtual_gid_maps = static:{NOBODY}
virtual_minimum_uid = 100
maillog_file_prefixes = {folder}
maillog_file = {folder}/postfix.log
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
""")
    master = Path("/etc/postfix/master.cf").read_text()
    lines = []
    for line in master.splitlines():
        fields = line.split()
        if fields[:2] == ["smtp", "inet"]:
            line = f"127.0.0.1:{smtp_port} inet n - n - - smtpd"
        elif len(fields) >= 8 and not line.startswith((" ", "#")) and fields[4] == "y":
            fields[4] = "n"   # no chroot: the queue is not under /var/spool/postfix
            line = " ".join(fields)
        lines.append(line)
    (conf / "master.cf").write_text("\n".join(lines) + "\n")
    started = subprocess.run(["postfix", "-c", str(conf), "start"], capture_output=True, text=True, timeout=60)
    if started.returncode != 0:
        raise RuntimeError(f"postfix did not start: {started.stderr or (folder / 'postfix.log').read_text()}")
    ca, cert, key = certificates
    for source in (cert, key):
        shutil.copy(source, folder / source.name)
    (folder / "dovecot.conf").write_text(f"""protocols = imap
listen = 127.0.0.1
base_dir = {folder}/dovecot-run
state_dir = {folder}/dovecot-state
log_path = {folder}/dovecot.log
ssl = required
ssl_cert = <{folder / cert.name}
ssl_key = <{folder / key.name}
auth_mechanisms = plain login
mail_location = maildir:{folder}/mail/%n/Maildir
first_valid_uid = 100
passdb {{
  driver = static
  args = password={IMAP_PASSWORD}
}}
userdb {{
  driver = static
  args = uid={NOBODY} gid={NOBODY} home={folder}/mail/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {imap_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""")
    dovecot = subprocess.Popen(["dovecot", "-F", "-c", str(folder / "dovecot.conf")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    servers = MailServers(folder, smtp_port, imap_port, dovecot)
    deadline = time.monotonic() + 20
    import socket
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", imap_port), timeout=1).close()
            socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
            return servers
        except OSError:
            time.sleep(0.2)
    servers.stop()
    raise RuntimeError("Postfix or Dovecot did not start listening")
