/*
 * spread: a plugin-host plugin written in C (see plugin-api/include/plugin_host.h).
 *
 * Component `spread`:
 *   quote  {"bid": 101.25, "ask": 101.31}  ->  {"mid": 101.28, "spread": 0.06, "bps": 5.92}
 *   ladder (a stream) {"mid": 100, "step": 0.05, "levels": 5}  ->  one
 *          {"level": i, "bid": ..., "ask": ...} per level, outward from the mid
 *
 * Build (one command, no make):
 *   cc -shared -fPIC -O2 -I ../../plugin-api/include spread.c -o libspread.so
 */
#include "plugin_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The number after "key": in a small JSON object; `found` says whether it was there.
 * (A real plugin would use a JSON library; this keeps the example to one file.) */
static double field(ph_bytes input, const char *key, int *found) {
    char text[1024];
    char quoted[64];
    size_t len = input.len < sizeof text - 1 ? input.len : sizeof text - 1;
    memcpy(text, input.ptr, len);
    text[len] = '\0';
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *at = strstr(text, quoted);
    if (at) {
        at = strchr(at + strlen(quoted), ':');
    }
    char *end = NULL;
    double value = at ? strtod(at + 1, &end) : 0;
    *found = at && end != at + 1;
    return value;
}

typedef struct spread {
    const ph_host *host;
} spread;

static ph_status create(ph_str component, const ph_host *host, void **instance,
                        const ph_out *error) {
    (void)component;
    spread *s = malloc(sizeof *s);
    if (!s) {
        ph_write_str(error, "out of memory");
        return PH_UNAVAILABLE;
    }
    s->host = host;
    host->log(host->ctx, PH_LOG_INFO, PH_STR("spread ready"));
    *instance = s;
    return PH_OK;
}

static ph_status quote(spread *s, ph_bytes input, const ph_out *out) {
    int has_bid, has_ask;
    double bid = field(input, "bid", &has_bid);
    double ask = field(input, "ask", &has_ask);
    if (!has_bid || !has_ask) {
        ph_write_str(out, "expected {\"bid\": number, \"ask\": number}");
        return PH_BAD_INPUT;
    }
    if (bid <= 0 || ask < bid) {
        ph_write_str(out, "a quote needs 0 < bid <= ask");
        return PH_BAD_INPUT;
    }
    double mid = (bid + ask) / 2;
    char text[160];
    snprintf(text, sizeof text, "{\"mid\":%.6g,\"spread\":%.6g,\"bps\":%.4g}", mid, ask - bid,
             (ask - bid) / mid * 10000);
    ph_write_str(out, text);
    s->host->metric(s->host->ctx, PH_METRIC_COUNTER, PH_STR("spread_quotes"), 1);
    return PH_OK;
}

static ph_status call(void *instance, ph_str method, ph_bytes input, const ph_call *c,
                      const ph_out *out) {
    (void)c;
    if (ph_str_eq(method, "quote")) {
        return quote(instance, input, out);
    }
    return PH_UNKNOWN_METHOD;
}

static ph_status stream(void *instance, ph_str method, ph_bytes input, const ph_call *c,
                        const ph_sink *sink, const ph_out *error) {
    (void)instance;
    if (!ph_str_eq(method, "ladder")) {
        return PH_UNKNOWN_METHOD;
    }
    int has_mid, has_step, has_levels;
    double mid = field(input, "mid", &has_mid);
    double step = field(input, "step", &has_step);
    double levels = field(input, "levels", &has_levels);
    if (!has_mid || !has_step || mid <= 0 || step <= 0) {
        ph_write_str(error, "expected {\"mid\": number, \"step\": number, \"levels\": n}");
        return PH_BAD_INPUT;
    }
    long count = has_levels && levels > 0 ? (long)levels : 5;
    for (long level = 1; level <= count; level++) {
        if (c->is_cancelled(c->ctx)) {
            return PH_CANCELLED;
        }
        char item[128];
        int len = snprintf(item, sizeof item, "{\"level\":%ld,\"bid\":%.6g,\"ask\":%.6g}",
                           level, mid - step * level, mid + step * level);
        if (!sink->send(sink->ctx, item, (size_t)len)) {
            return PH_OK; /* the consumer has gone */
        }
    }
    return PH_OK;
}

static void drop(void *instance) { free(instance); }

static const ph_plugin PLUGIN = {
    .size = sizeof(ph_plugin),
    .abi = PLUGIN_HOST_C_ABI,
    .description =
        "{\"format\":1,\"name\":\"spread\",\"version\":\"0.1.0\","
        "\"description\":\"mid, spread and basis points of a quote (a C plugin)\","
        "\"components\":[{\"name\":\"spread\",\"priority\":20,\"methods\":["
        "{\"name\":\"quote\",\"description\":\"mid, spread and bps of a bid and ask\","
        "\"example\":\"{\\\"bid\\\":101.25,\\\"ask\\\":101.31}\"},"
        "{\"name\":\"ladder\",\"stream\":true,\"description\":\"price levels around a mid\","
        "\"example\":\"{\\\"mid\\\":100,\\\"step\\\":0.05,\\\"levels\\\":5}\"}]}]}",
    .create = create,
    .call = call,
    .stream = stream,
    .drop = drop,
};

PH_EXPORT const ph_plugin *plugin_host_c_plugin_v1(void) { return &PLUGIN; }
