/* fork() while other threads are inside the allocator: three threads churn (one of them
 * through pools handed out and back, one by creating and joining short-lived threads, so
 * the arena and registry locks are often held) while the main thread forks again and again.
 * Each child allocates and frees freely, frees blocks the parent's main thread made before
 * the fork and blocks a vanished thread handed over, trims, starts a thread of its own, checks
 * every pattern, runs the invariant walker (300 forks: the walker failed in most runs when
 * it did not allow for the vanished threads' half-done updates), and exits cleanly; a
 * deadlocked child is killed by an alarm and fails the
 * test. The parent checks each child's exit status and keeps working. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

enum { FORKS = 300, VALGRIND_FORKS = 10, MINE = 300, SLOTS = 256, HANDOFF = 64 };

typedef struct { void *p; size_t n; uint64_t tag; } item;

static atomic_int stop;
/* Blocks a worker hands over, published with a release store once complete. */
static item handoff[HANDOFF];
static atomic_int handed;

/* Debug mode (tests/debug.rs runs this program with PYMALLOC_DEBUG=1 too) adds guard bytes,
 * so blocks near 512 bytes come from the system allocator there. */
static int debug_mode;

static item make(size_t n, uint64_t tag) {
    item it = { pymalloc_malloc(n), n, tag };
    CHECK(it.p != NULL && (debug_mode || pymalloc_owns(it.p)));
    fill(it.p, n, tag);
    return it;
}

static void release(item it) {
    CHECK_PATTERN(it.p, it.n, it.tag);
    pymalloc_free(it.p);
}

/* One step of random churn over `slots`: free the slot's block if it has one, else fill it. */
static void churn_step(item *slots, uint64_t *seed, uint64_t *tag) {
    uint64_t r = rng_next(seed);
    item *s = &slots[r % SLOTS];
    if (s->p) { release(*s); s->p = NULL; }
    else *s = make(1 + (r >> 32) % 512, ++*tag);
}

/* Frees every block left in `slots`. */
static void release_all(item *slots) {
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) release(slots[i]);
}

/* Random churn over all classes; hands some blocks over at the start. */
static void *churner(void *arg) {
    uint64_t seed = 0xABCDEF12345ULL + (uint64_t)(intptr_t)arg, tag = (uint64_t)(intptr_t)arg << 40;
    item slots[SLOTS] = {{0}};
    if ((intptr_t)arg == 0) {
        for (int i = 0; i < HANDOFF; i++) handoff[i] = make(1 + i * 7 % 512, ++tag);
        atomic_store_explicit(&handed, 1, memory_order_release);
    }
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        churn_step(slots, &seed, &tag);
    }
    release_all(slots);
    return NULL;
}

/* Fills whole pools of one class and frees them all, so pools go back to the arenas. */
static void *pool_cycler(void *arg) {
    (void)arg;
    enum { N = 2000 };
    static item blocks[N];
    uint64_t tag = 1ULL << 50;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < N; i++) blocks[i] = make(48 + i % 3 * 100, ++tag);
        for (int i = 0; i < N; i++) release(blocks[i]);
    }
    return NULL;
}

static void *short_lived(void *arg) {
    item it = make(100, (uint64_t)(intptr_t)arg);
    release(it);
    return NULL;
}

/* Creates and joins threads, so heaps are abandoned and adopted under the registry lock. */
static void *spawner(void *arg) {
    (void)arg;
    for (intptr_t i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, short_lived, (void *)i) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    return NULL;
}

static void child(item *mine) {
    alarm(getenv("CTESTS_UNDER_VALGRIND") ? 120 : 10); /* a deadlock fails, not hangs */
    uint64_t seed = 0x5EED, tag = 1ULL << 56;
    item slots[SLOTS] = {{0}};
    for (int op = 0; op < 5000; op++) churn_step(slots, &seed, &tag);
    release_all(slots);
    for (int i = 0; i < MINE; i++) release(mine[i]);
    /* Blocks of a thread that does not exist in the child: remote frees into its heap. */
    for (int i = 0; i < HANDOFF; i++) release(handoff[i]);
    pymalloc_trim();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, short_lived, (void *)7) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    item last = make(200, 99);
    release(last);
    /* The vanished threads' heaps may have been mid-update at the fork: the walker allows
     * for that, and checks all the rest. */
    CHECK(pymalloc_check() == 0);
    exit(0);
}

int main(void) {
    debug_mode = getenv("PYMALLOC_DEBUG") != NULL;
    pthread_t t[3];
    CHECK(pthread_create(&t[0], NULL, churner, (void *)0) == 0);
    CHECK(pthread_create(&t[1], NULL, pool_cycler, NULL) == 0);
    CHECK(pthread_create(&t[2], NULL, spawner, NULL) == 0);
    while (!atomic_load_explicit(&handed, memory_order_acquire)) sched_yield();

    static item mine[MINE];
    uint64_t tag = 1ULL << 60;
    int forks = getenv("CTESTS_UNDER_VALGRIND") ? VALGRIND_FORKS : FORKS;
    for (int f = 0; f < forks; f++) {
        for (int i = 0; i < MINE; i++) mine[i] = make(1 + (i * 37 + f) % 512, ++tag);
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) child(mine);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork %d: child %s %d\n", f, WIFSIGNALED(status) ? "killed by signal" : "exited with",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            exit(1);
        }
        for (int i = 0; i < MINE; i++) release(mine[i]); /* the parent's copies are intact */
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < HANDOFF; i++) release(handoff[i]);
    CHECK(pymalloc_check() == 0);
    printf("ok\n");
    return 0;
}
