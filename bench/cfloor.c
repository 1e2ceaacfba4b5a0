/* The floor a C program pays for what `telem-record-gen` does, used as a baseline by
 * bench/startup.sh: read the same system facts (uname, the DMI files, /proc/cpuinfo up to the
 * first "model name" line, os-release, 16 random bytes for the event id), print the same 15
 * header lines and the payload (-o), and unless -n send the same frame to the socket named by
 * socket_path in $TELEM_ROOT/etc/telemetrics/telemetrics.conf (opt-in file checked first) and
 * wait for the daemon's 4-byte answer. No sanitising of values and no checks beyond the basics:
 * this is what a lean C client costs, not a second implementation.
 *   cfloor [-o] [-n] -c CLASS [-s N] -p PAYLOAD */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>

static void first_line(const char *path, const char *missing, char *out, size_t n)
{
        FILE *f = fopen(path, "re");
        if (!f) {
                snprintf(out, n, "%s", missing);
                return;
        }
        if (!fgets(out, (int)n, f))
                out[0] = 0;
        fclose(f);
        out[strcspn(out, "\n")] = 0;
        if (!out[0])
                snprintf(out, n, "blank");
}

static void dmi(const char *file, const char *key, char *out, size_t n)
{
        char path[128], missing[32];
        snprintf(path, sizeof path, "/sys/class/dmi/id/%s", file);
        snprintf(missing, sizeof missing, "no_%s_file", key);
        first_line(path, missing, out, n);
}

static void cpu_model(char *out, size_t n)
{
        char line[512];
        FILE *f = fopen("/proc/cpuinfo", "re");
        snprintf(out, n, "blank");
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                if (strncmp(line, "model name", 10) == 0) {
                        char *v = strchr(line, ':');
                        if (v) {
                                v += 1 + (v[1] == ' ');
                                v[strcspn(v, "\n")] = 0;
                                snprintf(out, n, "%s", v);
                        }
                        break;
                }
        }
        fclose(f);
}

static void os_release(char *id, char *variant, char *version, size_t n)
{
        char line[512];
        FILE *f = fopen("/etc/os-release", "re");
        if (!f)
                f = fopen("/usr/lib/os-release", "re");
        snprintf(id, n, "unknown");
        variant[0] = 0;
        snprintf(version, n, "0");
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                char *slot = NULL, *v;
                if (strncmp(line, "ID=", 3) == 0)
                        slot = id;
                else if (strncmp(line, "VARIANT_ID=", 11) == 0)
                        slot = variant;
                else if (strncmp(line, "VERSION_ID=", 11) == 0)
                        slot = version;
                if (!slot)
                        continue;
                v = strchr(line, '=') + 1;
                v[strcspn(v, "\n")] = 0;
                if (*v == '"' && v[1]) {
                        v++;
                        v[strcspn(v, "\"")] = 0;
                }
                snprintf(slot, n, "%s", v);
        }
        fclose(f);
}

static int config_socket(char *out, size_t n)
{
        const char *root = getenv("TELEM_ROOT");
        char path[4096], line[4096];
        struct stat st;
        FILE *f;
        snprintf(out, n, "/run/telem-0");
        snprintf(path, sizeof path, "%s/etc/telemetrics/opt-in", root ? root : "");
        if (stat(path, &st) != 0)
                return -1;
        snprintf(path, sizeof path, "%s/etc/telemetrics/telemetrics.conf", root ? root : "");
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof line, f)) {
                char *v = strchr(line, '=');
                if (v && strncmp(line, "socket_path", 11) == 0) {
                        v++;
                        v += strspn(v, " ");
                        v[strcspn(v, "\n")] = 0;
                        snprintf(out, n, "%s", v);
                }
        }
        fclose(f);
        return 0;
}

static int send_frame(const char *sock, const char *hdr, uint32_t hlen, const char *payload)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 5 };
        uint32_t plen = (uint32_t)strlen(payload), total = 4 + 4 + hlen + plen + 1;
        char *frame = malloc(total), *p = frame;
        int32_t status = 0;
        int fd = -1, ok = -1;
        if (!frame)
                return -1;
        memcpy(p, &total, 4);
        memcpy(p + 4, &hlen, 4);
        memcpy(p + 8, hdr, hlen);
        memcpy(p + 8 + hlen, payload, plen);
        p[total - 1] = 0;
        if (strlen(sock) >= sizeof addr.sun_path)
                goto out;
        memcpy(addr.sun_path, sock, strlen(sock) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                goto out;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
                size_t done = 0;
                while (done < total) {
                        ssize_t w = send(fd, frame + done, total - done, MSG_NOSIGNAL);
                        if (w <= 0)
                                break;
                        done += (size_t)w;
                }
                if (done == total) {
                        ssize_t r = recv(fd, &status, 4, MSG_WAITALL);
                        ok = (r == 0 || (r == 4 && status == 0)) ? 0 : -1;
                }
        }
out:
        if (fd >= 0)
                close(fd);
        free(frame);
        return ok;
}

int main(int argc, char **argv)
{
        const char *cls = NULL, *payload = "";
        int echo = 0, nopost = 0, sev = 1, c;
        while ((c = getopt(argc, argv, "onc:s:p:")) != -1) {
                switch (c) {
                case 'o': echo = 1; break;
                case 'n': nopost = 1; break;
                case 'c': cls = optarg; break;
                case 's': sev = atoi(optarg); break;
                case 'p': payload = optarg; break;
                default: return 1;
                }
        }
        if (!cls)
                return 1;

        struct utsname u;
        char sv[256], pn[256], pvr[256], bn[256], bv[256], bios[256], cpu[256];
        char id[256], variant[256], version[256], sysname[520], evid[33];
        unsigned char rnd[16];
        uname(&u);
        dmi("sys_vendor", "sv", sv, sizeof sv);
        dmi("product_name", "pn", pn, sizeof pn);
        dmi("product_version", "pvr", pvr, sizeof pvr);
        dmi("board_name", "bn", bn, sizeof bn);
        dmi("board_vendor", "bv", bv, sizeof bv);
        dmi("bios_version", "bv", bios, sizeof bios);
        cpu_model(cpu, sizeof cpu);
        os_release(id, variant, version, sizeof id);
        snprintf(sysname, sizeof sysname, variant[0] ? "%s_%s" : "%s", id, variant);
        if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
                return 1;
        for (int i = 0; i < 16; i++)
                sprintf(evid + 2 * i, "%02x", rnd[i]);

        char hdr[4096];
        int hlen = snprintf(hdr, sizeof hdr,
                "record_format_version: 4\nclassification: %s\nseverity: %d\n"
                "machine_id: FFFFFFFF\ncreation_timestamp: %lld\narch: %s\n"
                "host_type: %s|%s|%s\nbuild: %s\nkernel_version: %s\n"
                "payload_format_version: 1\nsystem_name: %s\nboard_name: %s|%s\n"
                "cpu_model: %s\nbios_version: %s\nevent_id: %s\n",
                cls, sev, (long long)time(NULL), u.machine, sv, pn, pvr, version, u.release,
                sysname, bn, bv, cpu, bios, evid);
        if (hlen < 0 || hlen >= (int)sizeof hdr)
                return 1;
        if (echo) {
                fwrite(hdr, 1, (size_t)hlen, stdout);
                printf("%s\n", payload);
                fflush(stdout);
        }
        if (nopost)
                return 0;
        char sock[4096];
        if (config_socket(sock, sizeof sock) != 0)
                return 1;
        return send_frame(sock, hdr, (uint32_t)hlen, payload) == 0 ? 0 : 1;
}
