// The pure parts of list+watch: framing a watch body cut at every byte, event decoding, the
// relist difference, and the backoff schedule.
#include "control/k8s/watch_stream.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kdp::control::k8s {
namespace {

using nlohmann::json;

const std::string kStream =
    R"j({"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"default","resourceVersion":"11"}}})j"
    "\n"
    R"j({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12"}}})j"
    "\r\n\n"
    R"j({"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"default","resourceVersion":"13"},"spec":{"nodeName":"n\u00e9"}}})j"
    "\n"
    R"j({"type":"DELETED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"default","resourceVersion":"14"}}})j"
    "\n"
    R"j({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}})j"
    "\n";

std::vector<std::string> frame(const std::vector<std::string>& chunks) {
    LineFramer f;
    std::vector<std::string> lines;
    for (const auto& c : chunks) {
        f.feed(c);
        while (auto l = f.next()) {
            lines.push_back(*l);
        }
    }
    EXPECT_EQ(f.pending(), 0u);
    return lines;
}

TEST(LineFramer, SameLinesWhateverTheChunkBoundaries) {
    const std::vector<std::string> whole = frame({kStream});
    ASSERT_EQ(whole.size(), 5u);
    // Every single split point, and every pair of split points a few bytes apart.
    for (size_t i = 0; i <= kStream.size(); ++i) {
        EXPECT_EQ(frame({kStream.substr(0, i), kStream.substr(i)}), whole) << "split at " << i;
    }
    for (size_t i = 0; i < kStream.size(); i += 7) {
        for (size_t j = i; j < std::min(kStream.size(), i + 40); ++j) {
            EXPECT_EQ(frame({kStream.substr(0, i), kStream.substr(i, j - i), kStream.substr(j)}),
                      whole)
                << "splits at " << i << "," << j;
        }
    }
    std::vector<std::string> bytes;
    for (char c : kStream) {
        bytes.emplace_back(1, c);
    }
    EXPECT_EQ(frame(bytes), whole);
}

TEST(LineFramer, HoldsAnUnterminatedLineUntilItsNewline) {
    LineFramer f;
    f.feed(R"({"type":"ADD)");
    EXPECT_FALSE(f.next());
    EXPECT_EQ(f.pending(), 12u);
    f.feed("ED\"}\n{");
    EXPECT_EQ(f.next(), std::optional<std::string>(R"({"type":"ADDED"})"));
    EXPECT_FALSE(f.next());
    EXPECT_EQ(f.pending(), 1u);
}

TEST(LineFramer, RejectsALineLongerThanTheLimit) {
    LineFramer f;
    const std::string mib(1 << 20, 'x');
    EXPECT_THROW(
        {
            for (size_t i = 0; i <= LineFramer::kMaxLine / mib.size(); ++i) {
                f.feed(mib);
            }
        },
        WatchProtocolError);
}

TEST(WatchEvent, DecodesEveryType) {
    const auto lines = frame({kStream});
    const WatchEvent added = parse_watch_event(lines[0]);
    EXPECT_EQ(added.kind, WatchEvent::Kind::kAdded);
    EXPECT_EQ(added.resource_version, "11");
    EXPECT_EQ(object_key(added.object), "default/a");
    const WatchEvent bookmark = parse_watch_event(lines[1]);
    EXPECT_EQ(bookmark.kind, WatchEvent::Kind::kBookmark);
    EXPECT_EQ(bookmark.resource_version, "12");
    const WatchEvent modified = parse_watch_event(lines[2]);
    EXPECT_EQ(modified.kind, WatchEvent::Kind::kModified);
    EXPECT_EQ(modified.object["spec"]["nodeName"], "n\u00e9");
    EXPECT_EQ(parse_watch_event(lines[3]).kind, WatchEvent::Kind::kDeleted);
    const WatchEvent error = parse_watch_event(lines[4]);
    EXPECT_EQ(error.kind, WatchEvent::Kind::kError);
    EXPECT_EQ(error.error_code, 410);
    EXPECT_THAT(error.error_message, ::testing::HasSubstr("Expired: too old resource version"));
}

TEST(WatchEvent, RejectsMalformedEvents) {
    EXPECT_THROW(parse_watch_event("{not json"), WatchProtocolError);
    EXPECT_THROW(parse_watch_event("[1]"), WatchProtocolError);
    EXPECT_THROW(parse_watch_event(R"({"type":"ADDED"})"), WatchProtocolError);
    EXPECT_THROW(parse_watch_event(R"({"type":"SHRUG","object":{}})"), WatchProtocolError);
    EXPECT_THROW(parse_watch_event(R"({"type":"ADDED","object":{"metadata":{}}})"),
                 WatchProtocolError);
}

json obj(const std::string& ns, const std::string& name, const std::string& rv) {
    json md = {{"name", name}, {"resourceVersion", rv}};
    if (!ns.empty()) {
        md["namespace"] = ns;
    }
    return {{"kind", "Pod"}, {"metadata", md}};
}

TEST(ObjectStore, RelistReportsDeletesThenAddsAndModifiesOnlyForRealChanges) {
    ObjectStore s;
    auto first = s.replace({obj("ns", "b", "2"), obj("ns", "a", "1"), obj("", "node", "3")});
    ASSERT_EQ(first.size(), 3u);
    EXPECT_EQ(object_key(first[0].object), "node");  // key order
    EXPECT_EQ(object_key(first[1].object), "ns/a");
    for (const auto& c : first) {
        EXPECT_EQ(c.type, EventType::kAdded);
    }
    // a unchanged, b modified, node gone, c new.
    auto second = s.replace({obj("ns", "a", "1"), obj("ns", "b", "5"), obj("ns", "c", "6")});
    ASSERT_EQ(second.size(), 3u);
    EXPECT_EQ(second[0].type, EventType::kDeleted);
    EXPECT_EQ(object_key(second[0].object), "node");
    EXPECT_EQ(second[0].object["metadata"]["resourceVersion"], "3");  // the last one seen
    EXPECT_EQ(second[1].type, EventType::kModified);
    EXPECT_EQ(object_key(second[1].object), "ns/b");
    EXPECT_EQ(second[2].type, EventType::kAdded);
    EXPECT_EQ(object_key(second[2].object), "ns/c");
    EXPECT_EQ(s.size(), 3u);
    EXPECT_TRUE(s.replace({obj("ns", "a", "1"), obj("ns", "b", "5"), obj("ns", "c", "6")}).empty());
}

TEST(ObjectStore, DeleteOfAnUnknownObjectIsNotReported) {
    ObjectStore s;
    EXPECT_FALSE(s.apply(EventType::kDeleted, obj("ns", "x", "1")));
    EXPECT_TRUE(s.apply(EventType::kAdded, obj("ns", "x", "1")));
    EXPECT_TRUE(s.apply(EventType::kModified, obj("ns", "x", "2")));
    EXPECT_EQ((*s.find("ns/x"))["metadata"]["resourceVersion"], "2");
    EXPECT_TRUE(s.apply(EventType::kDeleted, obj("ns", "x", "3")));
    EXPECT_EQ(s.size(), 0u);
}

TEST(Backoff, GrowsExponentiallyWithinJitterBoundsUpToTheCap) {
    using std::chrono::milliseconds;
    Backoff b({milliseconds(100), milliseconds(2000), 2.0, 0.5}, 42);
    const double bases[] = {100, 200, 400, 800, 1600, 2000, 2000, 2000};
    for (double base : bases) {
        const auto d = b.next().count();
        EXPECT_GE(d, base * 0.5) << "base " << base;
        EXPECT_LE(d, base) << "base " << base;
    }
    b.reset();
    EXPECT_LE(b.next().count(), 100);
}

TEST(Backoff, SameSeedSameScheduleAndDifferentSeedsDecorrelate) {
    Backoff a({}, 7);
    Backoff b({}, 7);
    Backoff c({}, 8);
    bool differs = false;
    for (int i = 0; i < 10; ++i) {
        const auto da = a.next();
        EXPECT_EQ(da, b.next());
        differs |= da != c.next();
    }
    EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace kdp::control::k8s
