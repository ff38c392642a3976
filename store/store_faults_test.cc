// Store faults below LMDB (issue 7 item 5): the disk fills up, the data file becomes unwritable,
// the filesystem turns read-only under the open environment. For each: the failing write returns
// a clean error (never a crash, a hang or a panicked environment), nothing of the failed batch is
// visible, reads keep working, and writes work again once the fault is gone (for the read-only
// filesystem: after the environment is reopened, because the kernel cannot make that filesystem
// writable while it is in use).
//
// The filesystem cases need root (mount(2), loop devices, the immutable flag); each skips with
// the reason when the machine does not allow it. The map-full case is in store_test.cc.

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/log.h"
#include "common/testing/status_matchers.h"
#include "store/lmdb_store.h"
#include "tests/support/temp_dir.h"

// Fault injection for the one write LMDB cannot take back: the meta page. While set, pwrite()
// of the first two pages (both meta pages; data pages come after them) fails with EIO, as a
// failing disk would. LMDB (liblmdb.so) calls pwrite() through the PLT, so this definition in the
// test executable takes its place.
std::atomic<bool> g_fail_meta_page_writes{false};

extern "C" ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  using Fn = ssize_t (*)(int, const void*, size_t, off_t);
  static const Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "pwrite"));
  if (g_fail_meta_page_writes.load() && offset < 2 * ::sysconf(_SC_PAGESIZE)) {
    errno = EIO;
    return -1;
  }
  return real(fd, buf, n, offset);
}

namespace otd::store {
namespace {

using ::otd::testing::IsOk;
using ::testing::Not;

namespace fs = std::filesystem;

std::string Errno(int e) { return std::strerror(e); }

// A fresh directory per test (tests/support/temp_dir.h), named for this suite.
class TempDir : public otd::testing::TempDir {
 public:
  TempDir() : otd::testing::TempDir("otd_store_faults") {}
};

// Runs a shell command quietly; true when it exits 0. Paths come from mkdtemp (no quoting needed).
bool Run(const std::string& cmd) {
  return std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()) == 0;
}

// A small filesystem of our own, mounted on a fresh directory (never the shared disk): a tmpfs of
// a given size, or an ext4 image on a loop device mounted with errors=remount-ro. Unmounted
// (lazily, so a failed test cannot leave it busy) when destroyed.
class ScratchMount {
 public:
  static std::unique_ptr<ScratchMount> Tmpfs(const TempDir& dir, size_t bytes, std::string* why) {
    auto m = std::unique_ptr<ScratchMount>(new ScratchMount(dir.Sub("mnt")));
    std::string opts = "size=" + std::to_string(bytes) + ",mode=0700";
    if (::mount("tmpfs", m->path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
      *why = "cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): " + Errno(errno);
      return nullptr;
    }
    m->mounted_ = true;
    return m;
  }

  static std::unique_ptr<ScratchMount> Ext4(const TempDir& dir, size_t bytes, std::string* why) {
    auto m = std::unique_ptr<ScratchMount>(new ScratchMount(dir.Sub("mnt")));
    m->image_ = dir.Sub("fs.img");
    if (!Run("command -v mkfs.ext4 && command -v e2fsck")) {
      *why = "mkfs.ext4/e2fsck (e2fsprogs) not installed";
      return nullptr;
    }
    if (!Run("truncate -s " + std::to_string(bytes) + " " + m->image_) ||
        !Run("mkfs.ext4 -q -F " + m->image_)) {
      *why = "cannot create an ext4 image";
      return nullptr;
    }
    if (!m->MountImage()) {
      *why = "cannot loop-mount an ext4 image here (needs root and a free loop device)";
      return nullptr;
    }
    return m;
  }

  ~ScratchMount() {
    if (mounted_) {
      ::umount2(path_.c_str(), MNT_DETACH);
    }
    ::rmdir(path_.c_str());
  }

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

  // ext4 only: what the kernel does on a metadata error with errors=remount-ro (the filesystem
  // turns read-only under its open files), triggered through /sys/fs/ext4/<dev>/trigger_fs_error.
  bool TriggerEmergencyReadOnly(std::string* why) const {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
      *why = "stat: " + Errno(errno);
      return false;
    }
    std::error_code ec;
    fs::path dev = fs::read_symlink("/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
                                        std::to_string(minor(st.st_dev)),
                                    ec);
    if (ec) {
      *why = "cannot find the block device of the scratch mount";
      return false;
    }
    const std::string trigger = "/sys/fs/ext4/" + dev.filename().string() + "/trigger_fs_error";
    std::ofstream f(trigger);
    f << "otd store fault test\n";
    f.close();
    if (!f) {
      *why = "cannot write " + trigger;
      return false;
    }
    return true;
  }

  // ext4 only: what an operator does after the filesystem went read-only: unmount, fsck, mount.
  bool Repair() {
    if (!Run("umount " + path_)) {
      return false;
    }
    mounted_ = false;
    // e2fsck exit 0: clean, 1: errors corrected.
    int rc = std::system(("e2fsck -fy " + image_ + " >/dev/null 2>&1").c_str());
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) > 1) {
      return false;
    }
    return MountImage();
  }

 private:
  explicit ScratchMount(std::string path) : path_(std::move(path)) { ::mkdir(path_.c_str(), 0700); }
  bool MountImage() {
    mounted_ = Run("mount -o loop,errors=remount-ro " + image_ + " " + path_);
    return mounted_;
  }

  std::string path_;
  std::string image_;
  bool mounted_ = false;
};

// Sets or clears FS_IMMUTABLE_FL (chattr +i): no write, not even by root or through a descriptor
// opened before, on filesystems that enforce it for open files (ext4, xfs, btrfs).
Status SetImmutable(const std::string& path, bool on) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Unavailable("open " + path + ": " + Errno(errno));
  }
  int flags = 0;
  int rc = ::ioctl(fd, FS_IOC_GETFLAGS, &flags);
  if (rc == 0) {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    rc = ::ioctl(fd, FS_IOC_SETFLAGS, &flags);
  }
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return Unavailable("chattr " + path + ": " + Errno(err));
  }
  return Status::Ok();
}

// Whether the immutable flag stops a write through a descriptor opened before it was set (tmpfs,
// for one, accepts the flag but does not check it on write).
bool ImmutableBlocksOpenWriters(const std::string& dir, std::string* why) {
  const std::string probe = dir + "/immutable-probe";
  int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    *why = "cannot create a probe file: " + Errno(errno);
    return false;
  }
  bool blocks = false;
  if (Status s = SetImmutable(probe, true); !s.ok()) {
    *why =
        "the immutable flag cannot be set here (needs root / CAP_LINUX_IMMUTABLE and ext4, "
        "xfs or btrfs): " +
        s.message();
  } else {
    blocks = ::pwrite(fd, "x", 1, 0) < 0;
    if (!blocks) {
      *why =
          "this filesystem does not refuse writes to an immutable file through an open "
          "descriptor";
    }
    (void)SetImmutable(probe, false);
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return blocks;
}

// Writes `bytes` of zeros into `path` (fsync'd) and returns how many fit.
size_t WriteBallast(const std::string& path, size_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return 0;
  }
  std::vector<char> chunk(64 * 1024, 0);
  size_t done = 0;
  while (done < bytes) {
    ssize_t n = ::write(fd, chunk.data(), std::min(chunk.size(), bytes - done));
    if (n <= 0) {
      break;
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  return done;
}

Mutation Put(const std::string& key, const std::string& value) {
  Mutation m;
  m.op = Op::kInsert;
  m.table = "t";
  m.key = ToBytes(key);
  m.value = ToBytes(value);
  return m;
}

// Deterministic, distinct per key, so a torn or misplaced page would show.
std::string ValueFor(const std::string& key, size_t size) {
  std::string v(size, '\0');
  uint32_t x = 2166136261u;
  for (char c : key) {
    x = (x ^ static_cast<uint8_t>(c)) * 16777619u;
  }
  for (size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    v[i] = static_cast<char>(x >> 24);
  }
  return v;
}

class StoreFaultsTest : public ::testing::Test {
 protected:
  LmdbOptions MakeOptions(const std::string& path) const {
    LmdbOptions o;
    o.path = path;
    o.map_size_bytes = 64ull << 20;  // the map never limits here; the filesystem does
    o.tables = {"t"};
    return o;
  }

  std::unique_ptr<LmdbStore> OpenStore(const std::string& path) {
    auto r = LmdbStore::Open(MakeOptions(path), &log_);
    EXPECT_OK(r);
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // Inserts `prefix<i>` records of `size` bytes until a write fails (at most `max`); the keys that
  // were acknowledged are appended to acked_. Returns the first failure (Ok if none).
  Status FillUntilFailure(Store& s, const std::string& prefix, size_t size, int max) {
    for (int i = 0; i < max; ++i) {
      std::string key = prefix + std::to_string(i);
      Status st = s.Apply({Put(key, ValueFor(key, size))});
      if (!st.ok()) {
        return st;
      }
      acked_.emplace_back(key, size);
    }
    return Status::Ok();
  }

  // Every acknowledged record reads back byte-exactly.
  void ExpectAllAcknowledgedReadable(const Store& s) {
    size_t bad = 0;
    for (const auto& [key, size] : acked_) {
      auto r = s.Get("t", AsBytes(key));
      if (!r.ok() || !r->has_value() || AsString(**r) != ValueFor(key, size)) {
        ++bad;
        ADD_FAILURE() << "acknowledged record " << key << " unreadable or changed: "
                      << (r.ok() ? "value differs or missing" : r.status().ToString());
        if (bad > 5) {
          return;
        }
      }
    }
  }

  bool Exists(const Store& s, const std::string& key) {
    auto r = s.Get("t", AsBytes(key));
    EXPECT_OK(r);
    return r.ok() && r->has_value();
  }

  // A failed two-record batch leaves neither record (all-or-nothing).
  void ExpectFailedBatchInvisible(Store& s, const std::string& tag, size_t size) {
    const std::string a = tag + "-batch-a";
    const std::string b = tag + "-batch-b";
    Status st = s.Apply({Put(a, "small"), Put(b, ValueFor(b, size))});
    EXPECT_THAT(st, Not(IsOk())) << "a write went through during the fault";
    EXPECT_FALSE(Exists(s, a)) << "half of a failed batch is visible";
    EXPECT_FALSE(Exists(s, b));
  }

  std::vector<std::pair<std::string, size_t>> acked_;
  std::ostringstream log_out_;
  Logger log_{log_out_, LogLevel::kDebug};
};

// --- disk full ---------------------------------------------------------------------------------

TEST_F(StoreFaultsTest, DiskFullFailsWritesCleanlyAndRecoversWhenSpaceIsFreed) {
  TempDir dir;
  std::string why;
  auto mnt = ScratchMount::Tmpfs(dir, 4 << 20, &why);
  if (!mnt) {
    GTEST_SKIP() << why;
  }
  auto s = OpenStore(mnt->Sub("db"));
  ASSERT_NE(s, nullptr);
  // Leave roughly 1 MiB: the store fills that, then deleting the ballast frees space again.
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(mnt->path().c_str(), &vfs), 0);
  const size_t avail = static_cast<size_t>(vfs.f_bavail) * vfs.f_frsize;
  ASSERT_GT(WriteBallast(mnt->Sub("ballast"), avail - (1 << 20)), 0u);

  Status full = FillUntilFailure(*s, "k", 8000, 100000);
  ASSERT_THAT(full, Not(IsOk())) << "the disk never filled up";
  ASSERT_GT(acked_.size(), 10u);
  std::printf("[ info ] disk full after %zu records of 8000 bytes: %s\n", acked_.size(),
              full.ToString().c_str());
  // A clean, retryable error (503 at the API), not a panicked environment.
  EXPECT_TRUE(full.code() == Code::kUnavailable || full.code() == Code::kResourceExhausted)
      << full.ToString();
  EXPECT_EQ(full.message().find("panicked"), std::string::npos) << full.ToString();
  EXPECT_OK(s->Health());
  // Later writes keep failing the same way (nothing wedged), reads keep working.
  for (int i = 0; i < 3; ++i) {
    Status again = s->Apply({Put("again" + std::to_string(i), ValueFor("x", 8000))});
    EXPECT_EQ(again.code(), full.code()) << again.ToString();
  }
  ExpectFailedBatchInvisible(*s, "full", 8000);
  ExpectAllAcknowledgedReadable(*s);

  // Space freed: the same store writes again, without a reopen.
  ASSERT_EQ(::unlink(mnt->Sub("ballast").c_str()), 0);
  Status after = FillUntilFailure(*s, "after", 8000, 20);
  EXPECT_OK(after) << "writes still fail after space was freed: " << after.ToString();
  ExpectAllAcknowledgedReadable(*s);

  // Nothing half-written: after a reopen every acknowledged record is there, nothing else.
  s.reset();
  s = OpenStore(mnt->Sub("db"));
  ASSERT_NE(s, nullptr);
  ExpectAllAcknowledgedReadable(*s);
  EXPECT_FALSE(Exists(*s, "full-batch-a"));
  EXPECT_FALSE(Exists(*s, "again0"));
  EXPECT_EQ(s->GetStats()->tables["t"].entries, acked_.size());
}

TEST_F(StoreFaultsTest, ConcurrentWritersIntoAFullDiskEachGetTheirOwnResult) {
  TempDir dir;
  std::string why;
  auto mnt = ScratchMount::Tmpfs(dir, 2 << 20, &why);
  if (!mnt) {
    GTEST_SKIP() << why;
  }
  auto s = OpenStore(mnt->Sub("db"));
  ASSERT_NE(s, nullptr);
  // Group commit: several callers share one transaction; when its commit hits ENOSPC every one of
  // them must learn that (and nothing of theirs may be visible).
  constexpr int kThreads = 8;
  constexpr int kBatches = 60;
  std::vector<std::vector<std::pair<std::string, Status>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBatches; ++i) {
        std::string key = "c" + std::to_string(t) + "-" + std::to_string(i);
        size_t size = 100 + static_cast<size_t>((t * 977 + i * 331) % 12000);
        Status st = s->Apply({Put(key, ValueFor(key, size))});
        results[t].emplace_back(key + "#" + std::to_string(size), st);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  size_t ok = 0;
  size_t failed = 0;
  for (const auto& per_thread : results) {
    for (const auto& [tagged, st] : per_thread) {
      const std::string key = tagged.substr(0, tagged.find('#'));
      const size_t size = std::stoul(tagged.substr(tagged.find('#') + 1));
      if (st.ok()) {
        ++ok;
        acked_.emplace_back(key, size);
      } else {
        ++failed;
        EXPECT_TRUE(st.code() == Code::kUnavailable || st.code() == Code::kResourceExhausted)
            << st.ToString();
        EXPECT_FALSE(Exists(*s, key)) << "a failed write is visible: " << key;
      }
    }
  }
  std::printf("[ info ] full disk, %d writers: %zu ok, %zu failed\n", kThreads, ok, failed);
  EXPECT_GT(ok, 0u);
  EXPECT_GT(failed, 0u) << "the 2 MiB tmpfs never filled up";
  EXPECT_OK(s->Health());
  ExpectAllAcknowledgedReadable(*s);
  s.reset();
  s = OpenStore(mnt->Sub("db"));
  ASSERT_NE(s, nullptr);
  ExpectAllAcknowledgedReadable(*s);
  EXPECT_EQ(s->GetStats()->tables["t"].entries, ok);
}

// --- data file unwritable ----------------------------------------------------------------------

TEST_F(StoreFaultsTest, UnwritableDataFileFailsWritesAndRecoversWhenWritableAgain) {
  TempDir dir;
  std::string why;
  if (!ImmutableBlocksOpenWriters(dir.path(), &why)) {
    GTEST_SKIP() << why;
  }
  const std::string db = dir.Sub("db");
  auto s = OpenStore(db);
  ASSERT_NE(s, nullptr);
  ASSERT_OK(FillUntilFailure(*s, "before", 3000, 50));
  // Only data.mdb: lock.mdb is a shared writable mapping (the reader table), which the kernel
  // cannot refuse without killing the process.
  ASSERT_OK(SetImmutable(db + "/data.mdb", true));
  struct Unset {
    std::string path;
    ~Unset() { (void)SetImmutable(path, false); }
  } unset{db + "/data.mdb"};

  Status st = s->Apply({Put("during", ValueFor("during", 3000))});
  ASSERT_THAT(st, Not(IsOk())) << "a write to an immutable data file succeeded";
  std::printf("[ info ] immutable data file: %s\n", st.ToString().c_str());
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_EQ(st.message().find("panicked"), std::string::npos) << st.ToString();
  EXPECT_OK(s->Health());
  EXPECT_FALSE(Exists(*s, "during"));
  ExpectFailedBatchInvisible(*s, "immutable", 3000);
  ExpectAllAcknowledgedReadable(*s);

  ASSERT_OK(SetImmutable(db + "/data.mdb", false));
  Status after = FillUntilFailure(*s, "after", 3000, 10);
  EXPECT_OK(after) << "writes still fail once the file is writable: " << after.ToString();
  s.reset();
  s = OpenStore(db);
  ASSERT_NE(s, nullptr);
  ExpectAllAcknowledgedReadable(*s);
  EXPECT_EQ(s->GetStats()->tables["t"].entries, acked_.size());
}

// --- read-only filesystem ----------------------------------------------------------------------

TEST_F(StoreFaultsTest, FilesystemTurningReadOnlyFailsWritesAndKeepsReads) {
  TempDir dir;
  std::string why;
  auto mnt = ScratchMount::Ext4(dir, 32 << 20, &why);
  if (!mnt) {
    GTEST_SKIP() << why;
  }
  auto s = OpenStore(mnt->Sub("db"));
  ASSERT_NE(s, nullptr);
  ASSERT_OK(FillUntilFailure(*s, "before", 3000, 50));
  // `mount -o remount,ro` refuses (EBUSY) while the store holds its files open for writing; a
  // filesystem goes read-only under a running daemon when the kernel sees an error.
  if (!mnt->TriggerEmergencyReadOnly(&why)) {
    GTEST_SKIP() << "cannot make ext4 read-only under open files here: " << why;
  }
  Status st = s->Apply({Put("during", ValueFor("during", 3000))});
  ASSERT_THAT(st, Not(IsOk())) << "a write on a read-only filesystem succeeded";
  std::printf("[ info ] read-only filesystem: %s\n", st.ToString().c_str());
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_EQ(st.message().find("panicked"), std::string::npos) << st.ToString();
  EXPECT_OK(s->Health());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(s->Apply({Put("again" + std::to_string(i), "x")}).code(), Code::kUnavailable);
  }
  ExpectFailedBatchInvisible(*s, "ro", 3000);
  ExpectAllAcknowledgedReadable(*s);

  // Recovery needs the environment closed: the filesystem must be unmounted and checked.
  s.reset();
  ASSERT_TRUE(mnt->Repair()) << "umount / e2fsck / mount failed";
  s = OpenStore(mnt->Sub("db"));
  ASSERT_NE(s, nullptr);
  ExpectAllAcknowledgedReadable(*s);
  EXPECT_FALSE(Exists(*s, "during"));
  Status after = FillUntilFailure(*s, "after", 3000, 10);
  EXPECT_OK(after);
  EXPECT_EQ(s->GetStats()->tables["t"].entries, acked_.size());
}

// --- a failed meta page write ------------------------------------------------------------------

// LMDB commits by writing the data pages, syncing, then writing the meta page. When that last
// write fails it sets MDB_FATAL_ERROR: every later transaction, reads included, gets MDB_PANIC
// until the environment is closed. The commit that failed must not be visible after a reopen,
// and the reopened store must hold everything acknowledged before.
TEST_F(StoreFaultsTest, AFailedMetaPageWritePanicsUntilReopenedAndLosesNothing) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  auto s = OpenStore(db);
  ASSERT_NE(s, nullptr);
  ASSERT_OK(FillUntilFailure(*s, "before", 3000, 20));

  g_fail_meta_page_writes = true;
  Status st = s->Apply({Put("during", ValueFor("during", 3000))});
  g_fail_meta_page_writes = false;
  ASSERT_THAT(st, Not(IsOk())) << "the meta page write was not intercepted";
  std::printf("[ info ] failed meta page write: %s\n", st.ToString().c_str());
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  // Health (and the daemon) must know at once, not only after the next transaction tripped over
  // MDB_PANIC.
  EXPECT_THAT(s->Health(), Not(IsOk()))
      << "Health() does not see the panic until the next transaction";

  // The environment is now unusable: writes report the panic, health says so, the log has it.
  Status next = s->Apply({Put("next", "x")});
  EXPECT_EQ(next.code(), Code::kUnavailable) << next.ToString();
  EXPECT_NE(next.message().find("restart required"), std::string::npos) << next.ToString();
  EXPECT_THAT(s->Health(), Not(IsOk()));
  EXPECT_NE(log_out_.str().find("store_panic"), std::string::npos);
  auto read = s->Get("t", AsBytes(acked_.front().first));
  std::printf("[ info ] read after the panic: %s\n",
              read.ok() ? "ok" : read.status().ToString().c_str());

  // Reopening (a daemon restart) recovers: everything acknowledged, nothing of the failed commit.
  s.reset();
  s = OpenStore(db);
  ASSERT_NE(s, nullptr);
  ExpectAllAcknowledgedReadable(*s);
  EXPECT_FALSE(Exists(*s, "during")) << "the commit that reported failure is visible";
  EXPECT_FALSE(Exists(*s, "next"));
  EXPECT_OK(s->Health());
  Status after = FillUntilFailure(*s, "after", 3000, 10);
  EXPECT_OK(after);
  EXPECT_EQ(s->GetStats()->tables["t"].entries, acked_.size());
}

// --- the log names the cause -------------------------------------------------------------------

// An operator must see why writes fail. Map full has its own rate-limited line
// (store_map_full); an I/O error (ENOSPC, EROFS, EPERM, EIO) must get one too.
TEST_F(StoreFaultsTest, AFailedCommitLogsItsCause) {
  TempDir dir;
  std::string why;
  auto mnt = ScratchMount::Tmpfs(dir, 1 << 20, &why);
  if (!mnt) {
    GTEST_SKIP() << why;
  }
  auto s = OpenStore(mnt->Sub("db"));
  ASSERT_NE(s, nullptr);
  Status full = FillUntilFailure(*s, "secretkey", 8000, 100000);
  ASSERT_THAT(full, Not(IsOk()));
  const std::string log = log_out_.str();
  // The line: warn or error level, an event starting with "store_", and the system's reason.
  bool found = false;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    const bool severe = line.find("\"level\":\"warn\"") != std::string::npos ||
                        line.find("\"level\":\"error\"") != std::string::npos;
    const bool store_event = line.find("\"event\":\"store_") != std::string::npos;
    // ENOSPC, or LMDB's EIO for a short write together with the free space (none).
    const bool cause = line.find("No space left on device") != std::string::npos ||
                       line.find("\"free_bytes\":0,") != std::string::npos ||
                       line.find("\"free_bytes\":0}") != std::string::npos;
    found = found || (severe && store_event && cause);
  }
  EXPECT_TRUE(found) << "no store log line names why the write failed (" << full.ToString()
                     << "); log:\n"
                     << log;
  // ... and the keys and values are not in it.
  EXPECT_EQ(log.find("secretkey"), std::string::npos);
}

}  // namespace
}  // namespace otd::store
