@echo off
rem Windows Task Scheduler entry: runs process_ticket.py with the settings in run_settings.env, then with
rem this script's own arguments (so "run_util.bat -testmode yes" tests through the very same wrapper);
rem appends all output, errors included, to logs\run_util.log and passes the exit code on
rem (0 ok, 1 retry pending, 2 fix needed).
rem The first scheduled run needs a state file: make it with one run by hand, "run_util.bat --since DD/MM/YYYY".
rem Rule: no expanded path inside a parenthesised block. A ")" in a path such as
rem "C:\Program Files (x86)\..." would end the block early ("... was unexpected at this time").
setlocal EnableExtensions DisableDelayedExpansion
cd /d "%~dp0"
if not exist logs mkdir logs
set "RUN_LOG=%~dp0logs\run_util.log"
>> "%RUN_LOG%" echo ==== %DATE% %TIME%
rem run_settings.env is read as UTF-8 (Notepad's default), so accented sheet names arrive as written:
rem in code page 65001, and from a copy that starts with run_util.bom, a byte order mark on a comment
rem line of its own (cmd without a console, as under wine, decodes a file as UTF-8 only after one).
chcp 65001 > nul
if exist run_settings.env goto :read_settings
call :fail "%~dp0run_settings.env not found: copy run_settings.env.example to run_settings.env and fill it in"
exit /b 2

:read_settings
rem Only the known keys are set (no line can change PATH or the like), each value only ever through
rem FOR variables, so & ^ ! % and quotes in it reach Python byte for byte. An unknown key (a typo such
rem as WEBHOOK_SECERT) is warned about.
set "KNOWN= SHEET_ID SHEET_RANGE REPORT_FILE SEND_WITH WEBHOOK_URL WEBHOOK_SECRET WEBHOOK_AUTHORIZATION GOOGLE_API_KEY SMTP_URL SMTP_USERNAME SMTP_PASSWORD SMTP_FROM PING_URL M365_TENANT_ID M365_CLIENT_ID M365_CLIENT_SECRET M365_CERTIFICATE M365_AUTHORITY_HOST M365_GRAPH_ENDPOINT SHEETS_API_ENDPOINT GMAIL_API_ENDPOINT MAX_EMAILS IMAP_URL IMAP_PASSWORD READ_BOUNCES TESTMODE EXTRA_ARGS "
for %%V in (%KNOWN%) do set "%%V="
set "UTF8_COPY=%TEMP%\run_settings.%RANDOM%%RANDOM%.env"
copy /b run_util.bom + run_settings.env "%UTF8_COPY%" > nul
for /f "usebackq eol=# tokens=1,* delims==" %%A in ("%UTF8_COPY%") do for %%V in (%KNOWN%) do if /i "%%A"=="%%V" set "%%V=%%B"
for /f "usebackq eol=# tokens=1,2 delims==" %%A in ("%UTF8_COPY%") do call :check_known "%%A" "%%B"
del "%UTF8_COPY%"
rem An empty TESTMODE is test mode: only TESTMODE=no runs live.
if not defined TESTMODE set "TESTMODE=yes"

rem Output in UTF-8 whatever the console code page, so every customer name fits in the log.
set "PYTHONUTF8=1"
if exist "%~dp0venv\Scripts\python.exe" goto :run
call :fail "%~dp0venv\Scripts\python.exe not found: create the virtual environment first, see README"
exit /b 2

:run
if defined REPORT_FILE goto :run_report
if not defined SHEET_RANGE set "SHEET_RANGE=Sheet1"
"%~dp0venv\Scripts\python.exe" "%~dp0process_ticket.py" -sheetid "%SHEET_ID%" -range "%SHEET_RANGE%" -testmode %TESTMODE% --log-file "%~dp0logs\process_ticket.log" %EXTRA_ARGS% %* >> "%RUN_LOG%" 2>&1
goto :done

:run_report
if defined SHEET_RANGE goto :run_workbook
"%~dp0venv\Scripts\python.exe" "%~dp0process_ticket.py" --report "%REPORT_FILE%" -testmode %TESTMODE% --log-file "%~dp0logs\process_ticket.log" %EXTRA_ARGS% %* >> "%RUN_LOG%" 2>&1
goto :done

:run_workbook
"%~dp0venv\Scripts\python.exe" "%~dp0process_ticket.py" --report "%REPORT_FILE%" -range "%SHEET_RANGE%" -testmode %TESTMODE% --log-file "%~dp0logs\process_ticket.log" %EXTRA_ARGS% %* >> "%RUN_LOG%" 2>&1
goto :done

rem Say on the console which mode ran (a run by hand shows nothing else: the output is in the log).
:done
set "EXIT_CODE=%ERRORLEVEL%"
if /i "%TESTMODE%"=="yes" goto :said_test
echo run_util.bat: finished with exit code %EXIT_CODE% (TESTMODE=%TESTMODE% in run_settings.env; a -testmode argument overrides it); the output is in logs\run_util.log
exit /b %EXIT_CODE%
:said_test
echo run_util.bat: TEST MODE (TESTMODE=yes in run_settings.env): nothing was sent or saved unless an argument said -testmode no; set TESTMODE=no for live runs. Exit code %EXIT_CODE%; the output is in logs\run_util.log
exit /b %EXIT_CODE%

rem Warn about a settings key the wrappers do not know (a line with a value: not the mark's line).
:check_known
if "%~2"=="" exit /b 0
set "KEY=%~1"
call set "OTHERS=%%KNOWN: %KEY% =%%"
if not "%OTHERS%"=="%KNOWN%" exit /b 0
echo warning: unknown setting '%KEY%' in run_settings.env (ignored; see run_settings.env.example; if the name looks right, save the file as UTF-8 without BOM)
>> "%RUN_LOG%" echo warning: unknown setting '%KEY%' in run_settings.env (ignored; see run_settings.env.example; if the name looks right, save the file as UTF-8 without BOM)
exit /b 0

rem Every error reaches the log too: a scheduled run has no console.
:fail
echo error: %~1
>> "%RUN_LOG%" echo error: %~1
exit /b 2
