#!/usr/bin/env bash
# cron entry: runs process_ticket.py with the settings in run_settings.env (then this script's own
# arguments), appends its output to logs/run_util.log and passes its exit code on (0 ok, 1 retry pending, 2 fix needed).
# The first scheduled run needs a state file: make it with one run by hand, "./run_util.sh --since DD/MM/YYYY".
set -u
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd) || exit 2
cd "$here" || exit 2
mkdir -p "$here/logs" || exit 2
run_log="$here/logs/run_util.log"
echo "==== $(date '+%Y-%m-%d %H:%M:%S')" >> "$run_log"

fail() {  # every error reaches the log too: a scheduled run has no console
  echo "error: $1" | tee -a "$run_log" >&2
  exit 2
}

settings="$here/run_settings.env"
[ -f "$settings" ] || fail "$settings not found: copy run_settings.env.example to run_settings.env and fill it in"
SHEET_ID="" SHEET_RANGE="" REPORT_FILE="" TESTMODE="" EXTRA_ARGS=""
# Read KEY=VALUE lines literally (no shell expansion: URLs and secrets may hold & $ and !), as UTF-8.
number=0
while IFS= read -r line || [ -n "$line" ]; do
  number=$((number + 1))
  line=${line%$'\r'}
  line=${line#$'\xef\xbb\xbf'}
  case "$line" in ''|'#'*) continue ;; esac
  case "$line" in
    *=*) ;;
    *) # never echoed: a secret wrapped onto a line of its own would be printed and logged
      echo "warning: line $number of $settings is not KEY=VALUE (ignored; not shown, it may hold a secret)" \
        | tee -a "$run_log" >&2
      continue ;;
  esac
  key=${line%%=*}
  value=${line#*=}
  case "$key" in
    SHEET_ID|SHEET_RANGE|REPORT_FILE|TESTMODE|EXTRA_ARGS) printf -v "$key" '%s' "$value" ;;
    SEND_WITH|WEBHOOK_URL|WEBHOOK_SECRET|WEBHOOK_AUTHORIZATION|GOOGLE_API_KEY|SMTP_URL|SMTP_USERNAME|SMTP_PASSWORD|SMTP_FROM|PING_URL|M365_TENANT_ID|M365_CLIENT_ID|M365_CLIENT_SECRET|M365_CERTIFICATE|M365_AUTHORITY_HOST|M365_GRAPH_ENDPOINT|SHEETS_API_ENDPOINT|GMAIL_API_ENDPOINT|MAX_EMAILS|IMAP_URL|IMAP_PASSWORD|READ_BOUNCES)
      [ -n "$value" ] && export "$key=$value" ;;
    *) echo "warning: unknown setting '$key' in $settings (ignored)" | tee -a "$run_log" >&2 ;;
  esac
done < "$settings"

# EXTRA_ARGS is split as a shell would split it, quotes kept together (--column date="Solved at"),
# without running anything in it.
printf '%s' "$EXTRA_ARGS" | xargs -r printf '%s\0' > /dev/null 2>&1 \
  || fail "EXTRA_ARGS in $settings has a quote that does not close"
extra_args=()
while IFS= read -r -d '' argument; do extra_args+=("$argument"); done < <(printf '%s' "$EXTRA_ARGS" | xargs -r printf '%s\0')

python=${PYTHON:-"$here/venv/bin/python"}
process_ticket="$here/process_ticket.py"
command -v "$python" >/dev/null 2>&1 || fail "$python not found: create the virtual environment first, see README"

if [ -n "$REPORT_FILE" ]; then
  source_args=(--report "$REPORT_FILE")
  [ -n "$SHEET_RANGE" ] && source_args+=(-range "$SHEET_RANGE")
else
  source_args=(-sheetid "$SHEET_ID" -range "${SHEET_RANGE:-Sheet1}")
fi
# Which mode runs: TESTMODE from the settings (empty: test mode; only "no" is live), unless an argument
# of this script or EXTRA_ARGS says otherwise, in any spelling the job accepts (last one wins).
[ -n "$TESTMODE" ] || TESTMODE=yes
mode=$TESTMODE
previous=""
for argument in "${extra_args[@]}" "$@"; do
  case "$previous" in -testmode|--testmode) mode=$argument ;; esac
  case "$argument" in -testmode=*|--testmode=*) mode=${argument#*=} ;; esac
  previous=$argument
done
case "$(printf '%s' "$mode" | tr '[:upper:]' '[:lower:]' | tr -d '[:space:]')" in
  no|false|0) mode_line="LIVE run: emails are sent and last_run_date.json is updated" ;;
  *) mode_line="TEST MODE (TESTMODE=yes in run_settings.env, or -testmode yes): nothing is sent or saved; set TESTMODE=no for live runs" ;;
esac
echo "run_util.sh: $mode_line" >> "$run_log"
command=("$python" "$process_ticket" "${source_args[@]}" -testmode "$TESTMODE"
         --log-file "$here/logs/process_ticket.log" "${extra_args[@]}" "$@")
if [ -t 1 ] || [ -t 2 ]; then  # run by hand: show the run on the terminal too
  echo "run_util.sh: $mode_line" >&2
  "${command[@]}" 2>&1 | tee -a "$run_log"
  exit "${PIPESTATUS[0]}"
fi
"${command[@]}" >> "$run_log" 2>&1
exit $?
