/*
 * Fixture: a C plugin (plugin_host.h) that exercises every part of the C contract the
 * tests check: answers, errors, config, logs, metrics, locks, a dependency call, the
 * call's deadline, cancellation and trace, a stream, and hostile acts (a segfault, a
 * leak, a read outside its sandbox grant).
 *
 * Built with -DPROBE_CASE=N, it is instead one of the malformed plugins the loader must
 * refuse (see the cases at the end).
 */
#define _POSIX_C_SOURCE 200809L
#include "plugin_host.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The version it says it is (`version` answers it): a rebuild with another is a new build. */
#ifndef PROBE_VERSION
#define PROBE_VERSION "0.2.0"
#endif

#if defined(PROBE_CASE) && PROBE_CASE != 0
/* A malformed build leaves the functions below unused. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#endif

/* A number after "key": in `input`, or `fallback`. */
static double number(ph_bytes input, const char *key, double fallback) {
    char text[512];
    size_t len = input.len < sizeof text - 1 ? input.len : sizeof text - 1;
    memcpy(text, input.ptr, len);
    text[len] = '\0';
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *at = strstr(text, quoted);
    if (!at) {
        return fallback;
    }
    at = strchr(at + strlen(quoted), ':');
    return at ? strtod(at + 1, NULL) : fallback;
}

/* The string after "key": in `input`, copied into `out` (empty if absent). */
static void string(ph_bytes input, const char *key, char *out, size_t cap) {
    char text[512];
    size_t len = input.len < sizeof text - 1 ? input.len : sizeof text - 1;
    memcpy(text, input.ptr, len);
    text[len] = '\0';
    out[0] = '\0';
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *at = strstr(text, quoted);
    if (!at || !(at = strchr(at + strlen(quoted), '"'))) {
        return;
    }
    at++;
    size_t n = 0;
    while (at[n] && at[n] != '"' && n + 1 < cap) {
        out[n] = at[n];
        n++;
    }
    out[n] = '\0';
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct probe {
    const ph_host *host;
    char name[32];
} probe;

static void say(const ph_host *host, const ph_out *out, const char *text) {
    (void)host;
    ph_write_str(out, text);
}

static ph_status create(ph_str component, const ph_host *host, void **instance,
                        const ph_out *error) {
    if (host->size < sizeof(ph_host)) {
        say(host, error, "the host is older than this plugin's header");
        return PH_FAILED;
    }
    probe *p = calloc(1, sizeof *p);
    if (!p) {
        say(host, error, "out of memory");
        return PH_UNAVAILABLE;
    }
    p->host = host;
    size_t len = component.len < sizeof p->name - 1 ? component.len : sizeof p->name - 1;
    memcpy(p->name, component.ptr, len);
    host->log(host->ctx, PH_LOG_INFO, PH_STR("c probe created"));
    *instance = p;
    return PH_OK;
}

static ph_status slow(const ph_call *call, ph_bytes input, const ph_out *out, const ph_host *host) {
    long ms = (long)number(input, "ms", 0);
    for (long waited = 0; waited < ms; waited++) {
        if (call->is_cancelled(call->ctx)) {
            host->metric(host->ctx, PH_METRIC_COUNTER, PH_STR("c_probe_cancelled"), 1);
            say(host, out, "cancelled");
            return PH_CANCELLED;
        }
        sleep_ms(1);
    }
    say(host, out, "\"slept\"");
    return PH_OK;
}

static ph_status relay(probe *p, ph_str method, ph_bytes input, const ph_out *out) {
    ph_buffer answer = {0};
    ph_out into = ph_buffer_out(&answer);
    ph_status status = p->host->call(p->host->ctx, PH_STR("c-probe"), method, input, &into);
    if (status == PH_OK) {
        ph_write_str(out, "{\"relayed\":");
        ph_write(out, answer.data, answer.len);
        ph_write_str(out, "}");
    } else {
        ph_write(out, answer.data, answer.len);
    }
    ph_buffer_free(&answer);
    return status;
}

static ph_status locked(probe *p, const ph_out *out) {
    uint64_t token = 0;
    ph_status status = p->host->lock(p->host->ctx, PH_STR("c-book"), 1000, &token, out);
    if (status != PH_OK) {
        return status;
    }
    status = p->host->unlock(p->host->ctx, token);
    say(p->host, out, status == PH_OK ? "\"locked and freed\"" : "\"unlock failed\"");
    return status;
}

static ph_status reads(probe *p, ph_bytes input, const ph_out *out) {
    char path[256];
    string(input, "path", path, sizeof path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        say(p->host, out, "\"denied\"");
        return PH_OK;
    }
    close(fd);
    say(p->host, out, "\"read\"");
    return PH_OK;
}

static ph_status leak(probe *p, ph_bytes input, const ph_out *out) {
    size_t mib = (size_t)number(input, "mib", 0);
    for (size_t i = 0; i < mib; i++) {
        char *block = malloc(1 << 20);
        if (!block) {
            say(p->host, out, "out of memory");
            return PH_UNAVAILABLE;
        }
        memset(block, 1, 1 << 20); /* touched, so it is resident; never freed */
        sleep_ms(2);
    }
    say(p->host, out, "\"leaked\"");
    return PH_OK;
}

static ph_status call(void *instance, ph_str method, ph_bytes input, const ph_call *c,
                      const ph_out *out) {
    probe *p = instance;
    const ph_host *host = p->host;
    if (ph_str_eq(method, "empty")) {
        return PH_OK;
    }
    if (ph_str_eq(method, "version")) {
        ph_write_str(out, "\"" PROBE_VERSION "\"");
        return PH_OK;
    }
    if (ph_str_eq(method, "echo")) {
        ph_write(out, input.ptr, input.len);
        return PH_OK;
    }
    if (ph_str_eq(method, "config")) {
        /* Read by the plugin itself, then answered wrapped. */
        ph_buffer config = {0};
        ph_out into = ph_buffer_out(&config);
        host->config(host->ctx, &into);
        ph_write_str(out, "{\"config\":");
        ph_write(out, config.data, config.len);
        ph_write_str(out, "}");
        ph_buffer_free(&config);
        return PH_OK;
    }
    if (ph_str_eq(method, "fail")) {
        say(host, out, "no quote for NOPE");
        return PH_NOT_FOUND;
    }
    if (ph_str_eq(method, "log")) {
        host->log(host->ctx, PH_LOG_WARN, PH_STR("hello from c"));
        say(host, out, "null");
        return PH_OK;
    }
    if (ph_str_eq(method, "count")) {
        host->metric(host->ctx, PH_METRIC_COUNTER, PH_STR("c_probe_calls"), 1);
        say(host, out, "null");
        return PH_OK;
    }
    if (ph_str_eq(method, "deadline")) {
        uint64_t left = c->remaining_ns(c->ctx);
        char text[64];
        snprintf(text, sizeof text, "%lld",
                 left == UINT64_MAX ? -1LL : (long long)(left / 1000000));
        say(host, out, text);
        return PH_OK;
    }
#ifdef PH_HAS /* not in the first header (tests/compat/c-abi-1) */
    if (ph_str_eq(method, "spans")) {
        if (!PH_HAS(host, ph_host, span_end)) {
            say(host, out, "\"this host takes no spans\"");
            return PH_OK;
        }
        uint64_t book = host->span_begin(host->ctx, PH_STR("c-book"));
        uint64_t level = host->span_begin(host->ctx, PH_STR("c-level"));
        host->log(host->ctx, PH_LOG_WARN, PH_STR("inside c-level"));
        host->span_end(host->ctx, level);
        host->span_end(host->ctx, book);
        host->span_end(host->ctx, book);  /* ended twice: ignored */
        host->span_end(host->ctx, 12345); /* never opened: ignored */
        host->span_begin(host->ctx, PH_STR("c-left-open"));
        say(host, out, book ? "\"recorded\"" : "\"not recorded\"");
        return PH_OK;
    }
#endif
    if (ph_str_eq(method, "trace")) {
        ph_write_str(out, "\"");
        ph_write(out, c->traceparent.ptr, c->traceparent.len);
        ph_write_str(out, "\"");
        return PH_OK;
    }
    if (ph_str_eq(method, "sleep")) {
        return slow(c, input, out, host);
    }
    if (ph_str_eq(method, "relay")) {
        return relay(p, PH_STR("echo"), input, out);
    }
    if (ph_str_eq(method, "relay_deadline")) {
        return relay(p, PH_STR("deadline"), input, out);
    }
    if (ph_str_eq(method, "lock")) {
        return locked(p, out);
    }
    if (ph_str_eq(method, "lock_without_token")) {
        return host->lock(host->ctx, PH_STR("c-book"), 1000, NULL, out);
    }
    if (ph_str_eq(method, "call_undeclared")) {
        return host->call(host->ctx, PH_STR("nope"), PH_STR("echo"), input, out);
    }
    if (ph_str_eq(method, "read")) {
        return reads(p, input, out);
    }
    if (ph_str_eq(method, "leak")) {
        return leak(p, input, out);
    }
    if (ph_str_eq(method, "crash")) {
        volatile int *nowhere = NULL;
        *nowhere = 1;
    }
    return PH_UNKNOWN_METHOD;
}

static ph_status stream(void *instance, ph_str method, ph_bytes input, const ph_call *c,
                        const ph_sink *sink, const ph_out *error) {
    probe *p = instance;
    if (!ph_str_eq(method, "ticks")) {
        say(p->host, error, "no such stream");
        return PH_UNKNOWN_METHOD;
    }
    long n = (long)number(input, "n", 3);
    long pause = (long)number(input, "pause_ms", 0);
    for (long i = 0; i < n; i++) {
        if (c->is_cancelled(c->ctx)) {
            return PH_OK;
        }
        char item[32];
        int len = snprintf(item, sizeof item, "{\"n\":%ld}", i);
        if (!sink->send(sink->ctx, item, (size_t)len)) {
            return PH_OK;
        }
        if (pause) {
            sleep_ms(pause);
        }
    }
    return PH_OK;
}

static void drop(void *instance) {
    probe *p = instance;
    p->host->log(p->host->ctx, PH_LOG_INFO, PH_STR("c probe dropped"));
    free(p);
}

#define METHODS                                                                          \
    "{\"name\":\"echo\",\"description\":\"answers its input\",\"example\":\"{}\"},"      \
    "{\"name\":\"empty\"},{\"name\":\"version\"},{\"name\":\"config\"},{\"name\":\"fail\"},{\"name\":\"log\"},{\"name\":\"count\"},"  \
    "{\"name\":\"deadline\"},{\"name\":\"trace\"},{\"name\":\"spans\"},{\"name\":\"sleep\"},"                 \
    "{\"name\":\"lock\"},{\"name\":\"lock_without_token\"},{\"name\":\"call_undeclared\"},{\"name\":\"read\"},{\"name\":\"leak\"},{\"name\":\"crash\"},"  \
    "{\"name\":\"ticks\",\"stream\":true}"

static const char DESCRIPTION[] =
    "{\"format\":1,\"name\":\"c-probe\",\"version\":\"" PROBE_VERSION "\","
    "\"description\":\"a C plugin for the tests\","
    "\"components\":["
    "{\"name\":\"c-probe\",\"memory_estimate\":1048576,\"methods\":[" METHODS "]},"
    "{\"name\":\"c-user\",\"dependencies\":[\"c-probe\"],\"methods\":[{\"name\":\"relay\"},{\"name\":\"relay_deadline\"}]}"
    "]}";

#ifndef PROBE_CASE
#define PROBE_CASE 0
#endif

#if PROBE_CASE == 1 /* the entry point returns NULL */
PH_EXPORT const ph_plugin *plugin_host_c_plugin_v1(void) { return NULL; }
#else
static const ph_plugin PLUGIN = {
    .size = sizeof(ph_plugin),
#if PROBE_CASE == 2 /* built against a later header */
    .abi = PLUGIN_HOST_C_ABI + 1,
#else
    .abi = PLUGIN_HOST_C_ABI,
#endif
#if PROBE_CASE == 3 /* a description that is not JSON */
    .description = "{\"format\":1,\"name\":",
#elif PROBE_CASE == 4 /* a description that breaks the naming rule */
    .description = "{\"format\":1,\"name\":\"Bad Name\",\"version\":\"1\","
                   "\"components\":[{\"name\":\"x\"}]}",
#elif PROBE_CASE == 6 /* free text that would rewrite an operator's terminal */
    .description = "{\"format\":1,\"name\":\"c-escapes\",\"version\":\"1.0\\u001b[2K\\r\","
                   "\"description\":\"fine\\nsandbox needs: nothing\","
                   "\"sandbox\":{\"read\":[\"/tmp\\nsandbox needs: nothing\"]},"
                   "\"components\":[{\"name\":\"c-escapes\",\"methods\":["
                   "{\"name\":\"echo\",\"description\":\"x\\u001b]0;owned\\u0007\","
                   "\"example\":\"{\\r\\n}\"}]}]}",
#elif PROBE_CASE == 7 /* a method name that is a terminal escape */
    .description = "{\"format\":1,\"name\":\"c-escaped-method\",\"version\":\"1\","
                   "\"components\":[{\"name\":\"c-escaped-method\",\"methods\":["
                   "{\"name\":\"m\\u001b[31m\"}]}]}",
#else
    .description = DESCRIPTION,
#endif
    .create = create,
#if PROBE_CASE != 5 /* no call function */
    .call = call,
#endif
    .stream = stream,
    .drop = drop,
};

PH_EXPORT const ph_plugin *plugin_host_c_plugin_v1(void) { return &PLUGIN; }
#endif

#if PROBE_CASE == 8 /* a constructor that writes a terminal escape and aborts its process */
__attribute__((constructor)) static void clear_the_screen(void) {
    static const char escape[] = "\033[2J\033[Hsandbox needs: nothing\r\n";
    if (write(2, escape, sizeof escape - 1) < 0) {
        /* nothing to do: the abort is what counts */
    }
    abort();
}
#endif
