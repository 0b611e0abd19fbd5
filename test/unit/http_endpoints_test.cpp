// Unit tests of what the HTTP endpoints are built on: the per-address limit
// of anonymous sign-ins and the chat page's Content-Security-Policy.
#include "chat_page.hpp"
#include "sign_in_limiter.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace {

using rws::SignInLimiter;
using std::chrono::seconds;

TEST(SignInLimiter, AllowsABurstThenRefillsAtTheRate) {
    SignInLimiter limiter;
    auto t = SignInLimiter::Clock::time_point{} + seconds(1000);
    int retry = 0;
    for (int i = 0; i < 6; i++) EXPECT_TRUE(limiter.allow("10.0.0.1", 6, t, retry)) << i;
    EXPECT_FALSE(limiter.allow("10.0.0.1", 6, t, retry));
    EXPECT_EQ(retry, 10);  // 6 a minute: one every 10 s
    EXPECT_FALSE(limiter.allow("10.0.0.1", 6, t + seconds(9), retry));
    EXPECT_EQ(retry, 1);
    EXPECT_TRUE(limiter.allow("10.0.0.1", 6, t + seconds(10), retry));
    EXPECT_FALSE(limiter.allow("10.0.0.1", 6, t + seconds(10), retry));
    EXPECT_TRUE(limiter.allow("10.0.0.2", 6, t, retry));  // others have their own bucket
}

TEST(SignInLimiter, KeysIPv6ByPrefixAndMappedIPv4AsIPv4) {
    EXPECT_EQ(SignInLimiter::address_key("192.0.2.7"), "192.0.2.7");
    EXPECT_EQ(SignInLimiter::address_key("::ffff:192.0.2.7"), "192.0.2.7");
    EXPECT_EQ(SignInLimiter::address_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    EXPECT_EQ(SignInLimiter::address_key("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
    EXPECT_EQ(SignInLimiter::address_key("not an address"), "not an address");

    SignInLimiter limiter;
    auto t = SignInLimiter::Clock::time_point{} + seconds(1000);
    int retry = 0;
    EXPECT_TRUE(limiter.allow("2001:db8::1", 1, t, retry));
    EXPECT_FALSE(limiter.allow("2001:db8::2", 1, t, retry));  // same /64
    EXPECT_TRUE(limiter.allow("2001:db8:0:1::1", 1, t, retry));
}

TEST(SignInLimiter, PruningForgetsRefilledAddressesAndMemoryIsBounded) {
    SignInLimiter limiter;
    auto t = SignInLimiter::Clock::time_point{} + seconds(1000);
    int retry = 0;
    EXPECT_TRUE(limiter.allow("10.0.0.1", 60, t, retry));  // one token short of full
    for (int i = 0; i < 30; i++) EXPECT_TRUE(limiter.allow("10.0.0.2", 60, t, retry));
    limiter.prune(60, t + std::chrono::milliseconds(500));
    EXPECT_EQ(limiter.tracked(), 2u);
    limiter.prune(60, t + seconds(2));  // 60 a minute: 10.0.0.1 is full again after 1 s
    EXPECT_EQ(limiter.tracked(), 1u);
    limiter.prune(60, t + seconds(30));
    EXPECT_EQ(limiter.tracked(), 0u);

    for (size_t i = 0; i < SignInLimiter::kMaxTrackedAddresses; i++)
        ASSERT_TRUE(limiter.allow("k" + std::to_string(i), 60, t, retry));
    EXPECT_FALSE(limiter.allow("one-too-many", 60, t, retry));
    EXPECT_EQ(retry, 60);
    EXPECT_TRUE(limiter.allow("k1", 60, t, retry));  // known addresses still work
    limiter.prune(60, t + seconds(61));
    EXPECT_TRUE(limiter.allow("one-too-many", 60, t + seconds(61), retry));
}

TEST(ChatPage, PolicyHashesExactlyTheInlineScriptsAndStyle) {
    // sha256("") and sha256("x") in base64.
    std::string policy = rws::ChatPage::policy_for(
        "<style></style><script src=\"/vendor/m.mjs\"></script><script type=\"module\">x</script>");
    EXPECT_NE(policy.find("script-src 'self' 'sha256-LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=';"),
              std::string::npos)
        << policy;
    EXPECT_NE(policy.find("require-trusted-types-for 'script'; trusted-types rws-markdown"), std::string::npos)
        << policy;
    EXPECT_NE(policy.find("style-src 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"), std::string::npos)
        << policy;
    EXPECT_EQ(policy.find("unsafe"), std::string::npos);
    // No script at all: none may run.
    EXPECT_NE(rws::ChatPage::policy_for("<p>hi</p>").find("script-src 'none'"), std::string::npos);
}

TEST(ChatPage, RereadsTheFileWhenItChanges) {
    char path[] = "/tmp/rws-chat-page-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    rws::ChatPage page;
    page.set_path(path);
    { std::ofstream(path) << "<script>a</script>"; }
    ASSERT_TRUE(page.load());
    EXPECT_EQ(page.html(), "<script>a</script>");
    { std::ofstream(path) << "<script>bb</script>"; }  // another size: seen even within one mtime tick
    ASSERT_TRUE(page.load());
    EXPECT_EQ(page.html(), "<script>bb</script>");
    EXPECT_EQ(page.content_security_policy(), rws::ChatPage::policy_for("<script>bb</script>"));
    std::remove(path);
    EXPECT_FALSE(page.load());
}

}  // namespace
