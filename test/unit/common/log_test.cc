// The control side's logs (common/log.h): one line per event, a timestamp, a level, the
// program, text or JSON, levels filtered, flags and environment parsed.
#include "common/log.h"

#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kdp::log {
namespace {

class Log : public ::testing::Test {
protected:
    void TearDown() override { configure("kdp", Level::kInfo, Format::kText); }
};

TEST_F(Log, TextIsOneLineWithTimestampLevelAndProgram) {
    configure("kdp-control", Level::kInfo, Format::kText);
    const std::string line = format_line(Level::kWarning, "two\nlines");
    EXPECT_TRUE(std::regex_match(
        line,
        std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warning kdp-control: two\\nlines\n)")))
        << line;
}

TEST_F(Log, JsonIsOneObjectPerLineThatParses) {
    configure("kdp-control", Level::kInfo, Format::kJson);
    const std::string line = format_line(Level::kError, "a \"quoted\" \\ path\nand\ttab\x01");
    ASSERT_EQ(line.find('\n'), line.size() - 1) << line;
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["level"], "error");
    EXPECT_EQ(j["component"], "kdp-control");
    EXPECT_EQ(j["msg"], "a \"quoted\" \\ path\nand\ttab\x01");
    EXPECT_TRUE(std::regex_match(j["ts"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
}

TEST_F(Log, LevelsBelowTheConfiguredOneAreSkipped) {
    configure("x", Level::kWarning, Format::kText);
    EXPECT_TRUE(enabled(Level::kError));
    EXPECT_TRUE(enabled(Level::kWarning));
    EXPECT_FALSE(enabled(Level::kInfo));
    EXPECT_FALSE(enabled(Level::kDebug));
    configure("x", Level::kDebug, Format::kText);
    EXPECT_TRUE(enabled(Level::kDebug));
}

TEST_F(Log, FlagsAreTakenOutOfTheArgumentsAndBadValuesRefused) {
    std::vector<std::string> args{"--node", "n1", "--log-level", "debug", "--log-format=json",
                                  "--watch"};
    EXPECT_FALSE(take_flags(args, "kdp-control"));
    EXPECT_EQ(args, (std::vector<std::string>{"--node", "n1", "--watch"}));
    EXPECT_TRUE(enabled(Level::kDebug));
    EXPECT_EQ(format_line(Level::kInfo, "m").front(), '{');
    std::vector<std::string> bad{"--log-level=verbose"};
    const auto e = take_flags(bad, "kdp-control");
    ASSERT_TRUE(e);
    EXPECT_NE(e->find("\"verbose\""), std::string::npos) << *e;
    std::vector<std::string> missing{"--log-format"};
    EXPECT_TRUE(take_flags(missing, "kdp-control"));
    EXPECT_EQ(parse_level("warn"), Level::kWarning);
    EXPECT_FALSE(parse_format("xml"));
}

}  // namespace
}  // namespace kdp::log
