// Unit tests of the request, handshake and close-frame checks.
#include "http_checks.hpp"
#include "ws_frames.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using rws::HeaderValues;
using rws::UpgradeCheck;

TEST(RequestFraming, OneDecimalContentLengthOrNoneIsClear) {
    EXPECT_EQ(rws::request_framing_error({}, {}), "");
    EXPECT_EQ(rws::request_framing_error({"0"}, {}), "");
    EXPECT_EQ(rws::request_framing_error({" 42 "}, {}), "");
    EXPECT_EQ(rws::request_framing_error({"999999999999999999"}, {}), "");
}

TEST(RequestFraming, AmbiguousOrUnreadableLengthsAreRefused) {
    for (const HeaderValues &bad : {HeaderValues{"5", "5"}, HeaderValues{"0", "30"}, HeaderValues{"5, 7"},
                                    HeaderValues{"-1"}, HeaderValues{"+5"}, HeaderValues{""}, HeaderValues{"0x10"},
                                    HeaderValues{"1e3"}, HeaderValues{"9999999999999999999"}, HeaderValues{"5 5"}})
        EXPECT_NE(rws::request_framing_error(bad, {}), "") << ::testing::PrintToString(bad);
    EXPECT_NE(rws::request_framing_error({}, {"chunked"}), "");
    EXPECT_NE(rws::request_framing_error({"5"}, {"chunked"}), "");
    EXPECT_NE(rws::request_framing_error({}, {""}), "");
}

const std::string kKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455's example

TEST(Upgrade, Version13AndOneKeyOf16Bytes) {
    EXPECT_EQ(rws::check_upgrade({"13"}, {kKey}), UpgradeCheck::Ok);
    EXPECT_EQ(rws::check_upgrade({" 13\t"}, {kKey}), UpgradeCheck::Ok);
    for (const HeaderValues &version : {HeaderValues{}, HeaderValues{"8"}, HeaderValues{""}, HeaderValues{"13", "13"},
                                        HeaderValues{"13, 8"}, HeaderValues{"013"}})
        EXPECT_EQ(rws::check_upgrade(version, {kKey}), UpgradeCheck::UnsupportedVersion)
            << ::testing::PrintToString(version);
    for (const HeaderValues &key :
         {HeaderValues{}, HeaderValues{""}, HeaderValues{"abc"}, HeaderValues{kKey, kKey}, HeaderValues{kKey + " "},
          HeaderValues{"dGhlIHNhbXBsZSBub25jZR=="},  // stray bits in the last character
          HeaderValues{"dGhlIHNhbXBsZSBub25jZQ="}, HeaderValues{"dGhlIHNhbXBsZSBub25jZQ=A"},
          HeaderValues{"dGhlIHNhbXBsZSBub25j!Q=="}, HeaderValues{std::string("dGhlIHNhbXBsZSBub25j\0Q==", 24)},
          HeaderValues{"dGhlIHNhbXBsZSBub25jZQ==dGhl"}})
        EXPECT_EQ(rws::check_upgrade({"13"}, key), UpgradeCheck::BadKey) << ::testing::PrintToString(key);
}

int close_error(const std::string &payload) {
    return rws::close_frame_error(reinterpret_cast<const unsigned char *>(payload.data()), payload.size());
}

std::string code(int value) {
    return std::string{static_cast<char>(value >> 8), static_cast<char>(value & 0xff)};
}

TEST(CloseFrame, ValidOnesAreEchoed) {
    EXPECT_EQ(close_error(""), 0);
    for (int value : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4001, 4999})
        EXPECT_EQ(close_error(code(value) + "bye \xe2\x82\xac"), 0) << value;
}

TEST(CloseFrame, InvalidOnesGet1002Or1007) {
    EXPECT_EQ(close_error("\x03"), 1002);
    for (int value : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535})
        EXPECT_EQ(close_error(code(value)), 1002) << value;
    EXPECT_EQ(close_error(code(1000) + "\xe2\x82"), 1007);  // cut inside a character
    EXPECT_EQ(close_error(code(1000) + "\xff"), 1007);
}

TEST(Utf8, StrictDecoding) {
    auto valid = [](const std::string &s) {
        return rws::is_valid_utf8(reinterpret_cast<const unsigned char *>(s.data()), s.size());
    };
    for (const char *good :
         {"", "plain", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"})
        EXPECT_TRUE(valid(good)) << good;
    for (const char *bad : {"\x80", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf0\x80\x80\xaf",
                            "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xc3", "\xe2\x82", "\xfe", "\xff"})
        EXPECT_FALSE(valid(bad)) << ::testing::PrintToString(std::string(bad));
}

}  // namespace

namespace {

// RFC 6455 §5.2 and §5.7: FIN + text, then the length in 7, 16 or 64 bits.
TEST(WsFrames, TextFrameHeadersForEachLengthForm) {
    auto header = [](size_t length) {
        std::string out;
        rws::append_text_frame_header(out, length);
        return out;
    };
    EXPECT_EQ(header(5), std::string("\x81\x05", 2));
    EXPECT_EQ(header(125), std::string("\x81\x7d", 2));
    EXPECT_EQ(header(126), std::string("\x81\x7e\x00\x7e", 4));
    EXPECT_EQ(header(65535), std::string("\x81\x7e\xff\xff", 4));
    EXPECT_EQ(header(65536), std::string("\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
    EXPECT_LE(header(SIZE_MAX).size(), rws::kMaxFrameHeader);
}

}  // namespace
