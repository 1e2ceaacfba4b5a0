/* One record sent through our C library, as a probe written in C sends it
 * (bench/startup.sh): create, set the payload, send, free. The socket and the opt-in file come
 * from the configuration below $TELEM_ROOT, as for every program using the library.
 *   libsend CLASS PAYLOAD */
#include <stdio.h>
#include <telemetry.h>

int main(int argc, char **argv)
{
        struct telem_ref *ref = NULL;
        int r;
        if (argc != 3)
                return 2;
        if ((r = tm_create_record(&ref, 1, argv[1], 1)) != 0 ||
            (r = tm_set_payload(ref, argv[2])) != 0 || (r = tm_send_record(ref)) != 0) {
                fprintf(stderr, "libsend: %d\n", r);
                return 1;
        }
        tm_free_record(ref);
        return 0;
}
