/* Calls all seven libtelemetry functions, error paths first, and prints each result as
 * key=value for the Rust test (tests/c_api.rs) to check. Written against the original API; it
 * reads the record through the original layout, which our header gives on request.
 * argv[1]: config file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define TELEMETRY_RECORD_LAYOUT
#include <telemetry.h>

static void print_line(const char *key, const char *line)
{
        /* header lines end with '\n'; print without it */
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
                n--;
        printf("%s=%.*s\n", key, (int)n, line);
}

int main(int argc, char **argv)
{
        struct telem_ref *ref = NULL;
        static char big[8194];
        char cls[] = "org.test/c/api";
        char bad_cls[] = "org.test/only-two";
        char good_id[] = "aaaaaa00000033333344444466666622";
        char bad_id[] = "AAAAAA000000333333444444666666ZZ";
        char control[] = "bell\a";
        char payload[] = "hello from C\nsecond line \xe2\x9c\x93\n";
        char relative[] = "relative.conf";
        char missing[] = "/nonexistent/telemetrics.conf";
        char directory[] = "/";

        if (argc < 2)
                return 2;

        printf("config_relative=%d\n", tm_set_config_file(relative));
        printf("config_missing=%d\n", tm_set_config_file(missing));
        printf("config_directory=%d\n", tm_set_config_file(directory));
        printf("config_null=%d\n", tm_set_config_file(NULL));
        printf("config_ok=%d\n", tm_set_config_file(argv[1]));
        printf("opted_in=%d\n", tm_is_opted_in());

        printf("create_null_ref=%d\n", tm_create_record(NULL, 1, cls, 1));
        printf("create_bad_class=%d\n", tm_create_record(&ref, 1, bad_cls, 1));
        printf("ref_untouched=%d\n", ref == NULL);
        printf("create_null_class=%d\n", tm_create_record(&ref, 1, NULL, 1));
        printf("create=%d\n", tm_create_record(&ref, 9, cls, 2000));
        if (ref == NULL || ref->record == NULL)
                return 3;

        /* The headers are readable through the original struct layout (telem_record is
         * semi-public in the original: probes read headers[i]). */
        print_line("severity_line", ref->record->headers[2]);
        print_line("header0", ref->record->headers[0]);

        char before[64];
        snprintf(before, sizeof before, "%s", ref->record->headers[14]);
        printf("event_bad=%d\n", tm_set_event_id(ref, bad_id));
        printf("event_null=%d\n", tm_set_event_id(ref, NULL));
        printf("event_unchanged=%d\n", strcmp(before, ref->record->headers[14]) == 0);
        printf("event_ok=%d\n", tm_set_event_id(ref, good_id));

        printf("payload_null=%d\n", tm_set_payload(ref, NULL));
        memset(big, 'a', 8193);
        big[8193] = '\0';
        printf("payload_8193=%d\n", tm_set_payload(ref, big));
        printf("payload_control=%d\n", tm_set_payload(ref, control));
        big[8192] = '\0';
        printf("payload_8192=%d\n", tm_set_payload(ref, big));
        printf("payload_size_8192=%zu\n", ref->record->payload_size);
        printf("payload=%d\n", tm_set_payload(ref, payload));
        printf("payload_null_ref=%d\n", tm_set_payload(NULL, payload));
        printf("header_size=%zu\n", ref->record->header_size);
        printf("payload_size=%zu\n", ref->record->payload_size);

        printf("send_null=%d\n", tm_send_record(NULL));
        printf("send=%d\n", tm_send_record(ref));

        tm_free_record(ref);
        tm_free_record(NULL);
        return 0;
}
