/*
 * plugin_host.h: the plugin contract of plugin-host, in C.
 *
 * A plugin written in C, C++ or any language that can export a C function is a shared
 * library that exports one symbol:
 *
 *     const ph_plugin *plugin_host_c_plugin_v1(void);
 *
 * It returns a pointer to a static `ph_plugin`: the plugin's description (a JSON document,
 * see below) and its functions. The host reads the description in a scanner process
 * without creating anything, and maps the library into itself (or into a worker process,
 * for isolated components) only when one of its components is first needed. Everything
 * the host offers a component (logs, metrics, locks, its config section, calls to its
 * dependencies, the call's deadline and cancellation) comes through the `ph_host` and
 * `ph_call` structs below.
 *
 * Rules of the contract:
 *
 * - Plain C types only. Strings are UTF-8, passed as `ph_str` (pointer and length, not
 *   NUL-terminated), except `ph_plugin.description`, which is NUL-terminated.
 * - Nothing is allocated on one side and freed on the other. Bytes travel through a
 *   `ph_out` (a write callback) that the receiving side provides: a plugin writes its
 *   answer and its error messages to the host's, the host writes its config and the
 *   answers of dependencies to the plugin's, and each copies what it keeps. Everything
 *   the host passes in is valid for the duration of the function it is passed to, except
 *   `ph_host`, which is valid for the life of the component created with it.
 * - A component is called from many threads at once: `call` and `stream` must be
 *   thread-safe for one instance.
 * - Nothing may unwind across this boundary: a C++ plugin catches every exception in
 *   each function it exports (the example plugin shows how). A crash in a plugin (a
 *   segfault, an abort) ends the process it runs in: the host itself when in process,
 *   only a worker when the component is isolated (`isolation = "process"`), which the
 *   host reports as `worker_died` and restarts.
 * - Versions: `PLUGIN_HOST_C_ABI` is this header's version. A plugin sets `abi` to the
 *   version it was built with and `size` to `sizeof(ph_plugin)`; the host refuses a plugin
 *   whose `abi` is newer than its own, naming both. Structs grow only at their end: each
 *   starts with its `size`, and a reader treats fields past `size` as absent (NULL). So a
 *   newer host loads older plugins, and a plugin checks `host->size` (`PH_HAS`) before
 *   it uses a host field added after the version it needs.
 *
 * The description is a JSON document (format 1):
 *
 *     {
 *       "format": 1,
 *       "name": "book-tools",            plugin name: a-z, 0-9, '-', '_'
 *       "version": "0.1.0",
 *       "description": "one line",        optional
 *       "requires": [],                   features the host must have, optional
 *       "sandbox": {"read": [], "write": [], "connect": false, "connect_ports": [],
 *                   "spawn": false},      what its code needs in a sandbox, optional
 *       "components": [{
 *         "name": "imbalance",
 *         "dependencies": [],             components initialised before it, optional
 *         "memory_estimate": 0,           bytes, optional
 *         "priority": 50,                 0 (most important) to 100, optional
 *         "init_timeout_ms": 5000,        optional
 *         "methods": [{"name": "compute", "description": "...", "example": "{}",
 *                      "stream": false}]
 *       }]
 *     }
 *
 * Keys the host does not know are ignored; a malformed description refuses the plugin
 * with a message naming the file and the key. Limits: 256 components, 256 methods and
 * 64 dependencies a component, 4 KiB of version or description text, 64 KiB of example;
 * control characters in text are shown as escapes, and refused in method names.
 */
#ifndef PLUGIN_HOST_H
#define PLUGIN_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* This header's version of the C contract. */
#define PLUGIN_HOST_C_ABI 1

/* The symbol a C plugin exports, as a string (for hosts that look it up). */
#define PLUGIN_HOST_C_ENTRY "plugin_host_c_plugin_v1"

/* Exports a symbol from the shared library. */
#if defined(_WIN32)
#define PH_EXPORT __declspec(dllexport)
#else
#define PH_EXPORT __attribute__((visibility("default")))
#endif

/* UTF-8 text: `len` bytes at `ptr`, not NUL-terminated. */
typedef struct ph_str {
    const char *ptr;
    size_t len;
} ph_str;

/* Bytes: `len` bytes at `ptr`. */
typedef struct ph_bytes {
    const uint8_t *ptr;
    size_t len;
} ph_bytes;

/* Where bytes go: whoever receives bytes provides the `ph_out`, and whoever sends them
 * calls its `write` (any number of times; the pieces are appended). The host provides one
 * for a plugin's answers and error messages; a plugin provides one (`ph_buffer_out` below
 * makes it) for what the host answers it: its config, a dependency's answer. */
typedef struct ph_out {
    void *ctx;
    void (*write)(void *ctx, const void *bytes, size_t len);
} ph_out;

/* What a function returns: PH_OK, or the kind of its failure (its message written to
 * the function's `ph_out`). */
typedef int32_t ph_status;
#define PH_OK 0
#define PH_FAILED 1            /* it failed; the message says why */
#define PH_BAD_INPUT 2         /* the input is not what the method takes */
#define PH_UNKNOWN_METHOD 3    /* no such method */
#define PH_NOT_FOUND 4         /* what the input names does not exist */
#define PH_PERMISSION_DENIED 5 /* the caller may not do this */
#define PH_CONFLICT 6          /* it conflicts with the current state */
#define PH_UNAVAILABLE 7       /* a resource it needs is not available now; retry later */
#define PH_CANCELLED 8         /* it stopped because the call was cancelled */

/* Log levels for `ph_host.log`. */
#define PH_LOG_ERROR 1
#define PH_LOG_WARN 2
#define PH_LOG_INFO 3
#define PH_LOG_DEBUG 4
#define PH_LOG_TRACE 5

/* Metric kinds for `ph_host.metric`. */
#define PH_METRIC_COUNTER 0   /* value is added (rounded; a negative value is ignored) */
#define PH_METRIC_HISTOGRAM 1 /* value is observed, in base units (seconds, bytes) */

/* What the host offers one component instance: valid from `create` until `drop`. */
typedef struct ph_host {
    uint32_t size; /* sizeof(ph_host) as the host was built; fields past it are absent */
    uint32_t abi;  /* the host's PLUGIN_HOST_C_ABI */
    void *ctx;     /* the host's; pass it back to each function below */

    /* Logs `message` at `level` (PH_LOG_*) under this component, in the host's log. */
    void (*log)(void *ctx, int32_t level, ph_str message);

    /* Writes this component's config section, as JSON, to `out` (`{}` when it has none). */
    void (*config)(void *ctx, const ph_out *out);

    /* Calls `method` of `dependency` (one of the component's declared dependencies) with
     * `input`; writes its answer, or its error message, to `out`. */
    ph_status (*call)(void *ctx, ph_str dependency, ph_str method, ph_bytes input,
                      const ph_out *out);

    /* Takes the host's named lock `name` (the global lock order and deadlock checks
     * apply), waiting up to `timeout_ms` (0: the lock's configured timeout). On PH_OK,
     * `*token` releases it; otherwise the reason is written to `error`. */
    ph_status (*lock)(void *ctx, ph_str name, uint64_t timeout_ms, uint64_t *token,
                      const ph_out *error);

    /* Releases the lock taken with `token`. */
    ph_status (*unlock)(void *ctx, uint64_t token);

    /* Records `value` in this component's metric `name` of `kind` (PH_METRIC_*),
     * registered on first use. Names are Prometheus names (a-z, 0-9, '_') without a
     * `_total` suffix: the host exports `plugins_NAME_total` for a counter and
     * `plugins_NAME` for a histogram, labelled with the component. A name the host
     * refuses is logged once as a warning and not recorded. */
    void (*metric)(void *ctx, int32_t kind, ph_str name, double value);

    /* Added after the first ph_host: check `PH_HAS(host, ph_host, span_end)` first. */

    /* Opens a span named `name` for the plugin's own work in the traced call this thread
     * serves: a child of the span this thread opened last and has not ended, else of the
     * host's span for the call. Records logged while it is open carry it. Returns its
     * handle, or 0 when nothing is recorded (the call is not traced or not sampled, the
     * host exports no traces, or 64 spans are open); `span_end(ctx, 0)` does nothing. */
    uint64_t (*span_begin)(void *ctx, ph_str name);

    /* Ends span `span` (and any this thread opened after it and has not ended): it is
     * exported with the host's spans for the call. A span still open when the call
     * returns ends then; a handle that is not open is ignored. */
    void (*span_end)(void *ctx, uint64_t span);
} ph_host;

/* Whether `s`, a pointer to a struct of type `type` that starts with its `size`, has
 * `field`: one built against an older header lacks the fields added after it. */
#define PH_HAS(s, type, field) \
    ((s)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* The call being served: valid until the function it is passed to returns. */
typedef struct ph_call {
    uint32_t size; /* sizeof(ph_call) as the host was built */
    uint32_t reserved;
    void *ctx; /* the host's; pass it back to each function below */

    /* Nanoseconds left before the call's deadline; UINT64_MAX when it has none. */
    uint64_t (*remaining_ns)(void *ctx);

    /* Non-zero once the caller has gone away (timeout, a client that disconnected, a
     * stream's consumer that stopped reading, shutdown): stop early and return
     * PH_CANCELLED. Cheap: poll it in long loops. */
    int32_t (*is_cancelled)(void *ctx);

    /* The caller's W3C trace context; empty when the call is not traced. */
    ph_str traceparent;
    ph_str tracestate;
} ph_call;

/* Where a stream sends its items: valid until `stream` returns. */
typedef struct ph_sink {
    uint32_t size; /* sizeof(ph_sink) as the host was built */
    uint32_t reserved;
    void *ctx; /* the host's; pass it back to `send` */

    /* Sends one item, waiting while the consumer is behind. Returns non-zero while the
     * consumer listens, 0 once it has gone (then stop and return PH_OK). */
    int32_t (*send)(void *ctx, const void *item, size_t len);
} ph_sink;

/* A plugin: a static the entry point returns. */
typedef struct ph_plugin {
    uint32_t size; /* sizeof(ph_plugin) as the plugin was built */
    uint32_t abi;  /* PLUGIN_HOST_C_ABI as the plugin was built */

    /* The description document (JSON, NUL-terminated; see the top of this file). */
    const char *description;

    /* Creates component `component` for `host` (keep the pointer: it is valid until
     * `drop`). On PH_OK, `*instance` is the new instance (any pointer, NULL included);
     * otherwise the reason is written to `error`. */
    ph_status (*create)(ph_str component, const ph_host *host, void **instance,
                        const ph_out *error);

    /* Runs `method` with `input` on `instance`; writes the answer (usually JSON) to `out`,
     * or, when it fails, the error message. */
    ph_status (*call)(void *instance, ph_str method, ph_bytes input, const ph_call *call,
                      const ph_out *out);

    /* Runs streaming `method` with `input`, sending its items to `sink`, and returns when
     * the stream is done; on a failure the message is written to `error`. NULL when no
     * method streams. */
    ph_status (*stream)(void *instance, ph_str method, ph_bytes input, const ph_call *call,
                        const ph_sink *sink, const ph_out *error);

    /* Frees `instance`: no call runs on it any more. */
    void (*drop)(void *instance);
} ph_plugin;

/* Helpers for plugin authors. */

/* A `ph_str` of a string literal. */
#ifdef __cplusplus
#define PH_STR(s) (ph_str{(s), sizeof(s) - 1})
#else
#define PH_STR(s) ((ph_str){(s), sizeof(s) - 1})
#endif

/* Whether `s` equals the NUL-terminated `text`. */
static inline int ph_str_eq(ph_str s, const char *text) {
    size_t i = 0;
    for (; i < s.len; i++) {
        if (text[i] == '\0' || text[i] != s.ptr[i]) {
            return 0;
        }
    }
    return text[i] == '\0';
}

/* Writes `len` bytes to `out`. */
static inline void ph_write(const ph_out *out, const void *bytes, size_t len) {
    out->write(out->ctx, bytes, len);
}

/* Writes the NUL-terminated `text` to `out`. */
static inline void ph_write_str(const ph_out *out, const char *text) {
    out->write(out->ctx, text, strlen(text));
}

/* A growing buffer of the plugin's own (malloc'd), for what the host answers it. Its
 * `data` is kept NUL-terminated; `failed` is set if memory ran out. Start it zeroed:
 *
 *     ph_buffer config = {0};
 *     ph_out into = ph_buffer_out(&config);
 *     host->config(host->ctx, &into);
 *     ... use config.data, config.len ...
 *     ph_buffer_free(&config);
 */
typedef struct ph_buffer {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} ph_buffer;

static inline void ph_buffer_write(void *ctx, const void *bytes, size_t len) {
    ph_buffer *buffer = (ph_buffer *)ctx;
    if (buffer->failed || len == 0) {
        return;
    }
    if (buffer->len + len + 1 > buffer->cap) {
        size_t cap = buffer->cap ? buffer->cap : 256;
        while (cap < buffer->len + len + 1) {
            cap *= 2;
        }
        char *grown = (char *)realloc(buffer->data, cap);
        if (!grown) {
            buffer->failed = 1;
            return;
        }
        buffer->data = grown;
        buffer->cap = cap;
    }
    memcpy(buffer->data + buffer->len, bytes, len);
    buffer->len += len;
    buffer->data[buffer->len] = '\0';
}

/* A `ph_out` that appends to `buffer`. */
static inline ph_out ph_buffer_out(ph_buffer *buffer) {
    ph_out out;
    out.ctx = buffer;
    out.write = ph_buffer_write;
    return out;
}

/* Frees what `buffer` holds, and empties it. */
static inline void ph_buffer_free(ph_buffer *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->len = buffer->cap = 0;
    buffer->failed = 0;
}

#ifdef __cplusplus
}
#endif

#endif /* PLUGIN_HOST_H */
