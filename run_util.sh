#!/usr/bin/env bash
# cron entry: runs process_ticket.py with the settings in run_settings.env, appends its output
# to logs/run_util.log and passes its exit code on (0 ok, 1 retry pending, 2 fix needed).
set -u
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd) || exit 2
cd "$here" || exit 2

settings="$here/run_settings.env"
if [ ! -f "$settings" ]; then
  echo "error: $settings not found: copy run_settings.env.example to run_settings.env and fill it in" >&2
  exit 2
fi
SHEET_ID="" SHEET_RANGE="" REPORT_FILE="" TESTMODE="" EXTRA_ARGS=""
# Read KEY=VALUE lines literally (no shell expansion: URLs and secrets may hold & $ and !).
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'}
  case "$line" in ''|'#'*) continue ;; esac
  key=${line%%=*}
  value=${line#*=}
  case "$key" in
    SHEET_ID|SHEET_RANGE|REPORT_FILE|TESTMODE|EXTRA_ARGS) printf -v "$key" '%s' "$value" ;;
    WEBHOOK_URL|WEBHOOK_SECRET|WEBHOOK_AUTHORIZATION|GOOGLE_API_KEY) [ -n "$value" ] && export "$key=$value" ;;
    *) echo "warning: unknown setting '$key' in $settings" >&2 ;;
  esac
done < "$settings"

python=${PYTHON:-"$here/venv/bin/python"}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: $python not found: create the virtual environment first, see README" >&2
  exit 2
fi
mkdir -p "$here/logs"
run_log="$here/logs/run_util.log"
echo "==== $(date '+%Y-%m-%d %H:%M:%S')" >> "$run_log"

if [ -n "$REPORT_FILE" ]; then
  source_args=(--report "$REPORT_FILE")
else
  source_args=(-sheetid "$SHEET_ID" -range "${SHEET_RANGE:-Sheet1}")
fi
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of options, split on spaces on purpose
"$python" "$here/process_ticket.py" "${source_args[@]}" -testmode "${TESTMODE:-no}" \
  --log-file "$here/logs/process_ticket.log" $EXTRA_ARGS >> "$run_log" 2>&1
exit $?
