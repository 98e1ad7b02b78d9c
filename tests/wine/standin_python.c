/* A stand-in python.exe for testing run_util.bat under wine: records its arguments, current folder and
   some environment variables (UTF-8, one per line) to %STANDIN_RECORD%, prints a line, and exits with
   %STANDIN_EXIT% (default 0). */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

static void put(FILE *out, const char *label, const wchar_t *text) {
    char buffer[32768];
    int n = WideCharToMultiByte(CP_UTF8, 0, text, -1, buffer, sizeof buffer, NULL, NULL);
    if (n <= 0) buffer[0] = 0;
    fprintf(out, "%s\t%s\n", label, buffer);
}

int wmain(int argc, wchar_t **argv) {
    static const wchar_t *names[] = {L"WEBHOOK_URL", L"WEBHOOK_SECRET", L"WEBHOOK_AUTHORIZATION", L"GOOGLE_API_KEY",
                                     L"SMTP_URL", L"SMTP_USERNAME", L"SMTP_PASSWORD", L"SMTP_FROM", L"PING_URL",
                                     L"PYTHONUTF8", L"WEBHOOK_SECERT", NULL};
    wchar_t path[32768], value[32768], cwd[32768];
    DWORD exit_code = 0;
    if (GetEnvironmentVariableW(L"STANDIN_EXIT", value, 32768)) exit_code = (DWORD)_wtoi(value);
    if (GetEnvironmentVariableW(L"STANDIN_RECORD", path, 32768)) {
        FILE *out = _wfopen(path, L"ab");
        if (out) {
            GetCurrentDirectoryW(32768, cwd);
            put(out, "cwd", cwd);
            for (int i = 1; i < argc; i++) put(out, "arg", argv[i]);
            for (int i = 0; names[i]; i++) {
                if (GetEnvironmentVariableW(names[i], value, 32768)) {
                    char label[64];
                    snprintf(label, sizeof label, "env %ls", names[i]);
                    put(out, label, value);
                }
            }
            fprintf(out, "end\t%lu\n", (unsigned long)exit_code);
            fclose(out);
        }
    }
    printf("stand-in python ran\n");
    return (int)exit_code;
}
