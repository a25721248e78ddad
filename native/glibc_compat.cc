// Link-time compatibility for the distributed x86-64 glibc binary: the
// prebuilt devmove.node is built on Debian 12 (glibc 2.36) but must load
// wherever an official Node.js build runs, which needs glibc 2.28. A plain
// link binds every libc call to the newest symbol version the build machine
// has (pthread_create@GLIBC_2.34, stat64@GLIBC_2.33, arc4random@GLIBC_2.36 from
// the static libstdc++'s std::random_device, ...), and the loader refuses the
// file on any older glibc. binding.gyp links with -Wl,--wrap=SYMBOL for each
// of them, so every reference, ours and the static libstdc++'s, lands on a
// __wrap_SYMBOL below, which calls the oldest version of the same function
// (same ABI: glibc keeps old versions callable forever).
//
// test/integration/package.test.ts asserts the result: no GLIBC_ version
// above 2.28 in `objdump -T` of the packed binary.
#include <features.h>  // defines __GLIBC__ (or not, on musl)

#if defined(__GLIBC__) && (defined(__x86_64__) || defined(__aarch64__)) && defined(DEVMOVE_GLIBC_COMPAT)

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

// The first symbol version of each architecture's glibc (every function below has had it since),
// and, for stat: before glibc 2.33 stat() was an inline wrapper around __xstat64(_STAT_VER, ...).
#if defined(__x86_64__)
#define DEVMOVE_GLIBC_BASE "GLIBC_2.2.5"
static constexpr int kStatVersionLinux = 1;  // _STAT_VER_LINUX on x86-64
#else
#define DEVMOVE_GLIBC_BASE "GLIBC_2.17"
static constexpr int kStatVersionLinux = 0;  // _STAT_VER on the generic ABI (aarch64)
#endif

extern "C" {

// The versions every glibc of the architecture has had from its first release (in
// libpthread.so.0 and libdl.so.2 before 2.34, which Node itself links).
int devmove_pthread_create(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
int devmove_pthread_join(pthread_t, void**);
int devmove_pthread_detach(pthread_t);
int devmove_pthread_once(pthread_once_t*, void (*)());
int devmove_pthread_key_create(pthread_key_t*, void (*)(void*));
int devmove_pthread_sigmask(int, const sigset_t*, sigset_t*);
// The static libstdc++'s condition_variable.o (std::condition_variable: the
// hashing pool, the threads I/O driver) keeps thread-exit notifications in a
// thread-specific key.
int devmove_pthread_key_create_plain(pthread_key_t*, void (*)(void*));
int devmove_pthread_key_delete(pthread_key_t);
void* devmove_pthread_getspecific(pthread_key_t);
int devmove_pthread_setspecific(pthread_key_t, const void*);
void* devmove_dlopen(const char*, int);
void* devmove_dlsym(void*, const char*);
char* devmove_dlerror();
int devmove_dlclose(void*);
int devmove_xstat64(int, const char*, struct stat64*);
int devmove_lxstat64(int, const char*, struct stat64*);
int devmove_fxstat64(int, int, struct stat64*);
__asm__(".symver devmove_pthread_create, pthread_create@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_join, pthread_join@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_detach, pthread_detach@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_once, pthread_once@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_key_create, __pthread_key_create@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_sigmask, pthread_sigmask@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_key_create_plain, pthread_key_create@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_key_delete, pthread_key_delete@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_getspecific, pthread_getspecific@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_pthread_setspecific, pthread_setspecific@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_dlopen, dlopen@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_dlsym, dlsym@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_dlerror, dlerror@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_dlclose, dlclose@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_xstat64, __xstat64@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_lxstat64, __lxstat64@" DEVMOVE_GLIBC_BASE);
__asm__(".symver devmove_fxstat64, __fxstat64@" DEVMOVE_GLIBC_BASE);

#define DEVMOVE_WRAP __attribute__((visibility("hidden")))

DEVMOVE_WRAP int __wrap_pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg) {
  return devmove_pthread_create(t, a, f, arg);
}
DEVMOVE_WRAP int __wrap_pthread_join(pthread_t t, void** r) { return devmove_pthread_join(t, r); }
DEVMOVE_WRAP int __wrap_pthread_detach(pthread_t t) { return devmove_pthread_detach(t); }
DEVMOVE_WRAP int __wrap_pthread_once(pthread_once_t* o, void (*f)()) { return devmove_pthread_once(o, f); }
DEVMOVE_WRAP int __wrap___pthread_key_create(pthread_key_t* k, void (*d)(void*)) {
  return devmove_pthread_key_create(k, d);
}
DEVMOVE_WRAP int __wrap_pthread_sigmask(int how, const sigset_t* set, sigset_t* old) {
  return devmove_pthread_sigmask(how, set, old);
}
DEVMOVE_WRAP int __wrap_pthread_key_create(pthread_key_t* k, void (*d)(void*)) {
  return devmove_pthread_key_create_plain(k, d);
}
DEVMOVE_WRAP int __wrap_pthread_key_delete(pthread_key_t k) { return devmove_pthread_key_delete(k); }
DEVMOVE_WRAP void* __wrap_pthread_getspecific(pthread_key_t k) { return devmove_pthread_getspecific(k); }
DEVMOVE_WRAP int __wrap_pthread_setspecific(pthread_key_t k, const void* v) { return devmove_pthread_setspecific(k, v); }
DEVMOVE_WRAP void* __wrap_dlopen(const char* file, int mode) { return devmove_dlopen(file, mode); }
DEVMOVE_WRAP void* __wrap_dlsym(void* handle, const char* name) { return devmove_dlsym(handle, name); }
DEVMOVE_WRAP char* __wrap_dlerror() { return devmove_dlerror(); }
DEVMOVE_WRAP int __wrap_dlclose(void* handle) { return devmove_dlclose(handle); }
DEVMOVE_WRAP int __wrap_stat64(const char* path, struct stat64* st) {
  return devmove_xstat64(kStatVersionLinux, path, st);
}
DEVMOVE_WRAP int __wrap_lstat64(const char* path, struct stat64* st) {
  return devmove_lxstat64(kStatVersionLinux, path, st);
}
DEVMOVE_WRAP int __wrap_fstat64(int fd, struct stat64* st) { return devmove_fxstat64(kStatVersionLinux, fd, st); }

// std::random_device (unused by devmove, linked with the static libstdc++)
// asks for arc4random (2.36) and getentropy (2.25): the getrandom system call
// (Linux 3.17) gives the same bytes.
static int FillRandom(void* buffer, size_t length) {
  auto* out = static_cast<uint8_t*>(buffer);
  while (length > 0) {
    const long got = syscall(SYS_getrandom, out, length, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -1;
    out += got;
    length -= static_cast<size_t>(got);
  }
  return 0;
}
DEVMOVE_WRAP int __wrap_getentropy(void* buffer, size_t length) {
  if (length > 256) {
    errno = EIO;
    return -1;
  }
  return FillRandom(buffer, length);
}
DEVMOVE_WRAP uint32_t __wrap_arc4random() {
  uint32_t value = 0;
  if (FillRandom(&value, sizeof value) != 0) __builtin_trap();  // arc4random cannot fail
  return value;
}

// libstdc++'s headers (GCC 12) read glibc 2.32's __libc_single_threaded to skip
// atomic reference counts. Defined here as 0 ("threads may exist"): the atomic
// path is always correct, and older glibc lacks the variable.
DEVMOVE_WRAP char __libc_single_threaded = 0;

}  // extern "C"

#endif
