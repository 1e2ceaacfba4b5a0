/* A second send baseline for bench/startup.sh: a C program of our own doing, for one record,
 * the steps the original client library documents for tm_create_record + tm_set_payload +
 * tm_send_record + tm_free_record, as a probe calling it once would. Written from that
 * description, not from its code; where the description leaves room, the cheaper choice.
 *
 * Per record, like the original:
 *  - create: severity clamped to 1..4; classification checked (at most 122 bytes, exactly two
 *    '/', segments of at most 40 bytes); every header fact read afresh (no cache): uname, five
 *    DMI files and bios_version (one fopen + 79-byte fgets each), /proc/cpuinfo in 80-byte
 *    fgets chunks up to the first "model name" line, os-release opened with O_NOFOLLOW (then
 *    /usr/lib/os-release) read in 80-byte chunks, 16 bytes from /dev/urandom; each of the 15
 *    header lines its own allocation;
 *  - payload: at most 8192 bytes, every byte isprint() or isspace(), copied;
 *  - send: the opt-in file stat'ed; the configuration file chosen (the system file if readable,
 *    else the vendor default) and parsed whole as the INI dialect the original reads (trimmed
 *    lines, comments, [sections], key=value, `\s` unescaping), keeping every [settings] value;
 *    a stream socket with a 1 s receive timeout, a blocking connect to socket_path, then
 *    non-blocking; the frame (size, header size, headers, payload, NUL) assembled and written
 *    with EAGAIN retried up to 100 times; closed without reading an answer, as the original
 *    (with -a it waits for the daemon's 4-byte answer first, as our library does);
 *  - free: every allocation released.
 * Paths are under $TELEM_ROOT when set (as our library reads them in tests and benchmarks).
 * One executable: the original's probes load libtelemetry.so.4 as a shared library, which costs
 * them more start-up than this.
 *   corig [-a] [-s N] -c CLASS -p PAYLOAD */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/utsname.h>

#define NUM_HEADERS 15
#define MAX_PAYLOAD 8192

struct record {
        char *headers[NUM_HEADERS];
        size_t header_size;
        char *payload;
        size_t payload_size;
};

static const char *root(void)
{
        const char *r = getenv("TELEM_ROOT");
        return r ? r : "";
}

/* ---- configuration: the whole file parsed, every [settings] key kept ---- */

#define MAX_KEYS 32
static struct {
        int loaded;
        int n;
        char *key[MAX_KEYS], *value[MAX_KEYS];
} config;

static char *trim(char *s)
{
        char *e;
        while (*s == ' ' || *s == '\t')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
                *--e = 0;
        return s;
}

static void unescape(char *s)
{
        char *o = s;
        for (; *s; s++) {
                if (*s == '\\' && s[1]) {
                        s++;
                        *o++ = *s == 's' ? ' ' : *s;
                } else {
                        *o++ = *s;
                }
        }
        *o = 0;
}

static int config_load(void)
{
        char sys[4096], vendor[4096], line[4096];
        const char *path;
        int in_settings = 0, seen_section = 0;
        FILE *f;
        if (config.loaded)
                return 0;
        config.loaded = 1;
        snprintf(sys, sizeof sys, "%s/etc/telemetrics/telemetrics.conf", root());
        snprintf(vendor, sizeof vendor, "%s/usr/share/defaults/telemetrics/telemetrics.conf",
                 root());
        path = access(sys, R_OK) == 0 ? sys : access(vendor, R_OK) == 0 ? vendor : NULL;
        if (!path)
                return 0; /* built-in defaults */
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof line, f)) {
                char *l = trim(line), *eq, *k, *v;
                if (!*l || *l == '#' || *l == ';')
                        continue;
                if (*l == '[') {
                        size_t n = strlen(l);
                        if (l[n - 1] != ']')
                                goto bad;
                        l[n - 1] = 0;
                        in_settings = strcmp(l + 1, "settings") == 0;
                        seen_section = 1;
                        continue;
                }
                eq = strchr(l, '=');
                if (!eq || !seen_section)
                        goto bad;
                *eq = 0;
                k = trim(l);
                v = trim(eq + 1);
                if (!*k)
                        goto bad;
                unescape(v);
                if (!in_settings)
                        continue;
                for (int i = 0; i < config.n; i++) {
                        if (strcmp(config.key[i], k) == 0) {
                                free(config.value[i]);
                                config.value[i] = strdup(v);
                                goto next;
                        }
                }
                if (config.n < MAX_KEYS) {
                        config.key[config.n] = strdup(k);
                        config.value[config.n++] = strdup(v);
                }
next:;
        }
        fclose(f);
        return 0;
bad:
        fclose(f);
        return -1;
}

static const char *config_get(const char *key, const char *dflt)
{
        for (int i = 0; i < config.n; i++)
                if (strcmp(config.key[i], key) == 0)
                        return config.value[i];
        return dflt;
}

/* ---- record creation: the header facts, read afresh ---- */

static char *header(struct record *r, int i, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static char *header(struct record *r, int i, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        r->headers[i] = s;
        if (s)
                r->header_size += strlen(s);
        return s;
}

static void dmi(const char *file, const char *key, char *out, size_t n)
{
        char path[256], buf[79];
        FILE *f;
        snprintf(path, sizeof path, "/sys/class/dmi/id/%s", file);
        f = fopen(path, "re");
        if (!f) {
                snprintf(out, n, "no_%s_file", key);
                return;
        }
        if (!fgets(buf, sizeof buf, f))
                buf[0] = 0;
        fclose(f);
        if (*buf)
                buf[strlen(buf) - 1] = 0;
        snprintf(out, n, "%s", *trim(buf) ? buf : "blank");
}

static int cpu_model(char *out, size_t n)
{
        char line[80];
        FILE *f = fopen("/proc/cpuinfo", "re");
        snprintf(out, n, "blank");
        if (!f)
                return -1;
        while (fgets(line, sizeof line, f)) {
                if (strncmp(line, "model name", 10) == 0) {
                        char *v = strstr(line, ": ");
                        if (v && strlen(v) > 3) {
                                v += 2;
                                v[strlen(v) - 1] = 0;
                                snprintf(out, n, "%s", v);
                        }
                        break;
                }
        }
        fclose(f);
        return 0;
}

static void os_release(char *id, char *variant, char *version, size_t n)
{
        char line[80], tok[80];
        int fd = open("/etc/os-release", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        FILE *f = fd >= 0 ? fdopen(fd, "r") : fopen("/usr/lib/os-release", "re");
        int got_id = 0, got_var = 0, got_ver = 0;
        snprintf(id, n, "unknown");
        variant[0] = 0;
        snprintf(version, n, "0");
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                if (!got_id && strncmp(line, "ID=", 3) == 0 && sscanf(line + 3, "%79s", tok) == 1)
                        snprintf(id, n, "%s", tok), got_id = 1;
                else if (!got_var && strncmp(line, "VARIANT_ID=", 11) == 0 &&
                         sscanf(line + 11, "%79s", tok) == 1)
                        snprintf(variant, n, "%s", tok), got_var = 1;
                else if (!got_ver && strncmp(line, "VERSION_ID=", 11) == 0 &&
                         sscanf(line + 11, "%79s", tok) == 1)
                        snprintf(version, n, "%s", tok), got_ver = 1;
        }
        fclose(f);
}

static int valid_class(const char *c)
{
        size_t len, seg = 0;
        int slashes = 0;
        if (!c || !*c || (len = strlen(c)) > 122)
                return 0;
        for (size_t i = 0; i < len; i++) {
                if (c[i] == '/') {
                        slashes++;
                        seg = 0;
                } else if (++seg > 40) {
                        return 0;
                }
        }
        return slashes == 2;
}

static int create_record(struct record **out, uint32_t sev, const char *cls, uint32_t pver)
{
        struct record *r = calloc(1, sizeof *r);
        struct utsname u;
        char sv[80], pn[80], pvr[80], bn[80], bv[80], bios[80], cpu[80];
        char id[80], variant[80], version[80], name[160];
        uint64_t rnd[2];
        int fd;
        if (!r)
                return -ENOMEM;
        if (!valid_class(cls)) {
                free(r);
                return -EINVAL;
        }
        sev = sev < 1 ? 1 : sev > 4 ? 4 : sev;
        uname(&u);
        dmi("sys_vendor", "sv", sv, sizeof sv);
        dmi("product_name", "pn", pn, sizeof pn);
        dmi("product_version", "pvr", pvr, sizeof pvr);
        dmi("board_name", "bn", bn, sizeof bn);
        dmi("board_vendor", "bv", bv, sizeof bv);
        dmi("bios_version", "bv", bios, sizeof bios);
        os_release(id, variant, version, sizeof id);
        snprintf(name, sizeof name, variant[0] ? "%s_%s" : "%s", id, variant);
        if (cpu_model(cpu, sizeof cpu) != 0)
                goto fail;
        fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) {
                if (fd >= 0)
                        close(fd);
                goto fail;
        }
        close(fd);
        header(r, 0, "record_format_version: %d\n", 4);
        header(r, 1, "classification: %s\n", cls);
        header(r, 2, "severity: %u\n", sev);
        header(r, 3, "machine_id: %X\n", 0xFFFFFFFFu);
        header(r, 4, "creation_timestamp: %lld\n", (long long)time(NULL));
        header(r, 5, "arch: %s\n", u.machine);
        header(r, 6, "host_type: %s|%s|%s\n", sv, pn, pvr);
        header(r, 7, "build: %s\n", version);
        header(r, 8, "kernel_version: %s\n", u.release);
        header(r, 9, "payload_format_version: %u\n", pver);
        header(r, 10, "system_name: %s\n", name);
        header(r, 11, "board_name: %s|%s\n", bn, bv);
        header(r, 12, "cpu_model: %s\n", cpu);
        header(r, 13, "bios_version: %s\n", bios);
        header(r, 14, "event_id: %016llx%016llx\n", (unsigned long long)rnd[0],
               (unsigned long long)rnd[1]);
        for (int i = 0; i < NUM_HEADERS; i++)
                if (!r->headers[i])
                        goto fail;
        *out = r;
        return 0;
fail:
        for (int i = 0; i < NUM_HEADERS; i++)
                free(r->headers[i]);
        free(r);
        return -1;
}

static int set_payload(struct record *r, const char *payload)
{
        size_t n = strnlen(payload, MAX_PAYLOAD);
        for (size_t i = 0; i < n; i++)
                if (!isprint((unsigned char)payload[i]) && !isspace((unsigned char)payload[i]))
                        return -EINVAL;
        free(r->payload);
        r->payload = malloc(n + 1);
        if (!r->payload)
                return -ENOMEM;
        memcpy(r->payload, payload, n);
        r->payload[n] = 0;
        r->payload_size = n;
        return 0;
}

static int wait_answer;

static int send_record(struct record *r)
{
        char optin[4096];
        struct stat st;
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 1 };
        const char *sock;
        uint32_t total, hsize;
        char *frame, *p;
        size_t done = 0;
        int fd, tries = 0, ret = 0;
        snprintf(optin, sizeof optin, "%s/etc/telemetrics/opt-in", root());
        if (stat(optin, &st) != 0)
                return -ECONNREFUSED;
        if (config_load() != 0)
                exit(EXIT_FAILURE); /* as the original does on a config it cannot parse */
        sock = config_get("socket_path", "/run/telem-0");
        if (strlen(sock) >= sizeof addr.sun_path)
                return -EINVAL;
        memcpy(addr.sun_path, sock, strlen(sock) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
                ret = -errno;
                close(fd);
                return ret;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        hsize = (uint32_t)r->header_size;
        total = 4 + 4 + hsize + (uint32_t)r->payload_size + 1;
        frame = malloc(total);
        if (!frame) {
                close(fd);
                return -ENOMEM;
        }
        memcpy(frame, &total, 4);
        memcpy(frame + 4, &hsize, 4);
        p = frame + 8;
        for (int i = 0; i < NUM_HEADERS; i++) {
                size_t n = strlen(r->headers[i]);
                memcpy(p, r->headers[i], n);
                p += n;
        }
        memcpy(p, r->payload, r->payload_size);
        p[r->payload_size] = 0;
        while (done < total) {
                ssize_t w = write(fd, frame + done, total - done);
                if (w < 0 && errno == EAGAIN && ++tries < 100)
                        continue;
                if (w < 0) {
                        ret = -errno;
                        break;
                }
                tries = 0;
                done += (size_t)w;
        }
        if (ret == 0 && wait_answer) {
                int32_t status = -1;
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
                if (recv(fd, &status, 4, MSG_WAITALL) != 4 || status != 0)
                        ret = -EIO;
        }
        free(frame);
        close(fd);
        return ret;
}

static void free_record(struct record *r)
{
        if (!r)
                return;
        for (int i = 0; i < NUM_HEADERS; i++)
                free(r->headers[i]);
        free(r->payload);
        free(r);
}

int main(int argc, char **argv)
{
        const char *cls = NULL, *payload = NULL;
        uint32_t sev = 1;
        struct record *r = NULL;
        int c, ret;
        while ((c = getopt(argc, argv, "ac:s:p:")) != -1) {
                switch (c) {
                case 'a': wait_answer = 1; break;
                case 'c': cls = optarg; break;
                case 's': sev = (uint32_t)atoi(optarg); break;
                case 'p': payload = optarg; break;
                default: return 1;
                }
        }
        if (!cls || !payload)
                return 1;
        if (create_record(&r, sev, cls, 1) != 0)
                return 1;
        ret = set_payload(r, payload) == 0 ? send_record(r) : -1;
        free_record(r);
        for (int i = 0; i < config.n; i++) {
                free(config.key[i]);
                free(config.value[i]);
        }
        return ret == 0 ? 0 : 1;
}
