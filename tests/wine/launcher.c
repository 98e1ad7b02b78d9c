/* Starts the command line in %LAUNCH% from C:\windows\system32, as Task Scheduler does, waits for it,
   and exits with its exit code (98: it could not be started). */
#include <windows.h>

int wmain(void) {
    static wchar_t line[32768];
    STARTUPINFOW startup = {sizeof startup};
    PROCESS_INFORMATION process;
    DWORD exit_code = 99;
    if (!GetEnvironmentVariableW(L"LAUNCH", line, 32768)) return 97;
    if (!CreateProcessW(NULL, line, NULL, NULL, FALSE, 0, NULL, L"C:\\windows\\system32", &startup, &process))
        return 98;
    WaitForSingleObject(process.hProcess, INFINITE);
    GetExitCodeProcess(process.hProcess, &exit_code);
    return (int)exit_code;
}
