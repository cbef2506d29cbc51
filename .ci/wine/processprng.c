/* Wine 8 has no bcryptprimitives.dll, whose ProcessPrng Rust's standard library imports
 * for random numbers on Windows. This stand-in exports ProcessPrng and fills the buffer
 * from RtlGenRandom (advapi32's SystemFunction036), which Wine has. It is put into the
 * Wine prefix's system32 for CI only; real Windows has its own. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
