/* A probe written the way the original's own probes were: it defines struct telem_record
 * itself (the original header only declares it), then reads a record through that definition
 * and sends it. argv[1]: config file. Prints key=value lines for tests/c_compat.rs. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The original's common.h. */
struct telem_record {
        char *headers[15];
        char *payload;
        size_t header_size;
        size_t payload_size;
};

#include <telemetry.h>

int main(int argc, char **argv)
{
        struct telem_ref *ref = NULL;
        char cls[] = "org.test/c/own-record";
        char payload[] = "defined by the caller\n";
        int ret;

        if (argc > 1) {
                ret = tm_set_config_file(argv[1]);
                printf("config=%d\n", ret);
        }
        ret = tm_create_record(&ref, 2, cls, 1);
        printf("create=%d\n", ret);
        if (ret != 0 || ref == NULL || ref->record == NULL)
                return 3;
        printf("classification_line=%.*s\n", (int)strcspn(ref->record->headers[1], "\n"),
               ref->record->headers[1]);
        ret = tm_set_payload(ref, payload);
        printf("payload=%d\n", ret);
        printf("payload_size=%zu\n", ref->record->payload_size);
        printf("send=%d\n", tm_send_record(ref));
        tm_free_record(ref);
        return 0;
}
