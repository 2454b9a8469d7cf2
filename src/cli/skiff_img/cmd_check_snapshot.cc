// skiff-img check and snapshot: thin front ends over block/tools, printing
// what qemu-img prints and exiting with its codes (check: 0 clean, 1 could
// not check, 2 corruptions, 3 leaks only).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "block/open_image.h"
#include "block/tools/check.h"
#include "block/tools/snapshot.h"
#include "cli/skiff_img/commands.h"
#include "cli/skiff_img/image_access.h"

namespace skiff::img {

int print_snapshot_list(const std::vector<qcow2tools::Qcow2Snapshot>& snaps);

namespace {

using qcow2tools::CheckReport;
using qcow2tools::RepairMode;

void print_check_human(const CheckReport& r) {
  for (const auto& m : r.messages) std::fprintf(stderr, "%s\n", m.c_str());
  if (r.leaks_fixed || r.corruptions_fixed) {
    std::printf(
        "The following inconsistencies were found and repaired:\n\n"
        "    %llu leaked clusters\n    %llu corruptions\n\n"
        "Double checking the fixed image now...\n",
        static_cast<unsigned long long>(r.leaks_fixed),
        static_cast<unsigned long long>(r.corruptions_fixed));
  }
  if (!r.corruptions && !r.leaks && !r.check_errors) {
    std::printf("No errors were found on the image.\n");
  } else {
    if (r.corruptions)
      std::printf(
          "\n%llu errors were found on the image.\n"
          "Data may be corrupted, or further writes to the image may corrupt it.\n",
          static_cast<unsigned long long>(r.corruptions));
    if (r.leaks)
      std::printf(
          "\n%llu leaked clusters were found on the image.\n"
          "This means waste of disk space, but no harm to data.\n",
          static_cast<unsigned long long>(r.leaks));
    if (r.check_errors)
      std::printf("\n%llu internal errors have occurred during the check.\n",
                  static_cast<unsigned long long>(r.check_errors));
  }
  if (r.total_clusters) {
    double t = static_cast<double>(r.total_clusters);
    std::printf("%llu/%llu = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
                static_cast<unsigned long long>(r.allocated_clusters),
                static_cast<unsigned long long>(r.total_clusters),
                100.0 * static_cast<double>(r.allocated_clusters) / t,
                r.allocated_clusters ? 100.0 * static_cast<double>(r.fragmented_clusters) /
                                           static_cast<double>(r.allocated_clusters)
                                     : 0.0,
                r.allocated_clusters ? 100.0 * static_cast<double>(r.compressed_clusters) /
                                           static_cast<double>(r.allocated_clusters)
                                     : 0.0);
  }
  std::printf("Image end offset: %llu\n", static_cast<unsigned long long>(r.image_end_offset));
}

void print_check_json(const CheckReport& r, const std::string& file) {
  // qemu-img includes the optional counters only when they are non-zero.
  nlohmann::ordered_json j;
  j["image-end-offset"] = r.image_end_offset;
  if (r.corruptions) j["corruptions"] = r.corruptions;
  if (r.leaks) j["leaks"] = r.leaks;
  if (r.corruptions_fixed) j["corruptions-fixed"] = r.corruptions_fixed;
  if (r.leaks_fixed) j["leaks-fixed"] = r.leaks_fixed;
  j["total-clusters"] = r.total_clusters;
  j["check-errors"] = r.check_errors;
  if (r.allocated_clusters) j["allocated-clusters"] = r.allocated_clusters;
  j["filename"] = file;
  j["format"] = "qcow2";
  if (r.fragmented_clusters) j["fragmented-clusters"] = r.fragmented_clusters;
  if (r.compressed_clusters) j["compressed-clusters"] = r.compressed_clusters;
  std::printf("%s\n", j.dump(4).c_str());
}

bool is_qcow2(const std::string& file, const std::string& format, int& rc) {
  std::string f = format;
  if (f.empty()) {
    auto p = probe_format(file);
    if (!p) {
      report(p.error());
      rc = 1;
      return false;
    }
    f = *p;
  }
  if (f != "qcow2") {
    report(fmt::format("{}: format '{}' has no metadata to check or snapshot", file, f));
    rc = f == "raw" ? 63 : 1;  // qemu-img: 63 = format does not support checks
    return false;
  }
  return true;
}

}  // namespace

int cmd_check(const CheckArgs& a) {
  int rc = 0;
  if (!is_qcow2(a.file, a.format, rc)) return rc;
  RepairMode mode = a.repair == "all"     ? RepairMode::kAll
                    : a.repair == "leaks" ? RepairMode::kLeaks
                                          : RepairMode::kNone;
  auto r = qcow2tools::check_qcow2(a.file, mode);
  if (!r) {
    report(fmt::format("This image could not be checked: {}", r.error().what()));
    return 1;
  }
  if (a.output == "json") {
    for (const auto& m : r->messages) std::fprintf(stderr, "%s\n", m.c_str());
    print_check_json(*r, a.file);
  } else {
    print_check_human(*r);
  }
  if (r->check_errors) return 1;
  if (r->corruptions) return 2;
  if (r->leaks) return 3;
  return 0;
}

int cmd_snapshot(const SnapshotArgs& a) {
  int rc = 0;
  if (!is_qcow2(a.file, "", rc)) return 1;
  Result<> r;
  if (a.list) {
    auto snaps = qcow2tools::list_snapshots(a.file);
    if (!snaps) {
      report(snaps.error());
      return 1;
    }
    return print_snapshot_list(*snaps);
  }
  if (!a.create.empty()) {
    r = qcow2tools::create_snapshot(a.file, a.create);
  } else if (!a.apply.empty()) {
    r = qcow2tools::apply_snapshot(a.file, a.apply);
  } else {
    r = qcow2tools::delete_snapshot(a.file, a.remove);
  }
  if (!r) {
    report(r.error());
    return 1;
  }
  return 0;
}

}  // namespace skiff::img
