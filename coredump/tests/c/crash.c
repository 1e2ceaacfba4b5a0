/* Test program for the coredump crate and crashprobe. Crashes in a known nested call:
 * main -> outer -> middle -> inner, which writes through NULL.
 * Arguments (any order):
 *   threads   start two extra threads parked in worker -> worker_wait -> pause() first
 *   handler   install a SIGSEGV handler that calls abort() (a signal frame on the stack)
 *   nullcall  inner calls through a NULL function pointer instead (PC outside all modules)
 *   spin      start a thread spinning on clock_gettime() (mostly inside the vDSO)
 *   recurse N go N calls deep through recurse() before outer() (frame limit)
 *   heap N    touch N MiB of heap first (benchmark cores)
 * Compiled with -DREBUILT it differs only in its build-id (tests of a rebuilt binary). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* True once thread `tid` sleeps in pause() (so its stack is known when the core is taken). */
static int in_pause(pid_t tid) {
    char path[64], buf[32] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n > 3 && !strncmp(buf, "34 ", 3); /* __NR_pause */
}

static int mode_nullcall;
static void (*volatile null_fn)(void);

__attribute__((noinline)) void inner(int *p) {
    if (mode_nullcall)
        null_fn(); /* NULLCALL_LINE */
    *p = 42; /* CRASH_LINE */
}

__attribute__((noinline)) void middle(int *p) {
    inner(p); /* MIDDLE_LINE */
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void outer(int *p) {
    middle(p); /* OUTER_LINE */
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void on_segv(int sig) {
    (void)sig;
    abort(); /* HANDLER_LINE */
}

__attribute__((noinline)) void recurse(int n, int *p) {
    if (n > 0)
        recurse(n - 1, p); /* RECURSE_LINE */
    else
        outer(p);
    __asm__ volatile("" ::: "memory");
}

#ifdef REBUILT
int rebuilt_marker = 1;
#endif

static volatile pid_t worker_tid[2];

__attribute__((noinline)) void worker_wait(void) {
    for (;;)
        pause(); /* WORKER_LINE */
}

__attribute__((noinline)) void *worker(void *arg) {
    worker_tid[(long)arg] = (pid_t)syscall(SYS_gettid);
    worker_wait(); /* WORKER_CALL_LINE */
    return NULL;
}

static volatile long spins;

__attribute__((noinline)) void spin(void) {
    struct timespec ts;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts); /* SPIN_LINE */
        spins++;
    }
}

__attribute__((noinline)) void *spinner(void *arg) {
    (void)arg;
    spin(); /* SPINNER_LINE */
    return NULL;
}

int main(int argc, char **argv) {
    int threads = 0, depth = 0, spinning = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "threads")) {
            threads = 2;
        } else if (!strcmp(argv[i], "spin")) {
            spinning = 1;
        } else if (!strcmp(argv[i], "nullcall")) {
            mode_nullcall = 1;
        } else if (!strcmp(argv[i], "handler")) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_segv;
            sigaction(SIGSEGV, &sa, NULL);
        } else if (!strcmp(argv[i], "recurse") && i + 1 < argc) {
            depth = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "heap") && i + 1 < argc) {
            size_t n = (size_t)atol(argv[++i]) << 20;
            char *h = malloc(n);
            if (!h)
                return 2;
            memset(h, 0x5a, n);
            __asm__ volatile("" : : "r"(h) : "memory");
        }
    }
    pthread_t t[2];
    for (long i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads; i++) {
        struct timespec tick = {0, 1000000};
        for (int tries = 0; !(worker_tid[i] && in_pause(worker_tid[i])); tries++) {
            if (tries > 10000) /* 10 s */
                return 3;
            nanosleep(&tick, NULL);
        }
    }
    if (spinning) {
        pthread_t s;
        pthread_create(&s, NULL, spinner, NULL);
        struct timespec tick = {0, 1000000};
        for (int tries = 0; spins < 100000; tries++) {
            if (tries > 10000) /* 10 s */
                return 3;
            nanosleep(&tick, NULL);
        }
    }
    if (depth > 0)
        recurse(depth, NULL);
    else
        outer(NULL); /* MAIN_LINE */
    return 0;
}
