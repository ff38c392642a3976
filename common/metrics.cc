#include "common/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

namespace otd::metrics {

namespace {

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

bool ValidMetricName(std::string_view n) {
  if (n.empty() || !(IsNameStart(n[0]) || n[0] == ':')) {
    return false;
  }
  return std::all_of(n.begin(), n.end(), [](char c) { return IsNameChar(c) || c == ':'; });
}

bool ValidLabelName(std::string_view n) {
  return !n.empty() && IsNameStart(n[0]) && n.rfind("__", 0) != 0 &&
         std::all_of(n.begin(), n.end(), IsNameChar);
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

// Length of the valid UTF-8 sequence at s[i], or 0 if the byte there does not start one
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
size_t Utf8SequenceAt(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) {
    return 1;
  }
  size_t n = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) {
    return 0;
  }
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
    return 0;
  }
  return n;
}

// Appends `s` with invalid UTF-8 bytes replaced by U+FFFD, and backslash, newline (and, when
// `quote`, the double quote) escaped as the exposition format requires.
void AppendEscaped(std::string& out, std::string_view s, bool quote) {
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceAt(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    if (n == 1) {
      char c = s[i];
      if (c == '\\') {
        out += "\\\\";
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '"' && quote) {
        out += "\\\"";
      } else {
        out += c;
      }
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
}

void AppendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

// "name" or "name{labels}" or "name{labels,extra}".
void AppendSeries(std::string& out, const std::string& name, std::string_view suffix,
                  const std::string& labels, std::string_view extra = {}) {
  out += name;
  out += suffix;
  if (labels.empty() && extra.empty()) {
    return;
  }
  out += '{';
  out += labels;
  if (!labels.empty() && !extra.empty()) {
    out += ',';
  }
  out += extra;
  out += '}';
}

Status CheckBounds(const std::vector<double>& bounds) {
  if (bounds.empty()) {
    return InvalidArgument("metrics: a histogram needs at least one bucket bound");
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      return InvalidArgument("metrics: histogram bounds must be finite and strictly increasing");
    }
  }
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Text

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  AppendEscaped(out, v, /*quote=*/true);
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  AppendEscaped(out, v, /*quote=*/false);
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  char buf[64];
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
    return std::string(buf, end);
  }
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, end);
}

// ---------------------------------------------------------------------------------------------
// Histogram

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    counts_[i].store(0, std::memory_order_relaxed);
  }
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) {
    return;
  }
  // First bound >= v: buckets are "less than or equal".
  size_t i =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> RequestSecondsBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> HsmSecondsBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
}

std::vector<double> PowersOfTwo(double max) {
  std::vector<double> out;
  for (int i = 0; std::ldexp(1.0, i) <= max; ++i) {
    out.push_back(std::ldexp(1.0, i));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Samples

void RenderSamples(std::string& out, const std::string& name, const std::string& labels,
                   const Counter& c) {
  AppendSeries(out, name, "", labels);
  out += ' ';
  AppendUint(out, c.Value());
  out += '\n';
}

void RenderSamples(std::string& out, const std::string& name, const std::string& labels,
                   const Gauge& g) {
  AppendSeries(out, name, "", labels);
  out += ' ';
  out += FormatValue(g.Value());
  out += '\n';
}

void RenderSamples(std::string& out, const std::string& name, const std::string& labels,
                   const Histogram& h, const std::vector<double>& bounds) {
  Histogram::Snapshot s = h.Take();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    std::string le = "le=\"" + (i < bounds.size() ? FormatValue(bounds[i]) : "+Inf") + "\"";
    AppendSeries(out, name, "_bucket", labels, le);
    out += ' ';
    AppendUint(out, s.cumulative[i]);
    out += '\n';
  }
  AppendSeries(out, name, "_sum", labels);
  out += ' ';
  out += FormatValue(s.sum);
  out += '\n';
  AppendSeries(out, name, "_count", labels);
  out += ' ';
  AppendUint(out, s.count);
  out += '\n';
}

// ---------------------------------------------------------------------------------------------
// Families

std::string FamilyBase::Key(std::initializer_list<std::string_view> values) {
  // Each value with NUL written as "\0\1", then "\0\0": any byte may appear in a value, and keys
  // sort like the tuples of values (children render in label-value order).
  std::string key;
  for (std::string_view v : values) {
    for (char c : v) {
      if (c == '\0') {
        key += '\0';
        key += '\1';
      } else {
        key += c;
      }
    }
    key += '\0';
    key += '\0';
  }
  return key;
}

std::string FamilyBase::LabelSet(const std::string& key) const {
  std::string out;
  std::string value;
  size_t label = 0;
  for (size_t i = 0; i < key.size() && label < label_names_.size(); ++i) {
    if (key[i] != '\0') {
      value += key[i];
      continue;
    }
    ++i;  // the byte after a NUL: 1 for an escaped NUL, 0 at the end of a value
    if (i < key.size() && key[i] == '\1') {
      value += '\0';
      continue;
    }
    if (label > 0) {
      out += ',';
    }
    out += label_names_[label++];
    out += "=\"";
    AppendEscaped(out, value, /*quote=*/true);
    out += '"';
    value.clear();
  }
  return out;
}

void FamilyBase::Render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  AppendEscaped(out, help_, /*quote=*/false);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += TypeName(type_);
  out += '\n';
  std::vector<std::pair<std::string, const void*>> children;
  Children(children);
  for (const auto& [labels, child] : children) {
    RenderChild(out, labels, child);
  }
}

// ---------------------------------------------------------------------------------------------
// Registry

template <class M, class... A>
Result<Family<M>*> Registry::Add(std::string name, std::string help, Type type,
                                 std::vector<std::string> labels, A&&... child_args) {
  if (!ValidMetricName(name)) {
    return InvalidArgument("metrics: invalid metric name '" + name + "'");
  }
  std::set<std::string_view> seen;
  for (const std::string& l : labels) {
    if (!ValidLabelName(l) || (type == Type::kHistogram && l == "le")) {
      return InvalidArgument("metrics: invalid label name '" + l + "' on " + name);
    }
    if (!seen.insert(l).second) {
      return InvalidArgument("metrics: label '" + l + "' given twice on " + name);
    }
  }
  std::lock_guard lk(mu_);
  for (const auto& f : families_) {
    if (f->name() != name) {
      continue;
    }
    auto* same = dynamic_cast<Family<M>*>(f.get());
    bool bounds_match = true;
    if constexpr (sizeof...(A) > 0) {
      bounds_match = same != nullptr && same->bounds_ == std::vector<double>(child_args...);
    }
    if (same == nullptr || f->type() != type || f->label_names() != labels || !bounds_match) {
      return AlreadyExists("metrics: '" + name + "' is already registered differently");
    }
    return same;
  }
  auto family = std::unique_ptr<Family<M>>(new Family<M>(
      std::move(name), std::move(help), type, std::move(labels), std::forward<A>(child_args)...));
  Family<M>* out = family.get();
  families_.push_back(std::move(family));
  return out;
}

Result<CounterFamily*> Registry::AddCounter(std::string name, std::string help,
                                            std::vector<std::string> labels) {
  return Add<Counter>(std::move(name), std::move(help), Type::kCounter, std::move(labels));
}

Result<GaugeFamily*> Registry::AddGauge(std::string name, std::string help,
                                        std::vector<std::string> labels) {
  return Add<Gauge>(std::move(name), std::move(help), Type::kGauge, std::move(labels));
}

Result<HistogramFamily*> Registry::AddHistogram(std::string name, std::string help,
                                                std::vector<std::string> labels,
                                                std::vector<double> bounds) {
  OTD_RETURN_IF_ERROR(CheckBounds(bounds));
  return Add<Histogram>(std::move(name), std::move(help), Type::kHistogram, std::move(labels),
                        std::move(bounds));
}

Result<GaugeFamily*> Registry::AddScrapedCounter(std::string name, std::string help,
                                                 std::vector<std::string> labels) {
  return Add<Gauge>(std::move(name), std::move(help), Type::kCounter, std::move(labels));
}

CollectorHandle Registry::AddCollector(std::function<void()> collect) {
  std::lock_guard lk(collect_mu_);
  uint64_t id = next_id_++;
  collectors_.emplace(id, std::move(collect));
  return CollectorHandle(this, id);
}

void Registry::RemoveCollector(uint64_t id) {
  std::lock_guard lk(collect_mu_);
  collectors_.erase(id);
}

std::string Registry::Render() {
  {
    std::lock_guard lk(collect_mu_);
    for (auto& [id, collect] : collectors_) {
      collect();
    }
  }
  std::vector<const FamilyBase*> families;
  {
    std::lock_guard lk(mu_);
    for (const auto& f : families_) {
      families.push_back(f.get());
    }
  }
  std::string out;
  for (const FamilyBase* f : families) {
    f->Render(out);
  }
  return out;
}

CollectorHandle::CollectorHandle(CollectorHandle&& o) noexcept
    : registry_(std::exchange(o.registry_, nullptr)), id_(std::exchange(o.id_, 0)) {}

CollectorHandle& CollectorHandle::operator=(CollectorHandle&& o) noexcept {
  if (this != &o) {
    Reset();
    registry_ = std::exchange(o.registry_, nullptr);
    id_ = std::exchange(o.id_, 0);
  }
  return *this;
}

CollectorHandle::~CollectorHandle() { Reset(); }

void CollectorHandle::Reset() {
  if (registry_ != nullptr) {
    registry_->RemoveCollector(id_);
  }
  registry_ = nullptr;
  id_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Process metrics

namespace {

// Open file descriptors, from /proc/self/fd (the directory's own descriptor not counted).
std::optional<uint64_t> OpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) {
    return std::nullopt;
  }
  uint64_t n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') {
      ++n;
    }
  }
  ::closedir(d);
  return n > 0 ? n - 1 : 0;
}

// The process's start time in seconds since the epoch: /proc/self/stat field 22 (clock ticks
// since boot) plus btime from /proc/stat.
std::optional<double> ProcessStartTime() {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) {
    return std::nullopt;
  }
  // Field 2 (comm) is in parentheses and may hold spaces: count from the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  // Fields 3..21, then 22 (starttime).
  for (int i = 3; i < 22; ++i) {
    if (!(rest >> field)) {
      return std::nullopt;
    }
  }
  double start_ticks = 0;
  if (!(rest >> start_ticks)) {
    return std::nullopt;
  }
  std::ifstream proc_stat("/proc/stat");
  std::string key;
  double btime = 0;
  while (proc_stat >> key) {
    if (key == "btime") {
      proc_stat >> btime;
      break;
    }
    std::getline(proc_stat, line);
  }
  const long ticks = ::sysconf(_SC_CLK_TCK);
  if (btime <= 0 || ticks <= 0) {
    return std::nullopt;
  }
  return btime + start_ticks / static_cast<double>(ticks);
}

}  // namespace

Result<CollectorHandle> AddProcessMetrics(Registry& registry) {
  OTD_ASSIGN_OR_RETURN(GaugeFamily * cpu,
                       registry.AddScrapedCounter("process_cpu_seconds_total",
                                                  "Total user and system CPU time spent in "
                                                  "seconds."));
  OTD_ASSIGN_OR_RETURN(GaugeFamily * rss, registry.AddGauge("process_resident_memory_bytes",
                                                            "Resident memory size in bytes."));
  OTD_ASSIGN_OR_RETURN(GaugeFamily * vsz, registry.AddGauge("process_virtual_memory_bytes",
                                                            "Virtual memory size in bytes."));
  OTD_ASSIGN_OR_RETURN(GaugeFamily * fds,
                       registry.AddGauge("process_open_fds", "Number of open file descriptors."));
  OTD_ASSIGN_OR_RETURN(
      GaugeFamily * max_fds,
      registry.AddGauge("process_max_fds",
                        "Maximum number of open file descriptors (RLIMIT_NOFILE)."));
  OTD_ASSIGN_OR_RETURN(
      GaugeFamily * start,
      registry.AddGauge("process_start_time_seconds",
                        "Start time of the process since the Unix epoch in seconds."));
  start->Get().Set(ProcessStartTime().value_or(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()));
  Gauge* cpu_g = &cpu->Get();
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  Gauge* rss_g = &rss->Get();
  Gauge* vsz_g = &vsz->Get();
  Gauge* fds_g = &fds->Get();
  Gauge* max_g = &max_fds->Get();
  return registry.AddCollector([=] {
    struct rusage ru {};
    if (::getrusage(RUSAGE_SELF, &ru) == 0) {
      auto secs = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
      };
      cpu_g->Set(secs(ru.ru_utime) + secs(ru.ru_stime));
    }
    // statm: size resident shared text lib data dt, in pages.
    std::ifstream statm("/proc/self/statm");
    double size = 0;
    double resident = 0;
    if (statm >> size >> resident) {
      vsz_g->Set(size * page);
      rss_g->Set(resident * page);
    }
    if (auto n = OpenFds()) {
      fds_g->Set(static_cast<double>(*n));
    }
    struct rlimit rl {};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
      max_g->Set(rl.rlim_cur == RLIM_INFINITY ? std::numeric_limits<double>::infinity()
                                              : static_cast<double>(rl.rlim_cur));
    }
  });
}

}  // namespace otd::metrics
