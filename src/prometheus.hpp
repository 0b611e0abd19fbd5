// Writes the Prometheus text exposition format, version 0.0.4: a HELP and a
// TYPE line per family, then its samples; label values and HELP text
// escaped; histograms as cumulative le buckets, _sum and _count. Pure C++.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rws {

constexpr const char *kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

using Labels = std::vector<std::pair<std::string, std::string>>;

class PrometheusWriter {
  public:
    // type: counter, gauge or histogram. Starts a family; its samples follow.
    void family(const std::string &name, const std::string &type, const std::string &help);
    void sample(const std::string &name, const Labels &labels, double value);
    void sample(const std::string &name, const Labels &labels, uint64_t value);
    void sample(const std::string &name, const Labels &labels, int64_t value);
    // bounds ascending; cumulative: one count per bound, then the +Inf count.
    void histogram(const std::string &name, const Labels &labels, const std::vector<double> &bounds,
                   const std::vector<uint64_t> &cumulative, double sum);
    const std::string &text() const { return out_; }

    static std::string escape_label_value(const std::string &value);  // \ " and newline
    static std::string escape_help(const std::string &help);          // \ and newline
    static std::string format_double(double value);                   // Go-style: +Inf, -Inf, NaN

  private:
    void sample_text(const std::string &name, const Labels &labels, const std::string &value);
    std::string out_;
};

}  // namespace rws
