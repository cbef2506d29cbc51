/* Fixture: prints the size and the offset of the last field of each struct of
 * plugin_host.h, as `name size` lines, for the host's mirrors of them to be compared. */
#include "plugin_host.h"

#include <stdio.h>

#define SHOW(type, last) \
    printf("%s %zu %zu\n", #type, sizeof(type), offsetof(type, last))

int main(void) {
    SHOW(ph_str, len);
    SHOW(ph_out, write);
    SHOW(ph_host, span_end);
    SHOW(ph_call, tracestate);
    SHOW(ph_sink, send);
    SHOW(ph_plugin, drop);
    return 0;
}
