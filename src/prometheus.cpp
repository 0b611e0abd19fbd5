#include "prometheus.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

std::string PrometheusWriter::escape_label_value(const std::string &value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string PrometheusWriter::escape_help(const std::string &help) {
    std::string out;
    out.reserve(help.size());
    for (char c : help) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string PrometheusWriter::format_double(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    char buffer[64];
    // Shortest form that reads back to the same double.
    for (int precision = 6; precision <= 17; precision++) {
        snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
        if (std::strtod(buffer, nullptr) == value) break;
    }
    return buffer;
}

void PrometheusWriter::family(const std::string &name, const std::string &type, const std::string &help) {
    out_ += "# HELP " + name + " " + escape_help(help) + "\n";
    out_ += "# TYPE " + name + " " + type + "\n";
}

void PrometheusWriter::sample_text(const std::string &name, const Labels &labels, const std::string &value) {
    out_ += name;
    if (!labels.empty()) {
        out_ += '{';
        for (size_t i = 0; i < labels.size(); i++) {
            if (i > 0) out_ += ',';
            out_ += labels[i].first + "=\"" + escape_label_value(labels[i].second) + "\"";
        }
        out_ += '}';
    }
    out_ += ' ' + value + '\n';
}

void PrometheusWriter::sample(const std::string &name, const Labels &labels, double value) {
    sample_text(name, labels, format_double(value));
}

void PrometheusWriter::sample(const std::string &name, const Labels &labels, uint64_t value) {
    sample_text(name, labels, std::to_string(value));
}

void PrometheusWriter::sample(const std::string &name, const Labels &labels, int64_t value) {
    sample_text(name, labels, std::to_string(value));
}

void PrometheusWriter::histogram(const std::string &name, const Labels &labels, const std::vector<double> &bounds,
                                 const std::vector<uint64_t> &cumulative, double sum) {
    for (size_t i = 0; i <= bounds.size() && i < cumulative.size(); i++) {
        Labels with_le = labels;
        with_le.emplace_back("le", i < bounds.size() ? format_double(bounds[i]) : "+Inf");
        sample(name + "_bucket", with_le, cumulative[i]);
    }
    sample(name + "_sum", labels, sum);
    sample(name + "_count", labels, cumulative.empty() ? uint64_t{0} : cumulative.back());
}

}  // namespace rws
