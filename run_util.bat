@echo off
rem Windows Task Scheduler entry: runs process_ticket.py with the settings in run_settings.env,
rem appends its output to logs\run_util.log and passes its exit code on (0 ok, 1 retry pending, 2 fix needed).
setlocal EnableExtensions DisableDelayedExpansion
cd /d "%~dp0"

set "SETTINGS=%~dp0run_settings.env"
if not exist "%SETTINGS%" (
  echo error: %SETTINGS% not found: copy run_settings.env.example to run_settings.env and fill it in
  exit /b 2
)
for %%V in (SHEET_ID SHEET_RANGE REPORT_FILE WEBHOOK_URL WEBHOOK_SECRET WEBHOOK_AUTHORIZATION GOOGLE_API_KEY TESTMODE EXTRA_ARGS) do set "%%V="
for /f "usebackq eol=# tokens=1,* delims==" %%A in ("%SETTINGS%") do set "%%A=%%B"
if not defined TESTMODE set "TESTMODE=no"
if not defined SHEET_RANGE set "SHEET_RANGE=Sheet1"

rem Output in UTF-8 whatever the console code page, so every customer name fits in the log.
set "PYTHONUTF8=1"
set "PYTHON=%~dp0venv\Scripts\python.exe"
if not exist "%PYTHON%" (
  echo error: %PYTHON% not found: create the virtual environment first, see README
  exit /b 2
)
if not exist "%~dp0logs" mkdir "%~dp0logs"
set "RUN_LOG=%~dp0logs\run_util.log"
echo ==== %DATE% %TIME% >> "%RUN_LOG%"

if defined REPORT_FILE (
  "%PYTHON%" "%~dp0process_ticket.py" --report "%REPORT_FILE%" -testmode %TESTMODE% --log-file "%~dp0logs\process_ticket.log" %EXTRA_ARGS% >> "%RUN_LOG%" 2>&1
) else (
  "%PYTHON%" "%~dp0process_ticket.py" -sheetid "%SHEET_ID%" -range "%SHEET_RANGE%" -testmode %TESTMODE% --log-file "%~dp0logs\process_ticket.log" %EXTRA_ARGS% >> "%RUN_LOG%" 2>&1
)
exit /b %ERRORLEVEL%
