/* A small image viewer that crashes in five ways, for the seed data of the browser tests: each
 * mode dies the way real programs do, and its core goes through the crash probe's unwinder and
 * formatter. Built with gcc -g -O0 so every frame has a function and a line.
 *
 *   assert      parse_config fails an assertion (SIGABRT through __assert_fail)
 *   segv        render_row reads through a NULL pointer (SIGSEGV)
 *   oom         xmalloc, the program's own allocation wrapper, aborts when malloc fails
 *   fpe         average divides by zero (SIGFPE)
 *   doublefree  release_buffer frees twice; glibc aborts inside free
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct row {
    const char *name;
    int width;
};

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "imgview: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

static int parse_config(const char *text) {
    const char *eq = strchr(text, '=');
    assert(eq != NULL && "config line without '='");
    return (int)(eq - text);
}

static int load_config(void) {
    return parse_config("thumbnail_size 128");
}

static int render_row(const struct row *r) {
    return printf("%-20s %d\n", r->name, r->width);
}

static int draw_table(int rows) {
    struct row *table[4] = {0};
    int n = 0;
    for (int i = 0; i < rows; i++) {
        n += render_row(table[i]);
    }
    return n;
}

static char *load_image(size_t width, size_t height) {
    /* A corrupt header gives an absurd size. */
    return xmalloc(width * height * 4);
}

static int average(int sum, int count) {
    return sum / count;
}

static int print_stats(volatile int count) {
    return printf("average: %d\n", average(100, count));
}

static void release_buffer(char *buf) {
    free(buf);
}

static void close_document(void) {
    char *buf = malloc(64);
    release_buffer(buf);
    release_buffer(buf);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "assert")) {
        return load_config();
    } else if (!strcmp(mode, "segv")) {
        return draw_table(3);
    } else if (!strcmp(mode, "oom")) {
        return load_image((size_t)1 << 40, (size_t)1 << 20) != NULL;
    } else if (!strcmp(mode, "fpe")) {
        return print_stats(0);
    } else if (!strcmp(mode, "doublefree")) {
        close_document();
        return 0;
    }
    fprintf(stderr, "usage: imgview assert|segv|oom|fpe|doublefree\n");
    return 2;
}
