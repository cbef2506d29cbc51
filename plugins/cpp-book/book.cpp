// book: a plugin-host plugin written in C++ (see plugin-api/include/plugin_host.h).
//
// Component `book-imbalance`:
//   imbalance {"bids": [[101.2, 300], [101.1, 500]], "asks": [[101.3, 200]], "depth": 5}
//     -> {"imbalance": 0.6, "bid_size": 800, "ask_size": 200, "levels": 2}
//   where imbalance = (bid size - ask size) / (bid size + ask size) over the best `depth`
//   levels of each side (`depth` from the input, else the component's config, else 5).
//
// Build (one command, no make):
//   c++ -std=c++17 -shared -fPIC -O2 -I ../../plugin-api/include book.cpp -o libbook.so
//
// No exception may cross the C boundary: every function the host calls catches them all
// and turns them into an error status with a message.
#include "plugin_host.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

// A small reader of the JSON this component takes (a real plugin would use a JSON
// library; this keeps the example to one file). Throws std::invalid_argument.
class Reader {
  public:
    explicit Reader(std::string text) : text_(std::move(text)) {}

    // Positions after `"key":`; false when the key is absent.
    bool find(const char *key) {
        std::string quoted = std::string("\"") + key + "\"";
        auto at = text_.find(quoted);
        if (at == std::string::npos) {
            return false;
        }
        at = text_.find(':', at + quoted.size());
        if (at == std::string::npos) {
            throw std::invalid_argument(std::string("no value for ") + key);
        }
        pos_ = at + 1;
        return true;
    }

    double number() {
        skip();
        const char *start = text_.c_str() + pos_;
        char *end = nullptr;
        double value = std::strtod(start, &end);
        if (end == start) {
            throw std::invalid_argument("expected a number at byte " + std::to_string(pos_));
        }
        pos_ += static_cast<size_t>(end - start);
        return value;
    }

    // [[price, size], ...]
    std::vector<std::pair<double, double>> levels() {
        std::vector<std::pair<double, double>> out;
        expect('[');
        if (peek() == ']') {
            ++pos_;
            return out;
        }
        for (;;) {
            expect('[');
            double price = number();
            expect(',');
            double size = number();
            expect(']');
            if (size < 0) {
                throw std::invalid_argument("a level's size cannot be negative");
            }
            out.emplace_back(price, size);
            skip();
            if (peek() == ']') {
                ++pos_;
                return out;
            }
            expect(',');
        }
    }

  private:
    void skip() {
        while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) {
            ++pos_;
        }
    }
    char peek() {
        skip();
        return pos_ < text_.size() ? text_[pos_] : '\0';
    }
    void expect(char c) {
        if (peek() != c) {
            throw std::invalid_argument(std::string("expected '") + c + "' at byte " +
                                        std::to_string(pos_));
        }
        ++pos_;
    }

    std::string text_;
    size_t pos_ = 0;
};

class BookImbalance {
  public:
    BookImbalance(const ph_host *host, int depth) : host_(host), depth_(depth) {}

    std::string imbalance(const std::string &input) const {
        Reader reader(input);
        int depth = depth_;
        if (reader.find("depth")) {
            depth = static_cast<int>(reader.number());
            if (depth < 1) {
                throw std::invalid_argument("depth must be at least 1");
            }
        }
        if (!reader.find("bids")) {
            throw std::invalid_argument("expected \"bids\": [[price, size], ...]");
        }
        auto bids = reader.levels();
        if (!reader.find("asks")) {
            throw std::invalid_argument("expected \"asks\": [[price, size], ...]");
        }
        auto asks = reader.levels();
        // Best levels first: highest bids, lowest asks.
        std::sort(bids.begin(), bids.end(), [](auto &a, auto &b) { return a.first > b.first; });
        std::sort(asks.begin(), asks.end(), [](auto &a, auto &b) { return a.first < b.first; });
        double bid_size = sum(bids, depth);
        double ask_size = sum(asks, depth);
        double total = bid_size + ask_size;
        double imbalance = total > 0 ? (bid_size - ask_size) / total : 0;
        size_t levels = std::min<size_t>(std::max(bids.size(), asks.size()), depth);
        char text[160];
        std::snprintf(text, sizeof text,
                      "{\"imbalance\":%.6g,\"bid_size\":%.6g,\"ask_size\":%.6g,\"levels\":%zu}",
                      imbalance, bid_size, ask_size, levels);
        host_->metric(host_->ctx, PH_METRIC_HISTOGRAM, PH_STR("book_imbalance"), imbalance);
        return text;
    }

  private:
    static double sum(const std::vector<std::pair<double, double>> &side, int depth) {
        double total = 0;
        for (size_t i = 0; i < side.size() && i < static_cast<size_t>(depth); ++i) {
            total += side[i].second;
        }
        return total;
    }

    const ph_host *host_;
    int depth_;
};

void write(const ph_out *out, const std::string &text) { ph_write(out, text.data(), text.size()); }

// Runs `body`, turning every exception into a status and a message in `out`.
template <typename F> ph_status guarded(const ph_out *out, F body) noexcept {
    try {
        return body();
    } catch (const std::invalid_argument &err) {
        write(out, err.what());
        return PH_BAD_INPUT;
    } catch (const std::bad_alloc &) {
        write(out, "out of memory");
        return PH_UNAVAILABLE;
    } catch (const std::exception &err) {
        write(out, err.what());
        return PH_FAILED;
    } catch (...) {
        write(out, "an unknown C++ exception");
        return PH_FAILED;
    }
}

// The `depth` in the component's config section ([components.book-imbalance.config]),
// else 5.
int configured_depth(const ph_host *host) {
    ph_buffer config = {};
    ph_out into = ph_buffer_out(&config);
    host->config(host->ctx, &into);
    std::string text = config.data ? std::string(config.data, config.len) : "{}";
    ph_buffer_free(&config);
    Reader reader(text);
    if (!reader.find("depth")) {
        return 5;
    }
    int depth = static_cast<int>(reader.number());
    if (depth < 1) {
        throw std::invalid_argument("config: depth must be at least 1");
    }
    return depth;
}

ph_status create(ph_str component, const ph_host *host, void **instance,
                 const ph_out *error) {
    (void)component;
    return guarded(error, [&] {
        *instance = new BookImbalance(host, configured_depth(host));
        host->log(host->ctx, PH_LOG_INFO, PH_STR("book-imbalance ready"));
        return PH_OK;
    });
}

ph_status call(void *instance, ph_str method, ph_bytes input, const ph_call *c,
               const ph_out *out) {
    (void)c;
    return guarded(out, [&] {
        if (!ph_str_eq(method, "imbalance")) {
            return PH_UNKNOWN_METHOD;
        }
        auto *book = static_cast<const BookImbalance *>(instance);
        std::string text(reinterpret_cast<const char *>(input.ptr), input.len);
        write(out, book->imbalance(text));
        return PH_OK;
    });
}

void drop(void *instance) { delete static_cast<BookImbalance *>(instance); }

const char DESCRIPTION[] =
    R"json({"format":1,"name":"book","version":"0.1.0",)json"
    R"json("description":"order-book imbalance over the best levels (a C++ plugin)",)json"
    R"json("components":[{"name":"book-imbalance","priority":30,"methods":[)json"
    R"json({"name":"imbalance","description":"(bid size - ask size) / total, best levels",)json"
    R"json("example":"{\"bids\":[[101.2,300],[101.1,500]],\"asks\":[[101.3,200]]}"}]}]})json";

ph_plugin make_plugin() {
    ph_plugin plugin = {};
    plugin.size = sizeof(ph_plugin);
    plugin.abi = PLUGIN_HOST_C_ABI;
    plugin.description = DESCRIPTION;
    plugin.create = create;
    plugin.call = call;
    plugin.stream = nullptr; // no method streams
    plugin.drop = drop;
    return plugin;
}

const ph_plugin PLUGIN = make_plugin();

} // namespace

extern "C" PH_EXPORT const ph_plugin *plugin_host_c_plugin_v1(void) { return &PLUGIN; }
