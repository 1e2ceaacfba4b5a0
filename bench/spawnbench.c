/* Interleaved whole-process timing (bench/startup.sh): runs each command of COMMANDS-FILE (one
 * per line, words split on spaces, no quoting) once per round, in turn, for ROUNDS rounds, with
 * stdin and stdout on /dev/null, and prints per command the median time, its quartiles, and the
 * medians over the rounds of its time divided by the first command's and by the previous
 * command's in the same round (so a C baseline goes right above the program it is compared to).
 * Interleaving, and ratios taken within a round, keep a machine whose load changes from
 * favouring one command. A command that exits non-zero stops the run.
 *   spawnbench ROUNDS COMMANDS-FILE */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>

extern char **environ;

enum { MAX_CMDS = 16, MAX_WORDS = 32 };

static double now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
        static char lines[MAX_CMDS][4096];
        char *words[MAX_CMDS][MAX_WORDS + 1];
        int ncmd = 0, rounds;
        FILE *f;
        if (argc != 3 || (rounds = atoi(argv[1])) < 1 || !(f = fopen(argv[2], "r"))) {
                fprintf(stderr, "usage: spawnbench ROUNDS COMMANDS-FILE\n");
                return 2;
        }
        while (ncmd < MAX_CMDS && fgets(lines[ncmd], sizeof lines[ncmd], f)) {
                int n = 0;
                lines[ncmd][strcspn(lines[ncmd], "\n")] = 0;
                for (char *w = strtok(lines[ncmd], " "); w && n < MAX_WORDS; w = strtok(NULL, " "))
                        words[ncmd][n++] = w;
                words[ncmd][n] = NULL;
                if (n)
                        ncmd++;
        }
        fclose(f);
        double *t = calloc((size_t)ncmd * (size_t)rounds, sizeof *t);
        if (!t)
                return 1;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        for (int r = 0; r < rounds; r++) {
                for (int c = 0; c < ncmd; c++) {
                        pid_t pid;
                        int st;
                        double t0 = now_us();
                        if (posix_spawn(&pid, words[c][0], &fa, NULL, words[c], environ) != 0 ||
                            waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                                fprintf(stderr, "spawnbench: %s failed\n", words[c][0]);
                                return 1;
                        }
                        t[c * rounds + r] = now_us() - t0;
                }
        }
        double *ratio = calloc((size_t)rounds, sizeof *ratio);
        double *prev = calloc((size_t)rounds, sizeof *prev);
        double *sorted = calloc((size_t)rounds, sizeof *sorted);
        if (!ratio || !prev || !sorted)
                return 1;
        printf(" median (quartiles), us   to the first  to the previous (medians of per-round ratios)\n");
        for (int c = 0; c < ncmd; c++) {
                const double *v = t + c * rounds;
                for (int r = 0; r < rounds; r++) {
                        sorted[r] = v[r];
                        ratio[r] = v[r] / t[r];
                        prev[r] = c ? v[r] / v[r - rounds] : 1;
                }
                qsort(prev, (size_t)rounds, sizeof *prev, cmp);
                qsort(ratio, (size_t)rounds, sizeof *ratio, cmp);
                qsort(sorted, (size_t)rounds, sizeof *sorted, cmp);
                printf("%6.0f (%5.0f-%5.0f)  %5.2fx         %5.2fx     ", sorted[rounds / 2],
                       sorted[rounds / 4], sorted[3 * rounds / 4], ratio[rounds / 2],
                       prev[rounds / 2]);
                for (char **w = words[c]; *w; w++)
                        printf(" %s", *w);
                printf("\n");
        }
        return 0;
}
