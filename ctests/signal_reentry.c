/* expect-abort: allocation from a signal handler is not supported
 * A signal handler that allocates, delivered while the thread it interrupts holds one of
 * the allocator's locks: the main loop reads the statistics again and again (the registry
 * and arena locks, the arena lock through a walk of every pool) while a timer fires every
 * 200 microseconds and its handler allocates 512-byte blocks, which now and then needs a
 * batch of pools from the arenas (the arena lock). The allocator must abort with a line
 * saying why, not wait for ever for a lock its own thread holds (it spun in sched_yield).
 * The work runs in a child in its own process group; if it has not ended within 20
 * seconds, the whole group is killed and the program fails instead of aborting. */
#include "common.h"
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { LIMIT_S = 20, KEEP = 1 << 16 };

static void *kept[KEEP];
static volatile sig_atomic_t nkept;

static void on_timer(int sig) {
    (void)sig;
    for (int i = 0; i < 16 && nkept < KEEP; i++) kept[nkept++] = pymalloc_malloc(512);
}

static void work(void) {
    /* Many pools, so that each walk holds the arena lock a while. */
    for (int i = 0; i < 100000; i++) CHECK(pymalloc_malloc(64) != NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_timer;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    struct itimerval every = { { 0, 200 }, { 0, 200 } };
    CHECK(setitimer(ITIMER_REAL, &every, NULL) == 0);
    pymalloc_stats s;
    for (;;) pymalloc_get_stats(&s);
}

int main(void) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        work();
    }
    setpgid(pid, pid);
    int status = 0;
    for (int waited_ms = 0; waitpid(pid, &status, WNOHANG) == 0; waited_ms += 10) {
        if (waited_ms >= LIMIT_S * 1000) {
            kill(-pid, SIGKILL);
            CHECK(waitpid(pid, &status, 0) == pid);
            fprintf(stderr, "the child hung (a lock waited on by its own holder): killed\n");
            return 1;
        }
        struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
        nanosleep(&ten_ms, NULL);
    }
    /* The child's abort is this program's. */
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    abort();
}
