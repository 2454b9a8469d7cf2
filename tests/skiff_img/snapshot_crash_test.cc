// Crash safety of internal snapshot operations (docs/skiff-img.md "Snapshots
// and crash safety"): a child process loops over snapshot create / delete /
// apply with writes through the library in between, announcing each
// operation on a pipe before it starts and again when it is done; it is
// SIGKILLed at a random moment. Afterwards qemu-img check must report no
// corruption (leaks allowed), and every snapshot qemu-img lists must hold the
// content the model says, the active disk too. An operation cut short may
// have happened or not, never half: a created snapshot is complete or absent,
// a deleted one intact or gone, an applied one active or not at all.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "block/qcow2/qcow2_image.h"
#include "block/tools/snapshot.h"
#include "skiff_img/tool_runner.h"

namespace skiff::qcow2tools {
namespace {

using skiff::testing::qemu_content;
using skiff::testing::run;

constexpr uint64_t kSize = 4ull << 20;
constexpr size_t kMaxSnapshots = 6;

enum class Op : uint32_t { kWrite, kCreate, kDelete, kApply };
const char* op_name(Op op) {
  constexpr const char* kNames[] = {"write", "create", "delete", "apply"};
  return kNames[static_cast<uint32_t>(op)];
}

// One pipe record; a pipe write of this size is atomic (PIPE_BUF).
struct Record {
  Op op;
  uint32_t done;  // 0 = about to start, 1 = finished
  uint32_t offset, length, byte;
  char name[16];
};

struct Model {
  std::vector<uint8_t> active = std::vector<uint8_t>(kSize, 0);
  std::map<std::string, std::vector<uint8_t>> snapshots;

  void apply(const Record& r) {
    switch (r.op) {
      case Op::kWrite:
        std::fill_n(active.begin() + r.offset, r.length, static_cast<uint8_t>(r.byte));
        break;
      case Op::kCreate:
        snapshots[r.name] = active;
        break;
      case Op::kDelete:
        snapshots.erase(r.name);
        break;
      case Op::kApply:
        active = snapshots.at(r.name);
        break;
    }
  }
};

void announce(int fd, const Record& r) {
  if (::write(fd, &r, sizeof r) != sizeof r) _exit(10);
}

// Runs operations until killed. `model` is the parent's (inherited by fork),
// so the child knows which snapshots exist.
[[noreturn]] void child(const std::string& img, Model model, uint32_t round, int fd) {
  std::mt19937_64 rng(round * 7919);
  for (uint32_t seq = 0;; ++seq) {
    Record r{};
    const unsigned pick = static_cast<unsigned>(rng() % 10);
    if (pick < 4 || (model.snapshots.empty() && pick >= 6)) {
      r.op = Op::kWrite;
      r.length = static_cast<uint32_t>(1 + rng() % 40000);
      r.offset = static_cast<uint32_t>(rng() % (kSize - r.length));
      r.byte = static_cast<uint32_t>(1 + rng() % 255);
    } else if (pick < 6 && model.snapshots.size() < kMaxSnapshots) {
      r.op = Op::kCreate;
      std::snprintf(r.name, sizeof r.name, "r%us%u", round, seq);
    } else {
      r.op = pick < 8 ? Op::kDelete : Op::kApply;
      auto it = model.snapshots.begin();
      std::advance(it, static_cast<long>(rng() % model.snapshots.size()));
      std::snprintf(r.name, sizeof r.name, "%s", it->first.c_str());
    }
    announce(fd, r);
    Result<> res;
    switch (r.op) {
      case Op::kWrite: {
        auto q = Qcow2Image::open(img, {});
        if (!q) _exit(11);
        std::vector<uint8_t> data(r.length, static_cast<uint8_t>(r.byte));
        res = (*q)->write(r.offset, data);
        if (res) res = (*q)->flush();
        break;
      }
      case Op::kCreate:
        res = create_snapshot(img, r.name);
        break;
      case Op::kDelete:
        res = delete_snapshot(img, r.name);
        break;
      case Op::kApply:
        res = apply_snapshot(img, r.name);
        break;
    }
    if (!res) {
      std::fprintf(stderr, "child: %s %s failed: %s\n", op_name(r.op), r.name,
                   res.error().what().c_str());
      _exit(12);
    }
    model.apply(r);
    r.done = 1;
    announce(fd, r);
  }
}

// Snapshot names in `qemu-img snapshot -l` output (second column).
std::set<std::string> qemu_snapshot_names(const std::string& img) {
  auto r = run("qemu-img snapshot -l '" + img + "'");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  std::set<std::string> names;
  std::istringstream in(r.out);
  std::string line;
  bool table = false;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, name;
    fields >> id >> name;
    if (table && !name.empty()) names.insert(name);
    if (id == "ID") table = true;
  }
  return names;
}

TEST(SnapshotCrash, KilledSnapshotOperationsLeaveConsistentImageAndSnapshots) {
  if (!skiff::testing::have_qemu_img()) GTEST_SKIP() << "skipped: qemu-img not installed";
  const std::string dir = skiff::testing::make_scratch_dir("snapshot_crash");
  const std::string img = dir + "/crash.qcow2";
  const std::string scratch = dir + "/content.raw";
  ASSERT_EQ(run("qemu-img create -q -f qcow2 -o cluster_size=4096 '" + img + "' 4M").exit_code, 0);

  Model model;
  std::map<std::string, int> finished, cut;  // per operation kind
  std::mt19937_64 rng(std::random_device{}());
  for (uint32_t round = 1; round <= 12; ++round) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(p[0]);
      child(img, model, round, p[1]);
    }
    ::close(p[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFSIGNALED(st)) << "round " << round << ": child exited with status "
                                 << WEXITSTATUS(st) << " (an operation failed)";
    Record r{};
    std::optional<Record> inflight;
    while (::read(p[0], &r, sizeof r) == sizeof r) {
      if (r.done) {
        model.apply(r);
        ++finished[op_name(r.op)];
        inflight.reset();
      } else {
        inflight = r;
      }
    }
    ::close(p[0]);
    const std::string where =
        "round " + std::to_string(round) +
        (inflight ? std::string(", killed during ") + op_name(inflight->op) + " " + inflight->name
                  : std::string(", killed between operations"));
    if (inflight) ++cut[op_name(inflight->op)];

    auto chk = run("qemu-img check '" + img + "'");
    ASSERT_TRUE(chk.exit_code == 0 || chk.exit_code == 3) << where << "\n" << chk.out;

    // A cut-short create or delete may or may not have taken effect.
    const std::set<std::string> listed = qemu_snapshot_names(img);
    if (inflight && inflight->op == Op::kCreate && listed.count(inflight->name))
      model.apply(*inflight);
    if (inflight && inflight->op == Op::kDelete && !listed.count(inflight->name))
      model.apply(*inflight);
    std::set<std::string> expected;
    for (const auto& [name, content] : model.snapshots) expected.insert(name);
    ASSERT_EQ(listed, expected) << where;
    for (const auto& [name, content] : model.snapshots) {
      auto conv = run("qemu-img convert -l snapshot.name=" + name + " -O raw '" + img + "' '" +
                      scratch + "'");
      ASSERT_EQ(conv.exit_code, 0) << where << ": " << conv.out;
      ASSERT_TRUE(skiff::testing::read_bytes(scratch) == content)
          << where << ": snapshot " << name << " does not hold its content";
    }

    // The active disk: unchanged, or (for the cut-short operation) its result.
    const std::vector<uint8_t> active = qemu_content(img, scratch);
    ASSERT_EQ(active.size(), kSize) << where;
    if (inflight && inflight->op == Op::kWrite) {
      // An unflushed write may land partly: each byte is old or new.
      const Record& w = *inflight;
      for (uint64_t i = 0; i < kSize; ++i) {
        const bool in_write = i >= w.offset && i < uint64_t{w.offset} + w.length;
        ASSERT_TRUE(active[i] == model.active[i] || (in_write && active[i] == w.byte))
            << where << ": byte " << i << " is " << int(active[i]) << ", want "
            << int(model.active[i]);
      }
      model.active = active;
    } else if (inflight && inflight->op == Op::kApply && active != model.active) {
      ASSERT_TRUE(active == model.snapshots.at(inflight->name))
          << where << ": active disk is neither the old state nor the snapshot";
      model.active = active;
    } else {
      ASSERT_TRUE(active == model.active) << where << ": active disk differs from the model";
    }
  }
  // The kills must have hit the operations under test, and they must have run.
  std::string summary;
  for (const char* op : {"write", "create", "delete", "apply"})
    summary += std::string(" ") + op + " " + std::to_string(finished[op]) + " done/" +
               std::to_string(cut[op]) + " cut;";
  RecordProperty("operations", summary);
  std::printf("operations:%s\n", summary.c_str());
  EXPECT_GT(finished["create"], 0) << summary;
  EXPECT_GT(finished["apply"] + finished["delete"], 0) << summary;
  EXPECT_GT(cut["create"] + cut["delete"] + cut["apply"], 0) << summary;
}

}  // namespace
}  // namespace skiff::qcow2tools
