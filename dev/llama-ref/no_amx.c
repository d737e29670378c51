// no_amx.so: an LD_PRELOAD shim that makes llama.cpp's tools run with weight repacking ON but AMX OFF.
//
// On this machine's CPU (AMX_INT8 present) llama.cpp's AMX matmul segfaults on Q4_K_M models (llama.cpp issue
// #20824). ggml only registers its AMX buffer type after asking the kernel for AMX tile state through
// syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); when that request fails it prints
// "AMX is not ready to be used!" and carries on without AMX, keeping the other repacked layouts.
// This shim fails exactly that one request (EPERM) and passes every other syscall through.
//
//   LD_PRELOAD=target/llama-ref/no_amx.so llama-bench ...
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>

#define ARCH_REQ_XCOMP_PERM 0x1023

long syscall(long number, ...) {
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_arch_prctl && a[0] == ARCH_REQ_XCOMP_PERM) {
        errno = EPERM;
        return -1;
    }
    static long (*real_syscall)(long, ...);
    if (!real_syscall) real_syscall = (long (*)(long, ...)) dlsym(RTLD_NEXT, "syscall");
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
