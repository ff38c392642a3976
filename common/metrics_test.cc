#include "common/metrics.h"
#include "common/testing/status_matchers.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace otd::metrics {
namespace {

// Lines of `text` that start with `prefix`.
std::vector<std::string> LinesStartingWith(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) {
      out.push_back(line);
    }
  }
  return out;
}

// The value of the sample line whose series (name and labels) is exactly `series`.
std::optional<std::string> Sample(const std::string& text, const std::string& series) {
  for (const auto& line : LinesStartingWith(text, series + " ")) {
    return line.substr(series.size() + 1);
  }
  return std::nullopt;
}

TEST(MetricsTest, CounterRendersHelpTypeAndSamplesInLabelOrder) {
  Registry r;
  auto* f = *r.AddCounter("otd_requests_total", "Requests.", {"route", "status"});
  f->With({"/b", "200"}).Inc(2);
  f->With({"/a", "404"}).Inc();
  f->With({"/a", "200"}).Inc(3);
  EXPECT_EQ(r.Render(),
            "# HELP otd_requests_total Requests.\n"
            "# TYPE otd_requests_total counter\n"
            "otd_requests_total{route=\"/a\",status=\"200\"} 3\n"
            "otd_requests_total{route=\"/a\",status=\"404\"} 1\n"
            "otd_requests_total{route=\"/b\",status=\"200\"} 2\n");
}

TEST(MetricsTest, ChildrenSortByValueTuplesNotByLength) {
  Registry r;
  auto* f = *r.AddCounter("c_total", "C.", {"a", "b"});
  f->With({"b", ""}).Inc(1);
  f->With({"aa", "z"}).Inc(2);
  f->With({"a", "zz"}).Inc(3);
  f->With({"a", "b"}).Inc(4);
  EXPECT_EQ(r.Render(),
            "# HELP c_total C.\n# TYPE c_total counter\n"
            "c_total{a=\"a\",b=\"b\"} 4\n"
            "c_total{a=\"a\",b=\"zz\"} 3\n"
            "c_total{a=\"aa\",b=\"z\"} 2\n"
            "c_total{a=\"b\",b=\"\"} 1\n");
}

TEST(MetricsTest, FamiliesWithoutLabelsRenderZeroFromTheStart) {
  Registry r;
  ASSERT_OK(r.AddCounter("a_total", "A."));
  ASSERT_OK(r.AddGauge("b", "B."));
  EXPECT_EQ(r.Render(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
            "# HELP b B.\n# TYPE b gauge\nb 0\n");
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry r;
  auto* f = *r.AddGauge("g", "Help with \\ and\nnewline and \"quotes\".", {"v"});
  f->With({"a\"b\\c\nd"}).Set(1);
  f->With({"bad\xffutf8 \xC3\xA9"}).Set(2);  // invalid byte replaced, é kept
  const std::string text = r.Render();
  EXPECT_NE(text.find("# HELP g Help with \\\\ and\\nnewline and \"quotes\".\n"), std::string::npos)
      << text;
  EXPECT_EQ(Sample(text, "g{v=\"a\\\"b\\\\c\\nd\"}"), "1") << text;
  EXPECT_EQ(Sample(text, "g{v=\"bad\xEF\xBF\xBDutf8 \xC3\xA9\"}"), "2") << text;
  EXPECT_EQ(EscapeLabelValue("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong NUL
  EXPECT_EQ(EscapeLabelValue("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(EscapeLabelValue("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");                  // U+1F600
  EXPECT_EQ(EscapeHelp("a\"b"), "a\"b");  // quotes are only escaped in label values
}

TEST(MetricsTest, LabelValuesMayHoldAnyByteWithoutMixingUpChildren) {
  Registry r;
  auto* f = *r.AddCounter("c_total", "C.", {"a", "b"});
  f->With({std::string_view("x\0y", 3), "z"}).Inc();
  f->With({"x", std::string_view("\0yz", 3)}).Inc(5);
  f->With({std::string_view("x\0", 2), "yz"}).Inc(7);
  EXPECT_NE(&f->With({std::string_view("x\0y", 3), "z"}),
            &f->With({"x", std::string_view("\0yz", 3)}));
  const std::string text = r.Render();
  EXPECT_EQ(LinesStartingWith(text, "c_total{").size(), 3u) << text;
  EXPECT_EQ(Sample(text, std::string("c_total{a=\"x\",b=\"\0yz\"}", 22)), "5") << text;
  EXPECT_EQ(Sample(text, std::string("c_total{a=\"x\0y\",b=\"z\"}", 22)), "1") << text;
  EXPECT_EQ(Sample(text, std::string("c_total{a=\"x\0\",b=\"yz\"}", 22)), "7") << text;
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  auto* f = *r.AddHistogram("lat_seconds", "Latency.", {"op"}, {0.5, 1, 2.5});
  Histogram& h = f->With({"x"});
  for (double v : {0.1, 0.5, 0.75, 1.0, 2.0, 3.0, 100.0}) {
    h.Observe(v);
  }
  h.Observe(std::nan(""));  // ignored
  EXPECT_EQ(r.Render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{op=\"x\",le=\"0.5\"} 2\n"
            "lat_seconds_bucket{op=\"x\",le=\"1\"} 4\n"
            "lat_seconds_bucket{op=\"x\",le=\"2.5\"} 5\n"
            "lat_seconds_bucket{op=\"x\",le=\"+Inf\"} 7\n"
            "lat_seconds_sum{op=\"x\"} 107.35\n"
            "lat_seconds_count{op=\"x\"} 7\n");
  Histogram::Snapshot s = h.Take();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 4, 5, 7}));
  EXPECT_EQ(s.count, 7u);
  EXPECT_DOUBLE_EQ(s.sum, 107.35);
}

TEST(MetricsTest, HistogramWithoutLabelsPutsOnlyLeInBraces) {
  Registry r;
  auto* f = *r.AddHistogram("h", "H.", {}, {1});
  f->Get().Observe(-3);  // below the first bound: first bucket
  EXPECT_EQ(r.Render(),
            "# HELP h H.\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum -3\nh_count 1\n");
}

TEST(MetricsTest, ValuesAreFormattedAsPrometheusParsesThem) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(-0.0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(-7), "-7");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(2.5), "2.5");
  EXPECT_EQ(FormatValue(0.00005), "5e-05");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
  EXPECT_EQ(FormatValue(1234567890123.0), "1234567890123");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(std::stod(FormatValue(0.1 + 0.2)), 0.1 + 0.2);  // round-trips
}

TEST(MetricsTest, BucketHelpersAreIncreasing) {
  for (const auto& b : {RequestSecondsBuckets(), HsmSecondsBuckets(), PowersOfTwo(4096)}) {
    ASSERT_FALSE(b.empty());
    for (size_t i = 1; i < b.size(); ++i) {
      EXPECT_LT(b[i - 1], b[i]);
    }
  }
  EXPECT_EQ(PowersOfTwo(4096).back(), 4096);
  EXPECT_EQ(PowersOfTwo(4096).size(), 13u);
}

TEST(MetricsTest, BadNamesLabelsAndBoundsAreRefused) {
  Registry r;
  EXPECT_EQ(r.AddCounter("", "x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.AddCounter("1abc", "x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.AddCounter("a-b", "x").status().code(), Code::kInvalidArgument);
  EXPECT_OK(r.AddCounter("ns:sub_total", "x"));
  EXPECT_EQ(r.AddCounter("c", "x", {"__reserved"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.AddCounter("c", "x", {"a:b"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.AddCounter("c", "x", {"a", "a"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram("h", "x", {"le"}, {1}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram("h", "x", {}, {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram("h", "x", {}, {1, 1}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram("h", "x", {}, {2, 1}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(
      r.AddHistogram("h", "x", {}, {1, std::numeric_limits<double>::infinity()}).status().code(),
      Code::kInvalidArgument);
}

TEST(MetricsTest, RegisteringTheSameFamilyAgainReturnsIt) {
  Registry r;
  auto a = r.AddCounter("x_total", "X.", {"k"});
  auto b = r.AddCounter("x_total", "X.", {"k"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  auto h1 = r.AddHistogram("h", "H.", {}, {1, 2});
  auto h2 = r.AddHistogram("h", "H.", {}, {1, 2});
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(*h1, *h2);
  // Same name, anything else different: refused.
  EXPECT_EQ(r.AddGauge("x_total", "X.", {"k"}).status().code(), Code::kAlreadyExists);
  EXPECT_EQ(r.AddCounter("x_total", "X.", {"j"}).status().code(), Code::kAlreadyExists);
  EXPECT_EQ(r.AddHistogram("h", "H.", {}, {1, 3}).status().code(), Code::kAlreadyExists);
  EXPECT_EQ(LinesStartingWith(r.Render(), "# TYPE x_total").size(), 1u);
}

TEST(MetricsTest, WrongNumberOfLabelValuesIsABug) {
  Registry r;
  auto* f = *r.AddCounter("w_total", "W.", {"a"});
  EXPECT_DEBUG_DEATH(f->With({"x", "y"}).Inc(), "wrong number of label values");
  // Release builds: counted nowhere visible.
  EXPECT_TRUE(LinesStartingWith(r.Render(), "w_total").empty());
}

TEST(MetricsTest, CollectorsRunAtScrapeTimeUntilTheirHandleDies) {
  Registry r;
  auto* g = *r.AddGauge("records", "Records.", {"table"});
  int runs = 0;
  {
    CollectorHandle h = r.AddCollector([&] {
      ++runs;
      g->With({"t"}).Set(runs * 10);
    });
    EXPECT_EQ(Sample(r.Render(), "records{table=\"t\"}"), "10");
    EXPECT_EQ(Sample(r.Render(), "records{table=\"t\"}"), "20");
    CollectorHandle moved = std::move(h);
    EXPECT_EQ(Sample(r.Render(), "records{table=\"t\"}"), "30");
  }
  EXPECT_EQ(Sample(r.Render(), "records{table=\"t\"}"), "30");  // no longer collected
  EXPECT_EQ(runs, 3);
}

TEST(MetricsTest, ProcessMetricsAreReadFromProc) {
  Registry r;
  auto h = AddProcessMetrics(r);
  ASSERT_OK(h);
  const std::string text = r.Render();
  for (const char* name : {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                           "process_open_fds", "process_max_fds", "process_start_time_seconds"}) {
    auto v = Sample(text, name);
    ASSERT_TRUE(v.has_value()) << name << "\n" << text;
    EXPECT_GT(std::stod(*v), 0) << name;
  }
  EXPECT_GT(std::stod(*Sample(text, "process_start_time_seconds")), 1.7e9);
  EXPECT_GE(std::stod(*Sample(text, "process_resident_memory_bytes")), 1024 * 1024);
  // CPU time: a counter, present (>= 0) and not going back; the start time from /proc is in the
  // past, not more than a day ago (a test process).
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos) << text;
  const double cpu = std::stod(*Sample(text, "process_cpu_seconds_total"));
  EXPECT_GE(cpu, 0);
  volatile double spin = 0;
  for (int i = 0; i < 5'000'000; ++i) {
    spin = spin + 1;
  }
  EXPECT_GE(std::stod(*Sample(r.Render(), "process_cpu_seconds_total")), cpu);
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const double start = std::stod(*Sample(text, "process_start_time_seconds"));
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 86'400);
}

TEST(MetricsTest, ScrapedCounterRendersAsCounter) {
  Registry r;
  auto* f = *r.AddScrapedCounter("read_total", "Read.");
  f->Get().Set(2.5);
  EXPECT_EQ(r.Render(), "# HELP read_total Read.\n# TYPE read_total counter\nread_total 2.5\n");
  // The name stays taken for other kinds.
  EXPECT_FALSE(r.AddCounter("read_total", "Read.").ok());
  EXPECT_FALSE(r.AddGauge("read_total", "Read.").ok());
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCountedAndScrapesStayConsistent) {
  Registry r;
  auto* counters = *r.AddCounter("ops_total", "Ops.", {"worker", "kind"});
  auto* hist = *r.AddHistogram("op_seconds", "Op.", {"kind"}, {0.25, 0.5, 0.75});
  auto* gauge = *r.AddGauge("open", "Open.");
  constexpr int kThreads = 8;
  constexpr int kIterations = 20'000;
  std::atomic<bool> done{false};
  std::atomic<int> scrapes{0};
  std::string bad_scrape;
  std::thread scraper([&] {
    // Every scrape: buckets never decrease and +Inf equals _count.
    while (!done.load()) {
      const std::string text = r.Render();
      uint64_t last = 0;
      uint64_t inf = 0;
      for (const auto& line : LinesStartingWith(text, "op_seconds_bucket{kind=\"even\"")) {
        uint64_t v = std::stoull(line.substr(line.rfind(' ') + 1));
        if (v < last) {
          bad_scrape = text;
        }
        last = v;
        inf = v;
      }
      auto count = Sample(text, "op_seconds_count{kind=\"even\"}");
      if (count && std::stoull(*count) != inf) {
        bad_scrape = text;
      }
      scrapes.fetch_add(1);
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string worker = std::to_string(t % 4);  // two threads share each child
      for (int i = 0; i < kIterations; ++i) {
        const char* kind = i % 2 == 0 ? "even" : "odd";
        counters->With({worker, kind}).Inc();
        hist->With({kind}).Observe((i % 4) * 0.25);  // 0, 0.25, 0.5, 0.75
        gauge->Get().Add(1);
        gauge->Get().Add(-1);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  done = true;
  scraper.join();
  EXPECT_TRUE(bad_scrape.empty()) << bad_scrape;
  EXPECT_GT(scrapes.load(), 0);

  const std::string text = r.Render();
  for (int w = 0; w < 4; ++w) {
    for (const char* kind : {"even", "odd"}) {
      std::string series = "ops_total{worker=\"" + std::to_string(w) + "\",kind=\"" + kind + "\"}";
      EXPECT_EQ(Sample(text, series), std::to_string(2 * kIterations / 2)) << series;
    }
  }
  // "even" got i % 4 in {0, 2}: values 0 and 0.5; "odd": 0.25 and 0.75; half each.
  const uint64_t per_kind = uint64_t{kThreads} * kIterations / 2;
  EXPECT_EQ(Sample(text, "op_seconds_bucket{kind=\"even\",le=\"0.25\"}"),
            std::to_string(per_kind / 2));
  EXPECT_EQ(Sample(text, "op_seconds_bucket{kind=\"even\",le=\"0.5\"}"), std::to_string(per_kind));
  EXPECT_EQ(Sample(text, "op_seconds_bucket{kind=\"odd\",le=\"0.25\"}"),
            std::to_string(per_kind / 2));
  EXPECT_EQ(Sample(text, "op_seconds_bucket{kind=\"odd\",le=\"0.5\"}"),
            std::to_string(per_kind / 2));
  EXPECT_EQ(Sample(text, "op_seconds_bucket{kind=\"odd\",le=\"+Inf\"}"), std::to_string(per_kind));
  EXPECT_EQ(Sample(text, "op_seconds_count{kind=\"odd\"}"), std::to_string(per_kind));
  // Sums of multiples of 0.25 are exact in binary floating point.
  EXPECT_EQ(Sample(text, "op_seconds_sum{kind=\"even\"}"), FormatValue(per_kind / 2 * 0.5));
  EXPECT_EQ(Sample(text, "op_seconds_sum{kind=\"odd\"}"), FormatValue(per_kind / 2 * 1.0));
  EXPECT_EQ(Sample(text, "open"), "0");
}

}  // namespace
}  // namespace otd::metrics
