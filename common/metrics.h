#pragma once
// Metrics: counters, gauges and histograms in a Registry, rendered in the Prometheus text
// exposition format, version 0.0.4 (`# HELP` / `# TYPE` lines, then one sample per line;
// histograms as cumulative `_bucket{le="..."}` series ending in `le="+Inf"`, plus `_sum` and
// `_count`).
//
// No globals: the daemon owns one Registry and hands a pointer to the modules it wants measured
// (hsm::TokenConfig::metrics, store::Options::metrics, api::ServerOptions::metrics); a null
// pointer means "not measured". Every metric object lives as long as its Registry, so the
// Registry must outlive everything that holds a metric or a CollectorHandle.
//
// Cost: Counter::Inc, Gauge::Set/Add and Histogram::Observe are a few relaxed atomic operations,
// no lock and no allocation. Family::With() (label values → child) takes a shared lock and does
// one map lookup; resolve children once at start-up where the label values are fixed (e.g. per
// HSM operation), and call With() per event only where they are not (per HTTP route/status).
//
// Label values must never carry secrets, ids or addresses; callers pass bounded sets (route
// patterns, status codes, operation names). Rendering escapes `\`, `"` and newlines in label
// values and `\` and newlines in help texts, and replaces invalid UTF-8 with U+FFFD.
//
// Thread safety: everything is thread safe. A histogram's `_sum` is read separately from its
// buckets, so under concurrent Observe() calls it may be one observation ahead or behind; the
// buckets, `+Inf` and `_count` of one scrape always agree with each other.

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/status.h"

namespace otd::metrics {

// A monotonically increasing count.
class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down (or is set at scrape time by a collector).
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into fixed buckets (upper bounds, inclusive: `le`).
class Histogram {
 public:
  // `bounds`: strictly increasing, finite; owned by the family, which outlives the histogram.
  explicit Histogram(const std::vector<double>& bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Take() const;

 private:
  const std::vector<double>& bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket (not cumulative), +Inf last
  std::atomic<double> sum_{0};
};

// One child's sample lines ("name{labels} value", histograms: buckets, sum, count). `labels` is
// the rendered label set without braces (may be empty).
void RenderSamples(std::string& out, const std::string& name, const std::string& labels,
                   const Counter& c);
void RenderSamples(std::string& out, const std::string& name, const std::string& labels,
                   const Gauge& g);
void RenderSamples(std::string& out, const std::string& name, const std::string& labels,
                   const Histogram& h, const std::vector<double>& bounds);

// Bucket bounds for durations in seconds.
// HTTP requests and store commits: 0.5 ms .. 10 s.
std::vector<double> RequestSecondsBuckets();
// HSM operations (SoftHSM: tens of µs; network HSMs: ms): 50 µs .. 1 s.
std::vector<double> HsmSecondsBuckets();
// Powers of two 1 .. `max` (batch sizes).
std::vector<double> PowersOfTwo(double max);

enum class Type { kCounter, kGauge, kHistogram };

// One metric name with its help, type and label names; its children are the label value tuples.
class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  Type type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Appends the family (HELP, TYPE, samples in label-value order) to `out`.
  void Render(std::string& out) const;

 protected:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> labels)
      : name_(std::move(name)),
        help_(std::move(help)),
        type_(type),
        label_names_(std::move(labels)) {}
  // Key of a label value tuple (values joined with a NUL byte).
  static std::string Key(std::initializer_list<std::string_view> values);
  virtual void RenderChild(std::string& out, const std::string& labels,
                           const void* child) const = 0;
  // Children as (rendered label set without braces, child) in key order; filled under the lock.
  virtual void Children(std::vector<std::pair<std::string, const void*>>& out) const = 0;
  std::string LabelSet(const std::string& key) const;

 private:
  std::string name_;
  std::string help_;
  Type type_;
  std::vector<std::string> label_names_;
};

template <class M>
class Family final : public FamilyBase {
 public:
  // The child for these label values (created on first use). Exactly one value per label name:
  // a call with the wrong number of values is a bug (assert); release builds get a child that is
  // never rendered.
  M& With(std::initializer_list<std::string_view> values);
  // The single child of a family without labels.
  M& Get() { return With({}); }

 private:
  friend class Registry;
  template <class... A>
  Family(std::string name, std::string help, Type type, std::vector<std::string> labels,
         A&&... child_args);
  void RenderChild(std::string& out, const std::string& labels, const void* child) const override {
    const M& m = *static_cast<const M*>(child);
    if constexpr (std::is_same_v<M, Histogram>) {
      RenderSamples(out, name(), labels, m, bounds_);
    } else {
      RenderSamples(out, name(), labels, m);
    }
  }
  void Children(std::vector<std::pair<std::string, const void*>>& out) const override;
  std::unique_ptr<M> Make() const;

  std::vector<double> bounds_;  // histograms only
  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<M>> children_;
  std::unique_ptr<M> invalid_;  // returned for a wrong number of label values; not rendered
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class Registry;

// Keeps a scrape-time collector registered; unregisters it when destroyed (waiting for a scrape
// that is running it). Must not outlive its Registry.
class CollectorHandle {
 public:
  CollectorHandle() = default;
  CollectorHandle(CollectorHandle&& o) noexcept;
  CollectorHandle& operator=(CollectorHandle&& o) noexcept;
  CollectorHandle(const CollectorHandle&) = delete;
  CollectorHandle& operator=(const CollectorHandle&) = delete;
  ~CollectorHandle();
  void Reset();

 private:
  friend class Registry;
  CollectorHandle(Registry* r, uint64_t id) : registry_(r), id_(id) {}
  Registry* registry_ = nullptr;
  uint64_t id_ = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family, or returns the existing one when the name is already registered with the
  // same type, label names (and bounds). kInvalidArgument for a bad metric or label name
  // ([a-zA-Z_:][a-zA-Z0-9_:]* / [a-zA-Z_][a-zA-Z0-9_]*, no "__" prefix, no "le" on histograms),
  // duplicate label names or bad bounds; kAlreadyExists when the name is taken by something else.
  Result<CounterFamily*> AddCounter(std::string name, std::string help,
                                    std::vector<std::string> labels = {});
  Result<GaugeFamily*> AddGauge(std::string name, std::string help,
                                std::vector<std::string> labels = {});
  Result<HistogramFamily*> AddHistogram(std::string name, std::string help,
                                        std::vector<std::string> labels,
                                        std::vector<double> bounds);

  // A counter whose value is read from elsewhere at scrape time (e.g. CPU seconds from the
  // kernel): TYPE counter, set by a collector with Gauge::Set (the source must be monotonic).
  Result<GaugeFamily*> AddScrapedCounter(std::string name, std::string help,
                                         std::vector<std::string> labels = {});

  // `collect` runs at the start of every Render() (one at a time), typically to Set() gauges from
  // state owned elsewhere. It must not call AddCollector/Render or destroy a handle.
  [[nodiscard]] CollectorHandle AddCollector(std::function<void()> collect);

  // Runs the collectors, then renders every family in registration order.
  std::string Render();

 private:
  friend class CollectorHandle;
  template <class M, class... A>
  Result<Family<M>*> Add(std::string name, std::string help, Type type,
                         std::vector<std::string> labels, A&&... child_args);
  void RemoveCollector(uint64_t id);

  std::mutex mu_;  // families_
  std::vector<std::unique_ptr<FamilyBase>> families_;
  std::mutex collect_mu_;  // collectors_; held while they run
  std::map<uint64_t, std::function<void()>> collectors_;
  uint64_t next_id_ = 1;
};

// Registers the standard process metrics (Prometheus client conventions), read at scrape time:
// process_cpu_seconds_total (counter: user + system CPU, getrusage), process_resident_memory_bytes
// and process_virtual_memory_bytes (/proc/self/statm), process_open_fds (/proc/self/fd),
// process_max_fds (RLIMIT_NOFILE), process_start_time_seconds (/proc/self/stat's start time plus
// the boot time in /proc/stat; the wall clock at this call if they cannot be read).
Result<CollectorHandle> AddProcessMetrics(Registry& registry);

// Text helpers (exposed for tests).
std::string EscapeLabelValue(std::string_view v);
std::string EscapeHelp(std::string_view v);
std::string FormatValue(double v);

// --- template members ---------------------------------------------------------------------------

template <class M>
template <class... A>
Family<M>::Family(std::string name, std::string help, Type type, std::vector<std::string> labels,
                  A&&... child_args)
    : FamilyBase(std::move(name), std::move(help), type, std::move(labels)) {
  if constexpr (sizeof...(A) > 0) {
    bounds_ = std::vector<double>(std::forward<A>(child_args)...);
  }
  invalid_ = Make();
  if (label_names().empty()) {
    children_.emplace(std::string(), Make());  // rendered (as 0) from the start
  }
}

template <class M>
std::unique_ptr<M> Family<M>::Make() const {
  if constexpr (std::is_same_v<M, Histogram>) {
    return std::make_unique<Histogram>(bounds_);
  } else {
    return std::make_unique<M>();
  }
}

template <class M>
M& Family<M>::With(std::initializer_list<std::string_view> values) {
  if (values.size() != label_names().size()) {
    assert(false && "metrics: wrong number of label values");
    return *invalid_;
  }
  std::string key = Key(values);
  {
    std::shared_lock lk(mu_);
    if (auto it = children_.find(key); it != children_.end()) {
      return *it->second;
    }
  }
  std::unique_lock lk(mu_);
  auto [it, inserted] = children_.try_emplace(std::move(key));
  if (inserted) {
    it->second = Make();
  }
  return *it->second;
}

template <class M>
void Family<M>::Children(std::vector<std::pair<std::string, const void*>>& out) const {
  std::shared_lock lk(mu_);
  out.reserve(children_.size());
  for (const auto& [key, child] : children_) {
    out.emplace_back(LabelSet(key), child.get());
  }
}

}  // namespace otd::metrics
