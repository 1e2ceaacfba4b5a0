/* Times tm_create_record + tm_set_payload + tm_free_record in a loop against the shared
 * library (bench/record.sh builds and runs it). Prints the median of several rounds in
 * microseconds per record. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <telemetry.h>

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
        int iterations = argc > 1 ? atoi(argv[1]) : 20000;
        enum { ROUNDS = 9 };
        double per[ROUNDS];
        char cls[] = "org.example/bench/create";
        char payload[] = "benchmark payload\nwith two lines\n";

        for (int r = 0; r < ROUNDS; r++) {
                double t0 = now_us();
                for (int i = 0; i < iterations; i++) {
                        struct telem_ref *ref = NULL;
                        if (tm_create_record(&ref, 1, cls, 1) != 0)
                                return 1;
                        if (tm_set_payload(ref, payload) != 0)
                                return 1;
                        tm_free_record(ref);
                }
                per[r] = (now_us() - t0) / iterations;
        }
        qsort(per, ROUNDS, sizeof per[0], cmp);
        printf("create+payload+free median %.3f us/record (min %.3f, max %.3f, %d x %d)\n",
               per[ROUNDS / 2], per[0], per[ROUNDS - 1], ROUNDS, iterations);
        return 0;
}
