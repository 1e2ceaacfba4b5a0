/* The smallest libtelemetry program: create a record, set its payload, send it.
 *   gcc send_record.c $(pkg-config --cflags --libs libtelemetry) -o send_record */
#include <stdio.h>
#include <string.h>
#include <telemetry.h>

int main(int argc, char **argv)
{
        struct telem_ref *ref = NULL;
        char classification[] = "org.example/c-example/hello";
        char payload[256];
        int ret;

        snprintf(payload, sizeof payload, "hello from a C program (%s)\n",
                 argc > 1 ? argv[1] : "no argument");
        ret = tm_create_record(&ref, 1, classification, 1);
        if (ret < 0) {
                fprintf(stderr, "tm_create_record: %s\n", strerror(-ret));
                return 1;
        }
        ret = tm_set_payload(ref, payload);
        if (ret == 0)
                ret = tm_send_record(ref);
        tm_free_record(ref);
        if (ret < 0) {
                fprintf(stderr, "send failed: %s\n", strerror(-ret));
                return 1;
        }
        printf("record stored by telemprobd\n");
        return 0;
}
