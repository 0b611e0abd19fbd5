#include "ws_frames.hpp"

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

void append_text_frame_header(std::string &out, size_t length) {
    out.push_back(static_cast<char>(0x81));  // FIN, text
    if (length < 126) {
        out.push_back(static_cast<char>(length));
    } else if (length < 65536) {
        out.push_back(static_cast<char>(126));
        for (int shift = 8; shift >= 0; shift -= 8) out.push_back(static_cast<char>((length >> shift) & 0xff));
    } else {
        out.push_back(static_cast<char>(127));
        uint64_t wide = length;
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((wide >> shift) & 0xff));
    }
}

}  // namespace rws
