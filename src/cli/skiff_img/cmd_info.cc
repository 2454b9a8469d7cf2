// skiff-img info and map: the same fields and JSON keys as qemu-img, so
// scripts written for qemu-img read skiff-img's output unchanged.
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "block/open_image.h"
#include "block/qcow2/qcow2_image.h"
#include "block/tools/qcow2_metadata.h"
#include "cli/skiff_img/commands.h"
#include "cli/skiff_img/image_access.h"

namespace skiff::img {
namespace {

using Json = nlohmann::ordered_json;
using qcow2tools::Qcow2Metadata;

std::string human_size(uint64_t v) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  double d = static_cast<double>(v);
  while (d >= 1024 && u < 6) {
    d /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", v);
  std::string s = fmt::format("{:.3g} {}", d, units[u]);
  return s;
}

Json snapshot_json(const qcow2tools::Qcow2Snapshot& s) {
  Json j;
  if (s.icount) j["icount"] = *s.icount;
  j["vm-clock-nsec"] = s.vm_clock_nsec % 1000000000ULL;
  j["name"] = s.name;
  j["date-sec"] = s.date_sec;
  j["date-nsec"] = s.date_nsec;
  j["vm-clock-sec"] = s.vm_clock_nsec / 1000000000ULL;
  j["id"] = s.id;
  j["vm-state-size"] = s.vm_state_size;
  return j;
}

// One image's info, in qemu-img's key order.
Result<Json> image_info(const std::string& path, const std::string& format) {
  std::string fmt_name = format;
  if (fmt_name.empty()) fmt_name = SKIFF_TRY(probe_format(path));
  Json j;
  if (fmt_name == "raw") {
    auto img = SKIFF_TRY(open_disk(path, "raw", true));
    j["virtual-size"] = img->size();
    j["filename"] = path;
    j["format"] = "raw";
    j["actual-size"] = allocated_bytes(path);
    j["dirty-flag"] = false;
    return j;
  }
  if (fmt_name != "qcow2") return fail("unknown format '{}'", fmt_name);
  auto m = SKIFF_TRY(Qcow2Metadata::open(path, false));
  const auto& h = m.header();
  if (!m.backing_format().empty()) j["backing-filename-format"] = m.backing_format();
  auto snaps = SKIFF_TRY(m.read_snapshots());
  if (!snaps.empty()) {
    Json a = Json::array();
    for (const auto& s : snaps) a.push_back(snapshot_json(s));
    j["snapshots"] = a;
  }
  j["virtual-size"] = h.size;
  j["filename"] = path;
  j["cluster-size"] = m.cluster_size();
  j["format"] = "qcow2";
  j["actual-size"] = allocated_bytes(path);
  Json data;
  data["compat"] = h.version >= 3 ? "1.1" : "0.10";
  if (h.version >= 3) {
    data["compression-type"] = h.compression_type == qcow2::kCompressionZstd ? "zstd" : "zlib";
    data["lazy-refcounts"] = bool(h.compatible_features & qcow2::kCompatLazyRefcounts);
    data["refcount-bits"] = m.refcount_bits();
    data["corrupt"] = bool(h.incompatible_features & qcow2::kIncompatCorrupt);
    data["extended-l2"] = bool(h.incompatible_features & qcow2::kIncompatExtendedL2);
  } else {
    data["compression-type"] = "zlib";
    data["refcount-bits"] = m.refcount_bits();
  }
  j["format-specific"] = Json{{"type", "qcow2"}, {"data", data}};
  if (!m.backing_file().empty()) {
    j["full-backing-filename"] = resolve_backing(path, m.backing_file());
    j["backing-filename"] = m.backing_file();
  }
  j["dirty-flag"] = bool(h.incompatible_features & qcow2::kIncompatDirty);
  return j;
}

std::string snapshot_line(const Json& s) {
  time_t t = static_cast<time_t>(s["date-sec"].get<uint64_t>());
  struct tm tm {};
  localtime_r(&t, &tm);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
  uint64_t secs = s["vm-clock-sec"].get<uint64_t>();
  uint64_t ms = s["vm-clock-nsec"].get<uint64_t>() / 1000000;
  std::string clock =
      fmt::format("{:02}:{:02}:{:02}.{:03}", secs / 3600, (secs / 60) % 60, secs % 60, ms);
  std::string icount = s.contains("icount") ? std::to_string(s["icount"].get<uint64_t>()) : "";
  return fmt::format("{:<9} {:<16} {:>8}{:>20}{:>13}{:>11}", s["id"].get<std::string>(),
                     s["name"].get<std::string>(), human_size(s["vm-state-size"].get<uint64_t>()),
                     date, clock, icount);
}

void print_human(const Json& j) {
  std::printf("image: %s\n", j["filename"].get<std::string>().c_str());
  std::printf("file format: %s\n", j["format"].get<std::string>().c_str());
  uint64_t vs = j["virtual-size"].get<uint64_t>();
  std::printf("virtual size: %s (%llu bytes)\n", human_size(vs).c_str(),
              static_cast<unsigned long long>(vs));
  std::printf("disk size: %s\n", human_size(j["actual-size"].get<uint64_t>()).c_str());
  if (j.contains("cluster-size"))
    std::printf("cluster_size: %llu\n",
                static_cast<unsigned long long>(j["cluster-size"].get<uint64_t>()));
  if (j.contains("backing-filename")) {
    std::printf("backing file: %s", j["backing-filename"].get<std::string>().c_str());
    if (j["full-backing-filename"] != j["backing-filename"])
      std::printf(" (actual path: %s)", j["full-backing-filename"].get<std::string>().c_str());
    std::printf("\n");
  }
  if (j.contains("backing-filename-format"))
    std::printf("backing file format: %s\n",
                j["backing-filename-format"].get<std::string>().c_str());
  if (j.contains("snapshots")) {
    std::printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
                "VM CLOCK", "ICOUNT");
    for (const auto& s : j["snapshots"]) std::printf("%s\n", snapshot_line(s).c_str());
  }
  if (j.contains("format-specific")) {
    std::printf("Format specific information:\n");
    for (const auto& [key, val] : j["format-specific"]["data"].items()) {
      std::string k = key;
      std::replace(k.begin(), k.end(), '-', ' ');
      std::printf("    %s: %s\n", k.c_str(),
                  val.is_string() ? val.get<std::string>().c_str() : val.dump().c_str());
    }
  }
}

}  // namespace

int cmd_info(const InfoArgs& a) {
  std::vector<Json> chain;
  std::string path = a.file, format = a.format;
  for (int depth = 0;; ++depth) {
    auto j = image_info(path, format);
    if (!j) {
      report(j.error());
      return 1;
    }
    chain.push_back(*j);
    if (!a.backing_chain || !j->contains("full-backing-filename")) break;
    if (depth > 64) {
      report(fmt::format("{}: backing chain too deep (a loop?)", a.file));
      return 1;
    }
    path = (*j)["full-backing-filename"].get<std::string>();
    format = j->contains("backing-filename-format")
                 ? (*j)["backing-filename-format"].get<std::string>()
                 : "";
  }
  if (a.output == "json") {
    if (a.backing_chain) {
      Json arr = Json::array();
      for (auto& j : chain) arr.push_back(j);
      std::printf("%s\n", arr.dump(4).c_str());
    } else {
      std::printf("%s\n", chain[0].dump(4).c_str());
    }
    return 0;
  }
  for (size_t n = 0; n < chain.size(); ++n) {
    if (n) std::printf("\n");
    print_human(chain[n]);
  }
  return 0;
}

// Snapshot list in qemu-img's layout (also used by `snapshot -l`).
int print_snapshot_list(const std::vector<qcow2tools::Qcow2Snapshot>& snaps) {
  std::printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
              "VM CLOCK", "ICOUNT");
  for (const auto& s : snaps) std::printf("%s\n", snapshot_line(snapshot_json(s)).c_str());
  return 0;
}

namespace {

// block_status at the layer that decides the range, with qemu's "present"
// (allocated in that layer, zero clusters included) and the layer's depth.
struct LayerStatus {
  ExtentStatus s;
  int depth = 0;
  bool present = false;
};

Result<LayerStatus> chain_status(DiskImage& img, uint64_t off, uint64_t len, int depth = 0) {
  auto s = SKIFF_TRY(img.block_status(off, len));
  auto* q = dynamic_cast<Qcow2Image*>(&img);
  if (s.depth > 0 && q && q->backing()) {
    DiskImage& b = *q->backing();
    return chain_status(b, off, std::min(s.length, len), depth + 1);
  }
  // Raw files are "allocated" everywhere, holes included (as in qemu's map).
  return LayerStatus{s, depth, s.allocated || !q};
}

}  // namespace

int cmd_map(const MapArgs& a) {
  auto img = open_disk(a.file, a.format, true);
  if (!img) {
    report(img.error());
    return 1;
  }
  DiskImage& d = **img;
  // Merge neighbouring extents the way qemu-img does: same depth, flags, and
  // host offsets that continue each other.
  struct Row {
    uint64_t start, length;
    int depth;
    bool present, zero, data;
    bool has_offset;
    uint64_t offset;
  };
  std::vector<Row> rows;
  for (uint64_t off = 0; off < d.size();) {
    auto st = chain_status(d, off, d.size() - off);
    if (!st) {
      report(st.error());
      return 1;
    }
    uint64_t len = std::min<uint64_t>(std::max<uint64_t>(st->s.length, 1), d.size() - off);
    Row r{off,
          len,
          st->depth,
          st->present,
          st->s.zero,
          st->s.data,
          st->s.data && !st->s.compressed,
          st->s.host_offset};
    if (!rows.empty()) {
      Row& p = rows.back();
      bool same = p.depth == r.depth && p.present == r.present && p.zero == r.zero &&
                  p.data == r.data && p.has_offset == r.has_offset &&
                  (!r.has_offset || p.offset + p.length == r.offset);
      if (same) {
        p.length += r.length;
        off += len;
        continue;
      }
    }
    rows.push_back(r);
    off += len;
  }
  if (a.output == "json") {
    std::printf("[");
    for (size_t n = 0; n < rows.size(); ++n) {
      const Row& r = rows[n];
      std::printf(
          "%s{ \"start\": %llu, \"length\": %llu, \"depth\": %d, \"present\": %s, "
          "\"zero\": %s, \"data\": %s",
          n ? ",\n" : "", static_cast<unsigned long long>(r.start),
          static_cast<unsigned long long>(r.length), r.depth, r.present ? "true" : "false",
          r.zero ? "true" : "false", r.data ? "true" : "false");
      if (r.has_offset)
        std::printf(", \"offset\": %llu", static_cast<unsigned long long>(r.offset));
      std::printf("}");
    }
    std::printf("]\n");
    return 0;
  }
  std::printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
  for (const Row& r : rows) {
    if (!r.data || !r.has_offset) continue;
    std::printf("%#-16llx%#-16llx%#-16llx%s\n", static_cast<unsigned long long>(r.start),
                static_cast<unsigned long long>(r.length),
                static_cast<unsigned long long>(r.offset), a.file.c_str());
  }
  return 0;
}

}  // namespace skiff::img
